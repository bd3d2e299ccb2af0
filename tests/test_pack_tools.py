"""The real container tools accept what the packer writes and run it.

The hermetic tests pack a runnable root made of the host's own /bin/sh and
its libraries; the mirror test packs the session's real bookworm minbase
root (built by rootfs from the mirror found at run time) and runs a shell
in it. File capabilities through podman are checked on the hermetic tree.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import needs_tool
from pack_containers import Containers, available
from pack_helpers import CAP_NET_RAW, SDE, host_shell_tree

from rootfs.model.recipe import ImageConfig
from rootfs.pack import PackOptions, pack

_why = available()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

TAG = "localhost/packtest:1"


@pytest.fixture(scope="module")
def shell_image(tmp_path_factory):
    base = tmp_path_factory.mktemp("shellimg")
    root = base / "root"
    host_shell_tree(root)
    image = ImageConfig(cmd=("/bin/sh", "-c", "echo from-cmd"), labels=(("org.example.test", "yes"),),
                        annotations=(("org.opencontainers.image.title", "pack test"),), env=(("GREETING", "hi"),))
    out = base / "out"
    pack(root, ["tar", "oci", "oci-archive", "docker-archive"], out,
         PackOptions(source_date_epoch=SDE, tag=TAG, image=image))
    return out


@pytest.fixture
def containers(tmp_path_factory):
    c = Containers(tmp_path_factory.mktemp("ctr"))
    yield c
    c.close()


def _layer_xattrs(archive: Path) -> dict[str, dict[str, str]]:
    """name -> SCHILY.xattr records of the (only) layer of a docker-archive."""
    with tarfile.open(archive) as t:
        manifest = json.load(t.extractfile("manifest.json"))
        layer = t.extractfile(manifest[0]["Layers"][-1]).read()
    out = {}
    with tarfile.open(fileobj=io.BytesIO(layer)) as t:
        for m in t:
            x = {k: v for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            if x:
                out[m.name.lstrip("./").lstrip("/")] = x
    return out


def test_skopeo_reads_and_copies_the_layout(shell_image, containers, tmp_path):
    layout = shell_image / "oci"
    info = json.loads(containers.skopeo("inspect", f"oci:{layout}:{TAG}").stdout)
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert info["Labels"] == {"org.example.test": "yes"}
    assert len(info["Layers"]) == 1
    config = json.loads(containers.skopeo("inspect", "--config", f"oci:{layout}:{TAG}").stdout)
    assert config["config"]["Cmd"] == ["/bin/sh", "-c", "echo from-cmd"]
    assert "GREETING=hi" in config["config"]["Env"]
    raw = json.loads(containers.skopeo("inspect", "--raw", f"oci:{layout}:{TAG}").stdout)
    assert raw["annotations"] == {"org.opencontainers.image.title": "pack test"}
    # copying re-reads and verifies every blob's digest and size
    containers.skopeo("copy", "-q", f"oci:{layout}:{TAG}", f"docker-archive:{tmp_path}/da.tar:{TAG}")
    containers.skopeo("copy", "-q", f"docker-archive:{shell_image}/image.docker.tar", f"oci:{tmp_path}/back:x")
    containers.skopeo("inspect", f"oci-archive:{shell_image}/image.oci.tar:{TAG}")


@needs_tool("umoci")
def test_umoci_unpacks_and_checks_diff_ids(shell_image, tmp_path):
    r = subprocess.run(["umoci", "unpack", "--image", f"{shell_image}/oci:{TAG}", str(tmp_path / "bundle")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rootfs = tmp_path / "bundle" / "rootfs"
    assert (rootfs / "bin/sh").is_file()
    assert os.getxattr(rootfs / "bin/ping", "security.capability") == CAP_NET_RAW


@needs_tool("oci-image-tool")
def test_oci_image_tool_validates(shell_image):
    r = subprocess.run(["oci-image-tool", "validate", "--type", "image", "--ref", f"name={TAG}",
                        str(shell_image / "oci")], capture_output=True, text=True)
    assert r.returncode == 0 and "Validation succeeded" in r.stdout + r.stderr, r.stdout + r.stderr


def test_podman_import_tar_runs_and_keeps_caps(shell_image, containers, tmp_path):
    containers.podman("import", "-q", str(shell_image / "rootfs.tar"), "localhost/imported:1")
    assert containers.run("localhost/imported:1", "/bin/sh", "-c", "echo ok").strip() == "ok"
    containers.podman("save", "-q", "--format", "docker-archive", "-o", str(tmp_path / "saved.tar"),
                      "localhost/imported:1")
    xattrs = _layer_xattrs(tmp_path / "saved.tar")
    assert "SCHILY.xattr.security.capability" in xattrs.get("bin/ping", {}), xattrs


def test_podman_loads_docker_archive_and_runs(shell_image, containers):
    out = containers.podman("load", "-i", str(shell_image / "image.docker.tar")).stdout
    assert TAG in out
    assert containers.run(TAG, "/bin/sh", "-c", "echo ok").strip() == "ok"
    # the image's own Cmd and Env
    assert containers.run(TAG).strip() == "from-cmd"
    assert containers.run(TAG, "/bin/sh", "-c", 'echo "$GREETING"').strip() == "hi"


def test_podman_loads_oci_archive_and_runs(shell_image, containers):
    out = containers.podman("load", "-i", str(shell_image / "image.oci.tar")).stdout
    assert TAG in out
    assert containers.run(TAG, "/bin/sh", "-c", "echo ok").strip() == "ok"


def test_zstd_layers_load_and_run(tmp_path, containers):
    root = tmp_path / "root"
    host_shell_tree(root)
    pack(root, ["oci-archive"], tmp_path / "z.oci.tar",
         PackOptions(source_date_epoch=SDE, tag="localhost/zstd:1", layer_compression="zstd"))
    raw = json.loads(containers.skopeo("inspect", "--raw", f"oci-archive:{tmp_path}/z.oci.tar").stdout)
    assert raw["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    containers.podman("load", "-i", str(tmp_path / "z.oci.tar"))
    assert containers.run("localhost/zstd:1", "/bin/sh", "-c", "echo ok").strip() == "ok"


@needs_tool("umoci", "taskset")
def test_gzip_layer_of_many_blocks_made_on_one_core_loads(tmp_path, containers):
    # Many 1 MiB gzip blocks joined into one member, compressed by a process
    # held to one core: Go's readers (umoci, podman's containers/image) must
    # decompress it to the tar whose digest the config names.
    import random
    import sys

    root = tmp_path / "root"
    host_shell_tree(root)
    rng = random.Random(2)
    data = b"".join(rng.choice((b"alpha ", b"beta ", b"gamma\n")) + rng.randbytes(rng.randint(0, 40))
                    for _ in range(200_000))
    (root / "data").write_bytes(data)
    code = ("import sys\nfrom rootfs.pack import PackOptions, pack\n"
            "pack(sys.argv[1], ['oci', 'oci-archive'], sys.argv[2], "
            "PackOptions(source_date_epoch=int(sys.argv[3]), tag='localhost/gzblocks:1'))\n")
    r = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code, str(root), str(tmp_path / "out"), str(SDE)],
                       capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert r.returncode == 0, r.stderr
    layout = tmp_path / "out" / "oci"
    manifest = json.loads(containers.skopeo("inspect", "--raw", f"oci:{layout}:localhost/gzblocks:1").stdout)
    assert manifest["layers"][0]["size"] > 3 << 20  # several blocks, compressed
    u = subprocess.run(["umoci", "unpack", "--image", f"{layout}:localhost/gzblocks:1", str(tmp_path / "bundle")],
                       capture_output=True, text=True)
    assert u.returncode == 0, u.stderr
    assert (tmp_path / "bundle/rootfs/data").read_bytes() == data
    containers.podman("load", "-i", str(tmp_path / "out" / "image.oci.tar"))
    assert containers.run("localhost/gzblocks:1", "/bin/sh", "-c", "echo ok").strip() == "ok"


# -- a real bookworm root ----------------------------------------------------

@pytest.fixture(scope="session")
def bookworm_root(bookworm_build):
    """The session's real bookworm minbase root, built by rootfs (conftest)."""
    return bookworm_build.root


