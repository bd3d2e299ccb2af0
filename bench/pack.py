#!/usr/bin/env python3
"""Packer benchmark: rootfs pack vs `tar --sort=name --numeric-owner -c | zstd -3` and `| pigz -6`.

Run as root, on demand (not part of the tests):

    python bench/pack.py [--root DIR] [--runs 3] [--suite bookworm]

Without --root a bookworm minbase root is built with mmdebstrap from the
mirror apt is configured with. On that tree, alternately and --runs times:
GNU tar piped into zstd -3 and into pigz -6, `rootfs pack --format tar.zst`,
`--format oci` (gzip layer), `--format oci --layer-compression zstd`, plain tar against
GNU tar, four formats from one walk, ext4, squashfs and dir. Medians of the
wall time and the peak resident memory of each (the largest process of the
pipeline for tar|zstd) are printed with the ratios. Then the same root is
doubled (two copies side by side in one tree) and packed again: the packer's
peak memory must not grow with the tree.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

sys.path.insert(0, str(HERE / "bench"))

import _measure  # noqa: E402

from rootfs.backends.deb.mirror import host_mirror  # noqa: E402

SDE = "1700000000"


def measure(argv: list[str], **kw) -> tuple[float, float, int]:
    s = _measure.measure(argv, **kw)
    return s.wall, s.cpu, s.rss


def packer(root: Path, out: Path, *formats: str, compression: str = "gzip") -> list[str]:
    """The packer alone, without the CLI's start-up (typer, rich)."""
    code = ("import sys\nfrom rootfs.pack import PackOptions, pack\n"
            "pack(sys.argv[1], sys.argv[4:], sys.argv[2], PackOptions(source_date_epoch=int(sys.argv[3]), "
            f"layer_compression={compression!r}))\n")
    return [sys.executable, "-c", code, str(root), str(out), SDE, *formats]


def build_root(work: Path, suite: str) -> Path:
    mirror = host_mirror("debian", "Debian")
    if not mirror:
        raise SystemExit("no Debian mirror configured for apt here; pass --root DIR")
    root = work / "minbase"
    print(f"building {suite} minbase with mmdebstrap...", flush=True)
    subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", suite, str(root), mirror], check=True)
    return root


def tree_size(root: Path) -> tuple[int, int]:
    n = size = 0
    for dirpath, dirs, files in os.walk(root):
        for f in files:
            n += 1
            try:
                size += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
        n += len(dirs)
    return n, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, help="an existing root (default: build bookworm minbase)")
    ap.add_argument("--suite", default="bookworm")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (the root's files are root-owned and some unreadable otherwise)")

    work = Path(tempfile.mkdtemp(prefix="rootfs-bench-pack."))
    try:
        root = args.root or build_root(work, args.suite)
        n, size = tree_size(root)
        print(f"tree: {root} ({n} entries, {size / 1e6:.0f} MB)")
        out = work / "out"
        cases = {
            "tar | zstd -3": (["sh", "-c", 'tar --sort=name --numeric-owner -C "$1" -c . | zstd -3 -q -T1 > "$2"',
                               "sh", str(root), str(out)]),
            "pack tar.zst": packer(root, out, "tar.zst"),
            "tar | pigz -6": (["sh", "-c", 'tar --sort=name --numeric-owner -C "$1" -c . | pigz -6 > "$2"',
                               "sh", str(root), str(out)]),
            "pack oci gzip": packer(root, out, "oci"),
            "pack oci zstd": packer(root, out, "oci", compression="zstd"),
            "tar": ["sh", "-c", 'tar --sort=name --numeric-owner -C "$1" -cf "$2" .', "sh", str(root), str(out)],
            "pack tar": packer(root, out, "tar"),
            "pack 4 formats": packer(root, out, "tar", "tar.zst", "oci", "docker-archive"),
            "pack ext4": packer(root, out, "ext4"),
            "pack squashfs": packer(root, out, "squashfs"),
            "pack dir (copy)": packer(root, out, "dir"),
            "rootfs pack (CLI)": [sys.executable, "-m", "rootfs.cli", "-q", "pack", str(root), "--source-date-epoch",
                                  SDE, "--format", "tar.zst", "-o", str(out)],
        }
        results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in cases}
        for _ in range(args.runs):
            for name, argv in cases.items():
                results[name].append(measure(argv, cwd=HERE))
                if out.is_dir():
                    shutil.rmtree(out)
                else:
                    out.unlink(missing_ok=True)
        med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v), max(r[2] for r in v))
               for k, v in results.items()}
        base_t, base_c, _ = med["tar | zstd -3"]
        print(f"{'case':<18} {'wall s':>7} {'cpu s':>7} {'peak MiB':>9} {'wall/ref':>9} {'cpu/ref':>8}")
        for name, (t, c, m) in med.items():
            print(f"{name:<18} {t:7.2f} {c:7.2f} {m:9d} {t / base_t:8.2f}x {c / base_c:7.2f}x")
        print(f"pack tar.zst / (tar | zstd -3): wall {med['pack tar.zst'][0] / base_t:.2f}, "
              f"cpu {med['pack tar.zst'][1] / base_c:.2f} (target <= 1.2)")
        pig_t, pig_c, _ = med["tar | pigz -6"]
        print(f"pack oci gzip / (tar | pigz -6): wall {med['pack oci gzip'][0] / pig_t:.2f}, "
              f"cpu {med['pack oci gzip'][1] / pig_c:.2f} (target <= 1.2)")
        print(f"pack tar / GNU tar: wall {med['pack tar'][0] / med['tar'][0]:.2f}")

        # memory must not grow with the tree: pack a tree twice as large
        double = work / "double"
        double.mkdir()
        for half in ("a", "b"):
            subprocess.run(["cp", "-a", "--reflink=auto", str(root), str(double / half)], check=True)
        n2, size2 = tree_size(double)
        for fmt, name in (("tar.zst", "pack tar.zst"), ("oci", "pack oci gzip")):
            t2, _, m2 = measure(packer(double, out, fmt), cwd=HERE)
            if out.is_dir():
                shutil.rmtree(out)
            else:
                out.unlink(missing_ok=True)
            t1, _, m1 = med[name]
            print(f"doubled tree ({n2} entries, {size2 / 1e6:.0f} MB): {fmt} {t2:.2f} s, peak {m2} MiB "
                  f"(single tree: {t1:.2f} s, peak {m1} MiB; memory ratio {m2 / m1:.2f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
