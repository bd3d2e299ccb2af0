"""primary.xml and filelists.xml, parsed as streams.

A distribution's primary.xml holds tens of thousands of packages; it is
read with iterparse and every finished <package> element is turned into a
small slotted record and then cleared, so memory stays flat and the time
goes into expat, not into Python objects nobody looks at.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from rootfs.errors import VerifyError
from rootfs.rpm.deps import Dep
from rootfs.rpm.version import EVR, FLAG_NAMES

COMMON = "{http://linux.duke.edu/metadata/common}"
RPM = "{http://linux.duke.edu/metadata/rpm}"
FILELISTS = "{http://linux.duke.edu/metadata/filelists}"

_DEP_KINDS = {
    RPM + "provides": "provides",
    RPM + "requires": "requires",
    RPM + "conflicts": "conflicts",
    RPM + "obsoletes": "obsoletes",
    RPM + "recommends": "recommends",
    RPM + "supplements": "supplements",
}


@dataclass(eq=False, slots=True)
class Package:
    name: str
    epoch: str
    version: str
    release: str
    arch: str
    location: str  # href relative to the repository (or to xml:base)
    base: str  # xml:base, "" for the repository itself
    checksum_type: str
    checksum: str
    size: int
    sourcerpm: str = ""
    buildtime: int = 0
    provides: tuple[Dep, ...] = ()
    requires: tuple[Dep, ...] = ()
    conflicts: tuple[Dep, ...] = ()
    obsoletes: tuple[Dep, ...] = ()
    recommends: tuple[Dep, ...] = ()
    supplements: tuple[Dep, ...] = ()
    files: tuple[str, ...] = ()  # the subset primary.xml lists
    repo: int = 0  # index of the repository, in the order given
    pkgid: str = field(default="")

    @property
    def evr(self) -> EVR:
        return EVR(self.epoch, self.version, self.release)

    def evr_text(self) -> str:
        return self.evr.full()

    @property
    def nevra(self) -> str:
        e = f"{self.epoch}:" if self.epoch not in ("", "0") else ""
        return f"{self.name}-{e}{self.version}-{self.release}.{self.arch}"

    def __repr__(self) -> str:
        return f"<Package {self.nevra}>"


_intern = sys.intern


def _dep(e: ET.Element) -> Dep:
    a = e.attrib
    name = _intern(a["name"])
    flags = FLAG_NAMES.get(a.get("flags", ""), 0)
    evr = None
    if flags:
        evr = EVR(a.get("epoch", ""), a.get("ver", ""), a.get("rel", ""))
    return Dep(name, flags, evr, a.get("pre") == "1")


def parse_primary(stream: IO[bytes], repo: int = 0, where: str = "primary.xml") -> Iterator[Package]:
    """Yield each <package type="rpm"> of a primary.xml stream."""
    pkg_tag = COMMON + "package"
    try:
        context = ET.iterparse(stream, events=("start", "end"))
        _, root = next(context)
        for event, elem in context:
            if event != "end" or elem.tag != pkg_tag:
                continue
            if elem.get("type", "rpm") == "rpm":
                yield _package(elem, repo)
            elem.clear()
            root.clear()
    except ET.ParseError as exc:
        raise VerifyError(f"{where} is not valid XML: {exc}") from None


def _package(elem: ET.Element, repo: int) -> Package:
    name = epoch = ver = rel = arch = href = base = ctype = csum = srpm = ""
    size = buildtime = 0
    deps: dict[str, list[Dep]] = {}
    files: list[str] = []
    for child in elem:
        tag = child.tag
        if tag == COMMON + "name":
            name = child.text or ""
        elif tag == COMMON + "arch":
            arch = child.text or ""
        elif tag == COMMON + "version":
            a = child.attrib
            epoch, ver, rel = a.get("epoch", "0"), a.get("ver", ""), a.get("rel", "")
        elif tag == COMMON + "checksum":
            ctype, csum = child.get("type", ""), child.text or ""
        elif tag == COMMON + "location":
            href = child.get("href", "")
            base = child.get("{http://www.w3.org/XML/1998/namespace}base", "") or child.get("xml:base", "")
        elif tag == COMMON + "size":
            size = int(child.get("package", "0"))
        elif tag == COMMON + "time":
            buildtime = int(child.get("build", "0") or 0)
        elif tag == COMMON + "format":
            for f in child:
                ftag = f.tag
                kind = _DEP_KINDS.get(ftag)
                if kind is not None:
                    deps[kind] = [_dep(e) for e in f]
                elif ftag == COMMON + "file":
                    files.append(_intern(f.text or ""))
                elif ftag == RPM + "sourcerpm":
                    srpm = f.text or ""
    return Package(
        name=_intern(name), epoch=epoch or "0", version=ver, release=rel, arch=_intern(arch),
        location=href, base=base, checksum_type=ctype, checksum=csum, size=size,
        sourcerpm=srpm, buildtime=buildtime,
        provides=tuple(deps.get("provides", ())), requires=tuple(deps.get("requires", ())),
        conflicts=tuple(deps.get("conflicts", ())), obsoletes=tuple(deps.get("obsoletes", ())),
        recommends=tuple(deps.get("recommends", ())), supplements=tuple(deps.get("supplements", ())),
        files=tuple(files), repo=repo, pkgid=csum,
    )


def scan_filelists(stream: IO[bytes], wanted: Callable[[str], bool] | set[str],
                   where: str = "filelists.xml") -> Iterator[tuple[str, str, str, str]]:
    """Yield (pkgid, name, arch, path) for each listed file that is wanted.

    Only the paths asked for are kept: a full filelists is millions of
    names and we only ever need the few that file dependencies name."""
    test = wanted.__contains__ if isinstance(wanted, (set, frozenset, dict)) else wanted
    pkg_tag = FILELISTS + "package"
    file_tag = FILELISTS + "file"
    try:
        context = ET.iterparse(stream, events=("start", "end"))
        _, root = next(context)
        for event, elem in context:
            if event != "end" or elem.tag != pkg_tag:
                continue
            hits = [f.text for f in elem if f.tag == file_tag and f.text and test(f.text)]
            if hits:
                pkgid, name, arch = elem.get("pkgid", ""), elem.get("name", ""), elem.get("arch", "")
                for path in hits:
                    yield pkgid, name, arch, path
            elem.clear()
            root.clear()
    except ET.ParseError as exc:
        raise VerifyError(f"{where} is not valid XML: {exc}") from None
