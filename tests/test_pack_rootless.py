"""A rootless-built tree -- owned by the builder on disk, devices as empty
placeholders, no security xattrs -- plus its attrs record packs to exactly
the bytes of the root-built tree."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from conftest import needs_root, needs_tool
from pack_helpers import NODES_ALLOWED, SDE, build_every_entry_tree, tar_model

from rootfs.model.attrs import Attr, AttrRecord, load_for_root, sidecar_path
from rootfs.pack import PackOptions, pack

pytestmark = [needs_root(), needs_tool("mke2fs", "debugfs", "tar2sqfs")]

FORMATS = ["tar", "oci", "docker-archive", "ext4", "squashfs"]


def record_of_tree(root: Path) -> AttrRecord:
    """What the installer records in a rootless build: every path's intended
    mode, owner, device number and xattrs."""
    rec = AttrRecord()
    r = os.fsencode(root)
    for dirpath, dirs, files in os.walk(r):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            _add(rec, os.fsdecode(os.path.relpath(full, r)), full)
    _add(rec, ".", r)
    return rec


def _add(rec: AttrRecord, key: str, full: bytes) -> None:
    st = os.lstat(full)
    try:
        names = os.listxattr(full, follow_symlinks=False)
    except OSError:
        names = []
    xattrs = tuple(sorted((n, os.getxattr(full, n, follow_symlinks=False)) for n in names))
    rdev = st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else 0
    rec.set(key, Attr(st.st_mode, st.st_uid, st.st_gid, rdev, xattrs))


def make_rootless_copy(src: Path, dest: Path) -> None:
    """The tree as a rootless build leaves it on disk."""
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    d = os.fsencode(dest)
    for dirpath, dirs, files in os.walk(d):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                os.unlink(full)
                open(full, "wb").close()  # what extraction leaves without mknod rights
            for x in os.listxattr(full, follow_symlinks=False):
                if x.startswith("security."):
                    os.removexattr(full, x, follow_symlinks=False)
            os.chown(full, 65534, 65534, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(full, stat.S_IMODE(os.lstat(full).st_mode) & 0o777 | 0o600)  # no setuid bits on disk
    os.chown(d, 65534, 65534)
    # placeholders were made now: give every path its original time back,
    # as extraction does
    s = os.fsencode(src)
    for dirpath, dirs, files in os.walk(d):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            orig = os.lstat(os.path.join(s, os.path.relpath(full, d)))
            os.utime(full, ns=(orig.st_mtime_ns, orig.st_mtime_ns), follow_symlinks=False)


def _bytes(out: Path) -> dict[str, bytes]:
    res = {}
    for p in sorted(out.rglob("*")):
        if p.is_file():
            res[str(p.relative_to(out))] = p.read_bytes()
    return res


def test_rootless_tree_with_record_packs_like_root_built(tmp_path):
    real = tmp_path / "real"
    build_every_entry_tree(real)
    rootless = tmp_path / "rootless"
    make_rootless_copy(real, rootless)
    record_of_tree(real).save(sidecar_path(rootless))

    pack(real, FORMATS, tmp_path / "from-real", PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE))
    pack(rootless, FORMATS, tmp_path / "from-rootless", PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE))
    a, b = _bytes(tmp_path / "from-real"), _bytes(tmp_path / "from-rootless")
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name

    # without the record the owners on disk show: the record is what matters
    shutil.move(sidecar_path(rootless), tmp_path / "away.json")
    pack(rootless, ["tar"], tmp_path / "bare.tar", PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE))
    bare = tar_model((tmp_path / "bare.tar").read_bytes())
    assert bare.nodes[b"bin/su"].uid == 65534 and bare.nodes[b"devs/null"].type == "f"


def test_dir_output_without_root_carries_a_record(tmp_path, monkeypatch):
    real = tmp_path / "real"
    build_every_entry_tree(real)
    pack(real, ["tar"], tmp_path / "ref.tar", PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE))
    # As an unprivileged packer would: no chown, no mknod.
    monkeypatch.setattr(os, "geteuid", lambda: 65534)
    monkeypatch.setattr(os, "getegid", lambda: 65534)
    pack(real, ["dir"], tmp_path / "copy", PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE))
    monkeypatch.undo()
    rec = load_for_root(tmp_path / "copy")
    assert rec is not None and rec.get("devs/null").is_device
    # whole: a path missing from a record would be taken to be root's
    assert rec.get("odd/owned").uid == 1000 and rec.get("links/hard") is not None and rec.get(".") is not None
    assert not stat.S_ISCHR(os.lstat(tmp_path / "copy/devs/null").st_mode)
    # packing the copy (its record found beside it) gives the original bytes
    pack(tmp_path / "copy", ["tar"], tmp_path / "again.tar", PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE))
    assert (tmp_path / "again.tar").read_bytes() == (tmp_path / "ref.tar").read_bytes()
