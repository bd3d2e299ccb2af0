"""Packages indices: decompressed and parsed fast, stanzas parsed lazily.

A bootstrap looks at a few hundred of bookworm's 63,440 stanzas, so the
index keeps every stanza as raw bytes keyed by package name and parses one
into a Package only when the resolver asks for it. Splitting on blank lines
is done by bytes.split in C; the per-stanza Python work is one slice and a
few substring searches.

Decompression is the larger cost (bookworm main: 50 MB from 12 MB of gzip
or 8.8 MB of xz). `decompress` does it in one call that holds no GIL
(ISA-L's or zlib's inflate with the whole output buffer the Release
announces, or an `xz -T2` process, which decodes multi-block files on both cores), so the indices of
several sources decompress in threads while the main thread splits the
ones already done.
"""

from __future__ import annotations

import bz2
import lzma
import shutil
import subprocess
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from rootfs.model.errors import VerifyError

try:
    # ISA-L's inflate: bookworm main's 50 MB in 0.12 s of CPU against
    # zlib's 0.21 s (measured here); the same results, GIL released alike.
    from isal import isal_zlib as _inflate
except ImportError:  # no wheel for this machine: zlib, only slower
    _inflate = zlib

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
        return self.base_url + self.filename


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
            for raw in self._entries(name.encode()):
                p = parse_stanza(raw, self.base_url, self.repository)
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
            needle = name.encode()
            found: set[str] = set()
            for pname, line in self._provides_lines:
                if needle in line and any(v == name for v, _ in parse_provides(line.decode("utf-8", "replace"))):
                    found.add(pname.decode())
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
            out.append(bname.decode())
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

def _pieces(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), CHUNK):
        yield data[i:i + CHUNK]


def _xz_subprocess(data: bytes, what: str) -> Iterator[bytes]:
    proc = subprocess.Popen(
        ["xz", "-T2", "-dc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )

    def feed() -> None:
        try:
            proc.stdin.write(data)  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()  # type: ignore[union-attr]

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        while chunk := proc.stdout.read(CHUNK):  # type: ignore[union-attr]
            yield chunk
    finally:
        proc.stdout.close()  # type: ignore[union-attr]
        writer.join()
        err = proc.stderr.read()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        rc = proc.wait()
    if rc != 0:
        raise VerifyError(f"{what} is not valid xz data: {err.decode(errors='replace').strip()}")


def _stream(factory, data: bytes, what: str, kind: str) -> Iterator[bytes]:
    """Decompress with fresh decompressors member after member: pigz,
    pbzip2 and xz --threads may write several concatenated streams."""
    try:
        pos = 0
        while pos < len(data):
            decomp = factory()
            while not decomp.eof:
                if pos >= len(data):
                    raise EOFError("compressed data ends early")
                piece = data[pos:pos + CHUNK]
                pos += len(piece)
                out = decomp.decompress(piece)
                if out:
                    yield out
            # Give back what belongs to the next member.
            pos -= len(decomp.unused_data)
            if not data[pos:].strip(b"\0"):
                break
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as exc:
        raise VerifyError(f"{what} is not valid {kind} data: {exc}") from None


def _zstd(data: bytes, what: str) -> Iterator[bytes]:
    import io

    import zstandard

    # read_across_frames: multi-threaded zstd writes several frames.
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    try:
        while chunk := reader.read(CHUNK):
            yield chunk
    except zstandard.ZstdError as exc:
        raise VerifyError(f"{what} is not valid zstd data: {exc}") from None


def decompress_chunks(data: bytes, ext: str, what: str = "the index") -> Iterator[bytes]:
    """The decompressed content of data (compressed as ext says), in pieces."""
    if ext == "":
        return _pieces(data)
    if ext == ".xz":
        if shutil.which("xz"):
            return _xz_subprocess(data, what)
        return _stream(lzma.LZMADecompressor, data, what, "xz")
    if ext == ".gz":
        return _stream(lambda: zlib.decompressobj(47), data, what, "gzip")
    if ext == ".bz2":
        return _stream(bz2.BZ2Decompressor, data, what, "bzip2")
    if ext == ".zst":
        return _zstd(data, what)
    raise VerifyError(f"{what} has an unknown compression {ext!r}")


def decompress(data: bytes, ext: str, what: str = "the index", size: int = 0) -> bytes:
    """The whole decompressed content of data. gzip and xz run without the
    GIL: zlib gets an output buffer of `size` (the uncompressed size the
    Release lists) and so decodes in one call; xz runs as a process."""
    if ext == "":
        return data
    if ext == ".gz" and size:
        try:
            out = _inflate.decompress(data, 47, size + 1)
        except (zlib.error, _inflate.error) as exc:
            raise VerifyError(f"{what} is not valid gzip data: {exc}") from None
        if len(out) == size:
            return out
        # Several concatenated members (pigz): the member-by-member reader.
    if ext == ".xz" and shutil.which("xz"):
        try:
            proc = subprocess.run(["xz", "-T2", "-dc"], input=data, capture_output=True, check=False)
        except OSError as exc:
            raise VerifyError(f"{what}: cannot run xz: {exc.strerror}") from None
        if proc.returncode != 0:
            raise VerifyError(f"{what} is not valid xz data: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout
    return b"".join(decompress_chunks(data, ext, what))
