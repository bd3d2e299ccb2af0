"""Run commands inside a root, as debootstrap and mmdebstrap do in stage 2.

`Chroot(root)` prepares the target on entry and undoes every change on exit,
also when the body raises, on Ctrl-C and on SIGTERM (a handler turns SIGTERM
into an exception so that the finally blocks run):

- /proc, /sys (read-only) and a fresh /dev: a tmpfs holding the nodes
  mmdebstrap creates (null, zero, full, random, urandom, tty, console, the
  fd links) and a private devpts instance on /dev/pts. Bind-mounting the
  host's /dev would hand maintainer scripts the host's disks.
- the host's /etc/resolv.conf copied in when the target has none, for
  scripts that reach the network; removed afterwards.
- `usr/sbin/policy-rc.d` exiting 101, so invoke-rc.d starts no services, and
  start-stop-daemon replaced by a stub that does nothing, as debootstrap
  and mmdebstrap do for scripts that call it directly. Both are put back as
  they were.

Mounts are undone in reverse order; one that stays busy is detached lazily
as a last resort, so nothing is left mounted under the root.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import signal
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from rootfs.host import nosync
from rootfs.host.mounts import mounts_under
from rootfs.host.run import PIPE, STDOUT
from rootfs.host.run import run as host_run
from rootfs.host.safepath import parent_in_root, resolve_in_root
from rootfs.model.errors import InstallError, PrivilegeError

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MNT_DETACH = 2

# (name, mode, kind, major, minor, link target) as mmdebstrap's @devfiles
DEVICES = (
    ("console", 0o666, "c", 5, 1, ""),
    ("full", 0o666, "c", 1, 7, ""),
    ("null", 0o666, "c", 1, 3, ""),
    ("random", 0o666, "c", 1, 8, ""),
    ("tty", 0o666, "c", 5, 0, ""),
    ("urandom", 0o666, "c", 1, 9, ""),
    ("zero", 0o666, "c", 1, 5, ""),
    ("fd", 0o777, "l", 0, 0, "/proc/self/fd"),
    ("stdin", 0o777, "l", 0, 0, "/proc/self/fd/0"),
    ("stdout", 0o777, "l", 0, 0, "/proc/self/fd/1"),
    ("stderr", 0o777, "l", 0, 0, "/proc/self/fd/2"),
    ("ptmx", 0o777, "l", 0, 0, "pts/ptmx"),
)

POLICY_RC_D = b"#!/bin/sh\n# installed by rootfs while building; removed afterwards\nexit 101\n"
FAKE_SSD = (b"#!/bin/sh\necho\necho \"Warning: Fake start-stop-daemon called, doing nothing\"\n")
START_STOP_DAEMON = ("usr/sbin/start-stop-daemon", "sbin/start-stop-daemon")


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while a root was prepared: unwind like Ctrl-C (the
    CLI reports both as "interrupted")."""


