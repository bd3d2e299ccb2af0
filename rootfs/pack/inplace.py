"""The `dir` output by renaming: the caller gives its root up.

Copying a root into OUT costs a second write of every file. When the caller
owns the tree and will not use it again (`rootfs make` packing the root it
just built, PackOptions.move_root), the same reproducibility rules that
filter the stream are applied to the tree itself -- run-specific files
removed or replaced, /proc, /sys, /dev and /tmp emptied, sockets removed,
mtimes clamped -- and the tree is renamed to OUT. The result is the tree
that copying would have made. The attrs record, if any, follows the tree
(OUT.attrs.json) without the paths that were removed.
"""

from __future__ import annotations

import os
import shutil
import stat

from rootfs.model.attrs import AttrRecord
from rootfs.pack import clean


def _remove(path: bytes) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def clean_in_place(root: os.PathLike | str, *, clamp: int | None, keep_dev: bool, cleanup: bool,
                   attrs: AttrRecord | None) -> None:
    filt = clean.Filter(clamp=clamp, keep_dev=keep_dev, enabled=cleanup)
    broot = os.fsencode(os.fspath(root))

    def settle(path: bytes, mtime_ns: int) -> None:
        # What the stream records: whole seconds, clamped.
        secs = mtime_ns // 10**9
        if clamp is not None and secs > clamp:
            secs = clamp
        os.utime(path, (secs, secs), follow_symlinks=False)

    def forget(rel: bytes) -> None:
        if attrs is not None:
            attrs.remove(os.fsdecode(rel))

    def visit(rel: bytes, full: bytes) -> None:
        for name in sorted(os.listdir(full)):
            crel = rel + b"/" + name if rel else name
            cfull = full + b"/" + name
            action = filt.action(crel)
            st = os.lstat(cfull)
            if action is clean.SKIP or stat.S_ISSOCK(st.st_mode):
                _remove(cfull)
                forget(crel)
                continue
            if stat.S_ISDIR(st.st_mode):
                if action is clean.EMPTY_DIR:
                    for child in os.listdir(cfull):
                        _remove(cfull + b"/" + child)
                        forget(crel + b"/" + child)
                else:
                    visit(crel, cfull)
            elif stat.S_ISREG(st.st_mode) and action not in (clean.KEEP, clean.EMPTY_DIR):
                data = clean.resolve_action(action, cfull)
                if clean.is_replacement(data):
                    # a new inode, as the stream packs it: never through a hard link
                    tmp = cfull + b".rootfs-new"
                    with open(tmp, "wb") as f:
                        f.write(data)
                    os.chown(tmp, st.st_uid, st.st_gid)
                    os.chmod(tmp, stat.S_IMODE(st.st_mode))
                    os.rename(tmp, cfull)
            settle(cfull, st.st_mtime_ns)

    top = os.lstat(broot)
    visit(b"", broot)
    settle(broot, top.st_mtime_ns)
