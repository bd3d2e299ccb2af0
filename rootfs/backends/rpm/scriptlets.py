"""Scriptlets: %pretrans, %pre, %post, %posttrans and %triggerin, run
inside the target with the target's own interpreter.

As root each scriptlet runs in a rootfs.host.chroot.Chroot made for it
alone, the same preparation dpkg's maintainer scripts get: /proc, a
read-only /sys and a fresh /dev holding only the nodes mmdebstrap makes
(never the host's disks), all gone again before the next package is
unpacked, so no payload is ever written into a mounted filesystem. Without
root they run in the UserChroot session of the whole install. The command
line is rpm's: `interpreter [args] SCRIPTFILE $1 [$2]`.

Lua scriptlets (`-p <lua>`) run inside rpm itself, so they run with the
root's own rpm (`rpm --eval` of a `dofile`, chrooted like the others, with
rpm's `arg` table); a root without rpm reports them as skipped.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass

from rootfs.backends.rpm import header as H
from rootfs.backends.rpm.header import RpmFile
from rootfs.host.chroot import Chroot
from rootfs.host.safepath import resolve_in_root
from rootfs.host.unpacker import Extractor
from rootfs.model.errors import InstallError

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


class Runner:
    """Runs scriptlets in the Extractor's root: each in a Chroot of its
    own, or in session (a rootfs.host.userns.UserChroot entered for the
    whole install, which records the ownership changes they make)."""

    def __init__(self, ex: Extractor, log=lambda msg: None, session=None):
        self.ex = ex
        self.root = ex.root
        self.log = log
        self.session = session

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
        # The script goes into the root's /var/tmp (or /tmp) through the
        # Extractor, so a link a package planted there cannot carry it out;
        # a /tmp the root lacks is made for the run and removed after, so
        # the tree stays what the packages made it (the Chroot does the
        # same for its mount points).
        made = ""
        script = ""
        if s.body:
            tmpdir = next((d for d in ("var/tmp", "tmp") if os.path.isdir(resolve_in_root(self.root, d))), "")
            if not tmpdir:
                tmpdir = made = "tmp"
                self.ex.make_dir(made, 0o1777)
            script = f"{tmpdir}/rpm-tmp.{secrets.token_hex(6)}"
            # rpm hands a Lua scriptlet its arguments as `arg`.
            head = "local arg = {" + ", ".join(f'"{a}"' for a in ("<lua>", *args)) + "}\n" if lua else ""
            self.ex.write_file(script, (head + s.body).encode("utf-8", "surrogateescape"), 0o700)
            argv.extend([LUA_RPM, "--eval", f'%{{lua: dofile("/{script}")}}'] if lua else [f"/{script}"])
        if not lua:
            argv.extend(args)
        try:
            returncode, output = self._exec(argv)
        except (OSError, subprocess.SubprocessError, ScriptletError) as exc:
            raise ScriptletError(f"{s.label} could not start: {exc}") from None
        finally:
            if script:
                self.ex.remove(script)
            if made:
                self.ex.remove_dir(made)  # unless the scriptlet put something there
        for line in output.decode(errors="replace").splitlines():
            self.log(f"{s.label}: {line}")
        if returncode != 0:
            raise ScriptletError(f"{s.label} failed with exit status {returncode}")

    def _exec(self, argv: list[str]) -> tuple[int, bytes]:
        if self.session is not None:
            proc = self.session.run(argv, env=ENV)
        else:
            with Chroot(self.root, resolv_conf=False, fake_services=False, log=self.log) as ch:
                try:
                    proc = ch.run(argv, env=ENV)
                except InstallError as exc:  # the interpreter did not start
                    raise ScriptletError(str(exc)) from None
        return proc.returncode, proc.stdout
