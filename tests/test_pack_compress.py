"""The compression sinks: each output decompresses, with the reference
tools, to exactly the stream it was given, and its bytes depend on nothing
but that stream -- not on how many threads compress it, not on how the
stream arrives in write() calls, not on how many cores the process may use.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import random
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import zstandard
from conftest import needs_tool
from pack_helpers import SDE, oci_layer

from rootfs.pack import compress

BLOCK = 1 << 20  # the gzip sink's block: the sizes below sit on its edges


def _stream(size: int, seed: int = 1) -> bytes:
    """Text-like data (what a root mostly is) with an incompressible stretch,
    so deflate emits both kinds of block and matches reach back across the
    gzip sink's block boundaries."""
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    out = bytearray()
    while len(out) < size:
        if rng.random() < 0.02:
            out += rng.randbytes(rng.randint(1000, 60000))
        else:
            out += b" ".join(rng.choices(words, k=40)) + b"\n"
    return bytes(out[:size])


def _run(sink_factory, data: bytes, piece: int) -> bytes:
    out = compress.HashSink(_Collect())
    s = sink_factory(out)
    view = memoryview(data)
    for i in range(0, len(data), piece):
        s.write(view[i:i + piece])
    s.close()
    return bytes(out.inner.data)


class _Collect(compress.Sink):
    def __init__(self):
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data


def _one_gzip_member(blob: bytes) -> bytes:
    """zlib's gzip reader stops at the end of the first member and checks its
    CRC-32 and length: everything must be in that one member."""
    d = zlib.decompressobj(wbits=31)
    out = d.decompress(blob) + d.flush()
    assert d.eof, "the gzip stream does not end"
    assert d.unused_data == b"", "more than one gzip member, or bytes after it"
    return out


@pytest.mark.parametrize("size", [0, 1, 32 << 10, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 5 * BLOCK + 12345])
def test_gzip_is_one_member_holding_exactly_the_stream(size):
    data = _stream(size)
    blob = _run(lambda inner: compress.GzipSink(inner, workers=3), data, 256 << 10)
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"  # no name, no time
    assert _one_gzip_member(blob) == data
    crc, length = int.from_bytes(blob[-8:-4], "little"), int.from_bytes(blob[-4:], "little")
    assert (crc, length) == (zlib.crc32(data), len(data))


@needs_tool("gzip", "pigz")
def test_gzip_tools_read_it(tmp_path):
    data = _stream(3 * BLOCK + 777)
    path = tmp_path / "s.gz"
    path.write_bytes(_run(lambda inner: compress.GzipSink(inner, workers=2), data, 65536))
    for tool in ("gzip", "pigz"):
        subprocess.run([tool, "-t", str(path)], check=True)
        assert subprocess.run([tool, "-dc", str(path)], check=True, capture_output=True).stdout == data


def test_gzip_bytes_do_not_depend_on_threads_or_write_sizes():
    data = _stream(6 * BLOCK + 4321, seed=7)
    outs = {(w, piece): _run(lambda inner: compress.GzipSink(inner, workers=w), data, piece)
            for w in (1, 2, 3, 8) for piece in (4093, BLOCK, 3 * BLOCK)}
    assert len({hashlib.sha256(b).hexdigest() for b in outs.values()}) == 1, {k: len(v) for k, v in outs.items()}
    # and the pieces really are joined: one member with matches across blocks
    assert _one_gzip_member(outs[(1, BLOCK)]) == data


def test_gzip_costs_about_what_one_deflate_stream_costs():
    # The fixed blocks and sync flushes may cost a little ratio, never much:
    # a packer that compressed each block without its predecessor's window
    # or flushed per write() would fail this.
    data = _stream(6 * BLOCK, seed=3)
    ours = len(_run(lambda inner: compress.GzipSink(inner, workers=2), data, 4096))
    whole = len(zlib.compress(data, 6))
    assert ours <= whole * 1.01, (ours, whole)


def test_gzip_blocks_see_the_previous_window():
    # The second block repeats the end of the first, which is random: it
    # compresses to almost nothing only through the primed dictionary.
    first = random.Random(4).randbytes(BLOCK)
    data = first + first[-30000:]
    blob = _run(lambda inner: compress.GzipSink(inner, workers=2), data, 65536)
    assert _one_gzip_member(blob) == data
    assert len(blob) < BLOCK + 2000, len(blob)


def test_zstd_bytes_do_not_depend_on_threads_or_write_sizes():
    # over 8 MiB: more than one zstd job at level 3, so the workers share it
    data = _stream(20 * BLOCK, seed=5)
    outs = {(t, piece): _run(lambda inner: compress.ZstdSink(inner, threads=t), data, piece)
            for t in (1, 2, 4) for piece in (65536, 3 * BLOCK)}
    assert len(set(outs.values())) == 1, {k: len(v) for k, v in outs.items()}
    assert zstandard.ZstdDecompressor().decompressobj().decompress(outs[(1, 65536)]) == data


def test_xz_bytes_do_not_depend_on_write_sizes():
    # xz runs in one thread (Python's lzma has no other mode), so only the
    # write sizes could move its bytes
    data = _stream(BLOCK + 99, seed=9)
    outs = {piece: _run(compress.XzSink, data, piece) for piece in (4093, BLOCK)}
    assert len(set(outs.values())) == 1
    assert lzma.decompress(outs[4093]) == data


def test_worker_count_follows_the_affinity_mask():
    code = "from rootfs.pack.compress import cpu_workers; print(cpu_workers())"
    one = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.strip()
    assert one == "1"
    every = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert every == str(min(len(os.sched_getaffinity(0)), compress.MAX_WORKERS))


@pytest.mark.skipif(shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2,
                    reason="needs taskset and two cores to compare one core with several")
def test_pack_writes_the_same_bytes_on_one_core_and_on_all(tmp_path):
    root = tmp_path / "root"
    (root / "usr/share/doc").mkdir(parents=True)
    (root / "usr/share/doc/text").write_bytes(_stream(12 * BLOCK, seed=11))
    (root / "usr/share/doc/small").write_bytes(b"hello\n")
    # (tar.xz is left out: one thread whatever the cores, and slow on 12 MiB)
    formats = {"gzip": ["tar", "tar.gz", "tar.zst", "oci"], "zstd": ["tar", "oci"]}
    code = ("import sys\nfrom rootfs.pack import PackOptions, pack\n"
            "arts = pack(sys.argv[1], sys.argv[3].split(','), sys.argv[2], "
            "PackOptions(source_date_epoch=int(sys.argv[4]), architecture='amd64', layer_compression=sys.argv[5]))\n"
            "print(' '.join(f'{a.format}={a.digest}' for a in arts))\n")
    runs = {}
    for layer in ("gzip", "zstd"):
        for cpus in ("0", None):
            out = tmp_path / f"{layer}-{cpus or 'all'}"
            argv = [sys.executable, "-c", code, str(root), str(out), ",".join(formats[layer]), str(SDE), layer]
            if cpus is not None:
                argv = ["taskset", "-c", cpus, *argv]
            r = subprocess.run(argv, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
            assert r.returncode == 0, r.stderr
            runs[(layer, cpus)] = r.stdout.split()
            blobs = out / "oci" / "blobs" / "sha256"
            runs[(layer, cpus)].append(sorted(p.name for p in blobs.iterdir()))
        assert runs[(layer, "0")] == runs[(layer, None)], layer
        _, _, tar = oci_layer(tmp_path / f"{layer}-all" / "oci")
        assert tar == (tmp_path / f"{layer}-all" / "rootfs.tar").read_bytes()
