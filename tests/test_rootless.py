"""Rootless builds: an ordinary user gets the same image, byte for byte, as root.

The tests run as root and build twice: once in root mode, once as `nobody`
(rootless mode, chosen automatically), from the same repository with the
same lock date, and compare the artifacts' bytes. The hermetic repository is
made of the host's own binaries (see test_deb_install) plus packages whose
maintainer scripts chown, chmod, setcap and mknod, so the scripts' effects on
ownership must reach the image although nobody can apply them on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import needs_root, needs_tool, serve_directory
from debrepo import File, Pkg, build_repo, write_recipe
from test_deb_install import (
    MULTIARCH,
    host_file,
    host_packages,
    shared_libraries,
    which,
)
from unpriv import make_unpriv

pytestmark = [needs_root(), needs_tool("runuser", "unshare", "faked-sysv")]

CAP_NET_RAW_EP = b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"


@pytest.fixture(scope="session")
def unpriv():
    u = make_unpriv(Path("/tmp"))
    yield u
    if u.scratch:
        shutil.rmtree(u.scratch, ignore_errors=True)


def script_packages() -> list[Pkg]:
    setcap, mknod, chgrp = which("setcap"), which("mknod"), which("chgrp")
    libs, _ = shared_libraries([setcap])
    tool_files: dict = {"usr/sbin/setcap": host_file(setcap), "usr/bin/mknod": host_file(mknod),
                        "usr/bin/chgrp": host_file(chgrp)}
    for lib in libs:
        if "libcap" in lib:
            tool_files[f"{MULTIARCH}/{Path(lib).name}"] = host_file(lib)
    true = host_file(which("true"))
    return [
        Pkg("scripttools", "1.0", depends="coreutils", files=tool_files),
        Pkg("secrets", "1.0", depends="scripttools",
            files={"etc/secretfile": b"hush\n", "usr/bin/su-like": File(true.data, 0o4755),
                   "usr/bin/sg-like": File(true.data, 0o2755), "usr/bin/pinger": File(true.data, 0o755)},
            scripts={"postinst": "#!/bin/sh\nset -e\n"
                                 "chgrp 42 /etc/secretfile\nchmod 0640 /etc/secretfile\n"
                                 "setcap cap_net_raw+ep /usr/bin/pinger\n"
                                 "mknod -m 0620 /var/lib/devnode c 1 3\n"
                                 "mkdir -p /var/spool/box\nchown 1000:42 /var/spool/box\nchmod 3775 /var/spool/box\n"}),
    ]


@pytest.fixture(scope="session")
def hermetic(tmp_path_factory, gpg_key):
    tmp = tmp_path_factory.mktemp("rootless-repo")
    repo = build_repo(tmp / "repo", host_packages(tmp) + script_packages(), key=gpg_key, suite="testing")
    os.chmod(tmp, 0o755)
    server = serve_directory(repo.path)
    recipe_dir = Path(tempfile_dir())
    recipe = write_recipe(recipe_dir, repo, variant="essential", include=("owners", "secrets"))  # not marker: it records its environment
    os.chmod(recipe, 0o644)
    # nobody reads the recipe and the keyring
    keyring = recipe_dir / "keyring.gpg"
    shutil.copy(repo.keyring, keyring)
    os.chmod(keyring, 0o644)
    recipe.write_text(recipe.read_text().replace(str(repo.keyring), str(keyring)))
    yield {"url": server.url + "/", "recipe": recipe}
    server.httpd.shutdown()
    server.httpd.server_close()
    shutil.rmtree(recipe_dir, ignore_errors=True)


def tempfile_dir() -> str:
    import tempfile

    d = tempfile.mkdtemp(prefix="rootfs-rootless-recipe.", dir="/tmp")
    os.chmod(d, 0o755)
    return d


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def members(tar: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(tar) as t:
        return {m.name: m for m in t}


def new_files_owned_by(uid: int, since: Path, allowed: list[Path]) -> list[str]:
    """Files the user created since the stamp in the places it may write,
    outside the allowed directories."""
    found = []
    # Everywhere an unprivileged user may write on a Debian host.
    for top in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/run/user", "/var/lock", "/var/mail",
                "/var/crash", "/nonexistent"):
        if not os.path.isdir(top):
            continue
        p = subprocess.run(["find", top, "-user", str(uid), "-newer", str(since), "-print"],
                           capture_output=True, text=True)
        for line in p.stdout.splitlines():
            # pytest's own directories are root's (mode 0700): the user cannot
            # write there; files in them were chowned by other tests.
            if line.startswith("/tmp/pytest-of-"):
                continue
            if not any(line == str(a) or line.startswith(str(a) + "/") for a in allowed):
                found.append(line)
    return sorted(set(found))


def ipc_queues_of(uid: int) -> list[str]:
    out = subprocess.run(["ipcs", "-q", "-c"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[:1] and line.split()[0].isdigit()
            and len(line.split()) > 2 and line.split()[2] in (str(uid), "nobody")]


@pytest.fixture(scope="session")
def hermetic_pair(hermetic, unpriv, tmp_path_factory):
    """(root build dir, nobody build dir, nobody's home, stamp)."""
    base = tmp_path_factory.mktemp("rootless-pair")
    root_out = base / "root"
    p = subprocess.run([sys.executable, "-m", "rootfs.cli", "make", str(hermetic["recipe"]), "--mirror", hermetic["url"],
                        "-f", "tar", "-f", "oci", "-o", str(root_out), "--cache-dir", str(base / "cache")],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    home = unpriv.sandbox()
    stamp = base / "stamp"
    stamp.write_text("")
    time.sleep(0.01)
    q = unpriv.rootfs(home, "make", hermetic["recipe"], "--mirror", hermetic["url"], "-f", "tar", "-f", "oci",
                      "-o", home / "out")
    yield root_out, home / "out", home, stamp, q
    if not os.environ.get("ROOTFS_TEST_KEEP"):
        shutil.rmtree(home, ignore_errors=True)


def test_rootless_build_succeeds_and_says_so(hermetic_pair):
    *_, q = hermetic_pair
    assert q.returncode == 0, q.stderr
    assert "skipped" not in q.stderr  # the configure stage ran


def test_rootless_artifacts_are_byte_identical_to_root_ones(hermetic_pair):
    root_out, user_out, *_ = hermetic_pair
    assert sha256(user_out / "rootfs.tar") == sha256(root_out / "rootfs.tar")
    assert (user_out / "oci" / "index.json").read_bytes() == (root_out / "oci" / "index.json").read_bytes()
    blobs = sorted(p.name for p in (root_out / "oci" / "blobs" / "sha256").iterdir())
    assert sorted(p.name for p in (user_out / "oci" / "blobs" / "sha256").iterdir()) == blobs


def test_script_effects_on_ownership_reach_the_image(hermetic_pair):
    _, user_out, *_ = hermetic_pair
    m = members(user_out / "rootfs.tar")
    secret = m["./etc/secretfile"]
    assert (secret.uid, secret.gid, secret.mode) == (0, 42, 0o640)
    assert m["./usr/bin/su-like"].mode == 0o4755 and m["./usr/bin/su-like"].uid == 0
    assert m["./usr/bin/sg-like"].mode == 0o2755
    pinger = m["./usr/bin/pinger"]
    assert pinger.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == CAP_NET_RAW_EP
    dev = m["./var/lib/devnode"]
    assert dev.ischr() and (dev.devmajor, dev.devminor) == (1, 3) and dev.mode == 0o620
    box = m["./var/spool/box"]
    assert (box.uid, box.gid, box.mode) == (1000, 42, 0o3775)
    data = m["./srv/data"]  # chowned by the `owners` postinst of test_deb_install's set
    assert (data.uid, data.gid, data.mode) == (1234, 1234, 0o2770)
    # nothing the build owns on disk leaks into the image as nobody's
    assert not [n for n, i in m.items() if i.uid == 65534 or i.gid == 65534]


def test_rootless_tree_on_disk_is_the_users_with_a_record_beside_it(hermetic, unpriv):
    home = unpriv.sandbox()
    try:
        q = unpriv.rootfs(home, "make", hermetic["recipe"], "--mirror", hermetic["url"], "-o", home / "tree")
        assert q.returncode == 0, q.stderr
        assert (home / "tree").stat().st_uid == unpriv.uid
        record = json.loads((home / "tree.attrs.json").read_text())["paths"]
        assert record["etc/secretfile"]["gid"] == 42
        assert stat.S_ISCHR(record["var/lib/devnode"]["mode"])
        # `rootfs pack` of that tree, as the user, gives the image bytes of a root build
        p = unpriv.rootfs(home, "pack", home / "tree", "-f", "tar", "-o", home / "packed.tar")
        assert p.returncode == 0, p.stderr
        m = members(home / "packed.tar")
        assert m["./etc/secretfile"].gid == 42 and m["./var/lib/devnode"].ischr()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_nothing_is_written_outside_the_users_directories(hermetic_pair, unpriv):
    _, _, home, stamp, q = hermetic_pair
    assert q.returncode == 0, q.stderr
    assert new_files_owned_by(unpriv.uid, stamp, [home]) == []
    assert ipc_queues_of(unpriv.uid) == [], "fakeroot's message queues must be gone"


def test_root_mode_as_an_ordinary_user_names_what_is_missing(hermetic, unpriv):
    home = unpriv.sandbox()
    try:
        q = unpriv.rootfs(home, "make", hermetic["recipe"], "--mirror", hermetic["url"], "--mode", "root",
                          "-o", home / "x")
        assert q.returncode == 7, q.stderr
        assert "needs root" in q.stderr and "Traceback" not in q.stderr
        assert not (home / "x").exists()
    finally:
        shutil.rmtree(home, ignore_errors=True)


# -- a real bookworm minbase -------------------------------------------------

@pytest.mark.mirror
@pytest.mark.slow
def test_real_bookworm_rootless_equals_root_and_runs_in_podman(bookworm_build, unpriv, tmp_path):
    from pack_containers import Containers

    home = unpriv.sandbox()
    try:
        args = ["--variant", "minbase", "-f", "tar", "-f", "oci"]
        assert all(a in bookworm_build.args for a in args), "the same selection as the root build"
        q = unpriv.rootfs(home, "make", "bookworm", *args, "--mirror", bookworm_build.mirror,
                          "-o", home / "out", timeout=900)
        assert q.returncode == 0, q.stderr
        assert sha256(home / "out" / "rootfs.tar") == sha256(bookworm_build.out / "rootfs.tar")
        assert (home / "out" / "oci" / "index.json").read_bytes() == \
            (bookworm_build.out / "oci" / "index.json").read_bytes()

        containers = Containers(tmp_path / "podman")
        try:
            containers.podman("import", "-q", str(home / "out" / "rootfs.tar"), "localhost/rootless:1")
            out = containers.run("localhost/rootless:1", "/bin/sh", "-c",
                                 "stat -c '%U:%G %a' /etc/shadow /usr/bin/passwd /usr/bin/chage")
        finally:
            containers.close()
        lines = out.strip().splitlines()
        assert lines[0] == "root:shadow 640"
        assert lines[1] == "root:root 4755"
        assert lines[2] == "root:shadow 2755"
    finally:
        shutil.rmtree(home, ignore_errors=True)


# -- rpm: scriptlets and the rpm database without root -------------------------

@pytest.fixture(scope="session")
def rpm_appliance(tmp_path_factory):
    """An appliance of packages whose scriptlets run with a shell of the
    host's, prepared as root into a directory nobody can read."""
    import rpmrepo

    if shutil.which("rpmbuild") is None or shutil.which("createrepo_c") is None:
        pytest.skip("needs rpmbuild and createrepo_c")
    built = rpmrepo.built_once(tmp_path_factory)
    base = Path(tempfile_dir())
    repo = rpmrepo.make_repo(tmp_path_factory.mktemp("rootless-rpm") / "repo", built.scripted)
    appl = base / "appl"
    p = subprocess.run([sys.executable, "-m", "rootfs.cli", "prepare", "--no-check-gpg", "--repo", repo.as_uri(), "--cache-dir",
                        str(base / "cache"), "fx-scripted", "-o", str(appl)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
    yield appl
    shutil.rmtree(base, ignore_errors=True)


def test_rpm_build_as_nobody_runs_scriptlets_and_equals_the_root_build(rpm_appliance, unpriv, tmp_path):
    root_tar = tmp_path / "root.tar"
    p = subprocess.run([sys.executable, "-m", "rootfs.cli", "build", str(rpm_appliance), "-f", "tar",
                        "-o", str(root_tar)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    home = unpriv.sandbox()
    try:
        q = unpriv.rootfs(home, "build", rpm_appliance, "-f", "tar", "-o", home / "user.tar")
        assert q.returncode == 0, q.stderr
        assert "rpm database" not in q.stderr  # registered, not skipped
        assert sha256(home / "user.tar") == sha256(root_tar)
        with tarfile.open(home / "user.tar") as t:
            trace = t.extractfile("./var/lib/fx/trace").read().decode().splitlines()
            names = t.getnames()
        assert trace == ["pre 1 empty", "post 1 data", "proc mounted", "triggerin 1 1", "posttrans"], trace
        assert any(n.startswith("./var/lib/rpm/rpmdb.sqlite") for n in names), "packages registered"
    finally:
        shutil.rmtree(home, ignore_errors=True)
