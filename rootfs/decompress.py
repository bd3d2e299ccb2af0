"""The one decompression dispatcher, for every reader of compressed input:
Packages indices (deb), repository metadata and payloads (rpm), image
layers. Compression is known by its magic bytes (or, for indices, by the
name the Release lists) and undone as a stream, member after member, so
that concatenated streams (pigz, pbzip2, `xz -T`, multi-frame zstd) read
whole.

- `sniff(head)`: the compression of data starting with head, or None.
- `reader(raw, kind)`: a file object of the decompressed stream of raw.
- `chunks(data, kind, what, error)`: a buffer decompressed in pieces; xz
  through `xz -T2` when the host has it, so that decoding overlaps parsing
  and multi-block files use both cores.
- `whole(data, kind, what, error, size)`: a buffer decompressed in one call
  that holds no GIL (gzip with the output size known, xz as a process), so
  that several buffers decompress in threads at once.

Damaged input raises `error(message)` from chunks(); readers raise one of
ERRORS, which their callers turn into their own sentence.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import shutil
import subprocess
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

import zstandard

try:
    # ISA-L's inflate: bookworm main's 50 MB in 0.12 s of CPU against
    # zlib's 0.21 s (measured here); the same results, GIL released alike.
    from isal import isal_zlib as _inflate
except ImportError:  # no wheel for this machine: zlib, only slower
    _inflate = zlib

CHUNK = 1 << 20
KINDS = ("gzip", "bzip2", "xz", "zstd", "lzma")
# What a Release or a repomd names: file suffix -> kind ("" = not compressed).
SUFFIXES = {"": None, ".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd", ".lzma": "lzma"}
# What a damaged stream raises while it is read.
ERRORS = (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error, zstandard.ZstdError)

_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))


def sniff(head: bytes) -> str | None:
    """The compression of data that starts with head (six bytes suffice),
    or None: not compressed, or lzma-alone, which has no magic."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return None


def reader(raw: BinaryIO, kind: str | None) -> BinaryIO:
    """The decompressed stream of raw; raw itself for kind None. Closing
    the result closes raw too."""
    if kind is None:
        return raw
    if kind == "gzip":
        return _Owning(gzip.GzipFile(fileobj=raw, mode="rb"), raw)  # type: ignore[return-value]
    if kind == "bzip2":
        return _Owning(bz2.BZ2File(raw), raw)  # type: ignore[return-value]
    if kind == "xz":
        return _Owning(lzma.LZMAFile(raw, format=lzma.FORMAT_XZ), raw)  # type: ignore[return-value]
    if kind == "lzma":
        return _Owning(lzma.LZMAFile(raw, format=lzma.FORMAT_ALONE), raw)  # type: ignore[return-value]
    if kind == "zstd":
        # read_across_frames: multi-threaded zstd writes several frames.
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=True)  # type: ignore[return-value]
    raise ValueError(f"unknown compression {kind!r}")


class _Owning(io.RawIOBase):
    """A decompressing file that also closes the file it reads."""

    def __init__(self, inner, raw: BinaryIO):
        self.inner, self.raw = inner, raw

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self.inner.read(n)

    def readinto(self, b) -> int:
        data = self.inner.read(len(b))
        b[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self.inner.close()
            finally:
                self.raw.close()
                super().close()


def chunks(data: bytes, kind: str | None, what: str, error: Callable[[str], Exception]) -> Iterator[bytes]:
    """data decompressed, in pieces; error(message) when it is damaged."""
    if kind is None:
        return (data[i:i + CHUNK] for i in range(0, len(data), CHUNK))
    if kind == "xz" and shutil.which("xz"):
        return _xz_subprocess(data, what, error)
    factories = {"gzip": lambda: zlib.decompressobj(47), "bzip2": bz2.BZ2Decompressor,
                 "xz": lzma.LZMADecompressor, "lzma": lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE)}
    if kind == "zstd":
        return _zstd(data, what, error)
    if kind not in factories:
        raise ValueError(f"unknown compression {kind!r}")
    return _members(factories[kind], data, what, kind, error)


def whole(data: bytes, kind: str | None, what: str, error: Callable[[str], Exception], size: int = 0) -> bytes:
    """All of data decompressed. gzip gets an output buffer of `size` (the
    uncompressed size a Release lists) and so decodes in one call; xz runs
    as a process; both without the GIL."""
    if kind is None:
        return data
    if kind == "gzip" and size:
        try:
            out = _inflate.decompress(data, 47, size + 1)
        except (zlib.error, _inflate.error) as exc:
            raise error(f"{what} is not valid gzip data: {exc}") from None
        if len(out) == size:
            return out
        # Several concatenated members (pigz): the member-by-member reader.
    if kind == "xz" and shutil.which("xz"):
        try:
            from rootfs.host.run import run as host_run

            proc = host_run(["xz", "-T2", "-dc"], input=data, what=f"xz decompressing {what}")
        except OSError as exc:
            raise error(f"{what}: cannot run xz: {exc.strerror}") from None
        if proc.returncode != 0:
            raise error(f"{what} is not valid xz data: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout
    return b"".join(chunks(data, kind, what, error))


def _members(factory, data: bytes, what: str, kind: str, error) -> Iterator[bytes]:
    """Fresh decompressors member after member: pigz, pbzip2 and xz
    --threads may write several concatenated streams."""
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
    except ERRORS as exc:
        raise error(f"{what} is not valid {kind} data: {exc}") from None


def _zstd(data: bytes, what: str, error) -> Iterator[bytes]:
    stream = reader(io.BytesIO(data), "zstd")
    try:
        while chunk := stream.read(CHUNK):
            yield chunk
    except ERRORS as exc:
        raise error(f"{what} is not valid zstd data: {exc}") from None


def _xz_subprocess(data: bytes, what: str, error) -> Iterator[bytes]:
    from rootfs.host.run import popen, watch

    proc = popen(["xz", "-T2", "-dc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def feed() -> None:
        try:
            proc.stdin.write(data)  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()  # type: ignore[union-attr]

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    with watch(proc, f"xz decompressing {what}"):
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
        raise error(f"{what} is not valid xz data: {err.decode(errors='replace').strip()}")
