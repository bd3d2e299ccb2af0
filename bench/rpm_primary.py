"""How long parsing a distribution-sized primary.xml takes.

CentOS Stream 9's BaseOS and AppStream together list about 20,000
packages; this writes a synthetic primary.xml of 30,000 packages shaped
like theirs (a summary and description, ~8 provides, ~15 requires, a few
conflicts/obsoletes/recommends, a dozen primary file entries), compresses
it as repositories do, and times rootfs.backends.rpm.primary.parse_primary on it
(decompression included), plus building the resolver's index over it.

    python bench/rpm_primary.py [PACKAGES] [gz|xz|zst]
"""

from __future__ import annotations

import gzip
import io
import lzma
import random
import sys
import tempfile
import time
from pathlib import Path

# rootfs reads primary.xml by element names, so the namespace declarations
# createrepo_c writes on <metadata> are left out here.
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<metadata packages="{n}">\n'

PKG = """<package type="rpm">
  <name>{name}</name>
  <arch>{arch}</arch>
  <version epoch="{epoch}" ver="{ver}" rel="{rel}"/>
  <checksum type="sha256" pkgid="YES">{sum}</checksum>
  <summary>The {name} package: a synthetic summary line</summary>
  <description>{desc}</description>
  <packager>Synthetic Build System</packager>
  <url>https://example.invalid/{name}</url>
  <time file="1700000000" build="1699999999"/>
  <size package="{size}" installed="{isize}" archive="{isize}"/>
  <location href="Packages/{first}/{name}-{ver}-{rel}.{arch}.rpm"/>
  <format>
    <rpm:license>MIT AND (GPL-2.0-or-later OR BSD-3-Clause)</rpm:license>
    <rpm:vendor>Synthetic</rpm:vendor>
    <rpm:group>Unspecified</rpm:group>
    <rpm:buildhost>builder.invalid</rpm:buildhost>
    <rpm:sourcerpm>{name}-{ver}-{rel}.src.rpm</rpm:sourcerpm>
    <rpm:header-range start="4504" end="{hend}"/>
    <rpm:provides>
{provides}
    </rpm:provides>
    <rpm:requires>
{requires}
    </rpm:requires>
    <rpm:conflicts>
      <rpm:entry name="{name}-legacy" flags="LT" epoch="0" ver="1.0"/>
    </rpm:conflicts>
    <rpm:obsoletes>
      <rpm:entry name="{name}-old" flags="LT" epoch="0" ver="{ver}"/>
    </rpm:obsoletes>
    <rpm:recommends>
      <rpm:entry name="{name}-doc"/>
    </rpm:recommends>
{files}
  </format>
</package>
"""


def entry(name: str, flags: str = "", ver: str = "", pre: bool = False) -> str:
    attrs = f'name="{name}"'
    if flags:
        attrs += f' flags="{flags}" epoch="0" ver="{ver}" rel="1.el9"'
    if pre:
        attrs += ' pre="1"'
    return f"      <rpm:entry {attrs}/>"


def generate(n: int) -> bytes:
    rng = random.Random(42)
    names = [f"pkg{i:05d}-{rng.choice(['libs', 'devel', 'tools', 'common', 'core', 'data'])}" for i in range(n)]
    out = io.StringIO()
    out.write(HEAD.format(n=n))
    for i, name in enumerate(names):
        ver = f"{rng.randint(0, 12)}.{rng.randint(0, 40)}.{rng.randint(0, 9)}"
        rel = f"{rng.randint(1, 30)}.el9"
        arch = rng.choice(["x86_64", "x86_64", "noarch", "i686"])
        provides = [entry(name, "EQ", ver), entry(f"{name}(x86-64)", "EQ", ver)]
        provides += [entry(f"lib{name}.so.{k}()(64bit)") for k in range(rng.randint(2, 8))]
        provides += [entry(f"config({name})", "EQ", ver)]
        requires = [entry(f"lib{rng.choice(names)}.so.{rng.randint(0, 3)}()(64bit)") for _ in range(rng.randint(5, 18))]
        requires += [entry(rng.choice(names), "GE", "1.0"), entry("/bin/sh", pre=True), entry("rpmlib(CompressedFileNames)", "LE", "3.0.4")]
        files = [f"    <file>/usr/bin/{name}-{k}</file>" for k in range(rng.randint(0, 6))]
        files += [f'    <file type="dir">/etc/{name}</file>', f"    <file>/etc/{name}/{name}.conf</file>"]
        out.write(PKG.format(
            name=name, arch=arch, epoch=rng.choice([0, 0, 0, 1]), ver=ver, rel=rel, sum=f"{rng.getrandbits(256):064x}",
            desc="A synthetic package description that goes on for a while, as real ones do. " * rng.randint(1, 6),
            size=rng.randint(10_000, 10_000_000), isize=rng.randint(10_000, 50_000_000), first=name[0],
            hend=rng.randint(5000, 90000), provides="\n".join(provides), requires="\n".join(requires),
            files="\n".join(files)))
    out.write("</metadata>\n")
    return out.getvalue().encode()


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30_000
    kind = sys.argv[2] if len(sys.argv) > 2 else "gz"
    from rootfs.backends.rpm.primary import parse_primary
    from rootfs.backends.rpm.repomd import decompress
    from rootfs.backends.rpm.resolver import Pool

    t = time.perf_counter()
    xml = generate(n)
    if kind == "gz":
        data = gzip.compress(xml, 6)
    elif kind == "xz":
        data = lzma.compress(xml)
    else:
        import zstandard

        data = zstandard.ZstdCompressor(level=10).compress(xml)
    gen = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "primary.xml").write_bytes(data)
        print(f"generated {n} packages: {len(xml) / 1e6:.1f} MB XML, {len(data) / 1e6:.1f} MB {kind} ({gen:.1f} s)")
        del xml
        before = _rss_kib()
        cpu = time.process_time()
        t = time.perf_counter()
        packages = list(parse_primary(decompress(data, "primary"), 0))
        parse = time.perf_counter() - t
        cpu = time.process_time() - cpu
        held = _rss_kib() - before
        t = time.perf_counter()
        pool = Pool(packages, "x86_64")
        index = time.perf_counter() - t
    assert len(packages) == n
    print(f"parse_primary: {parse:.2f} s wall, {cpu:.2f} s cpu for {n} packages ({n / parse:,.0f}/s); "
          f"the parsed packages hold {held / 1024:.0f} MiB")
    print(f"Pool index: {index:.2f} s ({len(pool.packages)} packages of x86_64+noarch)")


if __name__ == "__main__":
    main()
