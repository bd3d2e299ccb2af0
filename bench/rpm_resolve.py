"""Resolving against a distribution-sized rpm-md repository: rootfs vs dnf.

CentOS Stream 9's AppStream lists about 18,000 packages. This writes a
generated repository of that size (tests/rpmdistro.py: the same shapes as
the differential test against dnf, scaled up; primary.xml.gz, filelists,
comps and modules metadata), then times, alternating, medians of 3:

- rootfs: `resolve()` on the file:// repository, the whole path: repomd,
  checksums, decompression, libsolv's parse of primary.xml, the filelists
  scan for the file dependencies primary.xml cannot answer, the solve and
  the lock;
- dnf 4: `dnf install --assumeno` of the same request in a fresh
  installroot, cold (it parses the XML into its .solv cache) and warm (it
  reuses that cache).

Both must install the same packages; the bench checks that first.

    python bench/rpm_resolve.py [PACKAGES]
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import rpmdistro  # noqa: E402
from rpmmeta import write_repo  # noqa: E402

from rootfs.backends import ResolveOptions  # noqa: E402
from rootfs.backends.rpm.resolve import resolve  # noqa: E402
from rootfs.backends.rpm.settings import adhoc_recipe  # noqa: E402
from rootfs.net.fetch import Downloader  # noqa: E402

LIMIT = 1.5  # seconds, rootfs's goal for parse and resolve



def realistic(distro, rng) -> None:
    """Give every package the bulk a distribution's has: a description of
    a few sentences, arch-qualified and config provides, rpmlib and
    scriptlet requirements, and some more files (so primary.xml.gz is
    about the size of AppStream's: ~10 MB for 18,000 packages)."""
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 11)))
             for _ in range(5000)]
    for p in distro.packages:
        p.description = " ".join(rng.choice(words) for _ in range(rng.randint(20, 110))) + "."
        isa = {"x86_64": "(x86-64)", "i686": "(x86-32)"}.get(p.arch, "")
        p.provides += [f"{p.name}{isa} = {p.epoch}:{p.version}-{p.release}" if isa else f"config({p.name}) = {p.version}",
                       f"bundled(golang(example.org/{p.name}/{rng.randint(1, 9)})) = {rng.randint(0, 9)}.{rng.randint(0, 9)}"]
        p.requires_pre += ["/bin/sh"] if rng.random() < 0.5 else []
        p.requires += ["rpmlib(CompressedFileNames) <= 3.0.4-1", "rpmlib(PayloadFilesHavePrefix) <= 4.0-1",
                       "rpmlib(FileDigests) <= 4.6.0-1"]
        p.files += [f"/usr/share/{p.name}/{w}-{k}.{rng.choice(['py', 'so', 'txt', 'json'])}"
                    for k, w in enumerate(rng.sample(words, rng.randint(2, 12)))]
        p.files += [f"/etc/{p.name}.conf"] if rng.random() < 0.3 else []


def dnf_install(repo: Path, specs: list[str], work: Path, cache: Path) -> tuple[float, set[str]]:
    root = work / "root"
    shutil.rmtree(root, ignore_errors=True)
    t = time.perf_counter()
    p = subprocess.run(
        ["dnf", "--installroot", str(root), "--releasever=1", "--setopt=reposdir=/dev/null", "--nogpgcheck",
         f"--repofrompath=gen,{repo.as_uri()}", "--repo=gen", "--setopt=install_weak_deps=False",
         f"--setopt=cachedir={cache}", f"--setopt=module_platform_id={rpmdistro.PLATFORM}",
         "--assumeno", "install", *specs],
        capture_output=True, text=True)
    took = time.perf_counter() - t
    if "Operation aborted" not in p.stdout + p.stderr:
        raise SystemExit(f"dnf did not resolve: {p.stdout[-2000:]}{p.stderr[-2000:]}")
    # The transaction table: " name  arch  version  repo  size" per package.
    names = set(re.findall(r"^ (\S+)\s+(?:x86_64|noarch|i686)\s+\S+\s+gen\s", p.stdout, re.M))
    return took, names


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 18_000
    t = time.perf_counter()
    apps = max(100, int((n - 1400) / 2.02))
    distro = rpmdistro.generate(seed=5, apps=apps)
    import random

    realistic(distro, random.Random(5))
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        repo = write_repo(work / "repo", distro.packages, comps=distro.comps, modules=distro.modules)
        primary = next((repo / "repodata").glob("*-primary.xml.gz"))
        print(f"generated {len(distro.packages)} packages; primary.xml.gz {primary.stat().st_size / 1e6:.1f} MB "
              f"({time.perf_counter() - t:.1f} s)")
        # A request the size of a small image: several applications together.
        names = sorted({p.name for p in distro.packages if p.name.startswith("app")})
        specs = [names[i] for i in range(3, len(names), len(names) // 6)][:6]
        recipe = adhoc_recipe("bench", "x86_64", [repo.as_uri()], specs)

        def ours() -> tuple[float, set[str]]:
            t = time.perf_counter()
            lock = resolve(recipe, ResolveOptions(check_gpg=False), Downloader())  # generated, unsigned
            return time.perf_counter() - t, {p.name for p in lock.packages}

        cache = work / "dnfcache"
        _, mine = ours()
        cold, theirs = dnf_install(repo, specs, work, cache)
        if mine != theirs:
            raise SystemExit(f"rootfs and dnf disagree: only rootfs {sorted(mine - theirs)}, "
                             f"only dnf {sorted(theirs - mine)}")
        print(f"request {' '.join(specs)}: {len(mine)} packages, the same set as dnf's")
        rootfs_t, dnf_cold, dnf_warm = [], [], []
        for _ in range(3):
            rootfs_t.append(ours()[0])
            shutil.rmtree(cache, ignore_errors=True)
            dnf_cold.append(dnf_install(repo, specs, work, cache)[0])
            dnf_warm.append(dnf_install(repo, specs, work, cache)[0])
        r, c, w = (statistics.median(x) for x in (rootfs_t, dnf_cold, dnf_warm))
        print(f"rootfs resolve (parse + solve + lock): {r:.2f} s  (goal: at most {LIMIT} s)")
        print(f"dnf install --assumeno, cold cache:    {c:.2f} s  ratio rootfs/dnf {r / c:.2f}")
        print(f"dnf install --assumeno, warm cache:    {w:.2f} s  ratio rootfs/dnf {r / w:.2f}")
        if r > LIMIT:
            print(f"rootfs is over its {LIMIT} s goal")
            sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("LC_ALL", "C")
    main()
