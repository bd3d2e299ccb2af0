"""A reproducible PAX tar stream, written by hand for speed.

Python's tarfile spends most of its time building TarInfo objects and
headers (bench/pack.py measures the packer against GNU tar). The format
needed here is small:
ustar headers, with a PAX extended header only for what ustar cannot say
(long or non-ASCII names, xattrs, big numbers). No atime/ctime records are
written, so the bytes depend only on the tree, the attrs record and
SOURCE_DATE_EPOCH.

Names are "./" plus the root-relative path (as mmdebstrap and `tar -C root .`
write them); directories end in "/".
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable

from rootfs.model.errors import OutputError
from rootfs.pack.tree import BLK, CHR, DIR, FILE, HARDLINK, Entry

BLOCK = 512
CHUNK = 1 << 20  # what sinks receive at a time; bounds memory


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n += 1
    return str(n).encode() + body


def _fits(value: int, width: int) -> bool:
    return 0 <= value < 8 ** (width - 1)


_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s167x")


def _ustar(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, kind: bytes,
           linkname: bytes, uname: bytes, gname: bytes, major: int = 0, minor: int = 0) -> bytes:
    dev = kind in (CHR, BLK)
    fields = [name, b"%07o\0" % mode, b"%07o\0" % uid, b"%07o\0" % gid, b"%011o\0" % size,
              b"%011o\0" % mtime, b"        ", kind, linkname, b"ustar\x0000", uname, gname,
              b"%07o\0" % major if dev else b"", b"%07o\0" % minor if dev else b""]
    h = _USTAR.pack(*fields)
    # the checksum counts its own field as spaces
    return h[:148] + b"%06o\0 " % sum(h) + h[156:]


def _pad(n: int) -> bytes:
    return b"\0" * (-n % BLOCK)


def header(e: Entry, unames: dict[int, bytes], gnames: dict[int, bytes], prefix: bytes = b"./") -> bytes:
    """The header block(s) of one entry: a PAX 'x' header when needed, then ustar."""
    name = prefix + e.name if e.name else prefix or b"./"
    if e.kind == DIR and not name.endswith(b"/"):
        name += b"/"
    records = []
    if len(name) > 100 or not name.isascii():
        records.append((b"path", name))
        short = name[:99].decode("ascii", "replace").encode("ascii", "replace")
    else:
        short = name
    link = e.linkname
    if link:
        if e.kind == HARDLINK:
            link = prefix + link
        if len(link) > 100 or not link.isascii():
            records.append((b"linkpath", link))
            link = link[:99].decode("ascii", "replace").encode("ascii", "replace")
    uid, gid, size = e.uid, e.gid, e.size
    if not _fits(uid, 8):
        records.append((b"uid", str(uid).encode()))
        uid = 0
    if not _fits(gid, 8):
        records.append((b"gid", str(gid).encode()))
        gid = 0
    if not _fits(size, 12):
        records.append((b"size", str(size).encode()))
    for key, value in e.xattrs:
        records.append((b"SCHILY.xattr." + key.encode("utf-8", "surrogateescape"), value))
    uname = unames.get(e.uid, b"")
    gname = gnames.get(e.gid, b"")
    major = os.major(e.rdev) if e.rdev else 0
    minor = os.minor(e.rdev) if e.rdev else 0
    main = _ustar(short, e.mode, uid, gid, size if _fits(size, 12) else 0, e.mtime, e.kind,
                  link, uname, gname, major, minor)
    if not records:
        return main
    if any(not _utf8(v) for k, v in records if k in (b"path", b"linkpath")):
        # Names that are not UTF-8 travel as raw bytes (POSIX hdrcharset).
        records.insert(0, (b"hdrcharset", b"BINARY"))
    body = b"".join(_pax_record(k, v) for k, v in records)
    xname = b"././@PaxHeader"
    xh = _ustar(xname, 0o644, 0, 0, len(body), e.mtime, b"x", b"", b"", b"")
    return xh + body + _pad(len(body)) + main


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def write_stream(entries: Iterable[Entry], write: Callable[[bytes], None],
                 unames: dict[int, str], gnames: dict[int, str], *,
                 on_entry: Callable[[Entry], None] | None = None, prefix: bytes = b"./") -> int:
    """Write the tar of entries through write() in CHUNK-sized pieces;
    return the number of bytes written.

    File contents are read straight into a fresh zero-filled chunk (so the
    block padding costs nothing) and each full chunk is handed over as is:
    the sinks may hold it, since it is never written again.
    """
    un = {k: v.encode() for k, v in unames.items()}
    gn = {k: v.encode() for k, v in gnames.items()}
    buf = bytearray(CHUNK)
    pos = 0
    total = 0

    def emit() -> None:
        nonlocal buf, pos, total
        if pos:
            write(memoryview(buf)[:pos])
            total += pos
            buf = bytearray(CHUNK)
            pos = 0

    for e in entries:
        if on_entry is not None:
            on_entry(e)
        h = header(e, un, gn, prefix)
        if pos + len(h) > CHUNK:
            emit()
        buf[pos:pos + len(h)] = h
        pos += len(h)
        if e.kind != FILE or not e.size:
            continue
        if e.data is not None:
            data = memoryview(e.data)
            while data:
                if pos == CHUNK:
                    emit()
                n = min(len(data), CHUNK - pos)
                buf[pos:pos + n] = data[:n]
                pos += n
                data = data[n:]
        else:
            try:
                fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                raise OutputError(f"cannot read {os.fsdecode(e.path)}: {exc.strerror}") from None
            try:
                remaining = e.size
                while remaining:
                    if pos == CHUNK:
                        emit()  # a sink's failure (a closed pipe) is its own, not a read error
                    want = min(remaining, CHUNK - pos)
                    try:
                        n = os.readv(fd, [memoryview(buf)[pos:pos + want]])
                    except OSError as exc:
                        raise OutputError(f"cannot read {os.fsdecode(e.path)}: {exc.strerror}") from None
                    if n == 0:
                        # The file shrank under us: keep the header's promise
                        # (the chunk is already zeros).
                        n = want
                    pos += n
                    remaining -= n
            finally:
                os.close(fd)
        pad = -e.size % BLOCK
        if pos + pad > CHUNK:
            pad -= CHUNK - pos
            pos = CHUNK
            emit()
        pos += pad
    end = 2 * BLOCK
    if pos + end > CHUNK:
        end -= CHUNK - pos
        pos = CHUNK
        emit()
    pos += end
    emit()
    return total
