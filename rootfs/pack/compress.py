"""Sinks for the tar stream: files, hashes, compressors, a tee, a thread.

The walk produces the uncompressed stream once; every artifact that wants
it (the .tar, the .tar.zst, the OCI layer, a digest) is a sink, and the tee
hands each chunk to all of them. Every compressor is deterministic, and its
bytes do not depend on the number of cores it is given: no name or time in
the gzip header and fixed gzip block boundaries; zstd in its multithreaded
mode, whose streaming output is the same for any worker count from one up
(it cuts jobs by size, never by worker); xz in one thread. So each uses every
core the process may run on. Sinks that burn CPU run in their own thread
behind a short queue, so the walk, the compressors and the hashes overlap
while memory stays bounded by a few chunks per worker.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import queue
import struct
import threading
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import zstandard

from rootfs.model.errors import OutputError

COMPRESSIONS = ("gzip", "zstd", "xz")
GZIP_LEVEL = 6  # what Go's compress/gzip (docker, buildah) uses by default
ZSTD_LEVEL = 3  # zstd's default, as `tar | zstd` and podman's zstd layers
XZ_PRESET = 6
MAX_WORKERS = 8  # compression threads per sink; each holds a few MiB in flight


def cpu_workers() -> int:
    """The compression threads a sink starts: the cores this process may
    run on (its affinity mask, as taskset or a cgroup cpuset sets it)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_WORKERS))


class Sink:
    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class HashSink(Sink):
    """Counts and hashes what passes through, then hands it on (or not)."""

    def __init__(self, inner: Sink | None = None):
        self.inner = inner
        self._h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._h.update(data)
        self.size += len(data)
        if self.inner is not None:
            self.inner.write(data)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


class FileSink(Sink):
    """Writes to a path, or to an already open descriptor (standard output)."""

    def __init__(self, path: os.PathLike | str | None = None, fd: int | None = None):
        self.path = path
        try:
            self.fd = fd if fd is not None else os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror}") from None
        self.owned = fd is None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except BrokenPipeError:
            raise
        except OSError as exc:
            where = self.path if self.path is not None else "standard output"
            if exc.errno == 28:
                raise OutputError(f"no space left on the device holding {where}") from None
            raise OutputError(f"cannot write {where}: {exc.strerror}") from None

    def close(self) -> None:
        if self.owned and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Tee(Sink):
    def __init__(self, sinks: list[Sink]):
        self.sinks = sinks

    def write(self, data: bytes) -> None:
        for s in self.sinks:
            s.write(data)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


class Threaded(Sink):
    """Runs inner in its own thread; errors surface on the next write/close."""

    _END = object()

    def __init__(self, inner: Sink, depth: int = 4):
        self.inner = inner
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is self._END:
                break
            if self.error is None:
                try:
                    self.inner.write(item)
                except BaseException as exc:  # handed to the producer
                    self.error = exc
        if self.error is None:
            try:
                self.inner.close()
            except BaseException as exc:
                self.error = exc

    def write(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.q.put(data)

    def close(self) -> None:
        self.q.put(self._END)
        self.t.join()
        if self.error is not None:
            raise self.error


class ZstdSink(Sink):
    def __init__(self, inner: Sink, level: int = ZSTD_LEVEL, threads: int | None = None):
        self.inner = inner
        # Never 0: the single-threaded mode frames the output differently,
        # so a one-core machine would write other bytes than a two-core one.
        self.c = zstandard.ZstdCompressor(level=level, threads=max(1, threads or cpu_workers())).compressobj()

    def write(self, data: bytes) -> None:
        out = self.c.compress(data)
        if out:
            self.inner.write(out)

    def close(self) -> None:
        self.inner.write(self.c.flush())
        self.inner.close()


class XzSink(Sink):
    def __init__(self, inner: Sink, preset: int = XZ_PRESET):
        self.inner = inner
        self.c = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=preset)

    def write(self, data: bytes) -> None:
        out = self.c.compress(data)
        if out:
            self.inner.write(out)

    def close(self) -> None:
        self.inner.write(self.c.flush())
        self.inner.close()


# gzip: pigz's scheme. The input is cut into fixed 1 MiB blocks; each block
# is deflated on its own (in parallel: zlib drops the GIL) with the previous
# 32 KiB as its dictionary and ends in a sync flush, so the raw deflate
# pieces concatenate into one valid stream, one gzip member. The cut points
# depend only on the offset in the stream, never on how it arrives in
# write() calls or on how many threads compress, so the bytes are the same
# on one core or eight. The header carries no name and mtime 0; the
# trailer's CRC-32 and length are computed over the input here. Deflate is
# the host's zlib, as in pigz: zlib-ng and ISA-L are faster but their output
# differs between x86 and ARM builds, and an image must not.
_GZ_BLOCK = 1 << 20
_GZ_DICT = 32 << 10
_GZ_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"


def _deflate(block: bytes, zdict: bytes, last: bool, level: int) -> bytes:
    if zdict:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(block) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class GzipSink(Sink):
    def __init__(self, inner: Sink, level: int = GZIP_LEVEL, workers: int | None = None):
        self.inner = inner
        self.level = level
        n = max(1, workers or cpu_workers())
        self.pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="gzip")
        self.pending: deque[Future] = deque()
        self.window = n * 2  # blocks in flight: every worker busy, memory bounded
        self.buf = bytearray()
        self.prev_tail = b""
        self.crc = 0
        self.length = 0
        inner.write(_GZ_HEADER)

    def _submit(self, block: bytes, last: bool) -> None:
        self.pending.append(self.pool.submit(_deflate, block, self.prev_tail, last, self.level))
        self.prev_tail = block[-_GZ_DICT:]
        while len(self.pending) > self.window:
            self.inner.write(self.pending.popleft().result())

    def write(self, data: bytes) -> None:
        self.crc = zlib.crc32(data, self.crc)
        self.length += len(data)
        self.buf += data
        # A full block waits for one more byte: the last block, however
        # long, is the one that ends the stream (Z_FINISH).
        while len(self.buf) > _GZ_BLOCK:
            with memoryview(self.buf) as view:
                block = bytes(view[:_GZ_BLOCK])
            del self.buf[:_GZ_BLOCK]
            self._submit(block, last=False)

    def close(self) -> None:
        try:
            self._submit(bytes(self.buf), last=True)
            while self.pending:
                self.inner.write(self.pending.popleft().result())
            self.inner.write(struct.pack("<II", self.crc & 0xFFFFFFFF, self.length & 0xFFFFFFFF))
        finally:
            self.pool.shutdown(wait=True)
        self.inner.close()


def compressor(kind: str, inner: Sink) -> Sink:
    if kind == "gzip":
        return GzipSink(inner)
    if kind == "zstd":
        return ZstdSink(inner)
    if kind == "xz":
        return XzSink(inner)
    raise ValueError(kind)
