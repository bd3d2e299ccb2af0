"""`rootfs make bookworm --variant minbase` against the Debian mirror apt is
configured with on this machine (discovered at run time; skipped without
one). The result must be a healthy Debian: dpkg's audit clean, every
package installed, apt's dependency check passing, a shell that runs."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import needs_root

from rootfs.backends.deb.mirror import host_mirror
from rootfs.host.mounts import mounts_under

pytestmark = [pytest.mark.mirror, pytest.mark.slow, needs_root()]


@pytest.fixture(scope="module")
def mirror():
    url = host_mirror("debian", "Debian")
    if not url:
        pytest.skip("apt has no Debian mirror configured on this machine")
    return url.rstrip("/") + "/"


@pytest.fixture(scope="module")
def minbase(bookworm_build):
    """The session's `rootfs make bookworm --variant minbase` (conftest)."""
    return bookworm_build.root


def chroot(root, *cmd):
    return subprocess.run(["chroot", str(root), *cmd], capture_output=True, text=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})


def test_dpkg_audit_clean(minbase):
    audit = chroot(minbase, "dpkg", "--audit")
    assert audit.returncode == 0 and audit.stdout == "", audit.stdout


def test_every_package_installed(minbase):
    q = chroot(minbase, "dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n")
    rows = [line.split() for line in q.stdout.splitlines()]
    assert len(rows) > 60
    assert [r for r in rows if r[1] != "ii"] == []
    names = {r[0] for r in rows}
    assert {"apt", "dpkg", "base-files", "libc6", "bash"} <= names


def test_apt_check(minbase):
    check = chroot(minbase, "apt-get", "check")
    assert check.returncode == 0, check.stdout + check.stderr


def test_shell_runs(minbase):
    assert chroot(minbase, "/bin/sh", "-c", "true").returncode == 0
    assert os.readlink(minbase / "bin") == "usr/bin"


def test_clean_and_pointing_at_the_mirror(minbase, mirror):
    # As Debian's own bookworm images: deb822, the suites of one URI together.
    security = host_mirror("debian", "Debian", security=True).rstrip("/") + "/"
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    assert (minbase / "etc/apt/sources.list.d/debian.sources").read_text() == (
        f"Types: deb\nURIs: {mirror}\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: {keyring}\n\n"
        f"Types: deb\nURIs: {security}\nSuites: bookworm-security\nComponents: main\nSigned-By: {keyring}\n")
    assert not (minbase / "etc/apt/sources.list").exists()
    for p in ("etc/resolv.conf", "sbin/start-stop-daemon.REAL", "var/log/dpkg.log"):
        assert not os.path.lexists(minbase / p), p
    # the container profile's policy-rc.d, not the build's own stub
    from rootfs.backends.deb.profile import POLICY_RC_D
    from rootfs.host.chroot import POLICY_RC_D as BUILD_STUB

    assert (minbase / "usr/sbin/policy-rc.d").read_bytes() == POLICY_RC_D.encode() != BUILD_STUB
    assert mounts_under(minbase) == []
