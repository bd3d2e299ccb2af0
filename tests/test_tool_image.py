"""rootfs as a container image: images/rootfs-tool built by rootfs from the
mirror apt uses, with rootfs installed from this checkout's wheel; then,
as a CI job would, `rootfs make` run inside it under podman builds
bookworm minbase, whose tar is read back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TAG = "localhost/rootfs-tool:test"


def _copy_checkout(dest: Path) -> None:
    """The files git knows, so the wheel is built away from the checkout."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        path = REPO / os.fsdecode(name)
        target = dest / os.fsdecode(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            target.symlink_to(os.readlink(path))
        elif path.is_file():
            target.write_bytes(path.read_bytes())


def test_rootfs_runs_as_a_container_image(tmp_path):
    from pack_containers import Containers, available

    from rootfs.backends.deb.mirror import host_mirror

    if os.geteuid() != 0:
        pytest.skip("needs root")
    mirror = host_mirror("debian", "Debian")
    if not mirror:
        pytest.skip("no Debian mirror configured for apt on this machine")
    assert available() is None, available()
    src = tmp_path / "src"
    _copy_checkout(src)
    image_dir = src / "images/rootfs-tool"
    # The wheel and its dependencies' wheels, from wherever this machine's
    # pip gets packages (the image has no index to ask).
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "-w",
                        str(image_dir / "wheels"), str(src)], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    assert list((image_dir / "wheels").glob("rootfs-*.whl")) and list((image_dir / "wheels").glob("typer-*.whl"))
    out = tmp_path / "rootfs-tool.oci.tar"
    p = subprocess.run([sys.executable, "-m", "rootfs.cli", "make", str(image_dir / "rootfs-tool.toml"),
                        "-f", "oci-archive", "--tag", TAG, "-o", str(out), "--cache-dir", str(tmp_path / "cache")],
                       capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]

    ctr = Containers(tmp_path / "ctr")
    work = tmp_path / "job"
    work.mkdir()
    try:
        ctr.podman("load", "-i", str(out))
        version = ctr.run(TAG, "rootfs", "--version").strip()
        assert version.startswith("rootfs "), version
        # A CI job: root mode needs what root has (mounts, chroot, device
        # nodes), and the mirror is reached over the host's network.
        job = ctr.podman("run", "--rm", "--privileged", "--network=host", "--cgroup-parent", "/" + ctr.cgroup,
                         "-v", f"{work}:/work", TAG,
                         "rootfs", "make", "bookworm", "--variant", "minbase", "--no-updates", "--mirror", mirror,
                         "-f", "tar", "-o", "/work/bookworm.tar", "--cache-dir", "/work/cache", check=False)
        assert job.returncode == 0, job.stderr[-3000:]
    finally:
        ctr.close()
    with tarfile.open(work / "bookworm.tar") as t:
        names = set(t.getnames())
        assert {"./usr/bin/dpkg", "./usr/bin/apt", "./etc/os-release"} <= names
        status = t.extractfile("./var/lib/dpkg/status").read().decode()
        osrel = t.extractfile("./usr/lib/os-release").read().decode()
    assert 'VERSION_CODENAME=bookworm' in osrel
    states = [line for line in status.splitlines() if line.startswith("Status: ")]
    assert len(states) > 50 and set(states) == {"Status: install ok installed"}
    shutil.rmtree(work / "cache", ignore_errors=True)
