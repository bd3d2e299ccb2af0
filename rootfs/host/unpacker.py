"""Stream an archive into a root, entry by entry, never leaving the root.

libarchive only decodes; every write is our own system call. Member names
are resolved with rootfs.host.safepath as if the root were `/` (absolute symlinks
point into the root, `..` stops at it), and then the directories on the way
are opened one component at a time with O_NOFOLLOW relative to the root's
file descriptor. So even a symlink that appears between the resolution and
the write (another package extracted in parallel, say) makes the write fail
instead of leaving the root: the kernel never follows a link we have not
checked.

Replacement follows dpkg, not tar: a file member replaces whatever non-
directory is there (a planted symlink is removed, never written through), a
directory member keeps an existing directory, and keeps a symlink that leads
to a directory (merged /usr: `bin -> usr/bin` survives packages shipping
/bin/...). A non-directory never replaces a non-empty directory.

Before anything is written, every member is held to the payload policy
(rootfs.host.policy): a set-id file others may write, a device node, a
FIFO or a socket refuses the archive unless the user waived that rule.

As root in mode "root" the tree gets the archive's owners, modes, device
nodes and xattrs. Otherwise nothing is chowned, device nodes become empty
placeholder files, and the intended attributes of every entry go into an
AttrRecord for the packer.

The same walk serves packages whose metadata is not in an archive but in
a header (rpm): `extract_entries` takes Entry values (type, mode, owner,
mtime, link target, device, xattrs, the bytes through a callback, hard
links to an earlier entry) and writes each one exactly as a member, with
rpm's own replacement rules where they differ from dpkg's (see there).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import libarchive
from libarchive import ffi

from rootfs.host.policy import DEFAULT as DEFAULT_POLICY
from rootfs.host.policy import Policy
from rootfs.host.safepath import PathEscape, resolve_in_root, shown
from rootfs.model.attrs import Attr, AttrRecord
from rootfs.model.errors import InstallError, OutputError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_BLOCK = 1 << 18


class HostileArchive(InstallError):
    """An archive member that could only be honoured by writing outside the
    root, or that would destroy what other members rely on."""


class _Refused(Exception):
    """Internal: one member refused; carries the reason."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of a package whose metadata comes from its header rather
    than from an archive member (rpm)."""

    path: str  # as the header names it ("/usr/bin/sh"); str with surrogateescape
    mode: int  # st_mode: file type and permission bits, set-id and sticky included
    uid: int = 0
    gid: int = 0
    mtime: int = 0  # seconds
    linkto: str = ""  # symlinks: the target
    rdev: int = 0  # os.makedev(major, minor) for device nodes
    xattrs: tuple[tuple[str, bytes], ...] = ()  # file capabilities (security.capability)
    # regular files: an earlier entry of the same call whose inode this one
    # shares (hard-link sets), or a callback that writes the bytes to an fd
    hardlink: str = ""
    fill: Callable[[int], None] | None = None


# libarchive-c does not wrap the xattr iterator; declare it on a private
# handle so that libarchive-c's own prototypes stay untouched.
_lib = ctypes.CDLL(ffi.libarchive_path)
_xattr_reset = _lib.archive_entry_xattr_reset
_xattr_reset.argtypes = [ctypes.c_void_p]
_xattr_reset.restype = ctypes.c_int
_xattr_next = _lib.archive_entry_xattr_next
_xattr_next.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p),
                        ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
_xattr_next.restype = ctypes.c_int
_mtime_nsec = _lib.archive_entry_mtime_nsec
_mtime_nsec.argtypes = [ctypes.c_void_p]
_mtime_nsec.restype = ctypes.c_long
_mtime_sec = _lib.archive_entry_mtime
_mtime_sec.argtypes = [ctypes.c_void_p]
_mtime_sec.restype = ctypes.c_int64
_rdev = _lib.archive_entry_rdev
_rdev.argtypes = [ctypes.c_void_p]
_rdev.restype = ctypes.c_uint64


def _entry_xattrs(entry_p) -> tuple[tuple[str, bytes], ...]:
    count = _xattr_reset(entry_p)
    if not count:
        return ()
    out = []
    name = ctypes.c_char_p()
    value = ctypes.c_void_p()
    size = ctypes.c_size_t()
    while _xattr_next(entry_p, ctypes.byref(name), ctypes.byref(value), ctypes.byref(size)) == 0:
        data = ctypes.string_at(value, size.value) if value.value else b""
        out.append((name.value.decode("utf-8", "surrogateescape"), data))
    return tuple(sorted(out))


def _umask() -> int:
    """This process's umask, read without changing it (os.umask would, for
    every thread at once); 0o777 when unknown, so that modes are always set."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777


def _decode(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "surrogateescape")


