"""Multi-platform images from one `rootfs make`: --arch lists and the OCI
--platform spelling, one lock holding every architecture, one OCI image
index with a manifest per platform, refusals for formats that hold one
platform, push of the index, pull/inspect/history/sbom of one platform.

Against a signed repository on 127.0.0.1 with packages for four
architectures, in --mode extract (no maintainer scripts, so no emulator).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from debrepo import File, Pkg, Symlink, build_repo, write_recipe

ROOTFS = [sys.executable, "-m", "rootfs.cli"]
ARCHES = ("amd64", "arm64", "armhf", "i386")
PLATFORMS = {"amd64": {"architecture": "amd64", "os": "linux"},
             "arm64": {"architecture": "arm64", "os": "linux", "variant": "v8"},
             "armhf": {"architecture": "arm", "os": "linux", "variant": "v7"},
             "i386": {"architecture": "386", "os": "linux"}}
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def rootfs(*args, check=True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([*ROOTFS, *map(str, args)], capture_output=True, text=True, timeout=600, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"rootfs {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p


def multi_packages() -> list:
    pkgs = [Pkg("docs-common", architecture="all", priority="required", files={"usr/share/doc/common": b"all\n"})]
    for arch in ARCHES:
        pkgs.append(Pkg("base-files", version="1.0", architecture=arch, priority="required", essential=True,
                        depends="docs-common",
                        files={"etc/arch": f"{arch}\n".encode(), "usr/bin/tool": File(b"#!/bin/sh\n", 0o755),
                               "bin": Symlink("usr/bin")}))
        pkgs.append(Pkg("apt", architecture=arch, priority="important",
                        files={"usr/bin/apt": File(b"#!/bin/sh\n", 0o755)}))
    # Only arm64 has this one: the locks differ by more than their architecture.
    pkgs.append(Pkg("arm64-extra", architecture="arm64", priority="required", files={"etc/arm64-only": b"x\n"}))
    return pkgs


@pytest.fixture(scope="module")
def multi_env(tmp_path_factory, gpg_key):
    from conftest import serve_directory

    tmp = tmp_path_factory.mktemp("multi")
    repo = build_repo(tmp / "repo", multi_packages(), key=gpg_key, suite="stable", architectures=ARCHES)
    server = serve_directory(repo.path)
    recipe = write_recipe(tmp, repo, variant="minbase", architecture="amd64")
    base = ["make", recipe, "--mirror", server.url + "/", "--mode", "extract", "--cache-dir", tmp / "cache"]
    yield {"tmp": tmp, "recipe": recipe, "mirror": server.url + "/", "base": base, "repo": repo}
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture(scope="module")
def four(multi_env):
    """One `rootfs make` of all four architectures into an OCI layout."""
    out = multi_env["tmp"] / "four"
    p = rootfs(*multi_env["base"], "--arch", "amd64", "--arch", "arm64,armhf", "--platform", "linux/386",
               "-f", "oci", "-o", out, "--json")
    return out, json.loads(p.stdout)


def blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def index_of(layout: Path) -> tuple[dict, dict]:
    """(index.json, the image index it names)."""
    top = json.loads((layout / "index.json").read_text())
    [entry] = top["manifests"]
    assert entry["mediaType"] == INDEX
    return entry, json.loads(blob(layout, entry["digest"]))


def layer_files(layout: Path, manifest: dict) -> dict[str, bytes]:
    [layer] = manifest["layers"]
    import io

    with tarfile.open(fileobj=io.BytesIO(blob(layout, layer["digest"])), mode="r:gz") as tar:
        return {m.name.lstrip("./"): tar.extractfile(m).read() for m in tar if m.isfile()}


def test_arch_lists_and_platforms_parse_into_one_architecture_table():
    from rootfs.model.arch import architectures, from_platform, platform_of
    from rootfs.model.errors import UsageError

    assert architectures(["amd64,arm64", "armhf"], ["linux/386"], "deb") == ("amd64", "arm64", "armhf", "i386")
    assert architectures(["arm64"], ["linux/arm64/v8"], "deb") == ("arm64",)  # the same platform once
    assert architectures(["x86_64"], ["linux/arm64"], "rpm") == ("x86_64", "aarch64")
    assert architectures(["whatever"], [], "deb") == ("whatever",)  # one name passes through as before
    assert [from_platform(p).deb for p in ("linux/arm/v7", "linux/arm", "linux/arm/v5", "linux/amd64")] \
        == ["armhf", "armhf", "armel", "amd64"]
    assert [platform_of(from_platform(p)) for p in ("linux/arm64", "linux/386")] == ["linux/arm64/v8", "linux/386"]
    for bad in ("arm64", "windows/amd64", "linux/arm/v9", "linux/sparc"):
        with pytest.raises(UsageError):
            from_platform(bad)
    with pytest.raises(UsageError, match="unknown architecture"):
        architectures(["amd64,sparc"], [], "deb")


def test_one_lock_holds_every_architecture(multi_env, tmp_path):
    args = [multi_env["recipe"], "--mirror", multi_env["mirror"]]
    rootfs("lock", *args, "--arch", "amd64,arm64", "--platform", "linux/arm/v7", "-o", tmp_path / "multi.json")
    data = json.loads((tmp_path / "multi.json").read_text())
    assert data["format"] == 3 and data["architectures"] == ["amd64", "arm64", "armhf"]
    for lk in data["locks"]:
        assert "format" not in lk
        assert {p["architecture"] for p in lk["packages"]} == {lk["architecture"], "all"}
    names = {lk["architecture"]: sorted(p["name"] for p in lk["packages"]) for lk in data["locks"]}
    assert names["arm64"] == ["apt", "arm64-extra", "base-files", "docs-common"]
    assert names["amd64"] == names["armhf"] == ["apt", "base-files", "docs-common"]
    # One architecture: the format 2 lock, byte for byte what it always was.
    rootfs("lock", *args, "-o", tmp_path / "one.json")
    rootfs("lock", *args, "--arch", "amd64", "-o", tmp_path / "amd64.json")
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["format"] == 2 and one["architecture"] == "amd64"
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "amd64.json").read_bytes()
    assert json.dumps(data["locks"][0], sort_keys=True) == json.dumps({k: v for k, v in one.items() if k != "format"},
                                                                      sort_keys=True)
    # resolve prints every architecture's packages
    lines = rootfs("resolve", *args, "--arch", "arm64,i386").stdout.splitlines()
    assert "arm64-extra 1.0 arm64" in lines and "base-files 1.0 i386" in lines
    # A command that reads one lock says why it cannot read this one...
    p = rootfs("graph", tmp_path / "multi.json", check=False)
    assert p.returncode == 2 and "holds the locks of several architectures (amd64, arm64, armhf)" in p.stderr
    # ...and sbom takes the one of --platform.
    sbom = json.loads(rootfs("sbom", "--lock", tmp_path / "multi.json", "--platform", "linux/arm64", tmp_path).stdout)
    assert "SPDXRef-Package-deb-arm64-extra-arm64" in json.dumps(sbom)
    p = rootfs("sbom", "--lock", tmp_path / "multi.json", "--platform", "linux/386", tmp_path, check=False)
    assert p.returncode == 2 and "no lock for i386" in p.stderr


def test_one_make_writes_one_index_with_a_manifest_per_platform(four):
    out, report = four
    assert report["outcome"] == "built"
    assert set(report["durations"]) >= {"install", "pack"} | {f"install:{a}" for a in ARCHES}
    entry, index = index_of(out)
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "localhost/rootfs:latest"} or \
        list(entry["annotations"]) == ["org.opencontainers.image.ref.name"]
    assert index["mediaType"] == INDEX and len(index["manifests"]) == 4
    assert [m["platform"] for m in index["manifests"]] == [PLATFORMS[a] for a in ARCHES]
    for arch, m in zip(ARCHES, index["manifests"]):
        assert m["mediaType"] == MANIFEST
        manifest = json.loads(blob(out, m["digest"]))
        config = json.loads(blob(out, manifest["config"]["digest"]))
        assert config["architecture"] == PLATFORMS[arch]["architecture"]
        assert config.get("variant") == PLATFORMS[arch].get("variant")
        files = layer_files(out, manifest)
        assert files["etc/arch"] == f"{arch}\n".encode()
        assert files["usr/share/doc/common"] == b"all\n"
        assert ("etc/arm64-only" in files) == (arch == "arm64")
        # each platform names its own SBOM, published beside the layout
        sbom = out.parent / f"four.{arch}.spdx.json"
        assert manifest["annotations"]["org.rootfs.sbom.digest"] == \
            "sha256:" + hashlib.sha256(sbom.read_bytes()).hexdigest()
        assert {p["name"] for p in json.loads(sbom.read_text())["packages"]} >= {"base-files", "docs-common"}
    lock = json.loads((out.parent / "four.lock.json").read_text())
    assert lock["format"] == 3 and lock["architectures"] == list(ARCHES)
    assert report["artifacts"] == {str(out): entry["digest"]}
    assert sorted(report["packages"]) == sorted(["docs-common:all", "arm64-extra:arm64"]
                                                 + [f"{n}:{a}" for a in ARCHES for n in ("apt", "base-files")])


def test_each_platform_is_the_one_architecture_build_byte_for_byte(multi_env, four, tmp_path):
    out, _ = four
    _, index = index_of(out)
    lock = out.parent / "four.lock.json"
    # The whole index again from the lock: the same digest.
    rootfs(*multi_env["base"], "--locked", lock, "-f", "oci", "-o", tmp_path / "again")
    assert index_of(tmp_path / "again")[0]["digest"] == index_of(out)[0]["digest"]
    # One architecture from the same lock: today's one-manifest layout,
    # whose manifest is that platform's manifest in the index.
    rootfs(*multi_env["base"], "--locked", lock, "--arch", "armhf", "-f", "oci", "-o", tmp_path / "armhf")
    [single] = json.loads((tmp_path / "armhf" / "index.json").read_text())["manifests"]
    assert single["mediaType"] == MANIFEST and single["platform"] == PLATFORMS["armhf"]
    assert single["digest"] == index["manifests"][2]["digest"]
    assert json.loads((tmp_path / "armhf.lock.json").read_text())["architecture"] == "armhf"
    # ...and the same as a build that never saw the other architectures.
    rootfs(*multi_env["base"], "--arch", "armhf", "-f", "oci", "-o", tmp_path / "armhf-alone")
    [alone] = json.loads((tmp_path / "armhf-alone" / "index.json").read_text())["manifests"]
    assert alone["digest"] == single["digest"]


def test_rootless_equals_root_per_platform(multi_env, four):
    """nobody's build of the four platforms is root's, byte for byte."""
    import os
    import shutil

    if os.geteuid() != 0:
        pytest.skip("needs root")
    from unpriv import make_unpriv

    out, _ = four
    u = make_unpriv(Path("/tmp"))
    home = u.sandbox()
    try:
        shutil.copy(multi_env["repo"].keyring, home / "keyring.gpg")
        os.chmod(home / "keyring.gpg", 0o644)
        recipe = write_recipe(home, multi_env["repo"], variant="minbase", architecture="amd64",
                              keyring=home / "keyring.gpg")
        os.chmod(recipe, 0o644)
        # root's lock (the keyring's path is in it, and so in the image's history)
        shutil.copy(out.parent / "four.lock.json", home / "four.lock.json")
        os.chmod(home / "four.lock.json", 0o644)
        p = u.rootfs(home, "make", recipe, "--locked", home / "four.lock.json", "--mode", "extract",
                     "-f", "oci", "-o", home / "four")
        assert p.returncode == 0, p.stderr
        # root's build from the very same recipe file: the images carry the
        # inputs' digest, and the recipe (its keyring's path) is one of them.
        out = out.parent / "four-root-same-recipe"
        rootfs("make", recipe, "--locked", home / "four.lock.json", "--mode", "extract", "-f", "oci", "-o", out)
        assert json.loads((home / "four" / "index.json").read_text()) == json.loads((out / "index.json").read_text())
        _, index = index_of(home / "four")
        assert len(index["manifests"]) == 4
        for name in (out / "blobs" / "sha256").iterdir():
            assert (home / "four" / "blobs" / "sha256" / name.name).read_bytes() == name.read_bytes()
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if u.scratch:
            shutil.rmtree(u.scratch, ignore_errors=True)


def test_second_run_is_up_to_date(multi_env, four):
    out, _ = four
    p = rootfs(*multi_env["base"], "--arch", "amd64,arm64,armhf,i386", "-f", "oci", "-o", out, "--json")
    assert json.loads(p.stdout)["outcome"] == "up-to-date"
    # a different set of architectures is a different build
    p = rootfs(*multi_env["base"], "--arch", "amd64,arm64", "-f", "oci", "-o", out.parent / "two", "--json")
    assert json.loads(p.stdout)["outcome"] == "built"
    assert len(index_of(out.parent / "two")[1]["manifests"]) == 2


def test_oci_archive_holds_the_same_index(multi_env, four, tmp_path):
    out, _ = four
    archive = tmp_path / "img.oci.tar"
    rootfs(*multi_env["base"], "--locked", out.parent / "four.lock.json", "-o", archive)
    with tarfile.open(archive) as tar:
        top = json.loads(tar.extractfile("index.json").read())
    assert top == json.loads((out / "index.json").read_text())


@pytest.mark.parametrize("fmt, words", [("docker-archive", "a docker-archive holds one platform"),
                                        ("tar", "tar holds one platform"), ("dir", "dir holds one platform")])
def test_formats_of_one_platform_are_refused_before_any_work(multi_env, tmp_path, fmt, words):
    p = rootfs(*multi_env["base"], "--arch", "amd64,arm64", "-f", fmt, "-o", tmp_path / "x", check=False)
    assert p.returncode == 2 and words in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "cache").exists() and not (tmp_path / "x").exists()


def test_several_architectures_are_not_streamed_nor_built_from_a_lock_of_one(multi_env, four, tmp_path):
    p = rootfs(*multi_env["base"], "--arch", "amd64,arm64", "-f", "oci-archive", "-o", "-", check=False)
    assert p.returncode == 2 and "-o - streams one platform" in p.stderr and not p.stdout
    out, _ = four
    rootfs(*multi_env["base"], "--locked", out.parent / "four.lock.json", "--arch", "i386", "-f", "oci",
           "-o", tmp_path / "i386")
    p = rootfs(*multi_env["base"], "--locked", tmp_path / "i386.lock.json", "--arch", "i386,arm64", "-f", "oci",
               "-o", tmp_path / "two", check=False)
    assert p.returncode == 2 and "holds one architecture (i386)" in p.stderr
    p = rootfs(*multi_env["base"], "--locked", out.parent / "four.lock.json", "--arch", "riscv64", "-f", "oci",
               "-o", tmp_path / "none", check=False)
    assert p.returncode == 2 and "has no lock for riscv64" in p.stderr


def test_no_format_with_several_architectures_is_an_oci_layout(multi_env, tmp_path):
    rootfs(*multi_env["base"], "--arch", "arm64,i386", "-o", tmp_path / "img")
    assert len(index_of(tmp_path / "img")[1]["manifests"]) == 2


def test_inspect_history_sbom_per_platform(four):
    out, _ = four
    for platform, arch, goarch in (("linux/arm64", "arm64", "arm64"), ("linux/arm/v7", "armhf", "arm"),
                                   ("linux/386", "i386", "386")):
        info = json.loads(rootfs("inspect", out, "--platform", platform, "--format", "json").stdout)
        assert info["architecture"] == goarch
        assert info["platforms"] == ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/386"]
        names = {p["name"]: p["architecture"] for p in info["packages"]["packages"]}
        assert names["base-files"] == arch
        hist = json.loads(rootfs("history", out, "--platform", platform, "--format", "json").stdout)
        assert len(hist) == 1
        sbom = json.loads(rootfs("sbom", out, "--platform", platform).stdout)
        assert any(p["name"] == "base-files" and arch in json.dumps(p) for p in sbom["packages"])
    p = rootfs("inspect", out, "--platform", "linux/s390x", check=False)
    assert p.returncode == 2 and "no image for linux/s390x" in p.stderr


# -- push and pull of the index --------------------------------------------------

def skopeo(work: Path, *args: str) -> subprocess.CompletedProcess:
    """skopeo with its own /var/lib (its blob-info cache), as containers.md shows."""
    varlib = work / "skopeo-varlib"
    varlib.mkdir(exist_ok=True)
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$0" /var/lib && exec "$@"',
           str(varlib), "skopeo", "--tmpdir", str(varlib), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    import shutil

    if not (shutil.which("docker-registry") and shutil.which("skopeo")):
        pytest.skip("missing tool(s): docker-registry, skopeo")
    from registry_server import start_registry

    reg = start_registry(tmp_path_factory.mktemp("registry"), "plain")
    yield reg
    reg.stop()


def needs_root_for_skopeo():
    import os

    return pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@needs_root_for_skopeo()
def test_push_writes_the_index_and_pull_picks_a_platform(four, registry, tmp_path):
    out, _ = four
    entry, index = index_of(out)
    pushed = rootfs("push", out, f"{registry.host}/multi:1", "--insecure",
                    env={"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"})
    assert pushed.stdout.strip() == entry["digest"]
    raw = json.loads(skopeo(tmp_path, "inspect", "--tls-verify=false", "--raw",
                            f"docker://{registry.host}/multi:1").stdout)
    assert raw == index and len(raw["manifests"]) == 4
    cfg = json.loads(skopeo(tmp_path, "inspect", "--tls-verify=false", "--override-arch", "arm", "--override-variant",
                            "v7", "--config", f"docker://{registry.host}/multi:1").stdout)
    assert cfg["architecture"] == "arm" and cfg["variant"] == "v7"
    # one platform
    p = rootfs("pull", f"{registry.host}/multi:1", tmp_path / "arm64:x", "--insecure", "--platform", "linux/arm64")
    assert p.stdout.strip() == index["manifests"][1]["digest"]
    [one] = json.loads((tmp_path / "arm64" / "index.json").read_text())["manifests"]
    assert one["mediaType"] == MANIFEST and one["platform"] == PLATFORMS["arm64"]
    assert layer_files(tmp_path / "arm64", json.loads(blob(tmp_path / "arm64", one["digest"])))["etc/arch"] == b"arm64\n"
    # the whole index
    p = rootfs("pull", f"{registry.host}/multi:1", tmp_path / "all:x", "--insecure")
    assert p.stdout.strip() == entry["digest"]
    assert json.loads(rootfs("inspect", tmp_path / "all", "--platform", "linux/386", "--format", "json").stdout)[
        "architecture"] == "386"
    p = rootfs("pull", f"{registry.host}/multi:1", tmp_path / "none", "--insecure", "--platform", "linux/s390x",
               check=False)
    assert p.returncode == 2 and "no image for linux/s390x" in p.stderr and not (tmp_path / "none").exists()


@needs_root_for_skopeo()
def test_push_index_refuses_an_index_of_manifests_the_repository_lacks(four, registry, tmp_path):
    from rootfs.model.errors import RegistryError
    from rootfs.registry import RegistryOptions, push_index

    out, _ = four
    _, index = index_of(out)
    opts = RegistryOptions(insecure=True, cache_dir=tmp_path)
    rootfs("push", out, f"{registry.host}/joined:src", "--insecure",
           env={"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"})
    # An index of two platforms already there, pushed on its own (as an
    # index joined from images built elsewhere is).
    two = {**index, "manifests": index["manifests"][1:3]}
    data = json.dumps(two).encode()
    digest = push_index(f"{registry.host}/joined:two", data, opts)
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    raw = json.loads(skopeo(tmp_path, "inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/joined:two").stdout)
    assert [m["platform"]["architecture"] for m in raw["manifests"]] == ["arm64", "arm"]
    # Into a repository without them: refused, nothing stored under the tag.
    with pytest.raises(RegistryError, match="not in .*/other; push that image there first"):
        push_index(f"{registry.host}/other:two", data, opts)
    p = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/other:two"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0


@needs_root_for_skopeo()
def test_make_push_pushes_the_index(multi_env, registry, tmp_path):
    # --push adds the oci layout: a directory of both
    p = rootfs(*multi_env["base"], "--arch", "amd64,i386", "-f", "oci-archive", "-o", tmp_path / "img",
               "--push", f"{registry.host}/made:1", "--insecure", "--json",
               env={"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"})
    report = json.loads(p.stdout)
    raw = skopeo(tmp_path, "inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/made:1").stdout
    assert report["pushed"][f"{registry.host}/made:1"] == "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
    assert [m["platform"]["architecture"] for m in json.loads(raw)["manifests"]] == ["amd64", "386"]
    with tarfile.open(tmp_path / "img" / "image.oci.tar") as tar:
        assert tar.extractfile("index.json").read() == (tmp_path / "img" / "oci" / "index.json").read_bytes()
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == [
        "build.json", "image.oci.tar", "lock.json", "oci", "sbom.amd64.spdx.json", "sbom.i386.spdx.json"]
    # A fresh runner (empty output and cache) finds the index up to date at
    # the registry: the index carries the lock and inputs digests.
    fresh = tmp_path / "fresh"
    p = rootfs(*multi_env["base"], "--cache-dir", fresh / "cache", "--arch", "amd64,i386", "-f", "oci-archive",
               "-o", fresh / "img", "--push", f"{registry.host}/made:1", "--insecure", "--json",
               env={"HOME": str(fresh), "XDG_CACHE_HOME": str(fresh / "xdg"), "PATH": "/usr/bin:/bin"})
    again = json.loads(p.stdout)
    assert again["outcome"] == "up-to-date" and f"up to date at {registry.host}/made:1" in again["reason"]
    assert again["pushed"] == report["pushed"]

    def package_files(cache: Path) -> list:
        # The cache holds the verified indices too; a .deb is an ar archive.
        return [f for f in (cache / "sha256").rglob("*") if f.is_file() and f.read_bytes()[:8] == b"!<arch>\n"]

    assert package_files(multi_env["tmp"] / "cache")  # where the builds cache their packages
    assert not (fresh / "img" / "oci").exists() and not package_files(fresh / "cache")
