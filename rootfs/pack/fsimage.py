"""squashfs images and the `dir` output (ext2/ext4 are in ext.py).

squashfs: tar2sqfs (squashfs-tools-ng) reads the tar stream on its stdin,
so owners, devices and xattrs come from the stream exactly as in the tar;
its output depends only on the input and the options (the superblock time
is the --defaults mtime, never the clock).

dir: the walk's entries materialised under OUT -- the cleaned, clamped tree
as the image holds it. Without root, owners, device nodes and privileged
xattrs cannot be made on disk; they go into OUT.attrs.json, the record the
next `rootfs pack OUT` reads them back from.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

from rootfs.host.run import popen, watch
from rootfs.model.attrs import Attr, AttrRecord
from rootfs.model.errors import OutputError, PrivilegeError
from rootfs.pack.compress import Sink
from rootfs.pack.tree import BLK, CHR, DIR, FIFO, FILE, HARDLINK, SYMLINK, Entry

_TYPE_BITS = {FILE: stat.S_IFREG, HARDLINK: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK,
              CHR: stat.S_IFCHR, BLK: stat.S_IFBLK, FIFO: stat.S_IFIFO}


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise PrivilegeError(f"{tool} is needed for this format and is not installed")
    return path


class ProcSink(Sink):
    """Feeds the stream to a process's standard input."""

    def __init__(self, argv: list[str], what: str):
        self.what = what
        self.p = popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Under the deadline from start to close: a tool that stops reading
        # would otherwise block the packer's write for ever.
        self._watch = watch(self.p, what)
        self._watch.__enter__()
        self.err = b""
        self.t = threading.Thread(target=self._drain, daemon=True)
        self.t.start()

    def _drain(self) -> None:
        self.err = self.p.stderr.read()[-2000:]

    def write(self, data: bytes) -> None:
        try:
            self.p.stdin.write(data)
        except BrokenPipeError:
            self.close()  # reports the tool's own complaint
            raise OutputError(f"{self.what} stopped reading its input") from None

    def close(self) -> None:
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        rc = self.p.wait()
        self.t.join()
        self._watch.__exit__(None, None, None)
        if rc != 0:
            msg = self.err.decode(errors="replace").strip().splitlines()
            raise OutputError(f"{self.what} failed: {msg[-1] if msg else f'exit status {rc}'}")

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        with contextlib.suppress(Exception):
            self._watch.__exit__(None, None, None)


def squashfs_sink(dest: Path, sde: int | None) -> ProcSink:
    # gzip, which every squashfs-capable kernel reads; level 6 as for the
    # layers (tar2sqfs's own default, 9, costs three times the CPU for ~2%).
    argv = [_need("tar2sqfs"), "--quiet", "--force", "--no-skip", "--compressor", "gzip", "--comp-extra", "level=6",
            "--num-jobs", "2", "--defaults", f"mtime={sde or 0}", str(dest)]
    return ProcSink(argv, "tar2sqfs")


class Extractor:
    """Materialises the walk's entries under dest (the `dir` output, and
    the scratch tree for mke2fs). As root the copy is exact; otherwise
    owners, device nodes and privileged xattrs cannot be applied and are
    left to the caller (an attrs record, or debugfs)."""

    def __init__(self, dest: Path):
        self.dest = os.fsencode(dest)
        self.root = os.geteuid() == 0
        self.dirs: list[tuple[bytes, Entry]] = []
        self.missing: list[Entry] = []  # what the tree on disk could not hold
        # Without root the copy needs a record, and a record must be whole: a
        # path it does not know is taken to be root's (tree.walk).
        self.every: list[Entry] = []

    def __call__(self, e: Entry) -> None:
        path = self.dest + b"/" + e.name if e.name else self.dest
        if not self.root:
            self.every.append(Entry(e.name, e.kind, e.mode, e.uid, e.gid, e.mtime, rdev=e.rdev, xattrs=e.xattrs))
        if e.kind == DIR:
            if e.name:
                os.mkdir(path, 0o700)
            self.dirs.append((path, e))
            self._own(path, e)
            return
        if e.kind == FILE:
            if e.data is not None:
                with open(path, "wb") as f:
                    f.write(e.data)
            else:
                self._copy(e.path, path, e.size)
        elif e.kind == HARDLINK:
            os.link(self.dest + b"/" + e.linkname, path)
            return
        elif e.kind == SYMLINK:
            os.symlink(e.linkname, path)
        elif e.kind == FIFO:
            os.mkfifo(path, 0o600)
        else:
            if self.root:
                os.mknod(path, _TYPE_BITS[e.kind] | 0o600, e.rdev)
            else:
                # An empty placeholder, as rootless extraction leaves: the
                # record says what it is.
                open(path, "wb").close()
                self.missing.append(e)
        self._own(path, e)
        if e.kind != SYMLINK:
            os.chmod(path, e.mode)
        os.utime(path, (e.mtime, e.mtime), follow_symlinks=False)

    def _copy(self, src: bytes, dst: bytes, size: int) -> None:
        with open(src, "rb") as fi, open(dst, "wb") as fo:
            left = size
            while left > 0:
                n = os.copy_file_range(fi.fileno(), fo.fileno(), min(left, 1 << 30))
                if n == 0:
                    break
                left -= n
            if left:
                fo.truncate(size)

    def _own(self, path: bytes, e: Entry) -> None:
        ok = True
        if self.root:
            os.chown(path, e.uid, e.gid, follow_symlinks=False)
        elif (e.uid, e.gid) != (os.geteuid(), os.getegid()):
            ok = False
        for name, value in e.xattrs:
            try:
                os.setxattr(path, name, value, follow_symlinks=False)
            except OSError:
                ok = False
        if not ok:
            self.missing.append(e)

    def finish(self) -> None:
        # Directory modes and times last: children were written into them.
        for path, e in reversed(self.dirs):
            os.chmod(path, e.mode)
            os.utime(path, (e.mtime, e.mtime))


def record_of(entries: list[Entry]) -> AttrRecord:
    """The attrs record of a copy made without root."""
    rec = AttrRecord()
    for e in entries:
        rec.set(os.fsdecode(e.name) if e.name else ".",
                Attr(_TYPE_BITS.get(e.kind, stat.S_IFREG) | e.mode, e.uid, e.gid, e.rdev, e.xattrs))
    return rec
