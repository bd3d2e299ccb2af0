"""What a package payload may put into a root, and what an image may hold.

Extraction keeps every member inside the target; this module decides which
members are acceptable at all. The rules, each named so that a user can
waive it (`--allow NAME` on make, build and pack):

  setid-writable  a regular file with the set-user-ID or set-group-ID bit
                  that its group or others may write: anyone who can write
                  it can make it run their code with its owner's rights.
  device          a character or block device node.
  fifo            a named pipe.
  socket          a socket.

Payloads (the Extractor, for every package format): all four are refused.
Debian policy (10.6) forbids device files and named pipes in a package's
file tree and rpm packages have no use for them either; packages create
nodes in their maintainer scripts (mknod, MAKEDEV), which are not payloads
and are not affected. A hazard refuses the whole package (exit 6, naming
the member) rather than dropping the entry: a tree that silently differs
from what the package shipped would hide an attack or a packaging bug, and
nothing the user did not see ends up in an image. Waived, the entry is
extracted as shipped (a socket is still skipped: no archive format can
restore one).

The packer (any root it packs, `rootfs pack` of an arbitrary tree, a
rootless tree's attrs record included):
  - setid-writable is refused always, whoever made the file: a maintainer
    script's chmod 4777 is as dangerous in an image as a payload's.
  - device and fifo nodes inside /dev are never packed unless --keep-dev
    asks for /dev's contents; then they are packed as they are.
  - device and fifo nodes elsewhere are refused, unless they were made by
    the configure stage: within one `rootfs make` or `rootfs build` the
    Extractor has already refused every payload node, so each node left in
    the tree came from a maintainer script (or a waived rule); for a tree
    packed later, the attrs record of a rootless build marks the nodes its
    configure session made (AttrRecord.scripted). A tree built as root and
    packed by a later `rootfs pack` carries no such record, so its nodes
    outside /dev need `--allow device` / `--allow fifo` there.
  - sockets are never packed (tar cannot hold them), so no rule is needed.

What the user's own hooks copy into or out of the root is not a payload:
those copies use USER_FILES, which waives every rule.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass

from rootfs.host.safepath import shown
from rootfs.model.errors import InstallError, UsageError

SETID_WRITABLE = "setid-writable"
DEVICE = "device"
FIFO = "fifo"
SOCKET = "socket"

RULES: dict[str, str] = {
    SETID_WRITABLE: "a set-user-ID or set-group-ID file writable by group or others",
    DEVICE: "a device node",
    FIFO: "a named pipe (FIFO)",
    SOCKET: "a socket",
}


class PolicyViolation(InstallError):
    """A payload member or an image entry that breaks a rule not waived."""


def parse_allow(values: Iterable[str] | None) -> frozenset[str]:
    """The rule names of repeated or comma-separated --allow options."""
    out: set[str] = set()
    for v in values or ():
        for name in (x.strip() for x in v.split(",")):
            if not name:
                continue
            if name not in RULES:
                raise UsageError(f"unknown --allow rule {name!r} (known: {', '.join(RULES)})")
            out.add(name)
    return frozenset(out)


def hazard(st_mode: int) -> str | None:
    """The rule an entry of this full st_mode breaks, or None."""
    if stat.S_ISREG(st_mode):
        if st_mode & (stat.S_ISUID | stat.S_ISGID) and st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return SETID_WRITABLE
        return None
    if stat.S_ISCHR(st_mode) or stat.S_ISBLK(st_mode):
        return DEVICE
    if stat.S_ISFIFO(st_mode):
        return FIFO
    if stat.S_ISSOCK(st_mode):
        return SOCKET
    return None


@dataclass(frozen=True)
class Policy:
    """The payload policy with the rules the user waived."""

    allow: frozenset[str] = frozenset()

    @classmethod
    def allowing(cls, values: Iterable[str] | None) -> Policy:
        return cls(parse_allow(values))

    def check_member(self, path: str, st_mode: int, what: str) -> None:
        """Refuse a payload member (path as dpkg lists it, "/usr/bin/x")
        that breaks a rule not waived."""
        rule = hazard(st_mode)
        if rule is not None and rule not in self.allow:
            raise PolicyViolation(_sentence(f"{what} ships", path, st_mode, rule))

    def check_packed(self, path: str, st_mode: int, *, made_by_scripts: bool) -> None:
        """Refuse an entry the packer is about to write (path root-relative,
        "usr/bin/x"). made_by_scripts: the configure stage made this node."""
        rule = hazard(st_mode)
        if rule is None or rule in self.allow or rule == SOCKET:
            return
        if rule in (DEVICE, FIFO) and made_by_scripts:
            return
        raise PolicyViolation(_sentence("the root holds", "/" + path.lstrip("/"), st_mode, rule))


def _sentence(who: str, path: str, st_mode: int, rule: str) -> str:
    return (f"{who} {shown(path)}, {RULES[rule]} (mode {stat.S_IMODE(st_mode):04o}); refused "
            f"(--allow {rule} accepts it)")


DEFAULT = Policy()
# What the user's own hooks copy in and out (mmdebstrap's copy-in, tar-in,
# copy-out...): not a package payload, so no rule applies.
USER_FILES = Policy(frozenset(RULES))

__all__ = ["DEFAULT", "USER_FILES", "DEVICE", "FIFO", "Policy", "PolicyViolation", "RULES", "SETID_WRITABLE", "SOCKET",
           "hazard", "parse_allow"]