@pytest.mark.mirror
@pytest.mark.slow
def test_real_bookworm_root_runs_everywhere(bookworm_root, containers, tmp_path_factory, tmp_path):
    out = tmp_path / "out"
    formats = ["tar", "oci", "oci-archive", "docker-archive", "ext4"]
    arts = {a.format: a for a in pack(bookworm_root, formats, out,
                                      PackOptions(source_date_epoch=SDE, tag="localhost/bookworm:test"))}
    assert set(arts) == set(formats)
    r = subprocess.run(["e2fsck", "-fn", str(out / "rootfs.ext4")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    containers.podman("import", "-q", str(out / "rootfs.tar"), "localhost/bw-imported:1")
    assert containers.run("localhost/bw-imported:1", "/bin/sh", "-c", "echo ok").strip() == "ok"
    containers.podman("load", "-i", str(out / "image.docker.tar"))
    assert containers.run("localhost/bookworm:test", "/bin/sh", "-c", "echo ok").strip() == "ok"
    # a fresh store, so that no blob is skipped as already present
    fresh = Containers(tmp_path_factory.mktemp("ctr-fresh"))
    try:
        fresh.podman("load", "-i", str(out / "image.oci.tar"))
        assert fresh.run("localhost/bookworm:test", "/bin/sh", "-c", "echo ok").strip() == "ok"
    finally:
        fresh.close()
    # every blob re-read and verified, the layout converted
    containers.skopeo("copy", "-q", f"oci:{out}/oci:localhost/bookworm:test", f"oci:{tmp_path}/copy:x")
