"""Every output format, read back by independent code, holds the tree.

One session build packs a tree with every entry type into every format;
each test reads one artifact back (tarfile, libarchive, debugfs, sqfs2tar,
lstat) and compares path, type, mode, owner, size, content digest, link
target, device numbers, xattrs, mtime and hard-link groups with the source.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile

import pytest
from conftest import needs_root, needs_tool
from pack_helpers import (
    NODES_ALLOWED,
    CAP_NET_RAW,
    NON_UTF8,
    SDE,
    Model,
    build_every_entry_tree,
    decompress,
    docker_layer,
    expected_model,
    ext_model,
    libarchive_model,
    oci_layer,
    squashfs_model,
    tar_model,
    tar_names,
    tree_model,
)

from rootfs.model.attrs import Attr, AttrRecord, sidecar_path
from rootfs.pack import ARTIFACT_NAMES, FORMATS, PackOptions, pack

pytestmark = [needs_root(), needs_tool("mke2fs", "debugfs", "tar2sqfs", "sqfs2tar", "e2fsck")]


def assert_same(actual: Model, expected: Model, skip: set[bytes] = frozenset()) -> None:
    keys = (set(actual.nodes) | set(expected.nodes)) - skip
    bad = {k: (actual.nodes.get(k), expected.nodes.get(k)) for k in sorted(keys)
           if actual.nodes.get(k) != expected.nodes.get(k)}
    assert not bad, "differences (actual, expected):\n" + "\n".join(f"{k!r}: {v}" for k, v in list(bad.items())[:10])
    assert actual.links == expected.links


@pytest.fixture(scope="session")
def every(tmp_path_factory):
    base = tmp_path_factory.mktemp("every")
    root = base / "root"
    build_every_entry_tree(root)
    out = base / "out"
    arts = pack(root, list(FORMATS), out, PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE, tag="localhost/every:1"))
    return root, out, {a.format: a for a in arts}, expected_model(root)


def test_tar_read_back_by_tarfile_and_libarchive(every):
    root, out, arts, expected = every
    raw = (out / "rootfs.tar").read_bytes()
    assert_same(tar_model(raw), expected)
    assert_same(libarchive_model(out / "rootfs.tar"), expected.without_xattrs())
    assert arts["tar"].digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert arts["tar"].size == len(raw)


def test_tar_details(every):
    root, out, arts, expected = every
    raw = (out / "rootfs.tar").read_bytes()
    names = tar_names(raw)
    # owner names come from the root's own passwd/group, not the host's
    assert names[b"odd/owned"] == ("alice", "alice")
    assert names[b"bin/wall"] == ("root", "staff")
    assert names[b"odd/nobody"] == ("", "")
    model = tar_model(raw)
    assert model.nodes[b"bin/ping"].xattrs == {"security.capability": CAP_NET_RAW}
    assert model.nodes[b"odd/nobody"].gid == 3_000_000
    assert model.nodes[b"names/" + NON_UTF8].type == "f"
    assert model.nodes[b"etc/hostname"].mtime == SDE  # clamped
    assert model.nodes[b"etc/machine-id"].size == 0
    assert b"var/log/dpkg.log" not in model.nodes and b"tmp" in model.nodes and b"tmp/leftover" not in model.nodes
    assert b"run/lock" in model.nodes and b"var/lib/apt/lists/lock" in model.nodes
    with tarfile.open(out / "rootfs.tar") as t:
        members = t.getmembers()
        assert all(m.pax_headers.get("atime") is None and m.pax_headers.get("ctime") is None for m in members)
        assert [m.name for m in members] == sorted((m.name for m in members), key=_tar_order)
        assert members[0].name == "." and members[0].isdir()


def _tar_order(name: str) -> list[bytes]:
    # depth first, siblings by bytes: the order of `tar --sort=name`
    return name.encode("utf-8", "surrogateescape").rstrip(b"/").split(b"/")


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst", "tar.xz"])
def test_compressed_tars_hold_the_same_stream(every, fmt):
    root, out, arts, expected = every
    data = decompress(out / ARTIFACT_NAMES[fmt])
    assert data == (out / "rootfs.tar").read_bytes()
    assert_same(libarchive_model(out / ARTIFACT_NAMES[fmt]), expected.without_xattrs())


def test_gzip_header_has_no_name_or_time(every):
    root, out, arts, expected = every
    head = (out / "rootfs.tar.gz").read_bytes()[:10]
    assert head == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
    subprocess.run(["gzip", "-t", str(out / "rootfs.tar.gz")], check=True)


def test_oci_layout(every):
    root, out, arts, expected = every
    layout = out / "oci"
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "localhost/every:1"
    assert arts["oci"].digest == index["manifests"][0]["digest"]
    manifest, config, layer = oci_layer(layout)
    raw = (out / "rootfs.tar").read_bytes()
    assert layer == raw
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]}
    assert manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert config["config"]["Env"][0].startswith("PATH=")
    assert config["history"][0]["created_by"]
    for blob in (layout / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


def test_oci_archive_is_the_layout(every):
    root, out, arts, expected = every
    with tarfile.open(out / "image.oci.tar") as t:
        names = sorted(t.getnames())
        for m in t.getmembers():
            if m.isfile():
                assert t.extractfile(m).read() == (out / "oci" / m.name).read_bytes()
    assert "index.json" in names and "oci-layout" in names
    assert len([n for n in names if n.startswith("blobs/sha256/")]) == 3


def test_docker_archive(every):
    root, out, arts, expected = every
    manifest, config, layer = docker_layer(out / "image.docker.tar")
    assert manifest[0]["RepoTags"] == ["localhost/every:1"]
    assert layer == (out / "rootfs.tar").read_bytes()
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]


def test_squashfs(every):
    root, out, arts, expected = every
    # sqfs2tar writes no entry for the root itself
    assert_same(squashfs_model(out / "rootfs.squashfs"), expected, skip={b""})


@pytest.mark.parametrize("fmt", ["ext2", "ext4"])
def test_ext_images(every, fmt, tmp_path):
    root, out, arts, expected = every
    image = out / ARTIFACT_NAMES[fmt]
    subprocess.run(["e2fsck", "-fn", str(image)], check=True, capture_output=True)
    assert_same(ext_model(image, tmp_path), expected)


def test_dir_output(every):
    root, out, arts, expected = every
    assert_same(tree_model(out / "rootfs"), expected)


def test_source_tree_untouched(every):
    root, out, arts, expected = every
    assert (root / "var/log/dpkg.log").exists()
    assert (root / "etc/machine-id").read_text().startswith("0123")
    assert (root / "tmp/leftover").exists()


def test_no_clean_and_keep_dev(every, tmp_path):
    root, out, arts, expected = every
    pack(root, ["tar"], tmp_path / "t.tar", PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE, cleanup=False, keep_dev=True))
    model = tar_model((tmp_path / "t.tar").read_bytes())
    assert model.nodes[b"dev/null"].type == "c"
    assert model.nodes[b"var/log/dpkg.log"].size > 0
    assert model.nodes[b"etc/machine-id"].size == 33
    assert b"proc/not-packed" not in model.nodes  # never: /proc is the kernel's
    assert b"odd/socket" not in model.nodes


def test_streams_to_stdout(every, tmp_path):
    root, out, arts, expected = every
    with open(tmp_path / "s.tar.zst", "wb") as f:
        r = subprocess.run([sys.executable, "-m", "rootfs.cli", "pack", str(root), "--format", "tar.zst", "-o", "-",
                            "--source-date-epoch", str(SDE), "--allow", "device,fifo"], stdout=f, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr
    assert decompress(tmp_path / "s.tar.zst") == (out / "rootfs.tar").read_bytes()


# -- the attrs record: a rootless tree packs like a root-built one ----------

def test_attrs_record_owners_and_devices(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "devs").mkdir()
    (root / "bin/ping").write_bytes(b"ping\n")
    (root / "devs/console").write_bytes(b"")  # a placeholder: the build could not mknod
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/:/bin/sh\nmessage:x:100:101::/:/bin/false\n")
    rec = AttrRecord()
    rec.set(".", Attr(0o40755, 0, 0))
    rec.set("bin/ping", Attr(0o104750, 100, 101, xattrs=(("security.capability", CAP_NET_RAW),)))
    rec.set("devs/console", Attr(0o20600, 0, 5, rdev=os.makedev(5, 1)))
    rec.save(sidecar_path(root))  # found beside the root without being passed
    out = tmp_path / "out"
    pack(root, ["tar", "ext4", "squashfs"], out, PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE))
    for model in (tar_model((out / "rootfs.tar").read_bytes()), ext_model(out / "rootfs.ext4", tmp_path),
                  squashfs_model(out / "rootfs.squashfs")):
        ping, console = model.nodes[b"bin/ping"], model.nodes[b"devs/console"]
        assert (ping.type, ping.mode, ping.uid, ping.gid) == ("f", 0o4750, 100, 101)
        assert ping.xattrs == {"security.capability": CAP_NET_RAW}
        assert (console.type, console.mode, console.gid, console.rdev) == ("c", 0o600, 5, (5, 1))
    assert tar_names((out / "rootfs.tar").read_bytes())[b"bin/ping"][0] == "message"
    # The record wins over lstat, and an explicit record over the sidecar.
    other = AttrRecord()
    other.set("bin/ping", Attr(0o100700, 7, 8))
    pack(root, ["tar"], tmp_path / "o.tar", PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE, attrs=other))
    ping = tar_model((tmp_path / "o.tar").read_bytes()).nodes[b"bin/ping"]
    assert (ping.mode, ping.uid, ping.gid, ping.xattrs) == (0o700, 7, 8, {})
