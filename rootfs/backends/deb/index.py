"""Packages indices: decompressed and parsed fast, stanzas parsed lazily.

A bootstrap looks at a few hundred of bookworm's 63,440 stanzas, so the
index keeps every stanza as raw bytes keyed by package name and parses one
into a Package only when the resolver asks for it. Splitting on blank lines
is done by bytes.split in C; the per-stanza Python work is one slice and a
few substring searches.

Decompression is the larger cost (bookworm main: 50 MB from 12 MB of gzip
or 8.8 MB of xz). rootfs.decompress.whole does it in one call that holds no
GIL, so the indices of several sources decompress in threads while the
main thread splits the ones already done.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from debian.debian_support import Version as _Version

from rootfs import decompress
from rootfs.host.safepath import repository_path
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
    repository: str = ""  # the source it was read from (Repository.id)
    _relations: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def source_name(self) -> str:
        """Source package name ("Source: foo (1.2)" -> foo; absent -> own name)."""
        return self.source.split(" ", 1)[0] if self.source else self.name

    @property
    def url(self) -> str:
        if not self.base_url:
            # A package file the user named (Index.override): its Filename
            # is that file's own URL, not a path in a repository.
            return self.filename
        # Checked here, at resolve time: a hostile Filename is refused
        # before anything is fetched.
        return self.base_url + repository_path(self.filename, f"the index entry of {self.name} {self.version} names")


def parse_stanza(raw: bytes, base_url: str = "", repository: str = "") -> Package:
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
    try:
        _Version(values["version"])  # what sorting by version will need
    except ValueError:
        raise VerifyError(f"package {values['name'][:100]} has an invalid Version {values['version'][:100]!r}") from None
    return Package(size=size, essential=essential, base_url=base_url, repository=repository, **values)


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
    """All stanzas of one or more Packages files of one source (one URI,
    one suite), for one architecture.

    `add(chunks)` takes decompressed text in pieces; lookups parse stanzas on
    first use and cache the result. Names are kept as the bytes of the file
    until asked for: decoding 63,000 of them is measurable."""

    def __init__(self, architecture: str, base_url: str = "", repository: str = ""):
        self.architecture = architecture
        self.base_url = base_url  # what Filename fields are relative to
        self.repository = repository  # stamped on every Package read from it
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
        return sorted(n.decode("utf-8", "surrogateescape") for n in self._raw)

    def __contains__(self, name: str) -> bool:
        return name.encode("utf-8", "surrogateescape") in self._raw

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
            for raw in self._entries(name.encode("utf-8", "surrogateescape")):
                p = parse_stanza(raw, base, self.repository)
                if p.architecture not in (self.architecture, "all"):
                    continue
                if (p.version, p.architecture) in seen:
                    continue
                seen.add((p.version, p.architecture))
                got.append(p)
            got.sort(key=lambda p: sort_key(p.version), reverse=True)
            self._parsed[name] = got
        return got

    def provider_names(self, name: str) -> list[str]:
        """Names of the packages whose Provides (in any stanza) mention name."""
        from rootfs.backends.deb.relations import parse_provides

        names = self._providers.get(name)
        if names is None:
            # A resolve asks about a handful of virtual names: a substring scan
            # of the ~10,000 Provides lines kept at load time (a millisecond)
            # beats building a table of every virtual name in the archive.
            needle = name.encode("utf-8", "surrogateescape")
            found: set[str] = set()
            for pname, line in self._provides_lines:
                if needle in line and any(v == name for v, _ in parse_provides(line.decode("utf-8", "replace"))):
                    found.add(pname.decode("utf-8", "surrogateescape"))
            names = self._providers[name] = sorted(found)
        return names

    def providers(self, name: str) -> list[tuple[Package, str]]:
        """(package, provided version or "") for every package providing name."""
        from rootfs.backends.deb.relations import parse_provides

        out = []
        for pname in self.provider_names(name):
            for p in self.packages(pname):
                for vname, version in parse_provides(p.provides):
                    if vname == name:
                        out.append((p, version))
        return out

    def names_mentioning(self, field_name: str, value: str) -> list[str]:
        """Names with a stanza saying `field_name: value` as the archive
        writes it; a substring search over the raw stanzas, so a superset
        for the caller to check on parsed packages."""
        needle = f"{field_name}: {value}".encode()
        out = []
        for bname, entries in self._raw.items():
            if type(entries) is list:
                if not any(needle in raw for raw in entries):
                    continue
            elif needle not in entries:
                continue
            out.append(bname.decode("utf-8", "surrogateescape"))
        return out

    def with_field(self, field_name: str, value: str) -> list[str]:
        """Names whose highest version says `field_name: value` exactly as the
        archive writes it (Priority: required, Essential: yes)."""
        attr = _FIELDS[field_name]
        out = []
        for name in self.names_mentioning(field_name, value):
            pkgs = self.packages(name)
            if pkgs and field_matches(pkgs[0], attr, value):
                out.append(name)
        return sorted(out)


def field_matches(p: Package, attr: str, value: str) -> bool:
    got = p.essential if attr == "essential" else getattr(p, attr)
    return got is True or got == value


# -- decompression ------------------------------------------------------------

def decompress_chunks(data: bytes, ext: str, what: str = "the index") -> Iterator[bytes]:
    """The decompressed content of data (compressed as ext says), in pieces."""
    if ext not in decompress.SUFFIXES:
        raise VerifyError(f"{what} has an unknown compression {ext!r}")
    return decompress.chunks(data, decompress.SUFFIXES[ext], what, VerifyError)


def decompress_index(data: bytes, ext: str, what: str = "the index", size: int = 0) -> bytes:
    """The whole decompressed index; `size` is the uncompressed size the
    Release lists (0 when it lists none)."""
    if ext not in decompress.SUFFIXES:
        raise VerifyError(f"{what} has an unknown compression {ext!r}")
    return decompress.whole(data, decompress.SUFFIXES[ext], what, VerifyError, size)
