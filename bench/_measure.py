"""What the benchmarks share: timing a command, the machine's load, medians.

Not a benchmark itself (bench/run.py skips files starting with "_").
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

_PROBE = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "with open(sys.argv[1], 'wb') as err:\n"
    "    r = subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=err)\n"
    "dt = time.perf_counter() - t\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps([r.returncode, dt, u.ru_utime + u.ru_stime, u.ru_maxrss]))\n"
)


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds a user waits
    cpu: float  # user + system seconds of the command and everything it waited for
    rss: int  # peak resident MiB of the largest process among them
    stderr: str = ""


class Failed(Exception):
    pass


def measure(argv: list[str], *, cwd: Path | None = None, env: dict | None = None, log: Path | None = None) -> Sample:
    """Run argv in a fresh child that reports its own children's usage, so
    one measurement never mixes with another's. CPU time is the steadier
    number on a busy machine; wall time is what a user waits. Standard error
    is kept (the caller may parse it) and written to log when given."""
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="bench-stderr.", suffix=".txt", delete=False) as f:
        err_path = Path(f.name)
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE, str(err_path), *argv], capture_output=True, text=True,
                             cwd=cwd, env=env)
        err = err_path.read_text(errors="replace")
    finally:
        if log is not None and err_path.exists():
            log.parent.mkdir(parents=True, exist_ok=True)
            os.replace(err_path, log)
        else:
            err_path.unlink(missing_ok=True)
    if out.returncode != 0 or not out.stdout.strip():
        raise Failed(f"the probe around {' '.join(argv)} failed: {out.stderr.strip()[-500:]}")
    rc, dt, cpu, rss = json.loads(out.stdout.strip().splitlines()[-1])
    if rc != 0:
        raise Failed(f"{' '.join(argv)} exited with {rc}: {err.strip()[-1500:]}")
    return Sample(dt, cpu, rss // 1024, err)


def load() -> str:
    """The load averages and how many cores share them, for the report."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def rootfs_cmd() -> list[str]:
    venv = HERE / ".venv" / "bin" / "rootfs"
    return [str(venv)] if venv.exists() else [sys.executable, "-m", "rootfs.cli"]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"
