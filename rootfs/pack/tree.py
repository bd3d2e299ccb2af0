"""Walk a root directory into the entries an image holds, in image order.

One walk is the single source of truth for every format: the tar stream, the
OCI layer, the filesystem images. Entries come out sorted by their byte
names, depth first (the order of `tar --sort=name`), with owners, modes,
device numbers and xattrs taken from the attrs record when it knows the path
(a rootless build cannot hold them on disk) and from lstat otherwise, and
with mtimes clamped to SOURCE_DATE_EPOCH. The reproducibility filter
(clean.py) decides which paths are left out or get replaced contents.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from rootfs.host.policy import Policy
from rootfs.host.safepath import PathEscape, resolve_in_root
from rootfs.model.attrs import AttrRecord
from rootfs.model.errors import OutputError
from rootfs.pack import clean

# Entry kinds; the tar type flags they become.
FILE, HARDLINK, SYMLINK, CHR, BLK, DIR, FIFO = b"0", b"1", b"2", b"3", b"4", b"5", b"6"


@dataclass
class Entry:
    name: bytes  # root-relative, no leading "./"; b"" is the root itself
    kind: bytes
    mode: int  # permission bits only (07777)
    uid: int
    gid: int
    mtime: int
    size: int = 0
    linkname: bytes = b""  # symlink target, or the name a hard link points at
    rdev: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()
    path: bytes | None = None  # the file on disk whose bytes are the content
    data: bytes | None = None  # replacement content (the cleaning filter)


def _kind_of(st_mode: int) -> bytes | None:
    if stat.S_ISREG(st_mode):
        return FILE
    if stat.S_ISDIR(st_mode):
        return DIR
    if stat.S_ISLNK(st_mode):
        return SYMLINK
    if stat.S_ISCHR(st_mode):
        return CHR
    if stat.S_ISBLK(st_mode):
        return BLK
    if stat.S_ISFIFO(st_mode):
        return FIFO
    return None  # sockets: meaningless in an image, as tar itself says


def _disk_xattrs(path: bytes) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for name in names:
        try:
            out.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(sorted(out))


def walk(
    root: os.PathLike | str,
    *,
    attrs: AttrRecord | None = None,
    clamp: int | None = None,
    keep_dev: bool = False,
    cleanup: bool = True,
) -> Iterator[Entry]:
    """Yield every entry of the tree under root, in image order."""
    broot = os.fsencode(os.fspath(root)).rstrip(b"/") or b"/"
    links: dict[tuple[int, int], bytes] = {}
    filt = clean.Filter(clamp=clamp, keep_dev=keep_dev, enabled=cleanup)

    def entry_for(rel: bytes, full: bytes, st: os.stat_result) -> Entry | None:
        key = os.fsdecode(rel) if rel else "."
        rec = attrs.get(key) if attrs is not None else None
        kind = _kind_of(st.st_mode)
        if rec is not None:
            # Devices and fifos the build could not create on disk exist only
            # in the record (as placeholder files, or not at all).
            rkind = _kind_of(rec.mode)
            if rkind in (CHR, BLK, FIFO):
                kind = rkind
        if kind is None:
            return None
        # The record is the whole truth for the paths it knows, xattrs included.
        if rec is not None:
            mode, uid, gid, rdev, xattrs = stat.S_IMODE(rec.mode), rec.uid, rec.gid, rec.rdev, rec.xattrs
        else:
            mode, rdev, xattrs = stat.S_IMODE(st.st_mode), st.st_rdev, _disk_xattrs(full)
            # With a record (a rootless tree), a path it does not know was made
            # by the build itself, which a root build would have made as root.
            uid, gid = (0, 0) if attrs is not None else (st.st_uid, st.st_gid)
        if kind not in (CHR, BLK):
            rdev = 0
        mtime = int(st.st_mtime)
        if clamp is not None and mtime > clamp:
            mtime = clamp
        e = Entry(rel, kind, mode, uid, gid, max(mtime, 0), rdev=rdev, xattrs=xattrs)
        if kind == FILE:
            e.size = st.st_size
            e.path = full
            if st.st_nlink > 1:
                ino = (st.st_dev, st.st_ino)
                first = links.get(ino)
                if first is not None:
                    e.kind, e.size, e.path, e.linkname = HARDLINK, 0, None, first
                else:
                    links[ino] = rel
        elif kind == SYMLINK:
            e.linkname = os.readlink(full)
        return e

    def recurse(rel: bytes, full: bytes) -> Iterator[Entry]:
        try:
            with os.scandir(full) as it:
                names = sorted(d.name for d in it)
        except OSError as exc:
            raise OutputError(f"cannot read directory {os.fsdecode(full)}: {exc.strerror}") from None
        for name in names:
            crel = rel + b"/" + name if rel else name
            action = filt.action(crel)
            if action is clean.SKIP:
                continue
            cfull = full + b"/" + name
            try:
                st = os.lstat(cfull)
            except FileNotFoundError:
                continue  # vanished while we walked: nothing to pack
            e = entry_for(crel, cfull, st)
            if e is None:
                continue
            if action not in (clean.KEEP, clean.EMPTY_DIR) and e.kind in (FILE, HARDLINK):
                action = clean.resolve_action(action, cfull)
            if clean.is_replacement(action) and e.kind in (FILE, HARDLINK):
                # Replaced contents stand alone: never a link to another name.
                if e.kind == FILE and links.get((st.st_dev, st.st_ino)) == crel:
                    del links[(st.st_dev, st.st_ino)]
                e.kind, e.data, e.path, e.size, e.linkname = FILE, action, None, len(action), b""
            yield e
            if e.kind == DIR and action is not clean.EMPTY_DIR:
                yield from recurse(crel, cfull)

    try:
        st = os.lstat(broot)
    except OSError as exc:
        raise OutputError(f"root {os.fsdecode(broot)} cannot be read: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"root {os.fsdecode(broot)} is not a directory")
    top = entry_for(b"", broot, st)
    assert top is not None
    yield top
    yield from recurse(b"", broot)


_ST_TYPE = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK, CHR: stat.S_IFCHR, BLK: stat.S_IFBLK,
            FIFO: stat.S_IFIFO}


def checked(entries: Iterator[Entry], policy: Policy, *, attrs: AttrRecord | None, nodes_checked: bool,
            keep_dev: bool) -> Iterator[Entry]:
    """The walk's entries, each held to the packer's rules (see
    rootfs.host.policy): set-id files others may write are refused; device
    nodes and FIFOs are refused unless the configure stage made them
    (nodes_checked: the payloads of this root were checked as they were
    unpacked, in this run; or the record says so), or they are /dev's
    contents packed on request (keep_dev)."""
    scripted = attrs.scripted if attrs is not None else set()
    for e in entries:
        kind = _ST_TYPE.get(e.kind)
        if kind is not None and e.data is None:
            made = nodes_checked or (keep_dev and (e.name == b"dev" or e.name.startswith(b"dev/")))
            if not made and kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
                made = os.fsdecode(e.name) in scripted
            policy.check_packed(os.fsdecode(e.name), kind | e.mode, made_by_scripts=made)
        yield e


def _parse_ids(root: bytes, name: str) -> dict[int, str]:
    """uid or gid -> name from the ROOT's own etc/passwd or etc/group: the
    image's names, never the host's."""
    try:
        path = resolve_in_root(os.fsdecode(root), name)
        with open(path, "rb") as f:
            text = f.read()
    except (OSError, PathEscape):
        return {}
    ids: dict[int, str] = {}
    for line in text.splitlines():
        fields = line.split(b":")
        if len(fields) >= 3 and fields[2].isdigit():
            ids.setdefault(int(fields[2]), fields[0].decode("utf-8", "replace")[:31])
    return ids


def owner_names(root: os.PathLike | str) -> tuple[dict[int, str], dict[int, str]]:
    broot = os.fsencode(os.fspath(root))
    return _parse_ids(broot, "etc/passwd"), _parse_ids(broot, "etc/group")
