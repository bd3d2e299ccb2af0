"""Running hooks at mmdebstrap's points, for every backend.

A hook runs on the host with the root's path as its first argument, as
mmdebstrap runs it: a special hook (copy-in, tar-out, ...) through
rootfs.host.hookhelper, an executable directly, anything else under
`sh -c`. Except at the setup point of a root build (an empty directory
nothing can be chrooted into), hooks run inside the build's session: as
root with /proc, /sys and /dev mounted in the root and services stubbed;
without root in the session's user namespace under its fakeroot, so
`chroot "$1" useradd` works and the owners it sets reach the image.

The environment is the user's, with mmdebstrap's additions
(MMDEBSTRAP_MODE, MMDEBSTRAP_HOOK, MMDEBSTRAP_ARGV0, MMDEBSTRAP_VERBOSITY,
MMDEBSTRAP_INCLUDE, MMDEBSTRAP_HOOKSOCK) and without TMPDIR and
APT_CONFIG. MMDEBSTRAP_ARGV0 --hook-helper runs the special hooks, so
hook scripts written for mmdebstrap that call it work; the socket is a
placeholder (rootfs's helper needs no channel back). MMDEBSTRAP_MODE is
"root" for a root build and "unshare" otherwise (a user namespace in
which the hook is root, which is what mmdebstrap's unshare mode gives).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import rootfs
from rootfs.host.chroot import PATH, run_passing_output
from rootfs.host.hookhelper import ERROR_FILE_ENV
from rootfs.model.customize import READS_OUTSIDE, Customize, Hook
from rootfs.model.errors import InstallError

HELPER_MODULE = "rootfs.host.hookhelper"


@dataclass(frozen=True)
class HookContext:
    mode: str  # rootfs's mode: root, rootless, extract
    include: tuple[str, ...] = ()
    verbosity: int = 1
    source_date_epoch: int = 0


def _percent(value: str) -> str:
    return value.replace("%", "%25").replace(",", "%2C")


class HookRunner:
    """The hooks of one build; a context manager (it keeps the helper's
    launcher in a temporary directory of its own)."""

    def __init__(self, hooks: Iterable[Hook], ctx: HookContext, log=lambda msg: None):
        self.hooks = list(hooks)
        self.ctx = ctx
        self.log = log
        self._tmp: str | None = None

    def __enter__(self) -> HookRunner:
        return self

    def _ensure(self) -> str:
        """The runner's own temporary directory, made on first use."""
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="rootfs-hooks.")
            os.chmod(self._tmp, 0o755)
            shim = os.path.join(self._tmp, "mmdebstrap")
            package_parent = str(Path(rootfs.__file__).resolve().parent.parent)
            with open(shim, "w") as f:
                f.write("#!/bin/sh\n"
                        f"PYTHONPATH={shlex.quote(package_parent)}${{PYTHONPATH:+:$PYTHONPATH}} "
                        f"exec {shlex.quote(sys.executable)} -m {HELPER_MODULE} \"$@\"\n")
            os.chmod(shim, 0o755)
        return self._tmp

    def __exit__(self, *exc) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def at(self, point: str) -> list[Hook]:
        return [h for h in self.hooks if h.point == point]

    @property
    def scratch(self) -> str:
        """A directory of this runner's for files handed to the helper."""
        return self._ensure()

    def helper(self, session, *args: str) -> None:
        """Run rootfs.host.hookhelper ARGS in the session (None: on the host)."""
        env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "APT_CONFIG")}
        error_file = os.path.join(self.scratch, "error")
        if os.path.exists(error_file):
            os.unlink(error_file)
        env[ERROR_FILE_ENV] = error_file
        argv = [self.argv0, *args]
        status = run_passing_output(argv, env, None) if session is None else session.run_outside(argv, env)
        if status != 0:
            said = Path(error_file).read_text().strip() if os.path.exists(error_file) else f"exit status {status}"
            raise InstallError(f"{args[0].lstrip('-')} into the root failed: {said}")

    @property
    def argv0(self) -> str:
        return os.path.join(self._ensure(), "mmdebstrap")

    def environment(self, point: str, hooksock: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "APT_CONFIG")}
        path = env.get("PATH", "")
        missing = [d for d in PATH.split(":") if d not in path.split(":")]
        env["PATH"] = ":".join([p for p in [path] if p] + missing)
        env.update({
            "DEBIAN_FRONTEND": "noninteractive",
            "DEBCONF_NONINTERACTIVE_SEEN": "true",
            "LC_ALL": "C.UTF-8",
            "LANGUAGE": "C.UTF-8",
            "LANG": "C.UTF-8",
            "MMDEBSTRAP_MODE": "root" if self.ctx.mode == "root" else "unshare",
            "MMDEBSTRAP_HOOK": point,
            "MMDEBSTRAP_ARGV0": self.argv0,
            "MMDEBSTRAP_VERBOSITY": str(self.ctx.verbosity),
            "MMDEBSTRAP_INCLUDE": ",".join(_percent(i) for i in self.ctx.include),
            "MMDEBSTRAP_HOOKSOCK": str(hooksock),
            "ROOTFS_MODE": self.ctx.mode,
            ERROR_FILE_ENV: os.path.join(self.scratch, "error"),
        })
        if self.ctx.source_date_epoch and "SOURCE_DATE_EPOCH" not in env:
            env["SOURCE_DATE_EPOCH"] = str(self.ctx.source_date_epoch)
        return env

    def argv(self, hook: Hook, root: str) -> list[str]:
        kind = hook.kind
        if kind == "special":
            return [self.argv0, "--hook-helper", root, "root" if self.ctx.mode == "root" else "unshare",
                    hook.point, "env", str(self.ctx.verbosity), *shlex.split(hook.command)]
        if kind == "exec":
            local = os.path.join(hook.cwd, hook.command)
            return [local if os.path.isfile(local) else hook.command, root]
        return ["sh", "-c", hook.command, "exec", root]

    def run(self, point: str, root: str | os.PathLike, session=None) -> None:
        """Every hook of `point`, in order; session: the prepared root's
        Chroot or UserChroot, or None to run on the host as it is."""
        hooks = self.at(point)
        if not hooks:
            return
        root = os.path.realpath(os.fspath(root))
        for hook in hooks:
            self.log(f"running the {hook.label}")
            error_file = os.path.join(self.scratch, "error")
            if os.path.exists(error_file):
                os.unlink(error_file)
            sock = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            try:
                env = self.environment(point, sock)
                argv = self.argv(hook, root)
                if session is None:
                    status = run_passing_output(argv, env, hook.cwd, (sock,))
                else:
                    status = session.run_outside(argv, env, cwd=hook.cwd, pass_fds=(sock,))
            finally:
                os.close(sock)
            if status != 0:
                said = ""
                if os.path.exists(error_file):
                    said = ": " + Path(error_file).read_text().strip()
                how = f"exit status {status}" if status > 0 else f"killed by signal {-status}"
                raise InstallError(f"the {hook.label} failed ({how}){said}")


