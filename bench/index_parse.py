#!/usr/bin/env python3
"""Index benchmark: parse + resolve bookworm main amd64, rootfs vs python-debian.

Run on demand (not part of the tests):

    .venv/bin/python bench/index_parse.py [--suite bookworm] [--runs 3]

Downloads the suite's main/binary-ARCH/Packages.xz from the mirror apt is
configured with (checked against the signed InRelease), then times, in
alternation so machine noise hits both alike:

- rootfs: decompress + split into the lazy Index (what `rootfs resolve`
  does), then resolving the minbase variant on it;
- python-debian: `Packages.iter_paragraphs` over the same decompressed
  file (parsing only; it has no resolver to time).

Prints medians and the ratio. The load on the machine shows in the wall
times; the CPU time of the rootfs parse (Python plus its xz process) does
not depend on it.
"""

from __future__ import annotations

import argparse
import io
import lzma
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rootfs.backends.deb.index import Index, decompress_chunks  # noqa: E402
from rootfs.backends.deb.mirror import host_mirror  # noqa: E402
from rootfs.backends.deb.release import fetch_index, fetch_release  # noqa: E402
from rootfs.backends.deb.resolver import resolve_set, variant_request  # noqa: E402
from rootfs.model.recipe import host_architecture  # noqa: E402
from rootfs.net.fetch import Downloader  # noqa: E402

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def download(suite: str, arch: str) -> tuple[bytes, str]:
    mirror = host_mirror("debian", "Debian")
    if not mirror:
        sys.exit("no Debian mirror configured for apt on this machine")
    mirror = mirror.rstrip("/") + "/"
    d = Downloader()
    fetched, _ = fetch_release(d, mirror, suite, KEYRING, check_gpg=Path(KEYRING).is_file())
    data, ext = fetch_index(d, fetched, "main", arch)
    return data, ext


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def time_rootfs(data: bytes, ext: str, arch: str) -> tuple[float, float, float, int, int]:
    c0 = _cpu()
    t0 = time.perf_counter()
    index = Index(arch)
    index.add(decompress_chunks(data, ext))
    t1 = time.perf_counter()
    cpu = _cpu() - c0
    result = resolve_set(index, variant_request(index, "minbase"))
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, cpu, index.stanzas, len(result.packages)


def time_python_debian(data: bytes, ext: str) -> tuple[float, int]:
    from debian.deb822 import Packages

    t0 = time.perf_counter()
    text = b"".join(decompress_chunks(data, ext))
    n = sum(1 for _ in Packages.iter_paragraphs(io.BytesIO(text), use_apt_pkg=False))
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="bookworm")
    ap.add_argument("--arch", default=host_architecture("deb"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    data, ext = download(args.suite, args.arch)
    raw = len(b"".join(decompress_chunks(data, ext)))
    print(f"{args.suite} main {args.arch}: Packages{ext} {len(data) / 1e6:.1f} MB, {raw / 1e6:.1f} MB uncompressed")

    t0 = time.perf_counter()
    lzma.decompress(data) if ext == ".xz" else None
    print(f"  in-process lzma.decompress alone: {time.perf_counter() - t0:.2f} s")

    parse, resolve, pd, cpus = [], [], [], []
    stanzas = chosen = pd_n = 0
    for _ in range(args.runs):
        p, r, cpu, stanzas, chosen = time_rootfs(data, ext, args.arch)
        parse.append(p)
        cpus.append(cpu)
        resolve.append(r)
        t, pd_n = time_python_debian(data, ext)
        pd.append(t)
    mp, mr, md = statistics.median(parse), statistics.median(resolve), statistics.median(pd)
    print(f"  rootfs        parse   {mp:6.2f} s  ({stanzas} stanzas; "
          f"{statistics.median(cpus):.2f} s CPU incl. the xz process)")
    print(f"  rootfs        resolve {mr:6.2f} s  (minbase: {chosen} packages)")
    print(f"  python-debian parse   {md:6.2f} s  ({pd_n} paragraphs, Packages.iter_paragraphs)")
    print(f"  ratio python-debian / rootfs parse: {md / mp:.1f}x; "
          f"/ rootfs parse+resolve: {md / (mp + mr):.1f}x")


if __name__ == "__main__":
    main()
