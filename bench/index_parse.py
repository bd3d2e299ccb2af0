#!/usr/bin/env python3
"""Index benchmark: parse + resolve bookworm main amd64, rootfs vs python-debian;
then the whole resolve (verify, parse, choose) with one source and with the
suite's -updates and -security too.

Run on demand (not part of the tests):

    .venv/bin/python bench/index_parse.py [--suite bookworm] [--runs 3]

Downloads the suite's main/binary-ARCH/Packages (in the form rootfs
prefers, gzip on Debian's mirrors) from the mirror apt is
configured with (checked against the signed InRelease), then times, in
alternation so machine noise hits both alike:

- rootfs: decompress + split into the lazy Index (what `rootfs resolve`
  does for each source), then resolving the minbase variant on it;
- python-debian: `Packages.iter_paragraphs` over the same decompressed
  file (parsing only; it has no resolver to time).

Prints medians and the ratio. The load on the machine shows in the wall
times; the CPU time of the rootfs parse (Python plus any xz process) does
not depend on it.

The resolve part runs rootfs's deb resolve in this process, as `rootfs
resolve SUITE` does after start-up, alternating the recipe with
`--no-updates` (the suite alone) and as it is (SUITE, SUITE-updates,
SUITE-security from the mirrors apt is configured with), and prints both
against their goals (0.4 s and 0.5 s for bookworm) and their ratio (goal:
at most 1.3), with where the time of one source goes.
"""

from __future__ import annotations

import argparse
import io
import os
import lzma
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rootfs.backends import ResolveOptions  # noqa: E402
from rootfs.backends.deb.index import Index, decompress_chunks, decompress_index  # noqa: E402
from rootfs.backends.deb.mirror import host_mirror  # noqa: E402
from rootfs.backends.deb.release import fetch_index, fetch_release, plain_size  # noqa: E402
from rootfs.backends.deb.resolve import resolve as deb_resolve  # noqa: E402
from rootfs.backends.deb.resolver import resolve_set, variant_request  # noqa: E402
from rootfs.model.recipe import host_architecture, load_recipe  # noqa: E402
from rootfs.net.fetch import Downloader  # noqa: E402

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def download(suite: str, arch: str) -> tuple[bytes, str, int]:
    mirror = host_mirror("debian", "Debian")
    if not mirror:
        sys.exit("no Debian mirror configured for apt on this machine")
    mirror = mirror.rstrip("/") + "/"
    d = Downloader()
    fetched, _ = fetch_release(d, mirror, suite, KEYRING, check_gpg=Path(KEYRING).is_file())
    data, ext = fetch_index(d, fetched, "main", arch)
    return data, ext, plain_size(fetched.release, "main", arch)


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def time_rootfs(data: bytes, ext: str, size: int, arch: str) -> tuple[float, float, float, int, int]:
    c0 = _cpu()
    t0 = time.perf_counter()
    index = Index(arch)
    index.add([decompress_index(data, ext, "index", size)])
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


