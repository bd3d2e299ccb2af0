"""Rewriting real RPMs into the forms rpmbuild 4.18 no longer writes, for
the tests: packages as rpm before 4.14 made them (MD5 and SHA1 only), RPM
v3 packages, payloads in rpm's stripped `07070X` cpio, and packages whose
digests were made to fit changed bytes (what an attacker without the
signing key can do).

Every rewrite starts from a package rpmbuild made and keeps its files;
`rpm -K` and `rpm -i` of this machine accept the results (the tests check
that), so they are packages rpm reads, not guesses of ours.

This is test code: it writes headers, which rootfs itself never does.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import struct
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

HEADER_MAGIC = b"\x8e\xad\xe8\x01"
SIGNATURES, IMMUTABLE = 62, 63
SIG_SIZE, SIG_MD5, SIG_SHA1, SIG_SHA256, SIG_PAYLOADSIZE, SIG_RESERVED = 1000, 1004, 269, 273, 1007, 1008
SIG_LONGSIZE, SIG_LONGARCHIVESIZE = 270, 271
SIG_KEYS = (267, 268, 1002, 1005)  # DSA, RSA, PGP, GPG
OLDFILENAMES, DIRINDEXES, BASENAMES, DIRNAMES = 1027, 1116, 1117, 1118
FILESIZES, LONGFILESIZES = 1028, 5008
PAYLOADCOMPRESSOR = 1125
PAYLOADDIGEST, PAYLOADDIGESTALGO, PAYLOADDIGESTALT = 5092, 5093, 5097
FILEDIGESTALGO = 5011
_ALIGN = {3: 2, 4: 4, 5: 8}


@dataclass
class Tag:
    tag: int
    type: int
    count: int
    data: bytes  # the raw store bytes of the value


@dataclass
class RawHeader:
    tags: list[Tag] = field(default_factory=list)
    region: int = 0  # 62 or 63 when the header has a region tag

    def get(self, tag: int) -> Tag | None:
        return next((t for t in self.tags if t.tag == tag), None)

    def drop(self, *tags: int) -> None:
        self.tags = [t for t in self.tags if t.tag not in tags]

    def put(self, tag: int, type_: int, count: int, data: bytes) -> None:
        self.drop(tag)
        self.tags.append(Tag(tag, type_, count, data))

    def put_string(self, tag: int, value: str) -> None:
        self.put(tag, 6, 1, value.encode() + b"\0")

    def put_int32(self, tag: int, *values: int) -> None:
        self.put(tag, 4, len(values), struct.pack(f">{len(values)}I", *values))

    def put_int64(self, tag: int, *values: int) -> None:
        self.put(tag, 5, len(values), struct.pack(f">{len(values)}Q", *values))

    def put_strings(self, tag: int, values: list[bytes]) -> None:
        self.put(tag, 8, len(values), b"".join(v + b"\0" for v in values))

    def strings(self, tag: int) -> list[bytes]:
        t = self.get(tag)
        return [] if t is None else t.data.split(b"\0")[: t.count]

    def ints(self, tag: int) -> list[int]:
        t = self.get(tag)
        if t is None:
            return []
        code = {3: "H", 4: "I", 5: "Q"}[t.type]
        return list(struct.unpack(f">{t.count}{code}", t.data))

    def serialize(self) -> bytes:
        tags = sorted(self.tags, key=lambda t: t.tag)
        n = len(tags) + (1 if self.region else 0)
        store = bytearray()
        index = []
        for t in tags:
            align = _ALIGN.get(t.type, 1)
            store += b"\0" * ((-len(store)) % align)
            index.append(struct.pack(">iIiI", t.tag, t.type, len(store), t.count))
            store += t.data
        if self.region:
            trailer_at = len(store)
            store += struct.pack(">iIiI", self.region, 7, -n * 16, 16)
            index.insert(0, struct.pack(">iIiI", self.region, 7, trailer_at, 16))
        return HEADER_MAGIC + b"\0" * 4 + struct.pack(">II", n, len(store)) + b"".join(index) + bytes(store)


def _size(type_: int, count: int, store: bytes, off: int) -> int:
    if type_ in (6, 8, 9):
        end = off
        for _ in range(count):
            end = store.index(b"\0", end) + 1
        return end - off
    if type_ == 7 or type_ in (1, 2):
        return count
    return count * {3: 2, 4: 4, 5: 8}[type_]


def parse_header(data: bytes, off: int) -> tuple[RawHeader, int]:
    assert data[off:off + 4] == HEADER_MAGIC
    il, dl = struct.unpack(">II", data[off + 8:off + 16])
    index = data[off + 16:off + 16 + il * 16]
    store = data[off + 16 + il * 16:off + 16 + il * 16 + dl]
    h = RawHeader()
    for i in range(il):
        tag, type_, o, count = struct.unpack_from(">iIiI", index, i * 16)
        if tag in (SIGNATURES, IMMUTABLE) and i == 0:
            h.region = tag
            continue
        h.tags.append(Tag(tag, type_, count, store[o:o + _size(type_, count, store, o)]))
    return h, off + 16 + il * 16 + dl


@dataclass
class Package:
    lead: bytes
    sig: RawHeader
    header: RawHeader
    payload: bytes

    @classmethod
    def read(cls, path: Path) -> "Package":
        data = Path(path).read_bytes()
        sig, off = parse_header(data, 96)
        off += (-off) % 8
        hdr, off = parse_header(data, off)
        return cls(data[:96], sig, hdr, data[off:])

    def write(self, path: Path) -> Path:
        sig = self.sig.serialize()
        Path(path).write_bytes(self.lead + sig + b"\0" * ((-len(sig)) % 8) + self.header.serialize() + self.payload)
        return Path(path)

    # -- digests ------------------------------------------------------------

    def reseal(self, *, payload_digest: bool = True, sha256: bool = True) -> "Package":
        """Make every digest fit the current header and payload, as
        rpmbuild would have written them (the signature, if any, is dropped:
        it cannot be remade without the key)."""
        if payload_digest and self.header.get(PAYLOADDIGEST) is not None:
            self.header.put_strings(PAYLOADDIGEST, [hashlib.sha256(self.payload).hexdigest().encode()])
            self.header.put_int32(PAYLOADDIGESTALGO, 8)
            if self.header.get(PAYLOADDIGESTALT) is not None:
                self.header.put_strings(PAYLOADDIGESTALT, [hashlib.sha256(self.uncompressed()).hexdigest().encode()])
        raw = self.header.serialize()
        self.sig.drop(*SIG_KEYS, SIG_RESERVED)
        if self.header.region:  # v3 headers have no region, and no header-only digest
            self.sig.put_string(SIG_SHA1, hashlib.sha1(raw).hexdigest())
        else:
            self.sig.drop(SIG_SHA1)
        if sha256 and self.header.region:
            self.sig.put_string(SIG_SHA256, hashlib.sha256(raw).hexdigest())
        else:
            self.sig.drop(SIG_SHA256)
        self.sig.put_int32(SIG_SIZE, len(raw) + len(self.payload))
        self.sig.put(SIG_MD5, 7, 16, hashlib.md5(raw + self.payload).digest())
        return self

    # -- payload ------------------------------------------------------------

    @property
    def compressor(self) -> str:
        t = self.header.get(PAYLOADCOMPRESSOR)
        return t.data.rstrip(b"\0").decode() if t else ""

    def uncompressed(self) -> bytes:
        return decompress(self.payload, self.compressor)

    def set_uncompressed(self, cpio: bytes) -> None:
        self.payload = compress(cpio, self.compressor)


def decompress(data: bytes, comp: str) -> bytes:
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data, format=lzma.FORMAT_XZ)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    if comp == "lzma":
        return lzma.decompress(data, format=lzma.FORMAT_ALONE)
    return data


def compress(data: bytes, comp: str) -> bytes:
    if comp == "gzip":
        return gzip.compress(data, mtime=0)
    if comp == "bzip2":
        return bz2.compress(data)
    if comp == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    if comp == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_ALONE)
    if comp == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


# -- cpio ---------------------------------------------------------------------

def newc_entries(cpio: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(header fields, name, data) of each newc entry, the trailer last."""
    out, off = [], 0
    while True:
        off += (-off) % 4
        assert cpio[off:off + 6] == b"070701", cpio[off:off + 6]
        fields = cpio[off + 6:off + 110]
        size, namesize = int(fields[48:56], 16), int(fields[88:96], 16)
        name = cpio[off + 110:off + 110 + namesize - 1]
        off += 110 + namesize
        off += (-off) % 4
        out.append((fields, name, cpio[off:off + size]))
        off += size
        if name == b"TRAILER!!!":
            return out