def member_components(name: str) -> list[str]:
    """The path components of a member name, relative to the root. Leading
    `/` and `./` are dropped (tar does the same); `..` is refused rather
    than clamped, because no honest package needs it."""
    comps = [c for c in name.split("/") if c not in ("", ".")]
    if ".." in comps:
        raise _Refused("its name contains '..'")
    if "\n" in name or "\0" in name:
        # dpkg's .list files hold one path per line
        raise _Refused("its name contains a newline or NUL")
    return comps


class _Pending:
    """Directory metadata applied after the archive, so that creating the
    children does not disturb the directory's mtime."""

    def __init__(self) -> None:
        self.dirs: list[tuple[str, int]] = []  # (root-relative real path, mtime ns)
        self.members: list[tuple[str, int]] = []  # every directory member, created here or not


class _Parents:
    """The open directories from the root down to the previous member's
    parent, reused while the members stay below them (tar lists a directory
    and then what it holds): a member in a sibling or a child directory
    opens only what differs. Only real directories are kept (each opened
    O_NOFOLLOW from the one above); a parent reached through a symlink is
    resolved whole and kept alone. Dropped whenever this archive may have
    changed the tree's shape (a symlink, a node, anything that replaced what
    was there). A directory another thread removes meanwhile can only turn
    this into writes into an orphaned directory, never into a write outside."""

    def __init__(self, ex: "Extractor", create: bool = True):
        self.ex = ex
        self.create = create
        self.stack: list[tuple[str, int]] = []  # (component, fd) from the root down
        self.key: tuple[str, ...] | None = None
        self.fd = -1
        self.real: list[str] = []
        self.resolved = -1  # an fd reached through a symlink, not in the stack
        self._gid: int | None = None  # the group of the directory get() returned last

    def gid(self) -> int:
        """The group of the directory get() returned last (a file created in
        it may take that group: setgid directories, BSD group semantics)."""
        if self._gid is None:
            self._gid = os.fstat(self.fd).st_gid
        return self._gid

    def get(self, comps: list[str]) -> tuple[int, list[str]]:
        key = tuple(comps)
        if key == self.key:
            return self.fd, self.real
        self._gid = None
        self._close_resolved()
        stack = self.stack
        n = 0
        while n < len(stack) and n < len(key) and stack[n][0] == key[n]:
            n += 1
        for _, fd in stack[n:]:
            os.close(fd)
        del stack[n:]
        self.key = None
        fd = stack[-1][1] if stack else self.ex.root_fd
        for i in range(n, len(key)):
            nfd = self.ex._open_plain(fd, comps, i, self.create)
            if nfd < 0:
                # a symlink on the way: resolved as a whole, as open_dir does
                self.resolved, self.real = self.ex.open_dir(comps, create=self.create)
                self.fd, self.key = self.resolved, key
                return self.fd, self.real
            stack.append((key[i], nfd))
            fd = nfd
        self.fd, self.real, self.key = fd, list(comps), key
        return fd, self.real

    def _close_resolved(self) -> None:
        if self.resolved >= 0:
            os.close(self.resolved)
            self.resolved = -1

    def drop(self) -> None:
        self._gid = None
        self._close_resolved()
        for _, fd in self.stack:
            os.close(fd)
        self.stack.clear()
        self.fd, self.key = -1, None


