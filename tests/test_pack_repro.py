"""The same root packed twice -- elsewhere, later, with its mtimes touched --
gives the same bytes in every format."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from conftest import needs_root, needs_tool
from pack_helpers import NODES_ALLOWED, SDE, build_every_entry_tree, set_mtimes, tree_model

from rootfs.pack import ARTIFACT_NAMES, FORMATS, PackOptions, pack

pytestmark = [needs_root(), needs_tool("mke2fs", "debugfs", "tar2sqfs")]


def _digests(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under path (or of path itself)."""
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    out = {}
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = Path(dirpath, f)
            out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_identical_bytes_across_runs_dirs_and_mtimes(tmp_path, monkeypatch):
    root = tmp_path / "root"
    build_every_entry_tree(root)
    now = int(time.time())
    set_mtimes(root, now - 100)  # a fresh build: everything newer than SDE
    first = pack(root, list(FORMATS), tmp_path / "a" / "first", PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE))

    set_mtimes(root, now + 3600)  # touched between the runs
    (root / "etc/machine-id").write_text("fedcba9876543210fedcba9876543210\n")  # a new build's id
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    second = pack(root, list(FORMATS), Path("elsewhere/deeper/second"), PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE))

    assert [a.format for a in first] == [a.format for a in second] == list(FORMATS)
    for a, b in zip(first, second):
        if a.format == "dir":
            assert tree_model(a.path) == tree_model(b.path)
            continue
        assert a.digest == b.digest, a.format
        assert _digests(a.path) == _digests(b.path), a.format


def test_source_date_epoch_env_overrides(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/motd").write_text("hi\n")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")
    pack(root, ["oci"], tmp_path / "oci", PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE))
    import json

    from pack_helpers import oci_layer, tar_model

    _, config, layer = oci_layer(tmp_path / "oci")
    assert config["created"] == "2001-09-09T01:46:40Z"
    assert tar_model(layer).nodes[b"etc/motd"].mtime == 1_000_000_000
    assert json.loads((tmp_path / "oci/index.json").read_text())["manifests"][0]["platform"]["os"] == "linux"


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_layer_compression_is_deterministic(tmp_path, compression):
    root = tmp_path / "root"
    root.mkdir()
    # more than one gzip block (1 MiB) so the parallel pieces must join
    (root / "data").write_bytes(os.urandom(1 << 20) + b"a" * (3 << 20))
    outs = [pack(root, ["oci"], tmp_path / f"o{i}", PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE, layer_compression=compression))
            for i in range(2)]
    assert outs[0][0].digest == outs[1][0].digest
    from pack_helpers import oci_layer, tar_model

    manifest, _, layer = oci_layer(tmp_path / "o0")
    assert manifest["layers"][0]["mediaType"].endswith("+" + compression)
    assert tar_model(layer).nodes[b"data"].size == (1 << 20) + (3 << 20)


def test_artifact_names(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    arts = pack(root, ["tar.zst", "docker-archive"], tmp_path / "out", PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [ARTIFACT_NAMES["tar.zst"], ARTIFACT_NAMES["docker-archive"]])
    assert [a.path for a in arts] == [tmp_path / "out" / "rootfs.tar.zst", tmp_path / "out" / "image.docker.tar"]
    one = pack(root, ["tar"], tmp_path / "single.tar", PackOptions(policy=NODES_ALLOWED, source_date_epoch=SDE))
    assert one[0].path == tmp_path / "single.tar" and (tmp_path / "single.tar").is_file()
    assert oct((tmp_path / "single.tar").stat().st_mode & 0o777) == "0o644"
    # nothing temporary is left beside the outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "root", "single.tar"]


def test_cli_takes_epoch_and_arch_from_the_lock_beside_the_root(tmp_path):
    import json
    import subprocess
    import sys

    from rootfs.model.lock import Lock

    root = tmp_path / "bw"
    (root / "etc").mkdir(parents=True)
    (root / "etc/motd").write_text("hi\n")
    Lock(backend="deb", recipe="bw", distribution="debian", suite="bookworm", architecture="armhf",
         source_date_epoch=1_234_567_890).write(tmp_path / "bw.lock.json")
    r = subprocess.run([sys.executable, "-m", "rootfs.cli", "-q", "pack", str(root), "-f", "oci", "-o",
                        str(tmp_path / "oci")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from pack_helpers import oci_layer, tar_model

    _, config, layer = oci_layer(tmp_path / "oci")
    assert (config["architecture"], config["variant"], config["created"]) == ("arm", "v7", "2009-02-13T23:31:30Z")
    assert tar_model(layer).nodes[b"etc/motd"].mtime == 1_234_567_890
    index = json.loads((tmp_path / "oci/index.json").read_text())
    assert index["manifests"][0]["platform"] == {"architecture": "arm", "os": "linux", "variant": "v7"}
