#!/usr/bin/env python3
"""The nightly no-op: `rootfs make RECIPE -o OUT` run again with nothing
changed. It still fetches and verifies every source's InRelease (signature,
suite, Valid-Until); when those are byte for byte what the published lock
records, the lock stands and no index is read.

    .venv/bin/python bench/noop.py                      # bookworm (its 3 suites), -f tar
    .venv/bin/python bench/noop.py --recipe trixie --runs 9 -f oci

One build first (not counted), then --runs no-op runs, each alternating
with the bare parts measured the same way: the interpreter alone, the
interpreter importing rootfs's command line, and the full resolve from the
cached indices (`rootfs resolve`, what a no-op cost before the lock could
stand). The share of each part is the median no-op split into: interpreter
start, imports, resolve (the report's figure: InRelease fetched and
verified), and the rest (option parsing, reading the previous report and
lock, the up-to-date decision). With pyinstrument installed
(`.venv/bin/pip install pyinstrument`), --profile prints the no-op's
heaviest calls.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "bench"))

from _measure import load, measure, median, rootfs_cmd  # noqa: E402

GOAL = 0.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="bookworm")
    ap.add_argument("-f", "--format", default="tar")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-noop."))
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"out.{args.format}"
    cache = work / "cache"
    make = rootfs_cmd() + ["make", args.recipe, "-f", args.format, "-o", str(out), "--cache-dir", str(cache),
                           "--report", str(work / "report.json")]
    python = [sys.executable]
    print(f"# {args.recipe} -f {args.format}: {load()}", flush=True)
    first = measure(make, cwd=HERE)
    print(f"  first build (not counted)            {first.wall:6.2f} s", flush=True)

    rows: dict[str, list[float]] = {"no-op": [], "interpreter": [], "imports": [], "resolve (report)": [],
                                    "full resolve (rootfs resolve)": []}
    for i in range(args.runs):
        s = measure(make, cwd=HERE)
        report = json.loads((work / "report.json").read_text())
        if report["outcome"] != "up-to-date":
            print(f"run {i}: not a no-op ({report['outcome']}: {report['reason']})", file=sys.stderr)
            return 1
        rows["no-op"].append(s.wall)
        rows["resolve (report)"].append(float(report["durations"].get("resolve", 0.0)))
        rows["interpreter"].append(measure(python + ["-c", "pass"]).wall)
        rows["imports"].append(measure(python + ["-c", "import rootfs.cli"], cwd=HERE).wall)
        rows["full resolve (rootfs resolve)"].append(
            measure(rootfs_cmd() + ["resolve", args.recipe], cwd=HERE).wall)

    m = {k: median(v) for k, v in rows.items()}
    total = m["no-op"]
    parts = {
        "interpreter start": m["interpreter"],
        "importing rootfs.cli": max(0.0, m["imports"] - m["interpreter"]),
        "resolve: InRelease fetched and verified": m["resolve (report)"],
    }
    parts["the rest (options, previous report and lock, decision)"] = max(0.0, total - sum(parts.values()))
    print(f"\n  no-op (median of {args.runs})                 {total:6.3f} s wall   goal < {GOAL} s: "
          f"{'met' if total < GOAL else 'NOT met'}")
    for name, value in parts.items():
        print(f"    {name:<52} {value:6.3f} s  {100 * value / total:5.1f} %")
    print(f"  for comparison, `rootfs resolve` (indices from the cache, parsed, chosen) "
          f"{m['full resolve (rootfs resolve)']:6.3f} s")
    print(f"# {load()}")

    if args.profile:
        if shutil.which("pyinstrument") is None and not (HERE / ".venv/bin/pyinstrument").exists():
            print("pyinstrument is not installed (.venv/bin/pip install pyinstrument)")
        else:
            exe = str(HERE / ".venv/bin/pyinstrument") if (HERE / ".venv/bin/pyinstrument").exists() else "pyinstrument"
            text = subprocess.run([exe, "-i", "0.001", *make], capture_output=True, text=True, cwd=HERE).stdout
            print(text)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