class Extractor:
    """Writes archive members into one root. Safe to share between threads
    extracting different archives into the same root."""

    def __init__(self, root: str | os.PathLike, *, mode: str = "root", attrs: AttrRecord | None = None,
                 warn: Callable[[str], None] | None = None, policy: Policy = DEFAULT_POLICY):
        self.root = os.path.realpath(os.fspath(root))
        self.policy = policy
        self.privileged = mode == "root" and os.geteuid() == 0
        self.attrs = attrs
        self._attrs_lock = threading.Lock()  # AttrRecord is shared by the extracting threads
        self.warn = warn or (lambda msg: None)
        self.root_fd = os.open(self.root, _DIR_FLAGS)
        self._euid, self._egid = os.geteuid(), os.getegid()
        self._umask = _umask()
        # extract_entries: real root-relative directory -> its final (mode,
        # uid, gid, mtime, xattrs), applied by finish_entries
        self._entry_dirs: dict[str, tuple[int, int, int, int, tuple]] = {}

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def __enter__(self) -> "Extractor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- walking the root -------------------------------------------------

    def _rel(self, host: str) -> list[str]:
        if host == self.root:
            return []
        if not host.startswith(self.root + "/"):
            raise _Refused("it resolves outside the root")  # cannot happen with resolve_in_root
        return host[len(self.root) + 1:].split("/")

    def _mkdir_at(self, fd: int, comps: list[str], i: int) -> None:
        """comps[i] made (0755) in fd, the directory of comps[:i], and
        recorded; one that appeared meanwhile is left as it is."""
        try:
            os.mkdir(comps[i], 0o755, dir_fd=fd)
        except FileExistsError:
            return
        self._record("/".join(comps[: i + 1]), Attr(stat.S_IFDIR | 0o755))

    def _open_plain(self, fd: int, comps: list[str], i: int, create: bool) -> int:
        """comps[i] opened in fd (the directory of comps[:i]) when it is a
        real directory, created (0755) when missing and create is true; -1
        when it is a symlink (the caller resolves the path instead)."""
        comp = comps[i]
        try:
            return os.open(comp, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
            self._mkdir_at(fd, comps, i)
            try:
                return os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    return -1  # something else appeared meanwhile: look again
                raise
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return -1
            raise

    def open_dir(self, comps: list[str], *, create: bool = True) -> tuple[int, list[str]]:
        """Open the directory `comps` (root-relative, symlinks under the root
        followed as if it were `/`) without the kernel following any link.
        Returns (fd, the real root-relative components). Missing directories
        are created with mode 0755 when create is true."""
        # Most paths hold no symlink: opening each component O_NOFOLLOW from
        # the one above proves that (a symlink fails with ELOOP) and costs
        # no readlink per component. Only then is the path resolved.
        fd = os.dup(self.root_fd)
        try:
            for i in range(len(comps)):
                nfd = self._open_plain(fd, comps, i, create)
                if nfd < 0:
                    break
                os.close(fd)
                fd = nfd
            else:
                return fd, list(comps)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        try:
            host = resolve_in_root(self.root, "/".join(comps))
        except PathEscape as exc:
            raise _Refused(str(exc)) from None
        real = self._rel(host)
        fd = os.dup(self.root_fd)
        try:
            for i, comp in enumerate(real):
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    self._mkdir_at(fd, real, i)
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        # A link appeared after resolution, or a file sits where
                        # a directory is needed: either way, do not go there.
                        raise _Refused(f"/{'/'.join(real[: i + 1])} is not a directory") from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd, real

    def _record(self, key: str, attr: Attr) -> None:
        if self.attrs is not None and not self.privileged:
            with self._attrs_lock:
                self.attrs.set(key or ".", attr)

    def _forget(self, key: str) -> None:
        if self.attrs is not None:
            with self._attrs_lock:
                self.attrs.remove(key)

    # -- replacing what is there ------------------------------------------

    def _clear(self, dfd: int, name: str, path: str) -> bool:
        """Make room for a non-directory member called name in dfd; True
        when something was removed."""
        try:
            st = os.lstat(name, dir_fd=dfd)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(name, dir_fd=dfd)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise _Refused(f"it would replace the non-empty directory {path}") from None
                raise
        else:
            os.unlink(name, dir_fd=dfd)
        self._forget(path)
        return True

    # -- single paths, for the installers' own files -----------------------

    @contextmanager
    def _at(self, path: str, create: bool = True):
        try:
            comps = member_components(path)
        except _Refused as exc:
            raise HostileArchive(f"cannot write {shown(path)}: {exc}") from None
        if not comps:
            raise HostileArchive(f"cannot write the root itself as {shown(path)}")
        try:
            dfd, parent = self.open_dir(comps[:-1], create=create)
        except _Refused as exc:
            raise HostileArchive(f"cannot write /{path}: {exc}") from None
        try:
            yield dfd, comps[-1], "/".join(parent + [comps[-1]])
        finally:
            os.close(dfd)

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Create or replace the regular file `path` (root-relative), owned
        by root; never through a link planted there."""
        with self._at(path) as (dfd, leaf, key):
            self._write_in(dfd, leaf, key, path, data, mode)

    def write_files(self, directory: str, files: Iterable[tuple[str, bytes, int]]) -> None:
        """write_file for several (name, data, mode) in one directory (root-
        relative), which is opened once."""
        try:
            comps = member_components(directory)
            dfd, real = self.open_dir(comps)
        except _Refused as exc:
            raise HostileArchive(f"cannot write into /{directory}: {exc}") from None
        try:
            for name, data, mode in files:
                path = f"{directory}/{name}"
                try:
                    ok = member_components(name) == [name]
                except _Refused:
                    ok = False
                if not ok:
                    raise HostileArchive(f"cannot write {shown(path)}: not a name in /{directory}")
                self._write_in(dfd, name, "/".join(real + [name]), path, data, mode)
        finally:
            os.close(dfd)

    def _write_in(self, dfd: int, leaf: str, key: str, path: str, data: bytes, mode: int) -> None:
        try:
            self._clear(dfd, leaf, key)
        except _Refused as exc:
            raise HostileArchive(f"cannot write /{path}: {exc}") from None
        fd = os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if self.privileged:
                os.fchown(fd, 0, 0)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        self._record(key, Attr(stat.S_IFREG | mode))

    def append_file(self, path: str, data: bytes) -> None:
        with self._at(path) as (dfd, leaf, key):
            fd = os.open(leaf, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

    def read_file(self, path: str) -> bytes | None:
        """The content of regular file `path`, or None when it is missing or
        not a regular file."""
        try:
            with self._at(path, create=False) as (dfd, leaf, key):
                fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                try:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        return None
                    with os.fdopen(os.dup(fd), "rb") as f:
                        return f.read()
                finally:
                    os.close(fd)
        except (FileNotFoundError, NotADirectoryError, HostileArchive):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise

    def make_dir(self, path: str, mode: int = 0o755) -> None:
        with self._at(path) as (dfd, leaf, key):
            try:
                os.mkdir(leaf, mode, dir_fd=dfd)
            except FileExistsError:
                return
            os.chmod(f"/proc/self/fd/{dfd}/{leaf}", mode)
            self._record(key, Attr(stat.S_IFDIR | mode))

    def make_symlink(self, path: str, target: str) -> None:
        with self._at(path) as (dfd, leaf, key):
            try:
                self._clear(dfd, leaf, key)
            except _Refused as exc:
                raise HostileArchive(f"cannot write /{path}: {exc}") from None
            os.symlink(target, leaf, dir_fd=dfd)
            self._record(key, Attr(stat.S_IFLNK | 0o777))

    def remove(self, path: str) -> bool:
        """Remove the non-directory `path`; False when it was not there."""
        try:
            with self._at(path, create=False) as (dfd, leaf, key):
                st = os.lstat(leaf, dir_fd=dfd)
                if stat.S_ISDIR(st.st_mode):
                    return False
                os.unlink(leaf, dir_fd=dfd)
                self._forget(key)
                return True
        except (FileNotFoundError, NotADirectoryError, HostileArchive):
            return False

    def remove_dir(self, path: str) -> None:
        """Remove the empty directory `path`, if it is one."""
        try:
            with self._at(path, create=False) as (dfd, leaf, key):
                if stat.S_ISDIR(os.lstat(leaf, dir_fd=dfd).st_mode):
                    os.rmdir(leaf, dir_fd=dfd)
                    self._forget(key)
        except (FileNotFoundError, NotADirectoryError, HostileArchive):
            pass

    def set_dir_mtime(self, key: str, mtime: int) -> None:
        """Put a directory's mtime (ns) back, if the directory is still there."""
        try:
            fd, _ = self.open_dir(key.split("/") if key else [], create=False)
        except (_Refused, FileNotFoundError, NotADirectoryError):
            return
        try:
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)

    def set_dir_mtimes(self, items: Iterable[tuple[str, int]]) -> None:
        """set_dir_mtime for many directories, in order; the directories on
        the way are opened once for neighbours, not again for each."""
        walker = _Parents(self, create=False)
        try:
            for key, mtime in items:
                try:
                    fd, _ = walker.get(key.split("/") if key else [])
                except (_Refused, FileNotFoundError, NotADirectoryError):
                    walker.drop()
                    continue
                os.utime(fd, ns=(mtime, mtime))
        finally:
            walker.drop()

    def set_owner_mode(self, key: str, st_mode: int, uid: int, gid: int) -> None:
        """Give the existing path `key` (real, root-relative) this owner and
        mode: how overlaps between parallel extractions are settled."""
        with self._at(key, create=False) as (dfd, leaf, real):
            st = os.lstat(leaf, dir_fd=dfd)
            if stat.S_IFMT(st.st_mode) != stat.S_IFMT(st_mode) or stat.S_ISLNK(st.st_mode):
                return
            if self.privileged:
                os.chown(leaf, uid, gid, dir_fd=dfd, follow_symlinks=False)
            os.chmod(f"/proc/self/fd/{dfd}/{leaf}", stat.S_IMODE(st_mode))
            old = self.attrs.get(real) if self.attrs is not None else None
            self._record(real, Attr(st_mode, uid, gid, old.rdev if old else 0, old.xattrs if old else ()))

    # -- the archive ------------------------------------------------------

    def extract(self, archive, *, md5sums: dict[str, str] | None = None,
                claims: dict[str, tuple[int, int, int]] | None = None, what: str = "",
                format_name: str = "all", dir_mtimes: list[tuple[str, int]] | None = None,
                skip: Callable[[str, bool], bool] | None = None, prefix: str = "",
                kinds: dict[str, int] | None = None) -> list[str]:
        """Extract `archive` (a path or a binary stream with readinto) and
        return its member paths as dpkg lists them ("/.", "/usr", ...).

        When md5sums is a dict, it receives the md5 of every regular file,
        keyed by member path without the leading slash (dpkg's md5sums form).
        When claims is a dict, it receives, for every member that landed as
        itself (a directory merged into an existing one included, one kept
        as a symlink to a directory excluded), its real root-relative path
        -> (st_mode, uid, gid): what a caller extracting several archives in
        parallel needs to settle overlaps deterministically afterwards.
        When dir_mtimes is a list, it receives (real root-relative path, mtime
        in ns) of every directory member, for the same reason.
        `skip(path, dir_or_symlink)` may leave a member out (dpkg's
        path-exclude filters): it is listed but not written. `prefix` puts
        every member below that root-relative directory. When kinds is a
        dict, it receives the file type (stat.S_IFMT) of every member by its
        listed path: what the archive says, whatever was on disk."""
        what = what or str(archive)
        paths: list[str] = []
        regular: set[str] = set()  # hard links may only point at these
        pending = _Pending()
        parents = _Parents(self)
        try:
            under = member_components(prefix) if prefix else []
        except _Refused as exc:
            raise HostileArchive(f"cannot extract {what} into /{prefix}: {exc}") from None
        try:
            with _reader(archive, format_name) as reader:
                for entry in reader:
                    name = _decode(ffi.entry_pathname(entry._entry_p))
                    try:
                        listed = self._member(entry, name, regular, pending, md5sums, claims, parents, skip, under,
                                              what)
                    except _Refused as exc:
                        raise HostileArchive(f"{what}: member {shown(name)} refused: {exc}") from None
                    if listed is not None:
                        paths.append(listed)
                        if kinds is not None:
                            kinds[listed] = stat.S_IFREG if ffi.entry_hardlink(entry._entry_p) is not None \
                                else stat.S_IFMT(entry.mode)
            if dir_mtimes is not None:
                dir_mtimes.extend(pending.members)
            parents.drop()
            self.set_dir_mtimes(reversed(pending.dirs))  # those replaced by a later member are gone
        except libarchive.ArchiveError as exc:
            raise InstallError(f"{what}: cannot read the archive: {exc.msg or exc}") from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutputError(f"no space left on the device holding {self.root}") from None
            raise InstallError(f"{what}: cannot extract into {self.root}: {exc}") from None
        finally:
            parents.drop()
        return paths

    def _member(self, entry, name: str, regular: set[str], pending: _Pending,
                md5sums: dict[str, str] | None, claims: dict | None, parents: "_Parents",
                skip: Callable[[str, bool], bool] | None = None, under: list[str] | None = None,
                what: str = "") -> str | None:
        comps = (under or []) + member_components(name)
        listed = "/" + "/".join(comps) if comps else "/."
        ep = entry._entry_p
        mode = entry.mode
        ftype = stat.S_IFMT(mode)
        if skip is not None and comps and skip(listed, ftype in (stat.S_IFDIR, stat.S_IFLNK)):
            return listed
        perm = stat.S_IMODE(mode)
        uid, gid = entry.uid, entry.gid
        mtime = _mtime_sec(ep) * 1_000_000_000 + _mtime_nsec(ep)
        xattrs = _entry_xattrs(ep)
        hardlink = ffi.entry_hardlink(ep)
        if hardlink is None:
            # A hard link shares the inode of a file checked before it.
            self.policy.check_member(listed, mode, what)

        if not comps:
            # "./": the root itself. Take its mode and owner, as tar does, so
            # that a root made by mkdtemp (0700) becomes a proper `/`.
            if ftype == stat.S_IFDIR:
                self._apply(self.root_fd, uid, gid, perm, xattrs)
                self._record(".", Attr(stat.S_IFDIR | perm, uid, gid, 0, xattrs))
                pending.dirs.append(("", mtime))
            return listed

        dfd, parent = parents.get(comps[:-1])
        changed = False  # something that was there was removed
        try:
            leaf = comps[-1]
            key = "/".join(parent + [leaf])
            if hardlink is not None:
                self._hardlink(dfd, leaf, key, _decode(hardlink), regular)
                if claims is not None:
                    claims[key] = (stat.S_IFREG | perm, uid, gid)
                return listed
            if ftype != stat.S_IFREG:
                regular.discard("/".join(comps))
            if ftype == stat.S_IFDIR:
                owner, changed = self._directory(dfd, leaf, key, uid, gid, perm, mtime, xattrs, pending)
                if not owner:
                    return listed  # merged through a symlink: not this path's owner
            elif ftype == stat.S_IFREG:
                # A file we create is already ours: no chown when ours is
                # what it should be and the directory cannot hand it another group.
                owned = not self.privileged or (uid == self._euid and gid == self._egid
                                                and parents.gid() == self._egid)
                if self._regular(entry, dfd, leaf, key, uid, gid, perm, mtime, xattrs, name, md5sums, owned):
                    parents.drop()
                regular.add("/".join(comps))
            elif ftype == stat.S_IFLNK:
                target = _decode(ffi.entry_symlink(ep))
                changed = self._clear(dfd, leaf, key)
                os.symlink(target, leaf, dir_fd=dfd)
                if self.privileged:
                    os.chown(leaf, uid, gid, dir_fd=dfd, follow_symlinks=False)
                os.utime(leaf, ns=(mtime, mtime), dir_fd=dfd, follow_symlinks=False)
                self._record(key, Attr(stat.S_IFLNK | 0o777, uid, gid, 0, xattrs))
            elif ftype in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
                self._special(dfd, leaf, key, ftype, uid, gid, perm, mtime, _rdev(ep), xattrs)
            else:
                self.warn(f"skipping {name}: sockets are not extracted")
                return None
        finally:
            # A new name where there was none changes no directory already
            # open; anything that replaced what was there may have.
            if changed or ftype not in (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
                parents.drop()
        if claims is not None:
            claims[key] = (ftype | perm, uid, gid)
        return listed

    def _apply(self, fd: int, uid: int, gid: int, perm: int, xattrs: tuple[tuple[str, bytes], ...],
               owned: bool = False) -> None:
        """Owner, then mode (chown clears setuid/setgid), then xattrs (chown
        also drops security.capability). fd is an open descriptor; owned:
        it already has the owner uid:gid."""
        if self.privileged and not owned:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, perm)
        if self.privileged:
            for k, v in xattrs:
                os.setxattr(fd, k, v)

    def _directory(self, dfd, leaf, key, uid, gid, perm, mtime, xattrs, pending: _Pending) -> tuple[bool, bool]:
        """(False when an existing symlink to a directory was kept, True when
        something that was there was removed)."""
        pending.members.append((key, mtime))
        replaced = False
        try:
            st = os.lstat(leaf, dir_fd=dfd)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            return True, False  # dpkg keeps an existing directory as it is
        if st is not None and stat.S_ISLNK(st.st_mode):
            # Keep a link that leads to a directory inside the root (bin ->
            # usr/bin); replace a dangling one or one that leads to a file.
            try:
                fd, _ = self.open_dir(key.split("/"), create=False)
            except (_Refused, FileNotFoundError):
                os.unlink(leaf, dir_fd=dfd)
                replaced = True
            else:
                os.close(fd)
                return False, False
        elif st is not None:
            os.unlink(leaf, dir_fd=dfd)
            self._forget(key)
            replaced = True
        try:
            os.mkdir(leaf, 0o700, dir_fd=dfd)
        except FileExistsError:
            return True, replaced  # created meanwhile by a parallel extraction: keep it
        fd = os.open(leaf, _DIR_FLAGS, dir_fd=dfd)
        try:
            self._apply(fd, uid, gid, perm, xattrs)
        finally:
            os.close(fd)
        self._record(key, Attr(stat.S_IFDIR | perm, uid, gid, 0, xattrs))
        pending.dirs.append((key, mtime))
        return True, replaced

    def _regular(self, entry, dfd, leaf, key, uid, gid, perm, mtime, xattrs, name, md5sums,
                 owned: bool = False) -> bool:
        """Write one file; True when something had to be removed first.
        owned: the file is created with the owner it should have."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        cleared = False
        # Created with its final mode when the umask leaves that as it is and
        # no chown follows (chown clears set-id bits, so those come last).
        final = owned and not perm & ~0o777 and not perm & self._umask
        for attempt in range(4):
            try:
                fd = os.open(leaf, flags, perm if final else 0o600, dir_fd=dfd)
                break
            except FileExistsError:
                # Another archive extracting in parallel may put the name
                # back between our removal and our creation.
                if attempt == 3:
                    raise
                self._clear(dfd, leaf, key)
                cleared = True
        try:
            digest = hashlib.md5() if md5sums is not None else None
            _copy_data(entry._archive_p, fd, entry.size or 0, digest)
            if not (owned and final):
                self._apply(fd, uid, gid, perm, xattrs, owned)
            elif self.privileged:
                for k, v in xattrs:
                    os.setxattr(fd, k, v)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)
        if digest is not None:
            md5sums["/".join(member_components(name))] = digest.hexdigest()
        self._record(key, Attr(stat.S_IFREG | perm, uid, gid, 0, xattrs))
        return cleared

    def _hardlink(self, dfd, leaf, key, target_name: str, regular: set[str]) -> None:
        tcomps = member_components(target_name)
        if "/".join(tcomps) not in regular:
            raise _Refused(f"it is a hard link to {target_name!r}, which is not a file earlier in the same archive")
        tdfd, tparent = self.open_dir(tcomps[:-1], create=False)
        try:
            self._clear(dfd, leaf, key)
            os.link(tcomps[-1], leaf, src_dir_fd=tdfd, dst_dir_fd=dfd, follow_symlinks=False)
        finally:
            os.close(tdfd)
        if self.attrs is not None and not self.privileged:
            attr = self.attrs.get("/".join(tparent + [tcomps[-1]]))
            if attr is not None:
                self._record(key, attr)

    def _special(self, dfd, leaf, key, ftype, uid, gid, perm, mtime, rdev, xattrs) -> None:
        self._clear(dfd, leaf, key)
        if ftype == stat.S_IFIFO:
            os.mkfifo(leaf, 0o600, dir_fd=dfd)
        elif self.privileged:
            os.mknod(leaf, ftype | 0o600, rdev, dir_fd=dfd)
        else:
            # A device node needs CAP_MKNOD; the packer writes the real node
            # from the record, the tree holds an empty stand-in.
            os.close(os.open(leaf, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd))
        if self.privileged:
            os.chown(leaf, uid, gid, dir_fd=dfd, follow_symlinks=False)
        # chmod has no "do not follow" on Linux; the name was just created
        # by us inside a directory opened without following links.
        os.chmod(f"/proc/self/fd/{dfd}/{leaf}", perm)
        if self.privileged:
            for k, v in xattrs:
                os.setxattr(f"/proc/self/fd/{dfd}/{leaf}", k, v, follow_symlinks=False)
        os.utime(leaf, ns=(mtime, mtime), dir_fd=dfd, follow_symlinks=False)
        self._record(key, Attr(ftype | perm, uid, gid, rdev if ftype != stat.S_IFIFO else 0, xattrs))

    # -- entries from a package header (rpm) -------------------------------

    def extract_entries(self, entries: Iterable[Entry], *, what: str) -> list[str]:
        """Write entries (in the order given; a hard link after the entry
        it names, a file's fill called before the next entry is taken) and
        return the real root-relative paths they landed at.

        rpm's rules, where they differ from an archive member's: an
        existing directory gets the entry's owner and mode (the last
        package to own it wins), applied with its mtime by finish_entries
        after the last package, so that a 0555 /proc does not stop later
        packages from writing below it; a symlink where a real directory
        already is keeps the directory (a root merged before the package
        came). Without root the tree on disk stays readable and writable
        by us (u+rw files, u+rwx directories) and the exact modes go into
        the record."""
        placed: list[str] = []
        regular: set[str] = set()  # hard links may only point at these
        parents = _Parents(self)
        name = ""
        try:
            for e in entries:
                name = e.path
                self.policy.check_member(name, e.mode, what)
                try:
                    key = self._entry(e, regular, parents)
                except _Refused as exc:
                    raise HostileArchive(f"{what}: {shown(name)} refused: {exc}") from None
                if key is not None:
                    placed.append(key)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutputError(f"no space left on the device holding {self.root}") from None
            raise InstallError(f"{what}: cannot write {shown(name)} into {self.root}: {exc.strerror or exc}") from None
        finally:
            parents.drop()
        return placed

    def _entry(self, e: Entry, regular: set[str], parents: _Parents) -> str | None:
        comps = member_components(e.path)
        ftype, perm = stat.S_IFMT(e.mode), stat.S_IMODE(e.mode)
        if not comps:
            if ftype != stat.S_IFDIR:
                raise _Refused("only a directory can be the root")
            self._entry_dirs[""] = (perm, e.uid, e.gid, e.mtime, e.xattrs)
            self._record(".", Attr(stat.S_IFDIR | perm, e.uid, e.gid, 0, e.xattrs))
            return "."
        dfd, parent = parents.get(comps[:-1])
        leaf = comps[-1]
        key = "/".join(parent + [leaf])
        if ftype == stat.S_IFREG:
            if e.hardlink:
                self._hardlink(dfd, leaf, key, e.hardlink, regular)
                parents.drop()
            elif self._entry_file(dfd, leaf, key, e):
                parents.drop()
            regular.add("/".join(comps))
            return key
        regular.discard("/".join(comps))
        try:
            return self._entry_other(dfd, leaf, key, e, ftype, perm)
        finally:
            parents.drop()  # anything but a plain file may change the tree's shape

    def _entry_other(self, dfd: int, leaf: str, key: str, e: Entry, ftype: int, perm: int) -> str | None:
        try:
            st = os.lstat(leaf, dir_fd=dfd)
        except FileNotFoundError:
            st = None
        if ftype == stat.S_IFDIR:
            return self._entry_dir(dfd, leaf, key, e, st)
        if ftype == stat.S_IFLNK:
            if st is not None and stat.S_ISDIR(st.st_mode):
                self.warn(f"kept the directory /{key} where the package has a symlink")
                return None
            self._clear(dfd, leaf, key)
            os.symlink(e.linkto, leaf, dir_fd=dfd)
            if self.privileged:
                os.chown(leaf, e.uid, e.gid, dir_fd=dfd, follow_symlinks=False)
            os.utime(leaf, (e.mtime, e.mtime), dir_fd=dfd, follow_symlinks=False)
            self._record(key, Attr(stat.S_IFLNK | 0o777, e.uid, e.gid))
            return key
        if ftype in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
            self._special(dfd, leaf, key, ftype, e.uid, e.gid, perm, e.mtime * 1_000_000_000, e.rdev, e.xattrs)
            return key
        self.warn(f"skipping {e.path[:200]}: sockets are not extracted")
        return None

    def _entry_dir(self, dfd: int, leaf: str, key: str, e: Entry, st) -> str:
        if st is not None and stat.S_ISLNK(st.st_mode):
            # A link to a directory inside the root stays (bin -> usr/bin),
            # and the directory it leads to takes the entry's metadata, as
            # rpm's chown and chmod follow it; a dangling one is replaced.
            try:
                fd, real = self.open_dir(key.split("/"), create=False)
            except (_Refused, FileNotFoundError, NotADirectoryError):
                os.unlink(leaf, dir_fd=dfd)
                self._forget(key)
                st = None
            else:
                os.close(fd)
                key = "/".join(real)
        elif st is not None and not stat.S_ISDIR(st.st_mode):
            os.unlink(leaf, dir_fd=dfd)
            self._forget(key)
            st = None
        if st is None:
            try:
                os.mkdir(leaf, 0o755, dir_fd=dfd)
            except FileExistsError:
                pass
        self._entry_dirs[key] = (stat.S_IMODE(e.mode), e.uid, e.gid, e.mtime, e.xattrs)
        self._record(key, Attr(stat.S_IFDIR | stat.S_IMODE(e.mode), e.uid, e.gid, 0, e.xattrs))
        return key

    def _create(self, dfd: int, leaf: str, key: str) -> tuple[int, bool]:
        """A new, empty regular file leaf in dfd, open for writing, in place
        of whatever non-directory was there (never written through); and
        whether something had to be removed first."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(leaf, flags, 0o600, dir_fd=dfd), False
        except FileExistsError:
            self._clear(dfd, leaf, key)
            return os.open(leaf, flags, 0o600, dir_fd=dfd), True

    def _entry_file(self, dfd: int, leaf: str, key: str, e: Entry) -> bool:
        """Write one regular file; True when something had to be removed first."""
        fd, cleared = self._create(dfd, leaf, key)
        try:
            if e.fill is not None:
                e.fill(fd)
            perm = stat.S_IMODE(e.mode)
            self._apply(fd, e.uid, e.gid, perm if self.privileged else perm | 0o600, e.xattrs)
            os.utime(fd, (e.mtime, e.mtime))
        finally:
            os.close(fd)
        self._record(key, Attr(stat.S_IFREG | stat.S_IMODE(e.mode), e.uid, e.gid, 0, e.xattrs))
        return cleared

    def finish_entries(self) -> None:
        """The final owner, mode, xattrs and mtime of every directory
        extract_entries placed, deepest first (a directory's mtime is set
        after everything below it has changed)."""
        for key in sorted(self._entry_dirs, key=lambda k: (-k.count("/") if k else 1, k)):
            perm, uid, gid, mtime, xattrs = self._entry_dirs[key]
            try:
                fd, _ = self.open_dir(key.split("/") if key else [], create=False)
            except (_Refused, FileNotFoundError, NotADirectoryError):
                continue  # replaced by a later entry or a scriptlet
            try:
                self._apply(fd, uid, gid, perm if self.privileged else perm | 0o700, xattrs)
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
        self._entry_dirs.clear()


