"""Against the Debian mirror this host's apt uses (discovered at run time):
rootfs's minbase set must be exactly debootstrap's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rootfs.cli import app
from rootfs.mirror import host_mirror

pytestmark = pytest.mark.mirror

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


@pytest.fixture(scope="module")
def mirror() -> str:
    found = host_mirror("debian", "Debian")
    if not found:
        pytest.skip("no Debian mirror configured for apt on this machine")
    if not KEYRING.is_file():
        pytest.skip(f"{KEYRING} is not installed")
    return found.rstrip("/") + "/"


def debootstrap_debs(mirror: str, variant: str, suite: str, target: Path) -> set[str]:
    if os.geteuid() != 0:
        pytest.skip("debootstrap --print-debs needs root")
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed")
    proc = subprocess.run(
        ["debootstrap", "--print-debs", f"--variant={variant}", suite, str(target), mirror],
        capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"debootstrap failed: {proc.stderr[-500:]}")
    return set(proc.stdout.split())


def rootfs_lock(tmp_path: Path, *args: str) -> dict:
    lock = tmp_path / "lock.json"
    result = CliRunner().invoke(app, ["resolve", "bookworm", *args, "--lock", str(lock)])
    assert result.exit_code == 0, result.output
    return json.loads(lock.read_text())


def test_minbase_equals_debootstrap(tmp_path, mirror):
    # The mirror comes from the host's apt configuration, as a user's would.
    lock = rootfs_lock(tmp_path, "--variant", "minbase")
    ours = {p["name"] for p in lock["packages"]}
    theirs = debootstrap_debs(mirror, "minbase", "bookworm", tmp_path / "target")
    assert ours == theirs, f"only rootfs: {sorted(ours - theirs)}; only debootstrap: {sorted(theirs - ours)}"
    assert lock["sources"][0]["url"] == mirror and lock["sources"][0]["metadata"] == "InRelease"
    assert lock["source_date_epoch"] > 1_600_000_000
    for p in lock["packages"]:
        assert p["url"].startswith(mirror + "pool/") and len(p["sha256"]) == 64 and p["size"] > 0


def test_default_variant_is_a_superset_without_conflicts(tmp_path, mirror):
    minbase = {p["name"] for p in rootfs_lock(tmp_path, "--variant", "minbase")["packages"]}
    default = rootfs_lock(tmp_path, "--variant", "default", "--mirror", mirror)
    names = {p["name"] for p in default["packages"]}
    assert minbase < names
    # default = required + important: important packages minbase leaves out.
    assert {p["name"] for p in default["packages"] if p["priority"] == "important"} - minbase
