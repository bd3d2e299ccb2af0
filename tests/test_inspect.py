"""`rootfs history` and `rootfs inspect` on an OCI layout, an oci-archive and
a docker-archive built by umoci/skopeo, checked field by field against the
image's own config and manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass

import pytest
from conftest import needs_tool
from oci_images import INSTALLED, build_test_images

pytestmark = needs_tool("umoci", "skopeo")


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    return build_test_images(tmp_path_factory.mktemp("inspect-images"))


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def rootfs(*args: str) -> Run:
    """The command line, in-process (the commands only read files)."""
    from typer.testing import CliRunner

    from rootfs.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def kinds(images):
    return {"oci-layout": f"{images.layout}:2", "oci-archive": str(images.oci_archive),
            "docker-archive": str(images.docker_archive)}


def test_inspect_json_matches_the_config(images):
    config = images.config("2")
    manifest = images.manifest("2")
    for kind, spec in kinds(images).items():
        r = rootfs("inspect", spec, "--format", "json")
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert info["kind"] == kind
        assert info["architecture"] == config["architecture"] == "amd64"
        assert info["os"] == config["os"] == "linux"
        assert info["created"] == config["created"]
        assert info["author"] == "rootfs tests"
        assert info["config"]["env"] == config["config"]["Env"] == ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"]
        assert info["config"]["cmd"] == config["config"]["Cmd"] == ["/bin/sh"]
        assert info["config"]["entrypoint"] == config["config"]["Entrypoint"] == ["/bin/sh", "-c"]
        assert info["config"]["labels"] == config["config"]["Labels"] == {"org.example.role": "test"}
        assert [layer["diff_id"] for layer in info["layers"]] == config["rootfs"]["diff_ids"]
        assert info["packages"]["format"] == "deb"
        assert [(p["name"], p["version"], p["architecture"]) for p in info["packages"]["packages"]] == INSTALLED
        assert info["packages"]["os_release"]["PRETTY_NAME"] == "Test Linux 1"
        if kind == "docker-archive":
            # skopeo wrote the layers uncompressed: same diff_ids (above), and
            # digests that are those diff_ids
            assert [d["digest"] for d in info["layers"]] == config["rootfs"]["diff_ids"]
            continue
        assert info["digest"] == images.manifest_digest("2")
        assert info["config_digest"] == manifest["config"]["digest"]
        assert [(d["digest"], d["size"], d["media_type"]) for d in info["layers"]] == \
            [(d["digest"], d["size"], d["mediaType"]) for d in manifest["layers"]]
        assert info["size"] == sum(d["size"] for d in manifest["layers"])
        assert info["annotations"] == {"org.opencontainers.image.ref.name": "2"}


def test_inspect_docker_archive_layers_are_its_files(images):
    r = rootfs("inspect", str(images.docker_archive), "--format", "json", "--no-packages")
    info = json.loads(r.stdout)
    assert "packages" not in info
    with tarfile.open(images.docker_archive) as tar:
        entry = json.load(tar.extractfile("manifest.json"))[0]
        sizes = [tar.getmember(name).size for name in entry["Layers"]]
    assert [d["size"] for d in info["layers"]] == sizes
    assert info["config_digest"] == "sha256:" + entry["Config"].rsplit("/", 1)[-1].removesuffix(".json")


def test_inspect_table(images):
    r = rootfs("inspect", f"{images.layout}:1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert f"Digest:        {images.manifest_digest('1')}" in lines
    assert 'Entrypoint:    ["/bin/sh", "-c"]' in lines
    assert "  org.example.role=test" in lines
    assert "Packages:      2 (deb), Test Linux 1" in lines
    assert [line for line in lines if line.startswith("  dash ")] == ["  dash 0.5.12-2 amd64"]
    assert not any("removed-pkg" in line for line in lines)


def test_history_json_matches_config_and_manifest(images):
    for kind, spec in kinds(images).items():
        r = rootfs("history", spec, "--format", "json")
        assert r.returncode == 0, r.stderr
        rows = json.loads(r.stdout)
        history = images.config("2")["history"]
        assert len(rows) == len(history) == 3
        assert [row["created_by"] for row in rows] == [h["created_by"] for h in reversed(history)]
        assert [row["created"] for row in rows] == [h["created"] for h in reversed(history)]
        assert [row["empty_layer"] for row in rows] == [False, True, False]
        assert rows[1]["size"] == 0 and rows[1]["layer"] is None
        assert rows[2]["comment"] == "the base"
        info = json.loads(rootfs("inspect", spec, "--format", "json", "--no-packages").stdout)
        assert [rows[2]["layer"], rows[0]["layer"]] == [d["digest"] for d in info["layers"]]
        assert [rows[2]["size"], rows[0]["size"]] == [d["size"] for d in info["layers"]]
        assert rows[0]["id"] == info["config_digest"] and rows[1]["id"] is None


def test_history_table(images):
    r = rootfs("history", f"{images.layout}:2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert len(lines) == 1 + len(images.config("2")["history"])
    config_hex = images.manifest("2")["config"]["digest"].split(":")[1]
    assert lines[1].startswith(config_hex[:12] + " ")
    assert lines[2].startswith("<missing>") and lines[3].startswith("<missing>")
    created_by = images.config("2")["history"][2]["created_by"]
    assert f"   {created_by[:44]}…   " in lines[1]  # cut to 45 characters, as docker does
    assert lines[2].split()[-1] == "0B"
    assert lines[3].rstrip().endswith("the base")
    assert " ago " in lines[1]
    full = rootfs("history", f"{images.layout}:2", "--no-trunc").stdout
    assert "rather long created-by text to truncate" in full and images.manifest("2")["config"]["digest"] in full


def test_human_units():
    import datetime as dt

    from rootfs.image.info import human_size, human_time

    assert [human_size(n) for n in (0, 999, 1000, 1_100_000, 3_456_789_012)] == ["0B", "999B", "1kB", "1.1MB", "3.46GB"]
    now = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.timezone.utc)
    assert human_time("2026-01-10T11:59:30Z", now) == "30 seconds ago"
    assert human_time("2026-01-10T10:30:00.123456789Z", now) == "About an hour ago"
    assert human_time("2026-01-07T12:00:00Z", now) == "3 days ago"
    assert human_time(None, now) == "N/A"


def test_bad_images(images, tmp_path):
    r = rootfs("inspect", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = rootfs("history", str(images.layout))  # two tags, none named
    assert r.returncode == 2 and "holds 2 images" in r.stderr and "tags: 1, 2" in r.stderr
    r = rootfs("inspect", f"{images.layout}:1", "--format", "yaml")
    assert r.returncode == 2
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    r = rootfs("inspect", str(tmp_path / "junk.tar"))
    assert r.returncode == 2 and "tar" in r.stderr and "Traceback" not in r.stderr
    # a config blob that no longer matches its digest
    broken = tmp_path / "broken"
    shutil.copytree(images.layout, broken)
    cfg = broken / "blobs/sha256" / images.manifest("1")["config"]["digest"].split(":")[1]
    cfg.chmod(0o644)
    cfg.write_bytes(cfg.read_bytes().replace(b"amd64", b"arm64"))
    r = rootfs("inspect", f"{broken}:1")
    assert r.returncode == 4 and "does not match its digest" in r.stderr


@needs_tool("rpmbuild", "rpm")
def test_rpm_packages_from_the_layer(tmp_path):
    """An rpm database (sqlite) made by the host's rpm, inside a layer."""
    top = tmp_path / "rpmbuild"
    spec = tmp_path / "t.spec"
    spec.write_text("Name: rootfs-inspect-test\nVersion: 1.2\nRelease: 3\nSummary: t\nLicense: MIT\n"
                    "BuildArch: noarch\nAutoReqProv: no\n%description\nt\n%files\n")
    subprocess.run(["rpmbuild", "--define", f"_topdir {top}", "-bb", str(spec)], check=True, capture_output=True)
    rpm_file = next(top.rglob("*.rpm"))
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "--initdb"], check=True, capture_output=True)
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-i", "--justdb", "--nodeps",
                    "--noscripts", str(rpm_file)], check=True, capture_output=True)
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        tar.add(root, arcname=".")
    img = tmp_path / "img"
    for args in (["init", "--layout", str(img)], ["new", "--image", f"{img}:e"],
                 ["raw", "add-layer", "--image", f"{img}:e", "--tag", "r", str(layer)]):
        subprocess.run(["umoci", *args], check=True, capture_output=True)
    r = rootfs("inspect", f"{img}:r", "--format", "json")
    assert r.returncode == 0, r.stderr
    pkgs = json.loads(r.stdout)["packages"]
    assert pkgs["format"] == "rpm"
    assert [(p["name"], p["version"], p["architecture"]) for p in pkgs["packages"]] == \
        [("rootfs-inspect-test", "1.2-3", "noarch")]


def test_image_without_a_package_database(images, tmp_path):
    img = tmp_path / "img"
    layer = images.layout.parent / "extra.tar"
    for args in (["init", "--layout", str(img)], ["new", "--image", f"{img}:e"],
                 ["raw", "add-layer", "--image", f"{img}:e", "--tag", "x", str(layer)]):
        subprocess.run(["umoci", *args], check=True, capture_output=True)
    info = json.loads(rootfs("inspect", f"{img}:x", "--format", "json").stdout)
    assert info["packages"]["format"] is None and info["packages"]["packages"] == []
    assert "no package database" in info["packages"]["note"]
    assert "Packages:      unknown (" in rootfs("inspect", f"{img}:x").stdout
