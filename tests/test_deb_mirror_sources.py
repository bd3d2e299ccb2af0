"""Against the Debian mirror this host's apt uses (discovered at run time):
with no source options, bookworm, bullseye and trixie minbase come from
SUITE, SUITE-updates and SUITE-security, every package at the version apt
itself chooses from the same three suites, and the names are still
debootstrap's; a freshly built bookworm image has nothing to upgrade."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aptpolicy import AptSource, apt_candidates, have_apt
from conftest import needs_root

from rootfs.backends.deb.mirror import host_mirror

pytestmark = pytest.mark.mirror

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
SUITES = ("bookworm", "bullseye", "trixie")
ROOTFS = [sys.executable, "-m", "rootfs.cli"]


@pytest.fixture(scope="module")
def mirrors() -> tuple[str, str]:
    main = host_mirror("debian", "Debian")
    security = host_mirror("debian", "Debian", security=True)
    if not main:
        pytest.skip("no Debian mirror configured for apt on this machine")
    if not security:
        pytest.skip("no Debian security mirror configured for apt on this machine")
    if not KEYRING.is_file():
        pytest.skip(f"{KEYRING} is not installed")
    return main.rstrip("/") + "/", security.rstrip("/") + "/"


# bookworm's names are compared, variant by variant, in test_deb_mirror_resolve.
DEBOOTSTRAP_SUITES = ("bullseye", "trixie")


@pytest.fixture(scope="module")
def debootstrap_runs(mirrors, tmp_path_factory):
    """debootstrap --print-debs --variant=minbase for each suite, started
    together up front (each spends seconds in shell and perl)."""
    if os.geteuid() != 0:
        pytest.skip("debootstrap --print-debs needs root")
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed")
    base = tmp_path_factory.mktemp("debootstrap-sources")
    procs = {s: subprocess.Popen(["debootstrap", "--print-debs", "--variant=minbase", s, str(base / s), mirrors[0]],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in DEBOOTSTRAP_SUITES}
    yield procs
    for p in procs.values():
        if p.poll() is None:
            p.kill()
        p.communicate()


@pytest.fixture(scope="module")
def locks(mirrors, tmp_path_factory) -> dict[str, dict]:
    """`rootfs lock SUITE --variant minbase`, no source options."""
    base = tmp_path_factory.mktemp("locks")
    procs = {s: subprocess.Popen([*ROOTFS, "lock", s, "--variant", "minbase", "-o", str(base / f"{s}.lock")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in SUITES}
    out = {}
    for s, p in procs.items():
        _, err = p.communicate(timeout=600)
        if p.returncode == 5:
            pytest.skip(f"mirror unreachable: {err.strip()}")
        assert p.returncode == 0, f"rootfs lock {s}: {err}"
        out[s] = json.loads((base / f"{s}.lock").read_text())
    return out


@pytest.mark.parametrize("suite", SUITES)
def test_sources_are_the_suite_its_updates_and_its_security_suite(locks, mirrors, suite):
    lock = locks[suite]
    main, security = mirrors
    assert [(s["url"], s["suite"], s["role"]) for s in lock["sources"]] == [
        (main, suite, "mirror"), (main, f"{suite}-updates", "mirror"),
        (security, f"{suite}-security", "security-mirror")]
    assert all(s["keyring"] == str(KEYRING) and s["metadata"] == "InRelease" for s in lock["sources"])
    ids = {f"{s['url']} {s['suite']}" for s in lock["sources"]}
    for p in lock["packages"]:
        assert p["repository"] in ids and p["url"].startswith(p["repository"].split()[0] + "pool/")


@pytest.mark.skipif(not have_apt(), reason="apt-get is not installed")
@pytest.mark.parametrize("suite", SUITES)
def test_every_version_is_apts_choice_from_the_same_suites(locks, suite, tmp_path):
    lock = locks[suite]
    ours = {p["name"]: p["version"] for p in lock["packages"]}
    sources = [AptSource(s["url"], s["suite"], tuple(s["components"]), s["keyring"]) for s in lock["sources"]]
    theirs = apt_candidates(tmp_path, sources, sorted(ours), arch=lock["architecture"])
    differ = {n: (v, theirs[n]) for n, v in ours.items() if theirs[n] != v}
    print(f"{suite} minbase: {len(ours)} packages compared with apt-cache policy, "
          f"{len(ours) - len(differ)} equal")
    assert differ == {}, f"rootfs vs apt: {differ}"
    # The point of the update suites: some packages do come from them.
    assert {p["repository"].split()[1] for p in lock["packages"]} > {suite}


@pytest.mark.parametrize("suite", DEBOOTSTRAP_SUITES)
def test_names_equal_debootstraps(locks, debootstrap_runs, suite):
    out, err = debootstrap_runs[suite].communicate(timeout=900)
    assert debootstrap_runs[suite].returncode == 0, err[-500:]
    theirs = set(out.split())
    ours = {p["name"] for p in locks[suite]["packages"]}
    assert ours == theirs, f"only rootfs: {sorted(ours - theirs)}; only debootstrap: {sorted(theirs - ours)}"


@needs_root()
def test_a_fresh_bookworm_image_has_nothing_to_upgrade(bookworm_build, tmp_path):
    """apt inside the image, talking to the mirror through the image's own
    sources, finds every package at its newest version."""
    from rootfs.host.chroot import Chroot

    sources = (bookworm_build.root / "etc/apt/sources.list.d/debian.sources").read_text()
    assert "Suites: bookworm bookworm-updates\n" in sources and "Suites: bookworm-security\n" in sources
    assert sources.count(f"Signed-By: {KEYRING}\n") == 2
    # A copy: the session's root is shared with tests that check it is clean.
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", str(bookworm_build.root), str(root)], check=True)
    shutil.copy("/etc/hosts", root / "etc/hosts")
    with Chroot(root, fake_services=False) as ch:
        update = ch.run(["apt-get", "update"])
        assert update.returncode == 0, update.stdout.decode()[-2000:]
        assert b"Err:" not in update.stdout and b"W: " not in update.stdout, update.stdout.decode()
        upgradable = ch.run(["apt", "list", "--upgradable"], env={"COLUMNS": "200"})
    lines = [ln for ln in upgradable.stdout.decode().splitlines() if ln and not ln.startswith(("Listing", "WARNING"))]
    assert upgradable.returncode == 0 and lines == [], "\n".join(lines)


@needs_root()
def test_the_sbom_and_lock_say_where_each_package_came_from(bookworm_build):
    lock = json.loads((bookworm_build.out / "lock.json").read_text())
    sbom = json.loads((bookworm_build.out / "sbom.spdx.json").read_text())
    by_name = {p["name"]: p for p in sbom["packages"] if "versionInfo" in p}
    sources = {s["suite"]: f"{s['url']} {s['suite']}" for s in lock["sources"]}
    for p in lock["packages"]:
        assert by_name[p["name"]]["comment"] == f"from the repository {p['repository']}"
    assert sources["bookworm-security"] in {p["repository"] for p in lock["packages"]}
