#!/usr/bin/env python3
"""Bootstrap benchmark: rootfs make vs debootstrap vs mmdebstrap.

Run as root, on demand (not part of the tests):

    .venv/bin/python bench/bootstrap.py [--suite bookworm] [--runs 3]

Each tool builds the same suite's minbase variant from the same mirror (the
one apt is configured with), alternately, with a cold cache and then with a
warm one (the package files already on disk), and the medians are printed
with the ratios against the peers. mmdebstrap runs with the merged-usr hook,
which makes it install exactly debootstrap's package set (without it apt
pulls in usrmerge and perl).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from rootfs.backends.deb.mirror import host_mirror  # noqa: E402


def rootfs_cmd() -> list[str]:
    venv = HERE / ".venv" / "bin" / "rootfs"
    return [str(venv)] if venv.exists() else [sys.executable, "-m", "rootfs.cli"]


def timed(cmd: list[str], **kw) -> float:
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    return time.monotonic() - t


def count_packages(root: Path) -> int:
    out = subprocess.run(["dpkg-query", "--admindir", str(root / "var/lib/dpkg"), "-W", "-f", "${Package}\n"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.split())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="bookworm")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-peers", action="store_true", help="time rootfs alone")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/bootstrap.py needs root (debootstrap, mmdebstrap and rootfs configure chrooted)", file=sys.stderr)
        return 2
    mirror = host_mirror("debian", "Debian")
    if not mirror:
        print("no Debian mirror in apt's configuration; nothing to measure against", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="rootfs-bench."))
    os.chmod(work, 0o755)
    results: dict[str, list[float]] = {}
    counts: dict[str, int] = {}

    def record(name: str, seconds: float, root: Path | None) -> None:
        results.setdefault(name, []).append(seconds)
        if root is not None and name not in counts:
            counts[name] = count_packages(root)
        print(f"  {name:<28} {seconds:7.2f} s", flush=True)

    try:
        rootfs_cache = work / "rootfs-cache"
        deb_cache = work / "debootstrap-cache"
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}", flush=True)
            for warm in (False, True):
                tag = "warm" if warm else "cold"
                if not warm:
                    shutil.rmtree(rootfs_cache, ignore_errors=True)
                    shutil.rmtree(deb_cache, ignore_errors=True)
                    deb_cache.mkdir()
                out = work / "rootfs-out"
                shutil.rmtree(out, ignore_errors=True)
                record(f"rootfs make ({tag})",
                       # --no-updates: the suite alone, as debootstrap and mmdebstrap
                       # (given one mirror) read it; the same package set.
                       timed(rootfs_cmd() + ["--quiet", "make", args.suite, "--variant", "minbase", "--no-sbom",
                                             "--no-updates",
                                             "--cache-dir", str(rootfs_cache), "-o", str(out), "--force"]), out)
                shutil.rmtree(out, ignore_errors=True)
                if args.skip_peers:
                    continue
                target = work / "debootstrap"
                shutil.rmtree(target, ignore_errors=True)
                record(f"debootstrap ({tag})",
                       timed(["debootstrap", "--variant=minbase", f"--cache-dir={deb_cache}", args.suite,
                              str(target), mirror]), target)
                shutil.rmtree(target, ignore_errors=True)
                target = work / "mmdebstrap"
                shutil.rmtree(target, ignore_errors=True)
                cmd = ["mmdebstrap", "--quiet", "--variant=minbase",
                       "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"]
                if warm:
                    debs = " ".join(glob.glob(str(deb_cache / "*.deb")))
                    cmd.append(f'--setup-hook=mkdir -p "$1/var/cache/apt/archives" && cp {debs} "$1/var/cache/apt/archives/"')
                record(f"mmdebstrap ({tag})", timed(cmd + [args.suite, str(target), mirror]), target)
                shutil.rmtree(target, ignore_errors=True)
        t = time.monotonic()
        subprocess.run(rootfs_cmd() + ["--quiet", "resolve", args.suite, "--variant", "minbase", "--no-updates"], check=True,
                       stdout=subprocess.DEVNULL)
        results["rootfs resolve (index+resolve)"] = [time.monotonic() - t]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\n{args.suite} minbase, median of {args.runs} run(s)")
    for k, v in med.items():
        n = counts.get(k)
        print(f"  {k:<32} {v:7.2f} s" + (f"  {n} packages" if n else ""))
    if not args.skip_peers:
        print("\nratios (rootfs / peer; the target is <= 0.5 against mmdebstrap):")
        for tag in ("cold", "warm"):
            ours = med[f"rootfs make ({tag})"]
            for peer in ("debootstrap", "mmdebstrap"):
                print(f"  {tag}: rootfs / {peer:<12} {ours / med[f'{peer} ({tag})']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