def _mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def _umount(target: str) -> None:
    if _libc.umount2(target.encode(), 0) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EBUSY:
        # A process started inside still holds it: detach now, the kernel
        # finishes when the last user goes away.
        if _libc.umount2(target.encode(), MNT_DETACH) == 0:
            return
        err = ctypes.get_errno()
    if err != errno.EINVAL:  # EINVAL: not mounted (any more)
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Chroot:
    """A prepared root; use as a context manager, then run() inside it."""

    root: str | os.PathLike
    resolv_conf: bool = True
    fake_services: bool = True
    log: Callable[[str], None] = lambda msg: None
    # A root being built (thrown away unless the build finishes): the syncs
    # of what runs inside return at once (rootfs.host.nosync).
    no_syncs: bool = False
    _undo: list[Callable[[], None]] = field(default_factory=list, init=False, repr=False)
    _stack: contextlib.ExitStack | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = os.path.realpath(os.fspath(self.root))
        if self.no_syncs:
            nosync.enable()

    def _preexec(self) -> None:
        """In the child before exec: what every command inside starts with."""
        if self.no_syncs:
            nosync.no_syncs()

    # -- setting up -------------------------------------------------------

    def __enter__(self) -> "Chroot":
        if os.geteuid() != 0:
            raise PrivilegeError("running commands inside the root needs root (mounts and chroot)")
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(sigterm_raises())
        try:
            self._setup()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._teardown()

    def _host(self, path: str) -> str:
        return resolve_in_root(self.root, path)

    def _mkdir(self, path: str) -> str:
        """The host path of directory `path` in the root, created (and
        removed again afterwards) when missing."""
        host = self._host(path)
        if not os.path.isdir(host) or os.path.islink(host):
            if os.path.lexists(host):
                raise InstallError(f"cannot prepare the root: /{path} is not a directory")
            os.makedirs(host, 0o755)
            self._undo.append(lambda: _rmdir_quiet(host))
        return host

    def _mount_at(self, path: str, fstype: str, source: str, flags: int = 0, data: str = "") -> str:
        host = self._mkdir(path)
        if host == self.root:
            # a package made /proc (or /sys, /dev) a link to `/`
            raise InstallError(f"cannot prepare the root: /{path} leads to the root itself")
        _mount(source, host, fstype, flags, data)
        self._undo.append(lambda: _umount(host))
        return host

    def _setup(self) -> None:
        try:
            self._mount_at("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            self._mount_at("sys", "sysfs", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
            dev = self._mount_at("dev", "tmpfs", "rootfs-dev", MS_NOSUID, "mode=0755,size=1m")
            for name, mode, kind, major, minor, target in DEVICES:
                p = os.path.join(dev, name)
                if kind == "l":
                    os.symlink(target, p)
                else:
                    os.mknod(p, stat.S_IFCHR | mode, os.makedev(major, minor))
                    os.chmod(p, mode)
            os.mkdir(os.path.join(dev, "shm"), 0o1777)
            os.chmod(os.path.join(dev, "shm"), 0o1777)
            os.mkdir(os.path.join(dev, "pts"), 0o755)
            _mount("devpts", os.path.join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC,
                   "newinstance,ptmxmode=0666,mode=0620,gid=5")
            pts = os.path.join(dev, "pts")
            self._undo.append(lambda: _umount(pts))
        except OSError as exc:
            raise PrivilegeError(f"cannot prepare {self.root} for running commands: {exc.strerror or exc}") from None
        self._prepare_files()

    def _prepare_files(self) -> None:
        """The files, not the mounts: resolv.conf and the service stubs."""
        if self.resolv_conf:
            self._resolv_conf()
        if self.fake_services:
            self._replace("usr/sbin/policy-rc.d", POLICY_RC_D, always=True)
            for path in START_STOP_DAEMON:
                if os.path.isfile(self._host(path)) and not os.path.islink(self._host(path)):
                    self._replace(path, FAKE_SSD, always=False)
                    break

    def _resolv_conf(self) -> None:
        target = "etc/resolv.conf"
        parent, name = parent_in_root(self.root, target)
        if not os.path.isdir(parent) or os.path.lexists(os.path.join(parent, name)):
            return  # the target has its own (or a link to one); leave it
        try:
            with open("/etc/resolv.conf", "rb") as f:
                data = f.read()
        except OSError:
            return
        host = os.path.join(parent, name)
        _write_new(host, data, 0o644)
        self._undo.append(lambda: _unlink_quiet(host))

    def _replace(self, path: str, data: bytes, always: bool) -> None:
        """Put `data` at path (mode 0755) for the duration; the original, if
        any, is moved aside and moved back afterwards."""
        parent, name = parent_in_root(self.root, path)
        if not os.path.isdir(parent):
            if not always:
                return
            # Every directory made here goes again (deepest last in the
            # undo list, so first), not just the innermost one.
            missing = []
            d = parent
            while not os.path.isdir(d):
                missing.append(d)
                d = os.path.dirname(d)
            for d in reversed(missing):
                os.mkdir(d, 0o755)
                self._undo.append(lambda d=d: _rmdir_quiet(d))
        host = os.path.join(parent, name)
        aside = host + ".REAL" if name == "start-stop-daemon" else host + ".rootfs-aside"
        if os.path.lexists(aside):
            raise InstallError(f"cannot prepare the root: /{path}{aside[len(host):]} already exists")
        if os.path.lexists(host):
            os.rename(host, aside)
            self._undo.append(lambda: os.rename(aside, host))
        _write_new(host, data, 0o755)
        self._undo.append(lambda: _unlink_quiet(host))

    # -- tearing down -----------------------------------------------------

    def _teardown(self) -> None:
        errors = []
        while self._undo:
            step = self._undo.pop()
            try:
                step()
            except OSError as exc:
                errors.append(str(exc))
        left = mounts_under(self.root)
        for point in sorted(left, reverse=True):
            try:
                _libc.umount2(point.encode(), MNT_DETACH)
            except OSError:
                pass
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        if errors:
            self.log("cleaning up the root: " + "; ".join(errors))

    # -- running ----------------------------------------------------------

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": PATH,
            "HOME": "/root",
            "LC_ALL": "C.UTF-8",
            "LANG": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive",
            "DEBCONF_NONINTERACTIVE_SEEN": "true",
        }
        env.update(extra or {})
        return env

    def run(self, cmd: Sequence[str], env: Mapping[str, str] | None = None, *, check: bool = False,
            input: bytes | None = None, pass_fds: Sequence[int] = ()) -> subprocess.CompletedProcess:
        """Run cmd chrooted with a clean environment (nothing from the host
        leaks in but what `env` adds); stdout and stderr are captured
        together, in order."""
        root = self.root

        def enter() -> None:
            self._preexec()
            os.chroot(root)
            os.chdir("/")

        try:
            # In a session of its own, under the deadline (rootfs.host.run):
            # a timeout or an interruption takes down the whole tree (dpkg,
            # a maintainer script, what it started).
            proc = host_run(list(cmd), what=f"{' '.join(cmd)[:200]} (inside the root)", env=self.environment(env),
                            preexec_fn=enter, stdout=PIPE, stderr=STDOUT, input=input, pass_fds=pass_fds)
        except OSError as exc:
            raise InstallError(f"cannot run {cmd[0]} inside the root: {exc.strerror or exc}") from None
        if check and proc.returncode != 0:
            out = proc.stdout.decode("utf-8", "replace").strip().splitlines()
            tail = out[-1] if out else "no output"
            raise InstallError(f"{' '.join(cmd)} failed inside the root (exit status {proc.returncode}): {tail}")
        return proc


    def outside_argv(self, cmd: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """How to start cmd on the host side of the session (not chrooted)."""
        return list(cmd), dict(env)

    def run_outside(self, cmd: Sequence[str], env: Mapping[str, str], *, cwd: str | None = None,
                    pass_fds: Sequence[int] = ()) -> int:
        """Run cmd on the host while the root is prepared, as mmdebstrap runs
        its hooks: not chrooted, the root's path for the command to use, its
        output passed on to our standard error (standard output may be a tar
        stream). Exactly `env` is its environment. Returns the exit status."""
        argv, full_env = self.outside_argv(cmd, env)
        return run_passing_output(argv, full_env, cwd, pass_fds)


def run_passing_output(argv: Sequence[str], env: Mapping[str, str], cwd: str | None,
                       pass_fds: Sequence[int] = ()) -> int:
    """Run argv in a session of its own with stdout and stderr on our
    stderr; an interruption takes the whole process group down."""
    try:
        # Under the deadline, as every command (rootfs.host.run).
        return host_run(list(argv), what=" ".join(argv)[:200], env=env, cwd=cwd, stdout=2, stderr=2,
                        pass_fds=pass_fds).returncode
    except OSError as exc:
        raise InstallError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


def _write_new(host: str, data: bytes, mode: int) -> None:
    fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _rmdir_quiet(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


__all__ = ["Chroot", "PATH", "Terminated", "run_passing_output", "sigterm_raises"]
