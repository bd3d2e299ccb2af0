"""Bad input to `rootfs pack`: one sentence, the documented exit code, and
nothing half-written at the output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_tool

from rootfs.model.arch import detect, oci_platform
from rootfs.model.errors import OutputError
from rootfs.pack import PackOptions, pack
from rootfs.pack.oci import parse_tag


def run_pack(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rootfs.cli", "pack", *args], capture_output=True, text=True,
                          env=env, cwd=cwd)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc/motd").write_text("hello\n")
    return r


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_missing_root(tmp_path):
    r = run_pack(str(tmp_path / "nope"), "--format", "tar", "-o", str(tmp_path / "out.tar"))
    assert r.returncode == 8
    assert "does not exist" in _one_line(r.stderr)
    assert list(tmp_path.iterdir()) == []


def test_unknown_format(root, tmp_path):
    r = run_pack(str(root), "--format", "tar", "--format", "vmdk", "-o", str(tmp_path / "out"))
    assert r.returncode == 8
    assert "unknown format 'vmdk'" in _one_line(r.stderr)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tag", ["Upper/case:1", "name:bad tag", "name::1", "-lead:1", "a" * 300])
def test_malformed_tag(root, tmp_path, tag):
    r = run_pack(str(root), "--format", "oci", "-o", str(tmp_path / "oci"), "--tag", tag)
    assert r.returncode == 2
    assert "malformed tag" in _one_line(r.stderr)
    assert not (tmp_path / "oci").exists()


def test_unwritable_output(root, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    r = run_pack(str(root), "--format", "tar", "-o", str(blocker / "out.tar"))
    assert r.returncode == 8
    assert "cannot write" in _one_line(r.stderr)
    ro = tmp_path / "ro"
    ro.mkdir()
    # a read-only bind mount refuses even root
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"', "sh", str(ro),
                        sys.executable, "-m", "rootfs.cli", "pack", str(root), "--format", "tar", "--format", "oci",
                        "-o", str(ro / "out")], capture_output=True, text=True)
    if r.returncode != 8 and "unshare" in r.stderr:
        pytest.skip("no mount namespaces here")
    assert r.returncode == 8, r.stderr
    assert "cannot write" in _one_line(r.stderr) or "Read-only" in r.stderr
    assert list(ro.iterdir()) == []


def test_output_inside_root(root):
    r = run_pack(str(root), "--format", "tar", "-o", str(root / "self.tar"))
    assert r.returncode == 2
    assert "inside the root" in _one_line(r.stderr)
    assert not (root / "self.tar").exists()


def test_stdout_needs_one_tar_format(root):
    r = run_pack(str(root), "--format", "oci", "-o", "-")
    assert r.returncode == 2
    _one_line(r.stderr)


def test_bad_source_date_epoch(root, tmp_path):
    r = run_pack(str(root), "--format", "tar", "-o", str(tmp_path / "x.tar"),
                 env={**os.environ, "SOURCE_DATE_EPOCH": "yesterday"})
    assert r.returncode == 2
    assert "SOURCE_DATE_EPOCH" in _one_line(r.stderr)
    assert not (tmp_path / "x.tar").exists()


@needs_tool("tar2sqfs")
def test_missing_tool_leaves_nothing(root, tmp_path):
    env = {**os.environ, "PATH": str(tmp_path / "empty-path")}
    r = run_pack(str(root), "--format", "tar", "--format", "squashfs", "-o", str(tmp_path / "out"), env=env)
    assert r.returncode == 7
    assert "tar2sqfs" in _one_line(r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_failure_midway_keeps_previous_output(root, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "rootfs.tar").write_text("the previous build\n")
    from rootfs.pack import ext

    def broken(*a, **k):
        raise OutputError("mke2fs failed: simulated")

    monkeypatch.setattr(ext, "build", broken)
    with pytest.raises(OutputError):
        pack(root, ["tar", "ext4"], out, PackOptions(source_date_epoch=0))
    assert (out / "rootfs.tar").read_text() == "the previous build\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "root"]
    assert sorted(p.name for p in out.iterdir()) == ["rootfs.tar"]


# -- small pieces -----------------------------------------------------------

def test_parse_tag():
    assert parse_tag("debian") == "debian:latest"
    assert parse_tag("localhost/debian:12") == "localhost/debian:12"
    assert parse_tag("127.0.0.1:5000/a/b:v1.0") == "127.0.0.1:5000/a/b:v1.0"
    assert parse_tag("127.0.0.1:5000/a") == "127.0.0.1:5000/a:latest"


@pytest.mark.parametrize("arch,platform", [
    ("amd64", ("amd64", "")), ("x86_64", ("amd64", "")), ("arm64", ("arm64", "v8")), ("aarch64", ("arm64", "v8")),
    ("armhf", ("arm", "v7")), ("armel", ("arm", "v5")), ("i386", ("386", "")), ("ppc64el", ("ppc64le", "")),
    ("s390x", ("s390x", "")), ("riscv64", ("riscv64", "")),
])
def test_architecture_mapping(arch, platform):
    assert oci_platform(arch) == platform


def test_unknown_architecture(root, tmp_path):
    r = run_pack(str(root), "--format", "oci", "-o", str(tmp_path / "oci"), "--arch", "vax")
    assert r.returncode == 2
    assert "unknown architecture" in _one_line(r.stderr)


def test_detect_architecture_from_shell(tmp_path):
    (tmp_path / "bin").mkdir()
    os.symlink("/bin/dash-missing", tmp_path / "bin/sh")  # absolute: resolved inside the root
    (tmp_path / "bin/dash-missing").write_bytes(Path(os.path.realpath("/bin/sh")).read_bytes()[:64])
    import platform

    assert detect(tmp_path) == {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    (tmp_path / "bin/dash-missing").write_bytes(b"\x7fELF\x01\x01\x01" + bytes(11) + (40).to_bytes(2, "little"))
    assert detect(tmp_path) == "armhf"
