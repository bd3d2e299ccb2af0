"""`rootfs index TARGET SOURCE...`: images built by different jobs, pushed
to different repositories of one registry, joined into one OCI image index,
as `docker buildx imagetools create` does. skopeo is the oracle: it reads
the index back raw and copies every platform out of TARGET's repository
(so every blob must have been mounted or copied there).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_tool

from rootfs.pack import PackOptions, pack

ROOTFS = [sys.executable, "-m", "rootfs.cli"]

pytestmark = needs_tool("docker-registry", "skopeo")


def rootfs(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*ROOTFS, *map(str, args)], capture_output=True, text=True, timeout=120)


def skopeo(*args) -> str:
    p = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def raw(ref: str) -> tuple[dict, str]:
    out = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), "sha256:" + hashlib.sha256(out.stdout).hexdigest()


def image_for(tmp: Path, arch: str) -> Path:
    root = tmp / f"root-{arch}"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "arch").write_text(f"{arch}\n")
    layout = tmp / f"oci-{arch}"
    pack(root, ["oci"], layout, PackOptions(architecture=arch, source_date_epoch=1700000000, tag="example/app:1"))
    return layout


@pytest.fixture
def reg(tmp_path):
    from registry_server import start_registry

    r = start_registry(tmp_path / "registry", "plain")
    yield r
    r.stop()


@pytest.fixture
def pushed(tmp_path, reg):
    """amd64, arm64 and armhf images, each pushed by a job of its own to a
    repository of its own -> {arch: (ref, manifest digest)}."""
    out = {}
    for arch, repo in (("amd64", "app-amd64:1"), ("arm64", "app-arm64:1"), ("armhf", "app:armhf"),
                       ("i386", "app-i386:1")):
        layout = image_for(tmp_path, arch)
        ref = f"{reg.host}/{repo}"
        p = rootfs("push", f"{layout}:example/app:1", ref, "--insecure")
        assert p.returncode == 0, p.stderr
        out[arch] = (ref, p.stdout.strip())
    return out


def test_images_from_several_repositories_become_one_index(reg, pushed, tmp_path):
    amd64, arm64, armhf = pushed["amd64"], pushed["arm64"], pushed["armhf"]
    target = f"{reg.host}/app:multi"
    by_digest = f"{reg.host}/app-arm64@{arm64[1]}"
    p = rootfs("index", target, amd64[0], by_digest, armhf[0], "--insecure")
    assert p.returncode == 0, p.stderr
    index, digest = raw(target)
    assert p.stdout.strip() == digest
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [(m["digest"], m["platform"]) for m in index["manifests"]] == [
        (amd64[1], {"architecture": "amd64", "os": "linux"}),
        (arm64[1], {"architecture": "arm64", "os": "linux", "variant": "v8"}),
        (armhf[1], {"architecture": "arm", "os": "linux", "variant": "v7"}),
    ]
    # the two images from other repositories had their two blobs each mounted
    assert "4 blobs mounted, 0 copied, 2 already there" in p.stderr
    # every platform can be pulled from TARGET's repository alone
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{target}", f"oci:{tmp_path / 'all'}:multi")
    for arch, variant in (("arm64", "v8"), ("arm", "v7")):
        one = json.loads(skopeo("inspect", "--tls-verify=false", "--override-arch", arch, "--override-variant", variant,
                                f"docker://{target}"))
        assert one["Architecture"] == arch
    # an index is a source too: its images join the new one
    p = rootfs("index", f"{reg.host}/app:all", target, pushed["i386"][0], "--insecure")
    assert p.returncode == 0, p.stderr
    index, digest = raw(f"{reg.host}/app:all")
    assert p.stdout.strip() == digest
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64", "arm", "386"]


def test_blobs_are_copied_where_the_registry_will_not_mount(reg, pushed, tmp_path):
    from registry_server import Proxy

    proxy = Proxy(reg.host, no_mounts=True).start()
    try:
        target = f"{proxy.host}/joined:1"
        p = rootfs("index", target, *(r.replace(reg.host, proxy.host) for r, _ in pushed.values()), "--insecure")
        assert p.returncode == 0, p.stderr
        assert "0 blobs mounted, 8 copied, 0 already there" in p.stderr
        assert len(proxy.uploads()) == 8
    finally:
        proxy.stop()
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{reg.host}/joined:1", f"oci:{tmp_path / 'all'}:1")


def test_two_images_of_one_platform_are_refused(reg, pushed, tmp_path):
    layout = image_for(tmp_path / "again", "amd64")
    p = rootfs("push", f"{layout}:example/app:1", f"{reg.host}/other-amd64:1", "--insecure")
    assert p.returncode == 0, p.stderr
    p = rootfs("index", f"{reg.host}/app:multi", pushed["amd64"][0], f"{reg.host}/other-amd64:1", "--insecure")
    assert p.returncode == 2
    assert f"{pushed['amd64'][0]} and {reg.host}/other-amd64:1 are both linux/amd64" in p.stderr
    assert subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reg.host}/app:multi"],
                          capture_output=True, timeout=60).returncode != 0


def test_an_index_that_misstates_a_platform_is_refused(reg, pushed):
    amd64_digest = pushed["amd64"][1]
    size = len(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                               f"docker://{pushed['amd64'][0]}"], capture_output=True, timeout=60).stdout)
    lying = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                       "digest": amd64_digest, "size": size,
                                       "platform": {"architecture": "arm64", "os": "linux"}}]}).encode()
    conn = http.client.HTTPConnection(reg.host, timeout=30)
    conn.request("PUT", "/v2/app-amd64/manifests/lying", body=lying,
                 headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert conn.getresponse().status == 201
    conn.close()
    p = rootfs("index", f"{reg.host}/app:x", f"{reg.host}/app-amd64:lying", "--insecure")
    assert p.returncode == 4
    assert f"lists {amd64_digest} as linux/arm64, but its config says linux/amd64" in p.stderr


def test_bad_sources_say_so(reg, pushed):
    p = rootfs("index", f"{reg.host}/app:x", f"{reg.host}/nothing:here", "--insecure")
    assert p.returncode == 10 and "does not exist" in p.stderr
    p = rootfs("index", f"{reg.host}/app:x", f"127.0.0.2:{reg.host.split(':')[1]}/app:1", "--insecure")
    assert p.returncode == 2 and "is not on the registry of" in p.stderr
    p = rootfs("index", f"{reg.host}/app@sha256:{'0' * 64}", pushed["amd64"][0], "--insecure")
    assert p.returncode == 2 and "under a tag, not a digest" in p.stderr
