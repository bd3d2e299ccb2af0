"""Nightly operations of `rootfs make`: change detection, reports, --keep and
latest, --locked offline builds, the output lock, kills at random moments,
a full disk.

These run `rootfs make` as a real process against a hermetic signed
repository served on 127.0.0.1, in `--mode extract` so that they need
neither root nor a runnable target (the configure stage has its own tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import needs_root, needs_tool, packages, serve_directory
from debrepo import Pkg, build_repo, write_recipe

ROOTFS = [sys.executable, "-m", "rootfs.cli"]


def rootfs(*args, check=False, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([*ROOTFS, *map(str, args)], capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"rootfs {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_second_run_is_up_to_date_and_force_rebuilds(repo_env):
    out = repo_env["tmp"] / "img.tar"
    first = rootfs(*repo_env["base"], "-f", "tar", "-o", out, "--json", check=True)
    report = json.loads(first.stdout)
    assert report["outcome"] == "built" and report["reason"] == "no previous build"
    assert sorted(report["packages"]) == ["apt:amd64", "base-files:amd64", "libthing:amd64", "linkpkg:amd64"]
    assert report["artifacts"] == {str(out): "sha256:" + sha256(out)}
    assert set(report["durations"]) >= {"resolve", "fetch", "install", "pack"}
    assert (out.parent / "img.tar.build.json").exists() and (out.parent / "img.tar.lock.json").exists()
    mtime = out.stat().st_mtime_ns

    second = rootfs(*repo_env["base"], "-f", "tar", "-o", out, "--json", check=True)
    again = json.loads(second.stdout)
    assert again["outcome"] == "up-to-date"
    assert "up to date" in second.stderr
    assert out.stat().st_mtime_ns == mtime

    forced = json.loads(rootfs(*repo_env["base"], "-f", "tar", "-o", out, "--json", "--force", check=True).stdout)
    assert forced["outcome"] == "built" and forced["reason"] == "--force"
    # Same lock, same SOURCE_DATE_EPOCH: the same bytes.
    assert forced["artifacts"] == report["artifacts"]


def test_an_unchanged_release_keeps_the_lock_and_is_still_checked(repo_env):
    out = repo_env["tmp"] / "img.tar"
    first = json.loads(rootfs(*repo_env["base"], "-f", "tar", "-o", out, "--json", check=True).stdout)
    # The indices and the cache are gone: only the signed metadata can be
    # read, and it is the metadata the published lock records.
    dists = repo_env["repo"].path / "dists" / "stable"
    for index in dists.glob("main/binary-*/Packages*"):
        index.unlink()
    shutil.rmtree(repo_env["tmp"] / "cache")
    again = rootfs(*repo_env["base"], "-f", "tar", "-o", out, "--json", "-v", check=True)
    report = json.loads(again.stdout)
    assert report["outcome"] == "up-to-date", again.stderr
    assert report["lock_digest"] == first["lock_digest"]
    assert "its choice stands" in again.stderr
    # The metadata itself is still fetched and verified on every run.
    inrelease = dists / "InRelease"
    text = inrelease.read_bytes()
    inrelease.write_bytes(text.replace(b"Suite: stable", b"Suite: stabl3", 1))
    bad = rootfs(*repo_env["base"], "-f", "tar", "-o", out, "--json")
    assert bad.returncode == 4 and "bad signature" in bad.stderr, bad.stderr
    # --force resolves again, from the indices (which are gone).
    inrelease.write_bytes(text)
    forced = rootfs(*repo_env["base"], "-f", "tar", "-o", out, "--force")
    assert forced.returncode != 0 and "Packages" in forced.stderr, forced.stderr


def test_changed_package_set_rebuilds_and_reports_the_change(repo_env):
    out = repo_env["tmp"] / "img"
    rootfs(*repo_env["base"], "-f", "tar", "-f", "oci", "-o", out, check=True)
    build_repo(repo_env["repo"].path, packages("1.1"), key=repo_env["key"], suite="stable")
    r = rootfs(*repo_env["base"], "-f", "tar", "-f", "oci", "-o", out, "--report", repo_env["tmp"] / "r.json",
               check=True)
    report = json.loads((repo_env["tmp"] / "r.json").read_text())
    assert report["outcome"] == "built", r.stderr
    assert report["reason"] == "the resolved package set changed"
    assert report["changes"]["changed"] == ["base-files:amd64 1.0 -> 1.1"]
    assert report["changes"]["added"] == [] and report["changes"]["removed"] == []
    assert json.loads((out / "build.json").read_text())["packages_digest"] == report["packages_digest"]
    assert (out / "rootfs.tar").exists() and (out / "oci" / "index.json").exists()
    assert (out / "lock.json").exists() and (out / "sbom.spdx.json").exists()
    umask = os.umask(0)
    os.umask(umask)
    for d in (out, out / "oci"):  # staging directories must not stay mkdtemp's 0700
        assert stat.S_IMODE(d.stat().st_mode) == 0o777 & ~umask, d


def test_keep_rotates_builds_and_latest_points_at_the_newest(repo_env):
    out = repo_env["tmp"] / "builds"
    ids = []
    for i in range(4):
        rootfs(*repo_env["base"], "-f", "tar", "-o", out, "--keep", "2", "--force", check=True)
        ids.append(os.readlink(out / "latest"))
        time.sleep(1.1)  # build ids carry the second
    builds = sorted(p.name for p in out.iterdir() if p.is_dir() and not p.is_symlink())
    assert builds == ids[-3:]  # the newest and the two before it
    assert (out / "latest" / "rootfs.tar").is_file()
    report = json.loads((out / "latest" / "build.json").read_text())
    assert report["outcome"] == "built"


def test_locked_build_is_offline_when_the_cache_has_everything(repo_env, tmp_path):
    lockfile = tmp_path / "x.lock"
    rootfs("lock", repo_env["recipe"], "--mirror", repo_env["server"].url + "/", "-o", lockfile, check=True)
    lock = json.loads(lockfile.read_text())
    assert sorted(p["name"] for p in lock["packages"]) == ["apt", "base-files", "libthing", "linkpkg"]
    first = tmp_path / "a.tar"
    rootfs(*repo_env["base"], "--locked", lockfile, "-f", "tar", "-o", first, check=True)
    repo_env["server"].httpd.shutdown()
    repo_env["server"].httpd.server_close()
    second = tmp_path / "b.tar"
    r = rootfs(*repo_env["base"], "--locked", lockfile, "-f", "tar", "-o", second)
    assert r.returncode == 0, r.stderr
    assert sha256(first) == sha256(second)


def test_locked_build_refetches_a_corrupted_cache_entry(repo_env, tmp_path):
    out = tmp_path / "a.tar"
    rootfs(*repo_env["base"], "-f", "tar", "-o", out, check=True)
    digest = sha256(out)
    entries = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and len(p.name) == 64]
    assert entries
    victim = max(entries, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    rootfs(*repo_env["base"], "-f", "tar", "-o", out, "--force", check=True)
    assert sha256(out) == digest
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == victim.name


def test_a_second_run_on_the_same_output_is_busy(repo_env, tmp_path):
    from rootfs.host.locks import output_lock

    out = tmp_path / "busy.tar"
    with output_lock(out):
        r = rootfs(*repo_env["base"], "-f", "tar", "-o", out)
    assert r.returncode == 9, r.stderr
    assert "busy" in r.stderr or "another rootfs run" in r.stderr
    assert not out.exists()


def test_two_concurrent_runs_same_output_and_different_outputs_share_the_cache(repo_env, tmp_path):
    cmds = [[*ROOTFS, *map(str, repo_env["base"]), "-f", "tar", "-o", str(tmp_path / name), "--wait", "120"]
            for name in ("same.tar", "same.tar", "other.tar")]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    assert sha256(tmp_path / "same.tar") == sha256(tmp_path / "other.tar")
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers


def _settle(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


@pytest.mark.slow
def test_sigkill_at_random_moments_never_breaks_the_previous_artifacts(repo_env, tmp_path):
    out = tmp_path / "kill" / "img"
    base = [*ROOTFS, *map(str, repo_env["base"]), "-f", "tar", "-f", "oci", "-o", str(out)]
    rootfs(*repo_env["base"], "-f", "tar", "-f", "oci", "-o", out, check=True)
    good = sha256(out / "rootfs.tar")
    manifest = json.loads((out / "oci" / "index.json").read_text())["manifests"][0]["digest"]
    rng = random.Random(20261128)
    cache = tmp_path / "cache"
    timings = []
    for i in range(24):
        if i % 3 == 0:
            # A cold cache puts some kills into the download.
            subprocess.run(["rm", "-rf", str(cache)], check=True)
        delay = rng.uniform(0.05, 1.6)
        p = subprocess.Popen(base + ["--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        timings.append(delay)
        # The previous artifacts are intact after every kill.
        assert sha256(out / "rootfs.tar") == good, f"kill {i} after {delay:.2f}s broke the tar"
        assert json.loads((out / "oci" / "index.json").read_text())["manifests"][0]["digest"] == manifest
        with open("/proc/self/mountinfo") as f:
            assert str(tmp_path) not in f.read()
        # The cache never holds a file that does not match its name.
        for entry in cache.rglob("*"):
            if entry.is_file() and len(entry.name) == 64:
                assert hashlib.sha256(entry.read_bytes()).hexdigest() == entry.name
    r = rootfs(*repo_env["base"], "-f", "tar", "-f", "oci", "-o", out, "--force")
    assert r.returncode == 0, r.stderr
    assert sha256(out / "rootfs.tar") == good
    assert _settle(out) == [], "a later run must clean what killed runs left"


@needs_root()
def test_full_disk_gives_a_clear_message_and_no_half_written_artifact(repo_env, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        r = rootfs(*repo_env["base"][:-1], mnt / "cache", "-f", "tar", "-o", mnt / "img.tar")
        assert r.returncode == 8, r.stderr
        assert "no space left" in r.stderr
        # one sentence, no traceback (the lines before it are the phases that ended)
        said = [x for x in r.stderr.splitlines() if not x.startswith("I: ")]
        assert len(said) <= 2 and said[-1].startswith("rootfs: error: no space left"), r.stderr
        assert not (mnt / "img.tar").exists()
        for entry in (mnt / "cache").rglob("*"):
            if entry.is_file():
                assert hashlib.sha256(entry.read_bytes()).hexdigest() == entry.name, entry
        assert [p for p in mnt.iterdir() if p.name.startswith(".img.tar.") and not p.name.endswith(".lock")] == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.fixture(scope="module")
def configured_repo(tmp_path_factory, gpg_key):
    """A repository whose packages really configure (dpkg and maintainer
    scripts run in the root), plus a large package so that kills also land
    in the download."""
    from test_deb_install import host_packages

    tmp = tmp_path_factory.mktemp("kill-repo")
    big = Pkg("bigdata", priority="required", files={"usr/share/big": random.Random(3).randbytes(4 << 20)})
    repo = build_repo(tmp / "repo", host_packages(tmp) + [big], key=gpg_key, suite="stable")
    server = serve_directory(repo.path)
    recipe = write_recipe(tmp, repo, variant="essential", include=("marker", "owners", "bigdata"))
    yield server.url + "/", recipe
    server.httpd.shutdown()
    server.httpd.server_close()


@needs_root()
@pytest.mark.slow
def test_sigkill_during_configuration_and_packing_as_root(configured_repo, tmp_path):
    url, recipe = configured_repo
    out = tmp_path / "img"
    cache = tmp_path / "cache"
    args = ["make", recipe, "--mirror", url, "--cache-dir", cache, "-f", "tar", "-f", "oci", "-o", out]
    t = time.monotonic()
    rootfs(*args, check=True)
    undisturbed = time.monotonic() - t
    good = sha256(out / "rootfs.tar")
    rng = random.Random(1128)
    for i in range(22):
        if i % 4 == 0:
            subprocess.run(["rm", "-rf", str(cache)], check=True)
        delay = rng.uniform(0.05, undisturbed)
        p = subprocess.Popen([*ROOTFS, *map(str, args), "--force"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert sha256(out / "rootfs.tar") == good, f"kill {i} after {delay:.2f}s broke the tar"
        with open("/proc/self/mountinfo") as f:
            assert str(tmp_path) not in f.read(), f"kill {i} after {delay:.2f}s left a mount"
    r = rootfs(*args, "--force")
    assert r.returncode == 0, r.stderr
    assert sha256(out / "rootfs.tar") == good
    assert _settle(out) == []


def test_the_image_carries_the_digest_of_its_sbom(repo_env, tmp_path):
    out = tmp_path / "img"
    rootfs(*repo_env["base"], "-f", "oci", "-f", "tar", "-o", out, check=True)
    sbom = out / "sbom.spdx.json"
    doc = json.loads(sbom.read_text())
    assert doc["spdxVersion"] == "SPDX-2.3"
    assert sorted(p["name"] for p in doc["packages"] if p["SPDXID"] != "SPDXRef-Subject") == \
        ["apt", "base-files", "libthing", "linkpkg"]
    index = json.loads((out / "oci" / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((out / "oci" / "blobs" / "sha256" / digest).read_text())
    assert manifest["annotations"]["org.rootfs.sbom.digest"] == "sha256:" + sha256(sbom)


@needs_tool("docker-registry", "skopeo")
def test_make_push_publishes_what_it_built(repo_env, tmp_path):
    from registry_server import start_registry

    reg = start_registry(tmp_path / "registry", "plain")
    try:
        out = tmp_path / "img"
        r = rootfs(*repo_env["base"], "-f", "tar", "-o", out, "--push", f"{reg.host}/base:nightly", "--insecure",
                   "--json", env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")})
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)
        pushed = report["artifacts"][f"pushed:{reg.host}/base:nightly"]
        local = json.loads((out / "oci" / "index.json").read_text())["manifests"][0]["digest"]
        assert pushed == local
        p = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{reg.host}/base:nightly"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["Digest"] == local
    finally:
        reg.stop()


def test_tar_on_standard_output_is_the_same_image(repo_env, tmp_path):
    """`rootfs make RECIPE -f tar -o - | docker import -`: the stream is the
    artifact a file build writes, and nothing is left behind."""
    file_tar = tmp_path / "file.tar"
    rootfs(*repo_env["base"], "-f", "tar", "-o", file_tar, check=True)
    streamed = tmp_path / "streamed.tar"
    with open(streamed, "wb") as sink:
        p = subprocess.run([*ROOTFS, *map(str, repo_env["base"]), "-f", "tar", "-o", "-"], stdout=sink,
                           stderr=subprocess.PIPE, text=False, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    assert sha256(streamed) == sha256(file_tar)
    assert not [x for x in os.listdir(tempfile.gettempdir()) if x.startswith("rootfs-stream.")]