def _pad(buf: bytearray) -> None:
    buf += b"\0" * ((-len(buf)) % 4)


def to_stripped(pkg: Package) -> Package:
    """The payload rewritten as rpm writes it for packages with files of
    4 GiB and more (rpmcpioStrippedHeaderWrite): per file `07070X`, the
    header index in 8 hex digits, padding to 4, the bytes; a newc trailer.
    The header gets LONGFILESIZES instead of FILESIZES, as such packages
    have; digests are resealed."""
    basenames = pkg.header.strings(BASENAMES)
    dirnames = pkg.header.strings(DIRNAMES)
    indexes = pkg.header.ints(DIRINDEXES)
    index_of = {(dirnames[d] + b).lstrip(b"/"): i for i, (d, b) in enumerate(zip(indexes, basenames))}
    out = bytearray()
    trailer = b""
    for fields, name, data in newc_entries(pkg.uncompressed()):
        if name == b"TRAILER!!!":
            trailer = b"070701" + fields + name + b"\0"
            continue
        fx = index_of[name[2:] if name.startswith(b"./") else name.lstrip(b"/")]
        _pad(out)
        out += b"07070X" + b"%08x" % fx
        _pad(out)
        out += data
    _pad(out)
    out += trailer
    _pad(out)
    pkg.set_uncompressed(bytes(out))
    sizes = pkg.header.ints(FILESIZES)
    pkg.header.drop(FILESIZES)
    pkg.header.put_int64(LONGFILESIZES, *sizes)
    return pkg.reseal()


