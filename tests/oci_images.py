"""Small, real OCI images for the registry and inspect tests, built with
umoci (a trusted, independent tool) from a tree holding the host's /bin/sh
and its libraries plus a dpkg status file:

    tag 1  one layer (the base)
    tag 2  the base + a small layer (shares the base layer with tag 1)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

DPKG_STATUS = """\
Package: dash
Status: install ok installed
Priority: required
Version: 0.5.12-2
Architecture: amd64

Package: libc6
Status: install ok installed
Version: 2.36-9+deb12u4
Architecture: amd64

Package: removed-pkg
Status: deinstall ok config-files
Version: 1.0
Architecture: all
"""
INSTALLED = [("dash", "0.5.12-2", "amd64"), ("libc6", "2.36-9+deb12u4", "amd64")]


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def _shell_tree(root: Path) -> None:
    sh = Path(shutil.which("sh") or "/bin/sh").resolve()
    (root / "bin").mkdir(parents=True)
    shutil.copy2(sh, root / "bin" / "sh")
    out = subprocess.run(["ldd", str(sh)], capture_output=True, text=True).stdout
    for word in out.split():
        if word.startswith("/") and Path(word).exists():
            dest = root / word.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(word).resolve(), dest)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/os-release").write_text('PRETTY_NAME="Test Linux 1"\nID=test\n')
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(DPKG_STATUS)


def _tar(src: Path, dest: Path) -> None:
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        def owner0(ti: tarfile.TarInfo) -> tarfile.TarInfo:
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            return ti
        for p in sorted(src.iterdir()):
            tar.add(p, arcname=p.name, filter=owner0)


@dataclass
class TestImages:
    tree: Path  # the base tree (a root directory)
    layout: Path  # OCI layout with tags 1 and 2
    oci_archive: Path  # tag 2 as an oci-archive
    docker_archive: Path  # tag 2 as a docker-archive

    def manifest(self, tag: str) -> dict:
        return json.loads(self.blob(self.manifest_digest(tag)))

    def manifest_digest(self, tag: str) -> str:
        index = json.loads((self.layout / "index.json").read_text())
        return next(m["digest"] for m in index["manifests"]
                    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)

    def config(self, tag: str) -> dict:
        return json.loads(self.blob(self.manifest(tag)["config"]["digest"]))

    def blob(self, digest: str) -> bytes:
        return (self.layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def build_test_images(work: Path) -> TestImages:
    work.mkdir(parents=True, exist_ok=True)
    base = work / "base"
    _shell_tree(base)
    extra = work / "extra"
    (extra / "etc").mkdir(parents=True)
    (extra / "etc/hello").write_text("hello from layer two\n")
    _tar(base, work / "base.tar")
    _tar(extra, work / "extra.tar")
    img = work / "img"
    _run("umoci", "init", "--layout", str(img))
    _run("umoci", "new", "--image", f"{img}:empty")
    _run("umoci", "raw", "add-layer", "--image", f"{img}:empty", "--tag", "1", str(work / "base.tar"),
         "--history.created_by", "rootfs test: base layer", "--history.comment", "the base")
    _run("umoci", "config", "--image", f"{img}:1", "--config.cmd", "/bin/sh", "--config.env", "PATH=/usr/bin:/bin",
         "--config.env", "LANG=C.UTF-8", "--config.label", "org.example.role=test",
         "--config.entrypoint", "/bin/sh", "--config.entrypoint", "-c", "--author", "rootfs tests",
         "--history.created_by", "rootfs test: config")
    _run("umoci", "raw", "add-layer", "--image", f"{img}:1", "--tag", "2", str(work / "extra.tar"),
         "--history.created_by", "rootfs test: a second layer with a rather long created-by text to truncate")
    _run("umoci", "rm", "--image", f"{img}:empty")
    oa, da = work / "oa.tar", work / "da.tar"
    _run("skopeo", "copy", f"oci:{img}:2", f"oci-archive:{oa}:2")
    _run("skopeo", "copy", f"oci:{img}:2", f"docker-archive:{da}:localhost/test:2")
    return TestImages(base, img, oa, da)
