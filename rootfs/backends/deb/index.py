"""Packages indices: decompressed and parsed fast, stanzas parsed lazily.

A bootstrap looks at a few hundred of bookworm's 63,440 stanzas, so the
index keeps every stanza as raw bytes keyed by package name and parses one
into a Package only when the resolver asks for it. Splitting on blank lines
is done by bytes.split in C; the per-stanza Python work is one slice and a
few substring searches. Decompression is rootfs.decompress's (xz, the
format Debian ships, in an `xz -T2` subprocess that overlaps parsing).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from rootfs import decompress
from rootfs.model.errors import VerifyError

CHUNK = 1 << 22

# The fields a resolver and a lock need; everything else is skipped.
_FIELDS = {
    "Package": "name",
    "Version": "version",
    "Architecture": "architecture",
    "Multi-Arch": "multi_arch",
    "Priority": "priority",
    "Essential": "essential",
    "Pre-Depends": "pre_depends",
    "Depends": "depends",
    "Provides": "provides",
    "Conflicts": "conflicts",
    "Breaks": "breaks",
    "Filename": "filename",
    "Size": "size",
    "SHA256": "sha256",
    "Source": "source",
}


@dataclass
class Package:
    """One stanza of a Packages index, with the fields rootfs uses."""

    name: str
    version: str
    architecture: str
    multi_arch: str = ""
    priority: str = ""
    essential: bool = False
    pre_depends: str = ""
    depends: str = ""
    provides: str = ""
    conflicts: str = ""
    breaks: str = ""
    filename: str = ""
    size: int = 0
    sha256: str = ""
    source: str = ""
    base_url: str = ""  # the mirror the Filename is relative to
    _relations: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def source_name(self) -> str:
        """Source package name ("Source: foo (1.2)" -> foo; absent -> own name)."""
        return self.source.split(" ", 1)[0] if self.source else self.name

    @property
    def url(self) -> str:
        return self.base_url + self.filename


def parse_stanza(raw: bytes, base_url: str = "") -> Package:
    values: dict[str, str] = {}
    key = None
    for line in raw.decode("utf-8", "replace").split("\n"):
        if not line:
            continue
        if line[0] in " \t":
            # A continuation: only multi-line relation fields matter to us.
            if key is not None:
                values[key] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        key = _FIELDS.get(name)
        if key is not None and sep:
            values[key] = value.strip()
        else:
            key = None
    if "name" not in values or "version" not in values:
        raise VerifyError(f"a Packages stanza lacks Package or Version: {raw[:60]!r}")
    try:
        size = int(values.pop("size", "0") or 0)
    except ValueError:
        raise VerifyError(f"package {values['name']} has a bad Size field") from None
    essential = values.pop("essential", "").lower() == "yes"
    values.setdefault("architecture", "")
    return Package(size=size, essential=essential, base_url=base_url, **values)


def _stanza_name(st: bytes) -> bytes:
    if st.startswith(b"Package:"):
        end = st.find(b"\n")
        return (st[8:] if end < 0 else st[8:end]).strip()
    i = st.find(b"\nPackage:")
    if i < 0:
        return b""
    end = st.find(b"\n", i + 1)
    return (st[i + 9:] if end < 0 else st[i + 9:end]).strip()


class Index:
    """All stanzas of one or more Packages files of one mirror, for one
    architecture.

    `add(chunks)` takes decompressed text in pieces; lookups parse stanzas on
    first use and cache the result. Names are kept as the bytes of the file
    until asked for: decoding 63,000 of them is measurable."""

    def __init__(self, architecture: str, base_url: str = ""):
        self.architecture = architecture
        self.base_url = base_url  # what Filename fields are relative to
        self._raw: dict[bytes, bytes | list[bytes]] = {}
        self._parsed: dict[str, list[Package]] = {}
        self._providers: dict[str, list[str]] = {}
        self._provides_lines: list[tuple[bytes, bytes]] = []
        self._own_base: dict[str, str] = {}  # names whose Filename is a whole URL
        self.stanzas = 0

    # -- loading ------------------------------------------------------------

    def _add_stanzas(self, stanzas: list[bytes]) -> None:
        raw = self._raw
        get = raw.get
        provides = self._provides_lines
        n = 0
        for st in stanzas:
            if st.startswith(b"Package: "):
                # The archive's own layout, Package first: the hot path.
                end = st.find(b"\n")
                name = st[9:end] if end >= 0 else st[9:]
            else:
                st = st.strip(b"\r\n\t ")
                if not st:
                    continue
                name = _stanza_name(st)
                if not name:
                    raise VerifyError(f"a Packages stanza has no Package field: {st[:60]!r}")
                # Fields in any order: a leading newline lets the search below
                # find a Provides on the first line too.
                st = b"\n" + st
            i = st.find(b"\nProvides:")
            if i >= 0:
                end = st.find(b"\n", i + 1)
                provides.append((name, st[i + 10:] if end < 0 else st[i + 10:end]))
            # One stanza per name is the rule: store the bytes themselves and
            # make a list only for the second one (63,000 lists cost time).
            prev = get(name)
            if prev is None:
                raw[name] = st
            elif type(prev) is list:
                prev.append(st)
            else:
                raw[name] = [prev, st]
            n += 1
        self.stanzas += n

    def add(self, chunks: Iterable[bytes]) -> None:
        rest = b""
        for chunk in chunks:
            parts = (rest + chunk if rest else chunk).split(b"\n\n")
            rest = parts.pop()
            self._add_stanzas(parts)
        if rest.strip():
            self._add_stanzas([rest])
        self._parsed.clear()
        self._providers.clear()

    def _entries(self, key: bytes) -> list[bytes]:
        got = self._raw.get(key)
        if got is None:
            return []
        return got if type(got) is list else [got]

    def add_text(self, text: str | bytes) -> None:
        self.add([text.encode() if isinstance(text, str) else text])

    def override(self, stanza: str) -> None:
        """Make stanza the only candidate for its package name (a package
        file given by path: apt installs exactly that file). Its Filename is
        a whole URL."""
        raw = stanza.strip("\n").encode()
        name = _stanza_name(raw if raw.startswith(b"Package:") else b"\n" + raw).decode()
        self._raw.pop(name.encode(), None)
        self._add_stanzas([raw])
        self._own_base[name] = ""
        self._parsed.clear()
        self._providers.clear()

    # -- lookups ------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(n.decode() for n in self._raw)

    def __contains__(self, name: str) -> bool:
        return name.encode() in self._raw

    def packages(self, name: str) -> list[Package]:
        """Every stanza for name installable on this architecture (its own or
        all), highest version first, duplicates (same version and arch, e.g.
        listed in binary-amd64 and binary-all) dropped."""
        got = self._parsed.get(name)
        if got is None:
            from rootfs.backends.deb.version import sort_key

            seen: set[tuple[str, str]] = set()
            got = []
            base = self._own_base.get(name, self.base_url)
            for raw in self._entries(name.encode()):
                p = parse_stanza(raw, base)
                if p.architecture not in (self.architecture, "all"):
                    continue
                if (p.version, p.architecture) in seen:
                    continue
                seen.add((p.version, p.architecture))
                got.append(p)
            got.sort(key=lambda p: sort_key(p.version), reverse=True)
            self._parsed[name] = got
        return got

    def providers(self, name: str) -> list[tuple[Package, str]]:
        """(package, provided version or "") for every package providing name."""
        from rootfs.backends.deb.relations import parse_provides

        names = self._providers.get(name)
        if names is None:
            # A resolve asks about a handful of virtual names: a substring scan
            # of the ~10,000 Provides lines kept at load time (a millisecond)
            # beats building a table of every virtual name in the archive.
            needle = name.encode()
            found: set[str] = set()
            for pname, line in self._provides_lines:
                if needle in line and any(v == name for v, _ in parse_provides(line.decode("utf-8", "replace"))):
                    found.add(pname.decode())
            names = self._providers[name] = sorted(found)
        out = []
        for pname in names:
            for p in self.packages(pname):
                for vname, version in parse_provides(p.provides):
                    if vname == name:
                        out.append((p, version))
        return out

    def with_field(self, field_name: str, value: str) -> list[str]:
        """Names whose highest version says `field_name: value` exactly as the
        archive writes it (Priority: required, Essential: yes). A substring
        search over the raw stanzas picks the few worth parsing."""
        needle = f"{field_name}: {value}".encode()
        attr = _FIELDS[field_name]
        out = []
        for bname, entries in self._raw.items():
            if type(entries) is list:
                if not any(needle in raw for raw in entries):
                    continue
            elif needle not in entries:
                continue
            name = bname.decode()
            pkgs = self.packages(name)
            if not pkgs:
                continue
            got = pkgs[0].essential if attr == "essential" else getattr(pkgs[0], attr)
            if got is True or got == value:
                out.append(name)
        return sorted(out)


# -- decompression ------------------------------------------------------------

def decompress_chunks(data: bytes, ext: str, what: str = "the index") -> Iterator[bytes]:
    """The decompressed content of data (compressed as ext says), in pieces."""
    if ext not in decompress.SUFFIXES:
        raise VerifyError(f"{what} has an unknown compression {ext!r}")
    return decompress.chunks(data, decompress.SUFFIXES[ext], what, VerifyError)
