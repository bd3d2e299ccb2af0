"""Stage 1 of an rpm install: a package's files into the root, exactly.

Everything is taken from the header: directories, symlinks, hard links,
modes with setuid/setgid/sticky bits, owners by name (mapped through the
root's own passwd and group), file capabilities, mtimes; the payload
gives only the bytes, each file checked against the header's digest as it
is written. %ghost entries are not created (rpm only registers them), and
a %ghost file an old payload still carries is skipped.

The writing is rootfs.host.unpacker's Extractor, the one the deb backend
uses: every directory on the way is opened by file descriptor without
following links, so a symlink an earlier package planted (or one that
appears meanwhile) can never carry a write out of the root. This module
only turns the header's arrays into the Extractor's entries, in an order
the stream allows: directories, symlinks and device nodes first, then each
file as the payload carries its bytes, then the other members of hard-link
sets and the empty files the payload has no data for.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator

from rootfs.backends.rpm import caps as capsmod
from rootfs.backends.rpm.header import RpmFile
from rootfs.backends.rpm.payload import (
    CpioReader,
    FileEntry,
    check_file_digest,
    file_digest_algo,
    file_entries,
    hardlink_sets,
    payload_contents,
)
from rootfs.host.unpacker import Entry, Extractor
from rootfs.model.errors import VerifyError


def _ids(text: bytes | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or b"").decode("utf-8", "surrogateescape").splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            out.setdefault(parts[0], int(parts[2]))
    return out


class Accounts:
    """User and group names of the root, read through the Extractor (never
    through a link out of the root) before each package: only packages
    and scriptlets change them, and both run between packages."""

    def __init__(self, ex: Extractor):
        self.ex = ex
        self.users: dict[str, int] = {}
        self.groups: dict[str, int] = {}
        self.unknown: set[str] = set()

    def refresh(self) -> None:
        self.users = _ids(self.ex.read_file("etc/passwd"))
        self.groups = _ids(self.ex.read_file("etc/group"))

    def ids(self, user: str, group: str) -> tuple[int | None, int | None]:
        """The ids of user and group; None for a name the root lacks."""
        uid = self.users.get(user, 0 if user == "root" else None)
        gid = self.groups.get(group, 0 if group == "root" else None)
        if uid is None:
            self.unknown.add(f"user {user}")
        if gid is None:
            self.unknown.add(f"group {group}")
        return uid, gid


def _rdev(value: int) -> int:
    """FILERDEVS holds the old 16-bit device number: major << 8 | minor."""
    return os.makedev((value >> 8) & 0xFF, value & 0xFF)


class Unpacker:
    """Unpacks packages one after another into the Extractor's root; call
    finish() after the last one."""

    def __init__(self, ex: Extractor, log: Callable[[str], None] = lambda msg: None):
        self.ex = ex
        self.log = log
        self.accounts = Accounts(ex)

    def _entry(self, e: FileEntry, **kw) -> Entry:
        uid, gid = self.accounts.ids(e.user, e.group)
        mode = e.mode
        # As rpm does: an owner the root does not know becomes root, and the
        # set-id bit that would have given that owner's powers is dropped.
        if uid is None:
            uid, mode = 0, mode & ~stat.S_ISUID
        if gid is None:
            gid, mode = 0, mode & ~stat.S_ISGID
        xattrs = ((capsmod.XATTR, capsmod.xattr_value(e.caps)),) if e.caps and stat.S_ISREG(e.mode) else ()
        rdev = _rdev(e.rdev) if stat.S_ISCHR(e.mode) or stat.S_ISBLK(e.mode) else 0
        return Entry(e.path, mode, uid, gid, e.mtime, e.linkto, rdev, xattrs, **kw)

    def _entries(self, rpm: RpmFile, entries: list[FileEntry]) -> Iterator[Entry]:
        links = hardlink_sets(entries)
        algo = file_digest_algo(rpm)
        for e in sorted(entries, key=lambda e: e.path):
            if not e.ghost and not stat.S_ISREG(e.mode):
                yield self._entry(e)
        written: dict[int, str] = {}  # index -> path, for files whose bytes are in

        def filler(e: FileEntry, reader: CpioReader, size: int) -> Callable[[int], None]:
            def fill(fd: int) -> None:
                digest = hashlib.new(algo)
                reader.copy_to(fd, size, digest)
                check_file_digest(rpm, e, digest)
            return fill

        for e, reader, size in payload_contents(rpm, entries):
            if e.index in written:
                raise VerifyError(f"{rpm.path.name}: the payload holds {e.path[:200]} twice")
            yield self._entry(e, fill=filler(e, reader, size))
            written[e.index] = e.path
        for e in entries:
            if e.ghost or not stat.S_ISREG(e.mode) or e.index in written:
                continue
            group = links.get(e.index)
            source = next((written[i] for i in group or () if i in written), None)
            if source is not None:
                yield self._entry(e, hardlink=source)
            elif e.size == 0:
                # An empty file, or the first of an empty hard-link set: the
                # payload carries no bytes for either.
                yield self._entry(e, fill=_empty(rpm, e, algo))
                if group:
                    written[e.index] = e.path
            else:
                raise VerifyError(f"{rpm.path.name}: the payload lacks the contents of {e.path[:200]}")

    def unpack(self, rpm: RpmFile) -> list[str]:
        """Put rpm's files into the root; the real root-relative paths they
        landed at."""
        self.accounts.refresh()
        return self.ex.extract_entries(self._entries(rpm, file_entries(rpm)), what=rpm.nevra)

    def finish(self) -> None:
        """Final modes, owners and mtimes of directories."""
        self.ex.finish_entries()


def _empty(rpm: RpmFile, e: FileEntry, algo: str) -> Callable[[int], None]:
    def fill(fd: int) -> None:
        check_file_digest(rpm, e, hashlib.new(algo))
    return fill
