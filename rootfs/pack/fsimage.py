"""Filesystem images (ext2, ext4, squashfs) and the `dir` output.

squashfs: tar2sqfs (squashfs-tools-ng) reads the tar stream on its stdin,
so owners, devices and xattrs come from the stream exactly as in the tar;
its output depends only on the input and the options.

ext2/ext4: mke2fs in Debian 12 (1.47.0) takes `-d DIR` but not yet a
tarball (that came in 1.47.1), and it copies atime/ctime from the source
files. So the walk is materialised into a scratch directory (as in the
`dir` output), mke2fs copies it with E2FSPROGS_FAKE_TIME, a UUID and hash
seed derived from SOURCE_DATE_EPOCH, and one debugfs pass then sets every
inode's times, and -- when we are not root and the scratch tree could not
hold them -- owners, modes, device nodes and security xattrs, from the
stream's entries. The size is the content plus slack, as supermin sizes its
appliances, with enough inodes for every entry.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from rootfs.errors import OutputError, PrivilegeError
from rootfs.pack.compress import Sink
from rootfs.pack.tree import BLK, CHR, DIR, FIFO, FILE, HARDLINK, SYMLINK, Entry

_NS = uuid.UUID("6f0f1520-7b1d-4f7e-9a55-726f6f746673")  # rootfs' own namespace
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
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
        if rc != 0:
            msg = self.err.decode(errors="replace").strip().splitlines()
            raise OutputError(f"{self.what} failed: {msg[-1] if msg else f'exit status {rc}'}")

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def squashfs_sink(dest: Path, sde: int | None) -> ProcSink:
    argv = [_need("tar2sqfs"), "--quiet", "--force", "--no-skip", "--compressor", "gzip",
            "--num-jobs", "2", "--defaults", f"mtime={sde or 0}", str(dest)]
    return ProcSink(argv, "tar2sqfs")


@dataclass(frozen=True)
class Meta:
    """What the ext fix-up needs of an entry once the stream has passed."""

    name: bytes
    kind: bytes
    mode: int
    uid: int
    gid: int
    mtime: int
    rdev: int
    xattrs: tuple[tuple[str, bytes], ...]
    size: int

    @classmethod
    def of(cls, e: Entry) -> "Meta":
        return cls(e.name, e.kind, e.mode, e.uid, e.gid, e.mtime, e.rdev, e.xattrs, e.size)


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

    def __call__(self, e: Entry) -> None:
        path = self.dest + b"/" + e.name if e.name else self.dest
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
            if not self.root:
                self.missing.append(e)
                return
            os.mknod(path, _TYPE_BITS[e.kind] | 0o600, e.rdev)
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


def _image_size(entries: list[Meta], fmt: str) -> tuple[int, int, int]:
    """(size in KiB, inode count, journal MiB) for the content plus slack."""
    blocks = 0
    for m in entries:
        if m.kind == FILE:
            blocks += math.ceil(m.size / 4096)
        elif m.kind == DIR:
            blocks += 1
        elif m.kind == SYMLINK:
            blocks += 1
    inodes = len(entries) + 64
    data_kib = blocks * 4
    inode_kib = inodes * 256 // 1024
    kib = int((data_kib + inode_kib) * 1.15) + 8 * 1024
    journal_mib = 0
    if fmt == "ext4":
        # mke2fs's own default grows to 1 GiB; an image that is read far
        # more than written needs a small one.
        journal_mib = 4 if kib < 256 * 1024 else 16 if kib < 4 << 20 else 64
        kib += journal_mib * 1024
    return (kib + 3) // 4 * 4, inodes, journal_mib


def _quote(name: bytes) -> bytes:
    if b"\n" in name:
        raise OutputError(f"file name {name!r} contains a newline, which an ext image cannot be made with")
    return b'"' + b"/" + name.replace(b'"', b'""') + b'"'


def ext_image(fmt: str, tree_dir: Path, entries: list[Meta], missing: list[Entry], dest: Path, created: int) -> None:
    mke2fs, debugfs = _need("mke2fs"), _need("debugfs")
    ident = str(uuid.uuid5(_NS, f"{fmt}:{created}"))
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(created), MKE2FS_CONFIG="/dev/null", LC_ALL="C")
    kib, inodes, journal_mib = _image_size(entries, fmt)
    features = ["-t", fmt, "-b", "4096", "-I", "256", "-N", str(inodes), "-m", "0",
                "-U", ident, "-E", f"hash_seed={ident},root_owner=0:0,lazy_itable_init=0,nodiscard"]
    if fmt == "ext4":
        features += ["-O", "ext_attr,dir_index,filetype,extent,flex_bg,sparse_super,large_file,huge_file,"
                     "dir_nlink,extra_isize,64bit,metadata_csum,has_journal", "-J", f"size={journal_mib}"]
    else:
        features += ["-O", "ext_attr,dir_index,filetype,sparse_super,large_file"]
    for attempt in range(4):
        if dest.exists():
            dest.unlink()
        r = subprocess.run([mke2fs, "-q", "-F", *features, "-d", str(tree_dir), str(dest), f"{kib}k"],
                           env=env, capture_output=True)
        if r.returncode == 0:
            break
        err = r.stderr.decode(errors="replace").strip()
        if "space" not in err.lower() or attempt == 3:
            raise OutputError(f"mke2fs failed: {err.splitlines()[-1] if err else r.returncode}")
        kib *= 2
    script = bytearray()
    for e in missing:
        q = _quote(e.name)
        if e.kind in (CHR, BLK):
            script += b"mknod %s %s %d %d\n" % (q, b"c" if e.kind == CHR else b"b", os.major(e.rdev), os.minor(e.rdev))
    xattr_files = []
    with tempfile.TemporaryDirectory(prefix="rootfs-ext.") as tmp:
        for e in missing:
            q = _quote(e.name)
            if e.kind == HARDLINK:
                continue
            script += b"sif %s uid %d\nsif %s gid %d\n" % (q, e.uid, q, e.gid)
            script += b"sif %s mode 0%o\n" % (q, _TYPE_BITS[e.kind] | e.mode)
            for name, value in e.xattrs:
                vf = os.path.join(tmp, str(len(xattr_files)))
                with open(vf, "wb") as f:
                    f.write(value)
                xattr_files.append(vf)
                script += b"ea_set -f %s %s %s\n" % (vf.encode(), q, name.encode("utf-8", "surrogateescape"))
        for m in entries:
            if m.kind == HARDLINK:
                continue
            q = _quote(m.name)
            script += b"sif %s ctime %d\nsif %s atime %d\nsif %s mtime %d\n" % (q, m.mtime, q, m.mtime, q, m.mtime)
        script += b'sif "/lost+found" ctime %d\n' % created
        cmds = os.path.join(tmp, "cmds")
        with open(cmds, "wb") as f:
            f.write(script)
        r = subprocess.run([debugfs, "-w", "-f", cmds, str(dest)], env=env, capture_output=True)
    errors = [ln for ln in r.stderr.decode(errors="replace").splitlines()
              if ln.strip() and not ln.startswith("debugfs ")]
    if r.returncode != 0 or errors:
        raise OutputError(f"debugfs could not finish the {fmt} image: {errors[0] if errors else r.returncode}")


def record_of(entries: list[Entry]) -> "AttrRecord":
    """An attrs record of what a copy made without root could not hold."""
    from rootfs.attrs import Attr, AttrRecord

    rec = AttrRecord()
    for e in entries:
        rec.set(os.fsdecode(e.name) if e.name else ".",
                Attr(_TYPE_BITS[e.kind] | e.mode, e.uid, e.gid, e.rdev, e.xattrs))
    return rec
