"""primary.xml and filelists.xml, parsed as streams.

A distribution's primary.xml holds tens of thousands of packages and
millions of dependency entries, and the resolver looks at the requirements
of a few hundred of them. So the stream is decoded a megabyte at a time,
cut into <package> blocks with str.find, and each block's fields are taken
with compiled regular expressions: only the name, version, location,
checksum, Provides and file list are decoded up front; the other
dependency lists stay as text until someone asks for them. The time goes
into C (zlib, the codec, re), not into a Python call per XML element.

The input is rpm-md as createrepo_c and its predecessors write it: each
element on its own, attribute values in double quotes, text escaped.
Its integrity was checked against repomd.xml before it gets here.
"""

from __future__ import annotations

import codecs
import html
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from rootfs.backends.rpm.deps import Dep
from rootfs.backends.rpm.version import EVR, FLAG_NAMES
from rootfs.model.errors import VerifyError

CHUNK = 1 << 20
_intern = sys.intern

_ATTR = re.compile(r'([\w:]+)="([^"]*)"')
_SECTION_START = re.compile(r"<rpm:(provides|requires|conflicts|obsoletes|recommends|supplements|suggests|enhances)>")
_FILE = re.compile(r"<file(?: [^>]*)?>([^<]*)</file>")
# createrepo_c's fixed attribute order; anything else takes the general path.
_ENTRY_FAST = re.compile(
    r'<rpm:entry name="([^"]*)"(?: flags="([A-Z]*)"(?: epoch="([^"]*)")?(?: ver="([^"]*)")?(?: rel="([^"]*)")?)?( pre="1")?\s*/>')
_ENTRY = re.compile(r"<rpm:entry ([^>]*?)\s*/>")
_PROVIDE_NAME = re.compile(r'<rpm:entry name="([^"]*)"')
_FILE_REQ = re.compile(r'<rpm:entry name="(/[^"]*|\([^"]*/[^"]*)"')


def _text(value: str) -> str:
    return html.unescape(value) if "&" in value else value


def _attrs(text: str) -> dict[str, str]:
    return {k: _text(v) for k, v in _ATTR.findall(text)}


def parse_deps(section: str) -> tuple[Dep, ...]:
    """The <rpm:entry> elements of one dependency section."""
    if not section:
        return ()
    intern = _intern
    fast = _ENTRY_FAST.findall(section)
    if len(fast) == section.count("<rpm:entry"):
        out = []
        for name, flags, epoch, ver, rel, pre in fast:
            if "&" in name:
                name = html.unescape(name)
            if flags:
                out.append(Dep(intern(name), FLAG_NAMES.get(flags, 0), EVR(epoch, _text(ver), _text(rel)), bool(pre)))
            else:
                out.append(Dep(intern(name), 0, None, bool(pre)))
        return tuple(out)
    out = []
    for body in _ENTRY.findall(section):
        a = _attrs(body)
        flags = FLAG_NAMES.get(a.get("flags", ""), 0)
        evr = EVR(a.get("epoch", ""), a.get("ver", ""), a.get("rel", "")) if flags else None
        out.append(Dep(intern(a.get("name", "")), flags, evr, a.get("pre") == "1"))
    return tuple(out)


