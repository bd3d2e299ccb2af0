"""bookworm minbase for amd64, arm64, armhf and i386 in one `rootfs make`
against the Debian mirror apt is configured with: one OCI image index,
pushed to a local docker-registry, each platform run under podman (the
foreign ones through qemu-user-static, registered for the module by
tests/binfmt.py and removed afterwards).

One build, shared by every test here: under emulation it takes minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from binfmt import emulation
from conftest import needs_root

from rootfs.backends.deb.mirror import host_mirror

pytestmark = [pytest.mark.mirror, pytest.mark.slow, needs_root()]

ARCHES = ("amd64", "arm64", "armhf", "i386")
# podman's way to ask for each, and what the container's kernel calls it
# (i386 runs natively on an amd64 kernel, which names its machine x86_64).
PODMAN = {"amd64": (["--arch", "amd64"], "x86_64"), "arm64": (["--arch", "arm64"], "aarch64"),
          "armhf": (["--arch", "arm", "--variant", "v7"], "armv7l"), "i386": (["--arch", "386"], "x86_64")}
PLATFORMS = [{"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux", "variant": "v8"},
             {"architecture": "arm", "os": "linux", "variant": "v7"}, {"architecture": "386", "os": "linux"}]


@pytest.fixture(scope="module")
def emulated():
    with emulation("arm64", "armhf", "i386"):
        yield


@pytest.fixture(scope="module")
def four(tmp_path_factory, emulated):
    mirror = host_mirror("debian", "Debian")
    if not mirror:
        pytest.skip("apt has no Debian mirror configured on this machine")
    base = tmp_path_factory.mktemp("platforms")
    out = base / "bookworm"
    p = subprocess.run([sys.executable, "-m", "rootfs.cli", "make", "bookworm", "--variant", "minbase",
                        "--arch", ",".join(ARCHES), "-f", "oci", "-o", str(out), "--cache-dir", str(base / "cache"),
                        "--json"], capture_output=True, text=True, timeout=3600)
    assert p.returncode == 0, f"rootfs make failed: {p.stderr[-3000:]}"
    return out, json.loads(p.stdout)


@pytest.fixture(scope="module")
def pushed(four, tmp_path_factory):
    from pack_containers import available
    from registry_server import start_registry

    why = available()
    if why:
        pytest.skip(why)
    base = tmp_path_factory.mktemp("platforms-registry")
    reg = start_registry(base / "registry", "plain")
    out, _ = four
    env = {**os.environ, "HOME": str(base), "XDG_CACHE_HOME": str(base / "cache")}
    p = subprocess.run([sys.executable, "-m", "rootfs.cli", "push", str(out), f"{reg.host}/bookworm:multi",
                        "--insecure"], capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr
    yield reg, f"{reg.host}/bookworm:multi", p.stdout.strip()
    reg.stop()


def test_one_index_with_a_manifest_per_platform(four):
    out, report = four
    [top] = json.loads((out / "index.json").read_text())["manifests"]
    assert top["mediaType"] == "application/vnd.oci.image.index.v1+json"
    index = json.loads((out / "blobs" / "sha256" / top["digest"].split(":")[1]).read_bytes())
    assert [m["platform"] for m in index["manifests"]] == PLATFORMS
    lock = json.loads((out.parent / "bookworm.lock.json").read_text())
    assert lock["architectures"] == list(ARCHES)
    for lk in lock["locks"]:
        assert {p["architecture"] for p in lk["packages"]} <= {lk["architecture"], "all"}
        assert any(p["name"] == "libc6" for p in lk["packages"])
    assert report["outcome"] == "built"


def test_the_registry_holds_the_index(pushed, tmp_path):
    from pack_containers import Containers

    reg, ref, digest = pushed
    c = Containers(tmp_path / "skopeo")
    try:
        raw = c.skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{ref}").stdout
    finally:
        c.close()
    index = json.loads(raw)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json" and len(index["manifests"]) == 4
    assert [m["platform"] for m in index["manifests"]] == PLATFORMS
    import hashlib

    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == digest


@pytest.mark.parametrize("arch", ARCHES)
def test_each_platform_runs_under_podman(pushed, tmp_path, arch):
    from pack_containers import Containers

    _, ref, _ = pushed
    flags, machine = PODMAN[arch]
    c = Containers(tmp_path / "podman")
    try:
        r = c.podman("run", "--rm", "--network=none", "--cgroup-parent", "/" + c.cgroup, "--tls-verify=false",
                     "--pull=always", *flags, ref, "/bin/sh", "-c",
                     "uname -m; dpkg --print-architecture; dpkg --audit; echo audited; "
                     "dpkg-query -W -f '${db:Status-Abbrev}\n' | sort -u")
    finally:
        c.close()
    # every package configured by its own architecture's maintainer scripts
    assert [line.strip() for line in r.stdout.splitlines()] == [machine, arch, "audited", "ii"], r.stdout + r.stderr