_tls = threading.local()


def _copy_data(archive_p, fd: int, size: int, digest) -> None:
    buf = getattr(_tls, "buf", None)
    if buf is None:
        buf = _tls.buf = ctypes.create_string_buffer(_BLOCK)
    view = memoryview(buf)
    read = ffi.read_data
    while True:
        n = read(archive_p, buf, _BLOCK)
        if n <= 0:
            break
        chunk = view[:n]
        while chunk:
            w = os.write(fd, chunk)
            if digest is not None:
                digest.update(chunk[:w])
            chunk = chunk[w:]


class _Slice:
    """A window [offset, offset+size) of a file descriptor, as a stream with
    readinto: how an ar member is handed to libarchive without copying."""

    def __init__(self, fd: int, offset: int, size: int):
        self.fd, self.pos, self.end = fd, offset, offset + size

    def readinto(self, buf) -> int:
        want = min(len(buf), self.end - self.pos)
        if want <= 0:
            return 0
        n = os.preadv(self.fd, [memoryview(buf)[:want]], self.pos)
        self.pos += n
        return n

    def seekable(self) -> bool:
        return False


@contextmanager
def _reader(archive, format_name: str):
    if isinstance(archive, (str, os.PathLike)):
        with libarchive.file_reader(os.fspath(archive), format_name) as r:
            yield r
    else:
        with libarchive.stream_reader(archive, format_name, block_size=_BLOCK) as r:
            yield r


def extract(archive: str | os.PathLike | BinaryIO, root: str | os.PathLike, *, mode: str = "root",
            attrs: AttrRecord | None = None, warn: Callable[[str], None] | None = None,
            md5sums: dict[str, str] | None = None, what: str = "", format_name: str = "all",
            policy: Policy = DEFAULT_POLICY) -> list[str]:
    """Extract one archive into root; see Extractor.extract."""
    with Extractor(root, mode=mode, attrs=attrs, warn=warn, policy=policy) as ex:
        return ex.extract(archive, md5sums=md5sums, what=what, format_name=format_name)


def slice_stream(fd: int, offset: int, size: int) -> _Slice:
    return _Slice(fd, offset, size)


__all__ = ["Entry", "Extractor", "HostileArchive", "extract", "member_components", "slice_stream"]
