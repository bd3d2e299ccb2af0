"""Against the Debian mirror this host's apt uses (discovered at run time):
rootfs's package sets must be exactly debootstrap's, variant by variant
(with bookworm-updates and bookworm-security as sources, as by default;
debootstrap reads the suite alone, and the names are the same)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rootfs.backends.deb.mirror import host_mirror
from rootfs.cli import app

pytestmark = pytest.mark.mirror

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# rootfs variant -> debootstrap's name for it ("-" is its default variant).
VARIANTS = {"minbase": "minbase", "buildd": "buildd", "default": "-"}


@pytest.fixture(scope="module")
def mirror() -> str:
    found = host_mirror("debian", "Debian")
    if not found:
        pytest.skip("no Debian mirror configured for apt on this machine")
    if not KEYRING.is_file():  # a mirror is configured: scripts/setup.sh installs it
        pytest.fail(f"{KEYRING} is not installed")
    return found.rstrip("/") + "/"


@pytest.fixture(scope="module")
def debootstrap_runs(mirror, tmp_path_factory):
    """debootstrap --print-debs for every variant, started together up front
    (each spends ~20 s parsing indices in shell and perl) and awaited by the
    test that needs its answer."""
    if os.geteuid() != 0:
        pytest.skip("debootstrap --print-debs needs root")
    if shutil.which("debootstrap") is None:  # a mirror is configured: scripts/setup.sh installs it
        pytest.fail("debootstrap is not installed")
    base = tmp_path_factory.mktemp("debootstrap")
    runs = [(ours, theirs, mirror) for ours, theirs in VARIANTS.items()]
    if https_mirror(mirror):
        runs.append(("minbase-https", "minbase", https_mirror(mirror)))
    procs = {}
    for ours, theirs, url in runs:
        args = [] if theirs == "-" else [f"--variant={theirs}"]
        procs[ours] = subprocess.Popen(
            ["debootstrap", "--print-debs", *args, "bookworm", str(base / ours), url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    yield procs
    for p in procs.values():
        if p.poll() is None:
            p.kill()
        p.communicate()


def https_mirror(mirror: str) -> str | None:
    """The same mirror over https, when it answers there."""
    from rootfs.net.fetch import Downloader

    if not mirror.startswith("http://"):
        return None
    url = "https://" + mirror[len("http://"):]
    try:
        Downloader(retries=0, timeout=15).get_bytes(url + "dists/bookworm/Release")
    except Exception:  # noqa: BLE001 - any failure means "not over https"
        return None
    return url


def debootstrap_set(runs, variant: str) -> set[str]:
    if variant not in runs:
        pytest.skip(f"no debootstrap run for {variant}")
    out, err = runs[variant].communicate(timeout=900)
    if runs[variant].returncode != 0:
        pytest.fail(f"debootstrap failed: {err[-500:]}")
    return set(out.split())


def rootfs_lock(tmp_path: Path, *args: str) -> dict:
    lock = tmp_path / "lock.json"
    result = CliRunner().invoke(app, ["resolve", "bookworm", *args, "--lock", str(lock)])
    assert result.exit_code == 0, result.output
    return json.loads(lock.read_text())


def test_minbase_equals_debootstrap(tmp_path, mirror, debootstrap_runs):
    # The mirror comes from the host's apt configuration, as a user's would.
    lock = rootfs_lock(tmp_path, "--variant", "minbase")
    ours = {p["name"] for p in lock["packages"]}
    theirs = debootstrap_set(debootstrap_runs, "minbase")
    assert ours == theirs, f"only rootfs: {sorted(ours - theirs)}; only debootstrap: {sorted(theirs - ours)}"
    assert lock["sources"][0]["url"] == mirror and lock["sources"][0]["metadata"] == "InRelease"
    assert lock["source_date_epoch"] > 1_600_000_000
    for p in lock["packages"]:
        # from the suite, its -updates or the security mirror's -security
        base = p["repository"].split()[0]
        assert p["url"].startswith(base + "pool/") and len(p["sha256"]) == 64 and p["size"] > 0


@pytest.mark.parametrize("variant", ["buildd", "default"])
def test_other_variants_equal_debootstrap(tmp_path, mirror, debootstrap_runs, variant):
    # --mirror named explicitly: the strict Valid-Until path.
    lock = rootfs_lock(tmp_path, "--variant", variant, "--mirror", mirror)
    ours = {p["name"] for p in lock["packages"]}
    theirs = debootstrap_set(debootstrap_runs, variant)
    assert ours == theirs, f"only rootfs: {sorted(ours - theirs)}; only debootstrap: {sorted(theirs - ours)}"


def test_https_mirror_equals_debootstrap(tmp_path, mirror, debootstrap_runs):
    # debootstrap adds ca-certificates for an https mirror; so does rootfs.
    url = https_mirror(mirror)
    if url is None:
        pytest.skip("the mirror does not answer over https")
    lock = rootfs_lock(tmp_path, "--variant", "minbase", "--mirror", url)
    ours = {p["name"] for p in lock["packages"]}
    theirs = debootstrap_set(debootstrap_runs, "minbase-https")
    assert "ca-certificates" in ours
    assert ours == theirs, f"only rootfs: {sorted(ours - theirs)}; only debootstrap: {sorted(theirs - ours)}"
