"""Stage 1 of an rpm install: a package's files into the root, exactly.

Everything is taken from the header: directories, symlinks, hard links,
modes with setuid/setgid/sticky bits, owners by name (mapped through the
root's own passwd and group), file capabilities, mtimes. %ghost entries
are not created. Every write goes through rootfs.host.safepath, so a path that
crosses the root's own symlinks (`/bin -> usr/bin`) lands inside the root.

As root the tree on disk holds the truth. Otherwise owners, exact modes
and xattrs go into the AttrRecord and the tree on disk stays readable and
writable by us (u+rw files, u+rwx directories) so the packer can read it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rootfs.backends.rpm import caps as capsmod
from rootfs.backends.rpm.header import RpmFile
from rootfs.backends.rpm.payload import (
    FileEntry,
    file_entries,
    hardlink_sets,
    payload_contents,
)
from rootfs.host.safepath import (
    PathEscape,
    parent_in_root,
    relative_to_root,
    resolve_in_root,
)
from rootfs.model.attrs import Attr, AttrRecord
from rootfs.model.errors import InstallError


class Accounts:
    """User and group names of the root, re-read when its files change."""

    def __init__(self, root: Path):
        self.root = root
        self._stamp: tuple = ()
        self.users: dict[str, int] = {}
        self.groups: dict[str, int] = {}
        self.unknown: set[str] = set()

    @staticmethod
    def _read(path: str) -> dict[str, int]:
        out: dict[str, int] = {}
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    parts = line.rstrip("\n").split(":")
                    if len(parts) >= 3 and parts[2].isdigit():
                        out.setdefault(parts[0], int(parts[2]))
        except OSError:
            pass
        return out

    def _refresh(self) -> None:
        paths = [resolve_in_root(self.root, p) for p in ("etc/passwd", "etc/group")]
        stamp = tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) if os.path.exists(p) else None for p in paths)
        if stamp != self._stamp:
            self._stamp = stamp
            self.users = self._read(paths[0])
            self.groups = self._read(paths[1])

    def ids(self, user: str, group: str) -> tuple[int, int]:
        self._refresh()
        uid = self.users.get(user, 0 if user == "root" else None)
        gid = self.groups.get(group, 0 if group == "root" else None)
        if uid is None:
            self.unknown.add(f"user {user}")
            uid = 0
        if gid is None:
            self.unknown.add(f"group {group}")
            gid = 0
        return uid, gid


@dataclass
class Unpacker:
    root: Path
    as_root: bool
    attrs: AttrRecord | None
    log: Callable[[str], None] = lambda msg: None
    accounts: Accounts = field(init=False)
    # Directories get their final mode and mtime after every package is in:
    # a 0555 /proc must not stop a later package from writing below it.
    dirs: dict[str, tuple[FileEntry, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.accounts = Accounts(self.root)

    # -- paths -----------------------------------------------------------------

    def _parent(self, path: str) -> tuple[str, str]:
        try:
            parent, name = parent_in_root(self.root, path)
        except PathEscape as exc:
            raise InstallError(f"cannot place {path}: {exc}") from None
        if not name:
            raise InstallError(f"refusing to replace the root itself with {path!r}")
        self._mkdirs(parent)
        return parent, name

    def _mkdirs(self, host_dir: str) -> None:
        """Create missing parents as rpm does: 0755 root:root."""
        missing = []
        d = host_dir
        root = str(self.root).rstrip("/")
        while len(d) > len(root) and not os.path.lexists(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            os.mkdir(d, 0o755)
            if self.attrs is not None:
                rel = relative_to_root(self.root, d)
                if rel not in self.attrs:
                    self.attrs.set(rel, Attr(stat.S_IFDIR | 0o755))

    @staticmethod
    def _clear(host: str, want_dir: bool = False) -> None:
        """Remove what is at host so a new entry can take its place; a
        directory stays when a directory is wanted."""
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if want_dir:
                return
            try:
                os.rmdir(host)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise InstallError(f"cannot replace the non-empty directory {host} with a file") from None
                raise
        else:
            os.unlink(host)

    # -- one package -------------------------------------------------------------

    def unpack(self, rpm: RpmFile) -> list[str]:
        """Put rpm's files into the root; returns the root-relative paths."""
        entries = file_entries(rpm)
        links = hardlink_sets(entries)
        placed: dict[int, str] = {}
        try:
            for e in sorted(entries, key=lambda e: e.path):
                if e.ghost:
                    continue
                if stat.S_ISDIR(e.mode):
                    placed[e.index] = self._directory(e)
                elif stat.S_ISLNK(e.mode):
                    placed[e.index] = self._symlink(e)
                elif stat.S_ISCHR(e.mode) or stat.S_ISBLK(e.mode) or stat.S_ISFIFO(e.mode):
                    placed[e.index] = self._special(e)
            written: set[int] = set()
            for e, reader, size in payload_contents(rpm, entries):
                host = self._regular(e)
                fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                try:
                    reader.copy_to(fd, size)
                finally:
                    os.close(fd)
                placed[e.index] = host
                written.add(e.index)
            for e in entries:
                if e.ghost or not stat.S_ISREG(e.mode) or e.index in written:
                    continue
                group = links.get(e.index)
                source = next((placed[i] for i in group or () if i in written), None)
                if source is None and group:
                    # An empty hard-linked file: the payload carried no bytes.
                    first = group[0]
                    if first not in placed:
                        host = self._regular(entries[first])
                        os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
                        placed[first] = host
                        written.add(first)
                    source = placed[first]
                    if first == e.index:
                        continue
                if source is not None:
                    host = self._regular(e)
                    os.link(source, host, follow_symlinks=False)
                    placed[e.index] = host
                elif e.size == 0:
                    host = self._regular(e)
                    os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
                    placed[e.index] = host
                else:
                    raise InstallError(f"{rpm.path.name}: the payload lacks the contents of {e.path}")
            for e in entries:
                if e.index in placed and not stat.S_ISDIR(e.mode):
                    self._apply(e, placed[e.index])
        except OSError as exc:
            raise InstallError(f"installing {rpm.nevra}: {exc.strerror or exc}: {exc.filename or ''}") from None
        return sorted(relative_to_root(self.root, h) for h in placed.values())

    def _directory(self, e: FileEntry) -> str:
        host = resolve_in_root(self.root, e.path)  # a symlink to a directory stays one (/bin -> usr/bin)
        if os.path.isdir(host):
            pass
        else:
            parent, name = self._parent(e.path)
            host = os.path.join(parent, name)
            self._clear(host, want_dir=True)
            os.mkdir(host, 0o755)
        self.dirs[host] = (e, *self.accounts.ids(e.user, e.group))
        return host

    def _symlink(self, e: FileEntry) -> str:
        parent, name = self._parent(e.path)
        host = os.path.join(parent, name)
        if os.path.isdir(host) and not os.path.islink(host):
            # rpm keeps a real directory where a package ships a symlink to
            # one (a root that was already merged); so do we.
            self.log(f"kept the directory {e.path} where the package has a symlink")
            return host
        self._clear(host)
        os.symlink(e.linkto, host)
        return host

    def _special(self, e: FileEntry) -> str:
        parent, name = self._parent(e.path)
        host = os.path.join(parent, name)
        self._clear(host)
        if self.as_root:
            os.mknod(host, e.mode, _rdev(e.rdev))
        elif stat.S_ISFIFO(e.mode):
            os.mkfifo(host, 0o600)
        else:
            open(host, "wb").close()  # a placeholder; the record says what it is
        return host

    def _regular(self, e: FileEntry) -> str:
        parent, name = self._parent(e.path)
        host = os.path.join(parent, name)
        self._clear(host)
        return host

    # -- attributes ----------------------------------------------------------------

    def _xattrs(self, e: FileEntry) -> tuple[tuple[str, bytes], ...]:
        if e.caps and stat.S_ISREG(e.mode):
            return ((capsmod.XATTR, capsmod.xattr_value(e.caps)),)
        return ()

    def _apply(self, e: FileEntry, host: str) -> None:
        uid, gid = self.accounts.ids(e.user, e.group)
        perm = stat.S_IMODE(e.mode)
        xattrs = self._xattrs(e)
        is_link = stat.S_ISLNK(e.mode)
        if self.as_root:
            os.lchown(host, uid, gid)  # before chmod: chown clears setuid bits
            if not is_link:
                os.chmod(host, perm)
            for k, v in xattrs:
                os.setxattr(host, k, v, follow_symlinks=False)
        elif not is_link:
            os.chmod(host, perm | 0o600)
        if self.attrs is not None:
            rdev = _rdev(e.rdev) if stat.S_ISCHR(e.mode) or stat.S_ISBLK(e.mode) else 0
            self.attrs.set(relative_to_root(self.root, host), Attr(e.mode, uid, gid, rdev, xattrs))
        os.utime(host, (e.mtime, e.mtime), follow_symlinks=False)

    def finish(self) -> None:
        """Final modes, owners and mtimes of directories, deepest first."""
        for host in sorted(self.dirs, key=lambda h: -h.count("/")):
            e, uid, gid = self.dirs[host]
            if os.path.islink(host):
                continue
            perm = stat.S_IMODE(e.mode)
            if self.as_root:
                os.lchown(host, uid, gid)
                os.chmod(host, perm)
            else:
                os.chmod(host, perm | 0o700)
            if self.attrs is not None:
                self.attrs.set(relative_to_root(self.root, host), Attr(stat.S_IFDIR | perm, uid, gid))
            os.utime(host, (e.mtime, e.mtime), follow_symlinks=False)


def _rdev(value: int) -> int:
    """FILERDEVS holds the old 16-bit device number: major << 8 | minor."""
    return os.makedev((value >> 8) & 0xFF, value & 0xFF)
