"""ext2/ext4 images written by debugfs from the walk, without a scratch tree.

mke2fs in Debian 12 (1.47.0) cannot read a tarball (1.47.1 can), and its
`-d DIR` copies atime/ctime and needs the owners on disk -- i.e. root and a
second copy of the tree. Instead the walk writes a debugfs script as it goes:
one mkdir / write / symlink / ln / mknod per entry, then its owner, mode,
times and xattrs, all from the entry (so from the attrs record when there is
one). After the walk mke2fs makes an empty filesystem -- sized to the
content plus slack, as supermin sizes its appliances, with a UUID and hash
seed derived from SOURCE_DATE_EPOCH and E2FSPROGS_FAKE_TIME set -- and
debugfs runs the script. No root is needed, memory stays flat (the script
is on disk), and the same entries give the same image, byte for byte.
"""

from __future__ import annotations

import math
import os
import shutil
import stat
import uuid
from pathlib import Path

from rootfs.host.run import run as host_run
from rootfs.model.errors import OutputError, PrivilegeError
from rootfs.pack.tree import BLK, CHR, DIR, FIFO, FILE, HARDLINK, SYMLINK, Entry

_NS = uuid.UUID("6f0f1520-7b1d-4f7e-9a55-726f6f746673")  # rootfs' own namespace
_TYPE_BITS = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK,
              CHR: stat.S_IFCHR, BLK: stat.S_IFBLK, FIFO: stat.S_IFIFO}
BLOCK = 4096


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise PrivilegeError(f"{tool} is needed for this format and is not installed")
    return path


def _q(raw: bytes) -> bytes:
    """A debugfs argument: double quotes, with embedded quotes doubled."""
    if b"\n" in raw or b"\0" in raw:
        raise OutputError(f"the name {raw!r} holds a newline, which debugfs cannot be given")
    return b'"' + raw.replace(b'"', b'""') + b'"'


def _p(name: bytes) -> bytes:
    return _q(b"/" + name)


class ExtScript:
    """Collects the debugfs commands for one image while the walk runs."""

    def __init__(self, work: Path):
        self.work = work
        self.script_path = work / "debugfs.cmds"
        self.f = open(self.script_path, "wb")
        self.blocks = 0
        self.entries = 0
        self.nlinks: dict[bytes, int] = {}  # first name -> number of names
        self.blobs = 0
        self.cwd = b""

    def _cd(self, name: bytes) -> bytes:
        """debugfs's write and mknod take a name in the current directory,
        not a path (and mkdir trips on "/top"): change to the parent first,
        return the base name."""
        parent, _, base = name.rpartition(b"/")
        if parent != self.cwd:
            self.f.write(b"cd %s\n" % _p(parent))
            self.cwd = parent
        return _q(base)

    def __call__(self, e: Entry) -> None:
        w = self.f.write
        p = _p(e.name) if e.name else b'"/"'
        self.entries += 1
        if e.kind == HARDLINK:
            w(b"ln %s %s\n" % (_p(e.linkname), self._cd(e.name)))
            self.nlinks[e.linkname] = self.nlinks.get(e.linkname, 1) + 1
            return
        if e.kind == DIR:
            self.blocks += 1
            if e.name:
                w(b"mkdir %s\n" % self._cd(e.name))
        elif e.kind == FILE:
            self.blocks += math.ceil(e.size / BLOCK) + 1
            src = e.path
            if e.data is not None:
                self.blobs += 1
                src = os.fsencode(self.work / f"content-{self.blobs}")
                with open(src, "wb") as f:
                    f.write(e.data)
            w(b"write %s %s\n" % (_q(src), self._cd(e.name)))
        elif e.kind == SYMLINK:
            self.blocks += 1
            w(b"symlink %s %s\n" % (self._cd(e.name), _q(e.linkname)))
        elif e.kind == FIFO:
            w(b"mknod %s p\n" % self._cd(e.name))
        else:
            w(b"mknod %s %s %d %d\n" % (self._cd(e.name), b"c" if e.kind == CHR else b"b",
                                        os.major(e.rdev), os.minor(e.rdev)))
        mode = _TYPE_BITS[e.kind] | e.mode
        w(b"sif %s mode 0%o\nsif %s uid %d\nsif %s gid %d\n" % (p, mode, p, e.uid, p, e.gid))
        w(b"sif %s atime %d\nsif %s mtime %d\nsif %s ctime %d\n" % (p, e.mtime, p, e.mtime, p, e.mtime))
        for key, value in e.xattrs:
            self.blobs += 1
            vf = self.work / f"xattr-{self.blobs}"
            vf.write_bytes(value)
            w(b"ea_set -f %s %s %s\n" % (_q(os.fsencode(vf)), p, _q(key.encode("utf-8", "surrogateescape"))))

    def finish(self, created: int) -> None:
        for first, n in sorted(self.nlinks.items()):
            self.f.write(b"sif %s links_count %d\n" % (_p(first), n))
        self.f.write(b'sif "/lost+found" ctime %d\nsif "/lost+found" atime %d\nsif "/lost+found" mtime %d\n'
                     % (created, created, created))
        self.f.close()

    def size(self, fmt: str) -> tuple[int, int, int]:
        """(KiB, inodes, journal MiB): the content plus slack."""
        inodes = self.entries + 64
        kib = int((self.blocks * 4 + inodes * 256 // 1024) * 1.15) + 8 * 1024
        journal = 0
        if fmt == "ext4":
            # mke2fs's own default grows to 1 GiB; an image that is read far
            # more than written needs a small one.
            journal = 4 if kib < 256 * 1024 else 16 if kib < 4 << 20 else 64
            kib += journal * 1024
        return (kib + 3) // 4 * 4, inodes, journal


def build(fmt: str, script: ExtScript, dest: Path, created: int) -> None:
    mke2fs, debugfs = _need("mke2fs"), _need("debugfs")
    script.finish(created)
    ident = str(uuid.uuid5(_NS, f"{fmt}:{created}"))
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(created), "MKE2FS_CONFIG": "/dev/null", "LC_ALL": "C"}
    kib, inodes, journal = script.size(fmt)
    argv = ["-t", fmt, "-b", str(BLOCK), "-I", "256", "-N", str(inodes), "-m", "0", "-U", ident,
            "-E", f"hash_seed={ident},root_owner=0:0,lazy_itable_init=0,nodiscard"]
    if fmt == "ext4":
        argv += ["-O", "ext_attr,dir_index,filetype,extent,flex_bg,sparse_super,large_file,huge_file,"
                 "dir_nlink,extra_isize,64bit,metadata_csum,has_journal", "-J", f"size={journal}"]
    else:
        argv += ["-O", "ext_attr,dir_index,filetype,sparse_super,large_file"]
    for attempt in range(4):
        r = host_run([mke2fs, "-q", "-F", *argv, str(dest), f"{kib}k"], env=env, what="mke2fs")
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip()
            raise OutputError(f"mke2fs failed: {err.splitlines()[-1] if err else r.returncode}")
        r = host_run([debugfs, "-w", "-f", str(script.script_path), str(dest)], env=env, what="debugfs")
        errors = [ln for ln in r.stderr.decode(errors="replace").splitlines()
                  if ln.strip() and not ln.startswith("debugfs ")]
        if r.returncode == 0 and not errors:
            return
        # The estimate fell short (many tiny files, big directories): retry
        # larger, deterministically.
        if attempt < 3 and any("space" in e.lower() or "Could not allocate" in e for e in errors):
            kib *= 2
            continue
        raise OutputError(f"debugfs could not write the {fmt} image: {errors[0] if errors else r.returncode}")