def _blocks(stream: IO[bytes], open_tag: str, close_tag: str, where: str) -> Iterator[tuple[str, str]]:
    """(opening tag's attributes, body) of each <open_tag ...>...</close_tag> block."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    buf = ""
    seen_root = False
    start_len = len(open_tag) + 1
    try:
        while True:
            chunk = stream.read(CHUNK)
            buf += decoder.decode(chunk, final=not chunk)
            if not seen_root and buf.lstrip():
                if not buf.lstrip().startswith("<"):
                    raise VerifyError(f"{where} is not XML")
                seen_root = True
            pos = 0
            while True:
                i = buf.find(f"<{open_tag} ", pos)
                if i < 0:
                    i = buf.find(f"<{open_tag}>", pos)
                if i < 0:
                    break
                j = buf.find(f"</{close_tag}>", i)
                if j < 0:
                    break
                k = buf.find(">", i)
                yield buf[i + start_len:k], buf[k + 1:j]
                pos = j + len(close_tag) + 3
            buf = buf[pos:]
            if not chunk:
                break
    except (OSError, EOFError, ValueError) as exc:  # a damaged compressed stream
        raise VerifyError(f"{where} cannot be read: {exc}") from None
    except Exception as exc:  # zstandard and friends have their own error types
        if type(exc).__module__.startswith("zstandard"):
            raise VerifyError(f"{where} cannot be read: {exc}") from None
        raise
    if f"<{open_tag}" in buf:
        raise VerifyError(f"{where} is truncated (an unfinished <{open_tag}>)")
    if not seen_root:
        raise VerifyError(f"{where} is empty")


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
    provide_names: tuple[str, ...] = ()  # for the index; the full entries parse on demand
    files: tuple[str, ...] = ()  # the subset primary.xml lists
    repo: int = 0  # index of the repository, in the order given
    pkgid: str = ""
    # Dependency lists as text until first asked for (parse_deps), then
    # parsed: kind -> str | tuple[Dep, ...].
    raw_deps: dict = field(default_factory=dict)

    def deps(self, kind: str) -> tuple[Dep, ...]:
        value = self.raw_deps.get(kind, ())
        if isinstance(value, str):
            value = self.raw_deps[kind] = parse_deps(value)
        return value

    @property
    def provides(self) -> tuple[Dep, ...]:
        return self.deps("provides")

    @property
    def requires(self) -> tuple[Dep, ...]:
        return self.deps("requires")

    @property
    def conflicts(self) -> tuple[Dep, ...]:
        return self.deps("conflicts")

    @property
    def obsoletes(self) -> tuple[Dep, ...]:
        return self.deps("obsoletes")

    @property
    def recommends(self) -> tuple[Dep, ...]:
        return self.deps("recommends")

    @property
    def supplements(self) -> tuple[Dep, ...]:
        return self.deps("supplements")

    def file_requires(self) -> list[str]:
        """The paths among its requirements (rich ones included), found
        without parsing the whole list."""
        raw = self.raw_deps.get("requires", ())
        if isinstance(raw, str):
            return [_text(p) for p in _FILE_REQ.findall(raw)]
        return [d.name for d in raw if d.name.startswith("/") or (d.is_rich and "/" in d.name)]

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


def _between(body: str, open_: str, close: str) -> str:
    i = body.find(open_)
    if i < 0:
        return ""
    i += len(open_)
    return body[i:body.find(close, i)]


def _tag_attrs(body: str, tag: str) -> dict[str, str]:
    i = body.find(tag)
    if i < 0:
        return {}
    return dict(_ATTR.findall(body, i, body.find(">", i)))


# createrepo_c's layout of a package's fixed fields, matched in two C calls;
# anything else goes through _fields_generic.
_HEAD = re.compile(
    r'\s*<name>([^<]*)</name>\s*<arch>([^<]*)</arch>\s*<version epoch="([^"]*)" ver="([^"]*)" rel="([^"]*)"/>'
    r'\s*<checksum type="([^"]*)" pkgid="[^"]*">([^<]*)</checksum>')
_TAIL = re.compile(
    r'<time file="[^"]*" build="([^"]*)"/>\s*<size package="([^"]*)"[^>]*/>'
    r'\s*<location (?:xml:base="([^"]*)" )?href="([^"]*)"')


def _fields_generic(body: str) -> tuple[str, ...]:
    ver = _tag_attrs(body, "<version ")
    loc = _tag_attrs(body, "<location ")
    ck_i = body.find("<checksum ")
    ck_type = dict(_ATTR.findall(body, ck_i, body.find(">", ck_i))).get("type", "") if ck_i >= 0 else ""
    checksum = _between(body, "<checksum ", "</checksum>").rpartition(">")[2]
    return (_between(body, "<name>", "</name>"), _between(body, "<arch>", "</arch>"),
            ver.get("epoch", "0"), ver.get("ver", ""), ver.get("rel", ""), ck_type, checksum,
            _tag_attrs(body, "<time ").get("build", "0"), _tag_attrs(body, "<size ").get("package", "0"),
            loc.get("xml:base", ""), loc.get("href", ""))


def parse_primary(stream: IO[bytes], repo: int = 0, where: str = "primary.xml") -> Iterator[Package]:
    """Yield each <package type="rpm"> of a primary.xml stream."""
    intern = _intern
    text = _text
    for head, body in _blocks(stream, "package", "package", where):
        if "type=" in head and 'type="rpm"' not in head:
            continue
        m = _HEAD.match(body)
        t = _TAIL.search(body, m.end()) if m else None
        if m and t:
            name, arch, epoch, ver, rel, ck_type, checksum = m.groups()
            build, size, base, href = t.groups()
            fmt = body.find("<format>", t.end())
        else:
            name, arch, epoch, ver, rel, ck_type, checksum, build, size, base, href = _fields_generic(body)
            fmt = body.find("<format>")
        if not name:
            raise VerifyError(f"{where} has a <package> without a <name>")
        # Dependency sections sit between <format> and the first <file>.
        first_file = body.find("<file", fmt)
        stop = first_file if first_file >= 0 else len(body)
        sections = {}
        for sm in _SECTION_START.finditer(body, fmt, stop):
            kind = sm.group(1)
            sections[kind] = body[sm.end():body.find(f"</rpm:{kind}>", sm.end(), stop)]
        provides = sections.pop("provides", "")
        names = _PROVIDE_NAME.findall(provides)
        if "&" in provides:
            names = [text(n) for n in names]
        files = _FILE.findall(body, first_file) if first_file >= 0 else []
        if first_file >= 0 and body.find("&", first_file) >= 0:
            files = [text(f) for f in files]
        checksum = checksum.strip()
        try:
            size_n, build_n = int(size or 0), int(build or 0)
        except ValueError:
            raise VerifyError(f"{where}: package {text(name)[:100]} has a malformed size or build time") from None
        yield Package(
            name=intern(text(name)), epoch=epoch or "0", version=text(ver), release=text(rel), arch=intern(arch),
            location=text(href), base=text(base or ""), checksum_type=ck_type, checksum=checksum,
            size=size_n, sourcerpm=text(_between(body[fmt:stop], "<rpm:sourcerpm>", "</rpm:sourcerpm>")),
            buildtime=build_n, provide_names=tuple(map(intern, names)), files=tuple(files), repo=repo,
            pkgid=checksum, raw_deps={"provides": provides, **sections},
        )


def scan_filelists(stream: IO[bytes], wanted: Callable[[str], bool] | set[str],
                   where: str = "filelists.xml") -> Iterator[tuple[str, str, str, str]]:
    """Yield (pkgid, name, arch, path) for each listed file that is wanted.

    Only the paths asked for are kept: a full filelists is millions of
    names and we only ever need the few that file dependencies name."""
    test = wanted.__contains__ if isinstance(wanted, (set, frozenset, dict)) else wanted
    for head, body in _blocks(stream, "package", "package", where):
        hits = [p for p in _FILE.findall(body) if test(_text(p))]
        if hits:
            a = _attrs(head)
            for path in hits:
                yield a.get("pkgid", ""), a.get("name", ""), a.get("arch", ""), _text(path)
