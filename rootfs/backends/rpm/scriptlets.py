"""Scriptlets: %pretrans, %pre, %post, %posttrans and %triggerin, run
inside the target with the target's own interpreter.

Each scriptlet runs in a child that first moves into its own mount
namespace, mounts /proc, /sys and /dev inside the root and chroots there;
the mounts belong to that namespace alone, so they vanish with the child
however it ends, and never show on the host. The command line is rpm's:
`interpreter [args] SCRIPTFILE $1 [$2]`.

Lua scriptlets (`-p <lua>`) run inside rpm itself, so they run with the
root's own rpm (`rpm --eval` of a `dofile`, chrooted like the others, with
rpm's `arg` table); a root without rpm reports them as skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import tempfile
from dataclasses import dataclass

from rootfs.backends.rpm import header as H
from rootfs.backends.rpm.header import RpmFile
from rootfs.host.safepath import resolve_in_root

CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000

TRIGGERIN = 1 << 16
LUA_RPM = "/usr/bin/rpm"

_BODY_PROG = {
    "pretrans": (H.PRETRANS, H.PRETRANSPROG),
    "pre": (H.PREIN, H.PREINPROG),
    "post": (H.POSTIN, H.POSTINPROG),
    "posttrans": (H.POSTTRANS, H.POSTTRANSPROG),
}

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C", "TERM": "dumb"}


@dataclass(frozen=True)
class Scriptlet:
    package: str  # NEVRA, for messages
    kind: str  # pretrans, pre, post, posttrans, triggerin
    prog: tuple[str, ...]  # interpreter and its arguments; ("<lua>",) for Lua
    body: str

    @property
    def label(self) -> str:
        return f"%{self.kind} of {self.package}"


def _prog(value) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, str) and value:
        return (value,)
    return ()


def scriptlet(rpm: RpmFile, kind: str) -> Scriptlet | None:
    body_tag, prog_tag = _BODY_PROG[kind]
    body = rpm.header.get(body_tag)
    prog = _prog(rpm.header.get(prog_tag))
    if not body and not prog:
        return None
    return Scriptlet(rpm.nevra, kind, prog or ("/bin/sh",), body or "")


@dataclass(frozen=True)
class Trigger:
    owner: str  # the package holding the trigger
    name: str  # the package whose installation fires it
    flags: int
    version: str
    script: Scriptlet


def triggers_in(rpm: RpmFile) -> list[Trigger]:
    h = rpm.header
    names = h.list(H.TRIGGERNAME)
    flags = h.list(H.TRIGGERFLAGS)
    versions = h.list(H.TRIGGERVERSION)
    index = h.list(H.TRIGGERINDEX)
    scripts = h.list(H.TRIGGERSCRIPTS)
    progs = h.list(H.TRIGGERSCRIPTPROG)
    out = []
    for i, name in enumerate(names):
        fl = flags[i] if i < len(flags) else 0
        if not fl & TRIGGERIN:
            continue
        k = index[i] if i < len(index) else i
        body = scripts[k] if k < len(scripts) else ""
        prog = (progs[k],) if k < len(progs) and progs[k] else ("/bin/sh",)
        out.append(Trigger(rpm.name, name, fl, versions[i] if i < len(versions) else "",
                           Scriptlet(rpm.nevra, "triggerin", prog, body)))
    return out


class ScriptletError(Exception):
    pass


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _enter(root: str) -> None:
    """In the child, before exec: own mount namespace, API filesystems,
    chroot. Any failure aborts the exec (subprocess reports it)."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    for target, fstype, source, flags in (("proc", b"proc", b"proc", 0), ("sys", b"sysfs", b"sysfs", 0),
                                          ("dev", None, b"/dev", MS_BIND | MS_REC)):
        where = os.path.join(root, target)
        if os.path.isdir(where) and not os.path.islink(where):
            libc.mount(source, where.encode(), fstype, flags, None)
    os.chroot(root)
    os.chdir("/")


class Runner:
    def __init__(self, root: str, log=lambda msg: None):
        self.root = str(root)
        self.log = log

    def can_run(self, s: Scriptlet) -> str | None:
        """Why s cannot run in this root, or None."""
        if s.prog[0] == "<lua>":
            rpm = resolve_in_root(self.root, LUA_RPM)
            if not (os.path.isfile(rpm) and os.access(rpm, os.X_OK)):
                return "a Lua scriptlet needs rpm inside the root"
            return None
        interp = resolve_in_root(self.root, s.prog[0])
        if not os.path.isfile(interp) or not os.access(interp, os.X_OK):
            return f"its interpreter {s.prog[0]} is not in the root"
        return None

    def run(self, s: Scriptlet, args: list[str]) -> None:
        """Run s; ScriptletError with the reason when it fails."""
        lua = s.prog[0] == "<lua>"
        if lua and not s.body:
            return
        argv = [] if lua else list(s.prog)
        # Directories the root lacks (mount points, a place for the script)
        # are made for the run and removed after, so the tree stays what the
        # packages made it.
        made = []
        for name in ("proc", "sys", "dev"):
            where = os.path.join(self.root, name)
            if not os.path.lexists(where):
                os.mkdir(where, 0o755)
                made.append(where)
        script_host = None
        if s.body:
            tmpdir = resolve_in_root(self.root, "var/tmp")
            if not os.path.isdir(tmpdir):
                tmpdir = resolve_in_root(self.root, "tmp")
            if not os.path.isdir(tmpdir):
                tmpdir = os.path.join(self.root, "tmp")
                os.mkdir(tmpdir, 0o1777)
                made.append(tmpdir)
            fd, script_host = tempfile.mkstemp(prefix="rpm-tmp.", dir=tmpdir)
            with os.fdopen(fd, "w") as f:
                if lua:
                    # rpm hands a Lua scriptlet its arguments as `arg`.
                    f.write("local arg = {" + ", ".join(f'"{a}"' for a in ("<lua>", *args)) + "}\n")
                f.write(s.body)
            script = "/" + os.path.relpath(script_host, self.root)
            argv.extend([LUA_RPM, "--eval", f'%{{lua: dofile("{script}")}}'] if lua else [script])
        if not lua:
            argv.extend(args)
        try:
            returncode, output = self._exec(argv)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ScriptletError(f"{s.label} could not start: {exc}") from None
        finally:
            if script_host:
                os.unlink(script_host)
            for where in made:
                try:
                    os.rmdir(where)
                except OSError:
                    pass  # the scriptlet put something there: it stays
        for line in output.decode(errors="replace").splitlines():
            self.log(f"{s.label}: {line}")
        if returncode != 0:
            raise ScriptletError(f"{s.label} failed with exit status {returncode}")

    def _exec(self, argv: list[str]) -> tuple[int, bytes]:
        proc = subprocess.run(argv, preexec_fn=lambda: _enter(self.root), env=ENV, capture_output=True,
                              stdin=subprocess.DEVNULL)
        return proc.returncode, proc.stdout + proc.stderr


class SessionRunner(Runner):
    """Scriptlets without root: run through a rootfs.host.userns.UserChroot
    session, which records the ownership changes they make."""

    def __init__(self, root: str, session, log=lambda msg: None):
        super().__init__(root, log)
        self.session = session

    def _exec(self, argv: list[str]) -> tuple[int, bytes]:
        proc = self.session.run(argv, env={k: v for k, v in ENV.items() if k != "PATH"})
        return proc.returncode, proc.stdout
