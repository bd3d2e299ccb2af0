"""A package's files: the header's file arrays joined with the payload's
bytes.

Metadata always comes from the header (full modes with setuid bits,
owners by name, link targets, hard-link sets, flags, capabilities); the
cpio payload is only read for file contents. The payload may be compressed
with gzip, bzip2, xz, legacy lzma or zstd, or not at all, and is either the
usual `070701` cpio with names or rpm's stripped `07070X` form (packages
with files over 4 GiB), whose entries carry only an index into the header.

A payload that does not decompress, or whose cpio does not parse, is a
corrupt package (VerifyError, exit 4), as is a file whose bytes do not
match the header's per-file digest: rpm's installer checks those digests
as it writes each file, and so do we (CpioReader.copy_to).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from rootfs import decompress
from rootfs.backends.rpm import header as H
from rootfs.backends.rpm.header import RpmFile
from rootfs.model.errors import VerifyError

NEWC = b"070701"
CRC = b"070702"
STRIPPED = b"07070X"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True, slots=True)
class FileEntry:
    index: int
    path: str  # absolute, as in the header ("/usr/bin/sh")
    mode: int
    size: int
    user: str
    group: str
    linkto: str
    flags: int
    mtime: int
    inode: int
    device: int
    rdev: int
    caps: str
    digest: str  # hex, in the header's FILEDIGESTALGO; "" when the header has none

    @property
    def ghost(self) -> bool:
        return bool(self.flags & H.FILE_GHOST)

    @property
    def config(self) -> bool:
        return bool(self.flags & H.FILE_CONFIG)


def file_entries(rpm: RpmFile) -> list[FileEntry]:
    h = rpm.header
    basenames = h.list(H.BASENAMES)
    n = len(basenames)
    if not n:
        return []
    dirnames = h.list(H.DIRNAMES)
    dirindexes = h.list(H.DIRINDEXES)
    sizes = h.list(H.LONGFILESIZES) or h.list(H.FILESIZES)

    def arr(tag: int, default):
        v = h.list(tag)
        return v if len(v) == n else [default] * n

    modes, users, groups = arr(H.FILEMODES, 0o100644), arr(H.FILEUSERNAME, "root"), arr(H.FILEGROUPNAME, "root")
    links, flags, mtimes = arr(H.FILELINKTOS, ""), arr(H.FILEFLAGS, 0), arr(H.FILEMTIMES, 0)
    inodes, devices, rdevs, caps = arr(H.FILEINODES, 0), arr(H.FILEDEVICES, 0), arr(H.FILERDEVS, 0), arr(H.FILECAPS, "")
    digests = arr(H.FILEDIGESTS, "")
    if len(dirindexes) != n or len(sizes) != n or any(not isinstance(d, int) or not 0 <= d < len(dirnames)
                                                      for d in dirindexes):
        raise VerifyError(f"{rpm.path.name} has inconsistent file arrays in its header")
    try:
        out = [
            FileEntry(i, dirnames[dirindexes[i]] + basenames[i], modes[i], sizes[i], users[i], groups[i],
                      links[i], flags[i], mtimes[i], inodes[i], devices[i], rdevs[i], caps[i], digests[i])
            for i in range(n)
        ]
    except TypeError:  # a directory or base name that is not a string
        raise VerifyError(f"{rpm.path.name} has file arrays of the wrong types in its header") from None
    for e in out:  # the types the header's tags must have (a tag of another type is hostile)
        if not all(isinstance(x, int) for x in (e.mode, e.size, e.flags, e.mtime, e.inode, e.device, e.rdev)) \
                or not all(isinstance(x, str) for x in (e.path, e.user, e.group, e.linkto)):
            raise VerifyError(f"{rpm.path.name} has file arrays of the wrong types in its header")
    return out


def file_digest_algo(rpm: RpmFile) -> str:
    """hashlib's name for the header's per-file digests (MD5 when the
    header does not say, as in packages before rpm 4.6)."""
    code = rpm.header.int(H.FILEDIGESTALGO, 1)
    algo = H.DIGEST_ALGOS.get(code)
    if algo is None:
        raise VerifyError(f"{rpm.path.name}: its file digests use an unknown algorithm ({code})")
    return algo


def hardlink_sets(entries: list[FileEntry]) -> dict[int, list[int]]:
    """index -> the indexes of its hard-link set (ascending), for regular
    files that share a (device, inode) with another file."""
    groups: dict[tuple[int, int], list[int]] = {}
    for e in entries:
        if stat.S_ISREG(e.mode) and not e.ghost:
            groups.setdefault((e.device, e.inode), []).append(e.index)
    return {i: g for g in groups.values() if len(g) > 1 for i in g}


def open_payload(f: BinaryIO, rpm: RpmFile) -> BinaryIO:
    """The decompressed stream of the payload at f's position, whatever
    rpm compressed it with (told by its magic bytes, as rpm's rpmio does;
    the header's PAYLOADCOMPRESSOR only settles legacy lzma, which has
    none). Closing it leaves f open."""
    start = f.tell()
    head = f.read(6)
    f.seek(start)
    comp = rpm.header.str(H.PAYLOADCOMPRESSOR)
    kind = decompress.sniff(head)
    if kind is None and head[:5] != b"07070" and (comp == "lzma" or head[:1] == b"\x5d"):
        kind = "lzma"  # lzma-alone has no magic
    if kind is None and head[:5] != b"07070":  # newc, crc or stripped cpio: not compressed
        raise VerifyError(f"{rpm.path.name}: unknown payload compression {comp or head[:6]!r}")
    return decompress.reader(f, kind)


class CpioReader:
    """Walks a cpio payload; the caller reads each entry's data (or not)
    before asking for the next one."""

    def __init__(self, stream: BinaryIO, rpm: RpmFile):
        self.f = stream
        self.rpm = rpm
        self.what = rpm.path.name
        self.offset = 0
        self.remaining = 0  # bytes of the current entry's data not yet read

    def _chunk(self, n: int) -> bytes:
        """Up to n bytes of the decompressed stream; a decoder's complaint
        is a corrupt payload."""
        try:
            return self.f.read(n)
        except OSError as exc:
            if exc.errno is not None:  # reading the file failed, not decoding it
                raise
            raise corrupt(self.rpm, exc) from None  # gzip's and bz2's "invalid data"
        except decompress.ERRORS as exc:
            raise corrupt(self.rpm, exc) from None

    def _read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self._chunk(n - len(out))
            if not chunk:
                raise corrupt(self.rpm, "it ends early")
            out += chunk
        self.offset += n
        return bytes(out)

    def _skip(self, n: int) -> None:
        while n > 0:
            k = min(n, 1 << 20)
            self._read(k)
            n -= k

    def _pad(self) -> None:
        self._skip((4 - self.offset % 4) % 4)

    def next(self, sizes_by_index) -> tuple[str | None, int, int] | None:
        """(name or None, header index or -1, data size) of the next entry,
        None at the trailer. sizes_by_index(fx) gives the data size of a
        stripped entry, which does not carry one."""
        if self.remaining:
            self._skip(self.remaining)
            self.remaining = 0
        self._pad()
        magic = self._read(6)
        if magic == STRIPPED:
            # rpm pads the 14-byte stripped header to 4 bytes, as it pads
            # every header (rpmcpioStrippedHeaderWrite).
            fx = self._hex(self._read(8))
            self._pad()
            self.remaining = sizes_by_index(fx)
            return None, fx, self.remaining
        if magic not in (NEWC, CRC):
            raise corrupt(self.rpm, "no cpio header where one belongs")
        fields = self._read(104)
        filesize = self._hex(fields[48:56])
        namesize = self._hex(fields[88:96])
        name = self._read(namesize).rstrip(b"\0").decode("utf-8", "surrogateescape")
        self._pad()
        if name == TRAILER:
            return None
        self.remaining = filesize
        return name, -1, filesize

    def _hex(self, field: bytes) -> int:
        try:
            return int(field, 16)
        except ValueError:
            raise corrupt(self.rpm, "a cpio header is garbled") from None

    def copy_to(self, fd: int, n: int, digest=None) -> None:
        """Write the next n bytes of the entry to fd, through digest (a
        hashlib object) when one is given."""
        while n > 0:
            chunk = self._read(min(n, 1 << 20))
            if digest is not None:
                digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
            n -= len(chunk)
            self.remaining -= len(chunk)

    def drain(self) -> None:
        while self._chunk(1 << 20):
            pass

    def read_data(self, n: int) -> bytes:
        data = self._read(n)
        self.remaining -= n
        return data


def payload_contents(rpm: RpmFile, entries: list[FileEntry]) -> Iterator[tuple[FileEntry, CpioReader, int]]:
    """Yield (entry, reader, size) for each regular file whose bytes the
    payload carries; the consumer reads exactly size bytes from reader."""
    by_path = {e.path: e for e in entries}
    links = hardlink_sets(entries)

    def stripped_size(fx: int) -> int:
        if not 0 <= fx < len(entries):
            raise VerifyError(f"{rpm.path.name}: the payload names file {fx}, which the header lacks")
        e = entries[fx]
        if stat.S_ISREG(e.mode):
            group = links.get(fx)
            return e.size if group is None or group[-1] == fx else 0
        if stat.S_ISLNK(e.mode):
            return e.size
        return 0

    with open(rpm.path, "rb") as f:
        f.seek(rpm.payload_offset)
        stream = open_payload(f, rpm)
        try:
            reader = CpioReader(stream, rpm)
            while (item := reader.next(stripped_size)) is not None:
                name, fx, size = item
                if name is not None:
                    path = "/" + name[2:] if name.startswith("./") else ("/" + name.lstrip("/"))
                    e = by_path.get(path)
                    if e is None:
                        raise VerifyError(f"{rpm.path.name}: the payload holds {name[:200]!r}, "
                                          "which the header does not list")
                else:
                    e = entries[fx]
                if stat.S_ISREG(e.mode) and not e.ghost and size:
                    yield e, reader, size
            # To the end of the stream, so that the decoder checks what it
            # checks there (gzip's CRC, the ends of xz and bzip2 streams).
            reader.drain()
        finally:
            stream.close()


def corrupt(rpm: RpmFile, why: BaseException | str) -> VerifyError:
    comp = rpm.header.str(H.PAYLOADCOMPRESSOR) or "uncompressed"
    text = str(why).strip() or type(why).__name__
    return VerifyError(f"{rpm.path.name}: the {comp} payload is corrupt ({text[:120]})")


def check_file_digest(rpm: RpmFile, e: FileEntry, digest) -> None:
    """The header's digest of e against digest (the hashlib object its
    bytes went through), as rpm's installer checks each file it writes."""
    if e.digest and digest.hexdigest() != e.digest.lower():
        raise VerifyError(f"{rpm.path.name}: {e.path[:200]} does not match its {digest.name.upper()} digest in the header")
