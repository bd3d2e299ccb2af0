#!/usr/bin/env python3
"""Run every benchmark in bench/ in turn (`make bench`); each prints its own
numbers and ratios against the peers measured in the same run."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["index_parse.py", "bootstrap.py", "pack.py", "rpm_resolve.py"]

failed = 0
# files starting with "_" are the benchmarks' shared helpers
others = sorted(p.name for p in HERE.glob("*.py") if p.name not in ORDER + ["run.py"] and not p.name.startswith("_"))
for name in ORDER + others:
    script = HERE / name
    if not script.exists():
        continue
    print(f"== {name}", flush=True)
    failed |= subprocess.run([sys.executable, str(script), *sys.argv[1:]]).returncode != 0
sys.exit(1 if failed else 0)
