#!/usr/bin/env python3
"""Foreign-architecture benchmark: bookworm minbase for arm64 (maintainer
scripts run by qemu-user through binfmt_misc), rootfs make against
`mmdebstrap --arch arm64`, and where the time goes under emulation.

Run as root, on demand (not part of the tests):

    .venv/bin/python bench/foreign.py                      # arm64, warm caches, 3 runs
    .venv/bin/python bench/foreign.py --arch armhf --cache cold,warm
    .venv/bin/python bench/foreign.py --profile            # + strace of one build: every script's time

Both tools build the same suite and variant from the same mirror (the one
apt is configured with), mmdebstrap with the merged-usr hook as in
bench/bootstrap.py (the same package set), alternating in one run after a
warm-up of each (not counted). The emulator is set up as the tests set it
up (tests/binfmt.py: qemu-user-static's handlers from /usr/lib/binfmt.d,
registered for the run and removed afterwards when they were not there).

The breakdown: rootfs's stages from its build report and -v log, the same
build for the host's own architecture (stage 2 natively, for scale), and
with --profile one more foreign build under `strace -f` (bench/_profile.py),
which lists every program stage 2 ran with its time including children:
each maintainer script, dpkg's own runs, triggers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "bench"))
sys.path.insert(0, str(HERE / "tests"))

from _measure import Failed, Sample, load, measure, median, ratio  # noqa: E402
from bootstrap import Case, count_packages, mmdebstrap, rmtree, rootfs_make, rootfs_stages  # noqa: E402

from rootfs.backends.deb.mirror import host_mirror  # noqa: E402
from rootfs.model import arch as archmod  # noqa: E402

GOAL = 0.5
TOOLS = ("rootfs", "mmdebstrap")


def rootfs_cmd(case: Case, arch: str, out: Path, cache: Path, fmt: str) -> list[str]:
    return rootfs_make(case, out, cache, [fmt]) + ["--arch", arch]


def mmdebstrap_cmd(case: Case, arch: str, target: Path, debs: Path | None, keep: Path | None = None) -> list[str]:
    cmd = mmdebstrap(case, target, debs, keep)
    return cmd[:1] + [f"--arch={arch}"] + cmd[1:]


def run_one(case: Case, arch: str, tool: str, cache_state: str, samples: dict, stages: list) -> Sample:
    d = case.dir()
    if tool == "rootfs":
        cache = d / "rootfs-cache"
        if cache_state == "cold":
            shutil.rmtree(cache, ignore_errors=True)
        out = d / "rootfs-out"
        rmtree(out)
        s = measure(rootfs_cmd(case, arch, out, cache, case.fmt), cwd=HERE)
        if cache_state == "warm":
            stages.append(rootfs_stages(s.stderr, out.with_name(out.name + ".build.json")))
        rmtree(out)
    else:
        target = d / "mmdebstrap"
        rmtree(target)
        s = measure(mmdebstrap_cmd(case, arch, target, d / "mmdebstrap-debs" if cache_state == "warm" else None))
        rmtree(target)
    samples.setdefault((tool, cache_state), []).append(s)
    print(f"  {tool + ' (' + cache_state + ')':<26} {s.wall:7.2f} s wall {s.cpu:7.2f} s cpu {s.rss:6d} MiB",
          flush=True)
    return s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="arm64", help="a Debian architecture this host runs through qemu-user")
    ap.add_argument("--suite", default="bookworm")
    ap.add_argument("--variant", default="minbase")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cache", default="warm", help="cold, warm or both (comma-separated)")
    ap.add_argument("--format", default="tar", help="rootfs make's output format (default tar)")
    ap.add_argument("--profile", action="store_true", help="strace one more rootfs build: time per program")
    ap.add_argument("--work", type=Path, help="scratch directory (default: a new one under /var/tmp)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/foreign.py needs root (both tools configure chrooted; the emulator is registered)",
              file=sys.stderr)
        return 2
    caches = [c for c in args.cache.split(",") if c]
    if not caches or set(caches) - {"cold", "warm"}:
        ap.error("--cache takes cold, warm")
    mirror = host_mirror("debian", "Debian")
    if not mirror:
        print("no Debian mirror in apt's configuration; nothing to measure against", file=sys.stderr)
        return 2
    from binfmt import emulation

    work = args.work or Path(tempfile.mkdtemp(prefix="rootfs-bench-foreign.", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    case = Case(args.suite, args.variant, work, mirror, args.format)
    print(f"scratch: {work}; {load()}")
    try:
        with emulation(args.arch):
            run(case, args.arch, caches, args.runs, args.profile)
    except Failed as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def run(case: Case, arch: str, caches: list[str], runs: int, profile: bool) -> None:
    d = case.dir()
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)  # apt's _apt user reads mmdebstrap's package directory
    print(f"\n== {case.name} for {arch} under qemu-user ({load()})\nwarm-up", flush=True)
    tree = d / "tree"
    rmtree(tree)
    s = measure(rootfs_cmd(case, arch, tree, d / "rootfs-cache", "dir"), cwd=HERE)
    print(f"  rootfs make -f dir (warm-up)              {s.wall:7.2f} s", flush=True)
    packages = {"rootfs": count_packages(tree)}
    debs = d / "mmdebstrap-debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir()
    target = d / "mmdebstrap"
    rmtree(target)
    s = measure(mmdebstrap_cmd(case, arch, target, None, keep=debs))
    print(f"  mmdebstrap (warm-up, keeps its packages)  {s.wall:7.2f} s", flush=True)
    packages["mmdebstrap"] = count_packages(target)
    rmtree(target)

    samples: dict = {}
    stages: list[dict[str, float]] = []
    for i in range(runs):
        order = TOOLS[i % 2:] + TOOLS[:i % 2]
        print(f"run {i + 1}/{runs} ({load()})", flush=True)
        for c in caches:
            for tool in order:
                run_one(case, arch, tool, c, samples, stages)

    # The same build for the host's own architecture: stage 2 without an emulator.
    native = d / "native-out"
    host = archmod.host_arch().deb
    s = measure(rootfs_cmd(case, host, native, d / "rootfs-cache", case.fmt), cwd=HERE)
    native_stages = rootfs_stages(s.stderr, native.with_name(native.name + ".build.json"))
    rmtree(native)

    print(f"\n{case.name} for {arch}, -f {case.fmt} for rootfs, median of {runs} run(s), alternating")
    for c in caches:
        (rw, ru), (mw, mu) = [(median(x.wall for x in samples[(t, c)]), median(x.cpu for x in samples[(t, c)]))
                              for t in TOOLS]
        print(f"  {c} cache: rootfs {rw:.2f} s wall {ru:.2f} s cpu; mmdebstrap (merged-usr hook) {mw:.2f} s wall "
              f"{mu:.2f} s cpu; rootfs / mmdebstrap wall {ratio(rw, mw)}, cpu {ratio(ru, mu)} (goal <= {GOAL})")
    if len(set(packages.values())) > 1:
        print(f"  note: the tools installed different package counts: {packages}")
    else:
        print(f"  both installed {packages['rootfs']} packages")
    if stages:
        print(f"\nrootfs's stages, median of {len(stages)} warm run(s), against one {host} build (natively):")
        for k in ("resolve", "fetch", "stage 1", "stage 2", "install, other", "pack"):
            v = median(r.get(k, float("nan")) for r in stages)
            print(f"  {k:<18}{v:7.2f} s   {host}: {native_stages.get(k, float('nan')):6.2f} s")
    if profile:
        import _profile

        traced = d / "traced"
        trace = d / "strace.txt"
        tr = _profile.strace(rootfs_cmd(case, arch, traced, d / "rootfs-cache", "dir"), trace)
        _profile.print_strace(tr, traced, d / "rootfs-cache")
        rmtree(traced)
    print(f"({case.name} for {arch} done; {load()})")


if __name__ == "__main__":
    sys.exit(main())