def to_pre_414(pkg: Package) -> Package:
    """As rpm before 4.14 wrote it: no payload digest in the header, no
    SHA256 in the signature header, just SIZE, MD5 and SHA1; file digests
    in MD5 (build the source with _binary_filedigest_algorithm 1)."""
    pkg.header.drop(PAYLOADDIGEST, PAYLOADDIGESTALGO, PAYLOADDIGESTALT)
    pkg.sig.drop(SIG_LONGSIZE, SIG_LONGARCHIVESIZE)
    return pkg.reseal(payload_digest=False, sha256=False)


def to_v3(pkg: Package) -> Package:
    """An RPM v3 package: lead version 3, a main header without the
    immutable region and with one flat OLDFILENAMES array, a signature
    header with SIZE and MD5 only."""
    names = [pkg.header.strings(DIRNAMES)[d] + b for d, b in zip(pkg.header.ints(DIRINDEXES), pkg.header.strings(BASENAMES))]
    pkg.header.drop(DIRINDEXES, BASENAMES, DIRNAMES, PAYLOADDIGEST, PAYLOADDIGESTALGO, PAYLOADDIGESTALT)
    pkg.header.put_strings(OLDFILENAMES, names)
    pkg.header.region = 0
    pkg.lead = pkg.lead[:4] + b"\x03\x00" + pkg.lead[6:]
    pkg.sig.drop(SIG_SHA1, SIG_SHA256, SIG_LONGSIZE, SIG_LONGARCHIVESIZE)
    return pkg.reseal(payload_digest=False, sha256=False)


def flip_byte(path: Path, offset_from_end: int) -> None:
    data = bytearray(Path(path).read_bytes())
    data[-offset_from_end] ^= 0x01
    Path(path).write_bytes(bytes(data))