def session_for(root, mode: str, attrs, log, *, setup: bool = False):
    """The session hooks and customizations run in, as a context manager:
    as root the prepared root (nothing at the setup point, where the root is
    still empty and nothing can be chrooted into), otherwise the user
    namespace with fakeroot, whose record of the tree becomes `attrs`."""
    import contextlib

    from rootfs.host.chroot import Chroot
    from rootfs.host.userns import UserChroot

    if mode == "root":
        return contextlib.nullcontext(None) if setup else Chroot(root, log=log)
    return UserChroot(root, log=log, attrs=attrs)


# -- what hooks read, for the up-to-date check ---------------------------------


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(path: str) -> str:
    """Names, types, modes, owners and contents of everything at path."""
    h = hashlib.sha256()

    def one(p: str, rel: str) -> None:
        st = os.lstat(p)
        h.update(f"{rel}\0{st.st_mode:o}\0{st.st_uid}\0{st.st_gid}\0".encode("utf-8", "surrogateescape"))
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(p).encode("utf-8", "surrogateescape"))
        elif stat.S_ISREG(st.st_mode):
            h.update(file_digest(p).encode())
        h.update(b"\n")

    if not os.path.lexists(path):
        return "missing"
    one(path, ".")
    if os.path.isdir(path) and not os.path.islink(path):
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                p = os.path.join(dirpath, name)
                one(p, os.path.relpath(p, path))
    return h.hexdigest()


def hook_inputs(hooks: Sequence[Hook]) -> list[tuple[str, str]]:
    """(what, digest) of the host files the hooks read: executables by
    content, the outside paths of copy-in/sync-in/tar-in/upload as trees,
    and any word of a shell hook that names an existing file."""
    out: list[tuple[str, str]] = []
    for hook in hooks:
        kind = hook.kind
        if kind == "special":
            words = shlex.split(hook.command)
            if words[0] in READS_OUTSIDE:
                for p in words[1:-1]:
                    out.append((f"{hook.point}:{p}", tree_digest(os.path.join(hook.cwd, p))))
            continue
        try:
            words = shlex.split(hook.command) if kind == "shell" else [hook.command]
        except ValueError:
            words = hook.command.split()
        for w in words:
            p = os.path.join(hook.cwd, w)
            if w and os.path.isfile(p):
                out.append((f"{hook.point}:{w}", file_digest(p)))
    return out


def customize_inputs(c: Customize) -> list[tuple[str, str]]:
    """(what, digest) of every host file the build reads besides packages:
    the hooks' and [customize] files'."""
    out = hook_inputs(c.hooks)
    out.extend((f"file:{f.src}", tree_digest(f.src)) for f in c.files)
    return out