def time_resolves(suite: str, runs: int) -> None:
    import shutil
    import tempfile

    recipe = load_recipe(suite)
    alone = recipe.with_settings(updates=False)
    if len(recipe.settings.sources) < 2:
        print(f"{suite}: the recipe has no update suites; nothing to compare")
        return
    cache = Path(tempfile.mkdtemp(prefix="rootfs-bench-cache."))
    goal_one, goal_three = (0.4, 0.5) if suite == "bookworm" else (None, None)

    def verdict(value: float, goal: float | None) -> str:
        return "" if goal is None else f"  (goal <= {goal:.2f} s: {'met' if value <= goal else 'NOT met'})"

    try:
        for mode, opts in (("cold: every index fetched and decompressed", ResolveOptions()),
                           ("warm: unchanged indices from the cache, as a nightly run", ResolveOptions(cache_dir=cache))):
            deb_resolve(recipe, opts, Downloader())  # the mirror's own cache, the page cache, the index cache
            walls: dict[str, list[float]] = {"one": [], "three": []}
            cpus: dict[str, list[float]] = {"one": [], "three": []}
            counts = {}
            for _ in range(runs):
                for key, r in (("one", alone), ("three", recipe)):
                    c0, t0 = _cpu(), time.perf_counter()
                    lock = deb_resolve(r, opts, Downloader())
                    walls[key].append(time.perf_counter() - t0)
                    cpus[key].append(_cpu() - c0)
                    counts[key] = (len(lock.sources), len(lock.packages))
            one, three = statistics.median(walls["one"]), statistics.median(walls["three"])
            print(f"resolve {suite} (verify, parse, choose; in-process, median of {runs}, alternating), {mode}:")
            print(f"  {counts['one'][0]} source  ({suite} main):                {one:5.2f} s wall, "
                  f"{statistics.median(cpus['one']):5.2f} s CPU, {counts['one'][1]} packages{verdict(one, goal_one)}")
            print(f"  {counts['three'][0]} sources (+ {suite}-updates, {suite}-security): {three:5.2f} s wall, "
                  f"{statistics.median(cpus['three']):5.2f} s CPU, {counts['three'][1]} packages"
                  f"{verdict(three, goal_three)}")
            print(f"  ratio 3 sources / 1 source: {three / one:.2f}x  "
                  f"(goal <= 1.30: {'met' if three / one <= 1.3 else 'NOT met'})")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    with open("/proc/loadavg") as f:
        print(f"  load average while measuring: {f.read().split()[0]} on {os.cpu_count()} cores "
              "(wall times above the CPU times are the machine's other work)")

    # Where one source's time goes, step by step (the resolve overlaps some).
    from rootfs.backends.deb.mirror import choose_mirror

    mirror = choose_mirror(None, "", "debian", "Debian")
    d = Downloader()
    t0 = time.perf_counter()
    fetched, _ = fetch_release(d, mirror, suite, recipe.settings.keyring, check_gpg=True)
    t1 = time.perf_counter()
    data, ext = fetch_index(d, fetched, "main", host_architecture("deb"))
    t2 = time.perf_counter()
    raw = decompress_index(data, ext, "index", plain_size(fetched.release, "main", host_architecture("deb")))
    t3 = time.perf_counter()
    index = Index(host_architecture("deb"))
    index.add([raw])
    t4 = time.perf_counter()
    result = resolve_set(index, variant_request(index, "minbase"))
    t5 = time.perf_counter()
    print(f"  one source, step by step: InRelease + gpgv {t1 - t0:.3f} s, Packages{ext} "
          f"({len(data) / 1e6:.1f} MB) {t2 - t1:.3f} s, decompress {t3 - t2:.3f} s, split {t4 - t3:.3f} s, "
          f"choose {t5 - t4:.3f} s ({len(result.packages)} packages)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="bookworm")
    ap.add_argument("--arch", default=host_architecture("deb"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    data, ext, size = download(args.suite, args.arch)
    raw = len(b"".join(decompress_chunks(data, ext)))
    print(f"{args.suite} main {args.arch}: Packages{ext} {len(data) / 1e6:.1f} MB, {raw / 1e6:.1f} MB uncompressed")

    t0 = time.perf_counter()
    lzma.decompress(data) if ext == ".xz" else None
    if ext == ".xz":
        print(f"  in-process lzma.decompress alone: {time.perf_counter() - t0:.2f} s")

    parse, resolve, pd, cpus = [], [], [], []
    stanzas = chosen = pd_n = 0
    for _ in range(args.runs):
        p, r, cpu, stanzas, chosen = time_rootfs(data, ext, size, args.arch)
        parse.append(p)
        cpus.append(cpu)
        resolve.append(r)
        t, pd_n = time_python_debian(data, ext)
        pd.append(t)
    mp, mr, md = statistics.median(parse), statistics.median(resolve), statistics.median(pd)
    print(f"  rootfs        parse   {mp:6.2f} s  ({stanzas} stanzas; "
          f"{statistics.median(cpus):.2f} s CPU incl. a decompressing process)")
    print(f"  rootfs        resolve {mr:6.2f} s  (minbase: {chosen} packages)")
    print(f"  python-debian parse   {md:6.2f} s  ({pd_n} paragraphs, Packages.iter_paragraphs)")
    print(f"  ratio python-debian / rootfs parse: {md / mp:.1f}x; "
          f"/ rootfs parse+resolve: {md / (mp + mr):.1f}x")
    time_resolves(args.suite, args.runs)


if __name__ == "__main__":
    main()
