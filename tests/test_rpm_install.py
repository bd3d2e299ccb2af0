"""rpm install: `rootfs prepare` + `rootfs build`, with dnf's install of
the same packages as the oracle for the tree, and the outputs read back
(tar with tarfile, ext2 with debugfs/e2fsck, the rpmdb with rpm -qa)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
import rpmrepo
from conftest import needs_root, needs_tool

from rootfs.backends import InstallOptions
from rootfs.backends.rpm import header as H
from rootfs.backends.rpm.caps import xattr_value
from rootfs.backends.rpm.header import open_rpm
from rootfs.backends.rpm.install import install
from rootfs.model.attrs import AttrRecord
from rootfs.model.errors import InstallError
from rootfs.model.lock import Lock, LockedPackage

pytestmark = needs_tool("rpmbuild", "createrepo_c")

REQUEST = ["fx-devtools", "fx-daemon"]
# Paths that are one installer's own state, not the packages' content.
STATE = ("var/lib/rpm", "var/lib/dnf", "var/cache", "var/log/dnf.log", "var/log/dnf.rpm.log",
         "var/log/dnf.librepo.log", "var/log/hawkey.log", "root/.rpmdb", "etc/dnf",
         "var/lib/fx", "var/tmp", "tmp", "run")


def rootfs(*args) -> subprocess.CompletedProcess:
    from typer.testing import CliRunner

    from rootfs.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return rpmrepo.built_once(tmp_path_factory)


@pytest.fixture(scope="session")
def fx_repo(built, tmp_path_factory) -> Path:
    return rpmrepo.make_repo(tmp_path_factory.mktemp("fxrepo-i") / "repo", built.fx)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def appliance(fx_repo, cache_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("appl") / "appliance"
    p = rootfs("prepare", "--no-check-gpg", "--repo", fx_repo.as_uri(), "--weak-deps", "--cache-dir", cache_dir, *REQUEST, "-o", out)
    assert p.returncode == 0, p.stderr
    return out


@pytest.fixture(scope="session")
def dnf_tree(fx_repo, tmp_path_factory) -> Path:
    if shutil.which("dnf") is None or os.geteuid() != 0:
        pytest.skip("needs dnf and root")
    base = tmp_path_factory.mktemp("dnf")
    root = base / "root"
    subprocess.run(
        ["dnf", "-q", "-y", "--installroot", str(root), "--releasever=1", "--setopt=reposdir=/dev/null", "--nogpgcheck",
         f"--repofrompath=fx,{fx_repo.as_uri()}", "--repo=fx", "--setopt=tsflags=noscripts",
         f"--setopt=cachedir={base / 'cache'}", "install", *REQUEST],
        check=True, capture_output=True,
    )
    return root


def _skip_state(rel: str) -> bool:
    return any(rel == s or rel.startswith(s + "/") for s in STATE)


def tree_snapshot(root: Path) -> tuple[dict, list]:
    """path -> (type+mode, uid, gid, link target, capability), and the hard-link sets."""
    out: dict = {}
    inodes: dict[int, list[str]] = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            full = os.path.join(d, n)
            rel = os.path.relpath(full, root)
            if _skip_state(rel):
                continue
            st = os.lstat(full)
            link = os.readlink(full) if stat.S_ISLNK(st.st_mode) else None
            try:
                cap = os.getxattr(full, "security.capability", follow_symlinks=False)
            except OSError:
                cap = None
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, link, cap)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                inodes.setdefault(st.st_ino, []).append(rel)
    return out, sorted(sorted(v) for v in inodes.values())


def tar_snapshot(path: Path) -> tuple[dict, list]:
    out: dict = {}
    links: dict[str, list[str]] = {}
    with tarfile.open(path) as t:
        for m in t.getmembers():
            rel = m.name.removeprefix("./").rstrip("/")
            if rel in ("", ".") or _skip_state(rel):
                continue
            cap = m.pax_headers.get("SCHILY.xattr.security.capability")
            capb = cap.encode("latin-1", "surrogateescape") if isinstance(cap, str) else cap
            if m.islnk():
                target = m.linkname.removeprefix("./")
                links.setdefault(target, [target]).append(rel)
                first = out[target]
                out[rel] = first
                continue
            kind = stat.S_IFDIR if m.isdir() else stat.S_IFLNK if m.issym() else stat.S_IFREG
            out[rel] = (kind | m.mode, m.uid, m.gid, m.linkname if m.issym() else None, capb)
    return out, sorted(sorted(v) for v in links.values())


# -- the tree against dnf -----------------------------------------------------------------

@needs_root()
def test_chroot_matches_dnf(appliance, dnf_tree, tmp_path):
    out = tmp_path / "chroot"
    p = rootfs("build", appliance, "--format", "chroot", "-o", out)
    assert p.returncode == 0, p.stderr
    got, got_links = tree_snapshot(out)
    want, want_links = tree_snapshot(dnf_tree)
    assert set(got) == set(want), set(got) ^ set(want)
    diffs = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
    assert not diffs
    assert got_links == want_links and len(got_links) == 3
    # The special cases, spelled out.
    assert stat.S_IMODE(got["usr/bin/fx-passwd"][0]) == 0o4755
    assert got["usr/bin/fx-write"][2] == 5 and stat.S_IMODE(got["usr/bin/fx-write"][0]) == 0o2755
    assert got["usr/bin/fx-ping"][4] == xattr_value("cap_net_raw=ep")
    assert got["var/lib/fx-daemon"][1:3] == (990, 990)
    assert stat.S_IMODE(got["var/spool/fx-daemon"][0]) == 0o2770
    assert stat.S_IMODE(got["tmp"][0] if "tmp" in got else (out / "tmp").lstat().st_mode) == 0o1777
    assert got["bin"][3] == "usr/bin"
    assert "var/log/fx-daemon.log" not in got and "etc/ld.so.cache" not in got  # %ghost
    assert (out / "etc/fx-daemon.conf").read_text() == "listen = 127.0.0.1:7070\n"  # %config
    # rpm -qa inside the result lists exactly the locked packages.
    q = subprocess.run(["rpm", "--root", str(out), "--dbpath", "/var/lib/rpm", "-qa", "--qf", "%{NAME}\n"],
                       capture_output=True, text=True, check=True)
    lock = json.loads((appliance / "lock.json").read_text())
    assert sorted(q.stdout.split()) == sorted(p["name"] for p in lock["packages"])
    assert "skipped" in p.stderr and "Lua" in p.stderr  # said, not hidden


def test_tar_without_root_matches_dnf(appliance, dnf_tree, tmp_path):
    """--mode extract never chowns; the attrs record carries owners, modes
    and capabilities into the tar."""
    out = tmp_path / "rootfs.tar"
    p = rootfs("build", appliance, "--format", "tar", "--mode", "extract", "-o", out)
    assert p.returncode == 0, p.stderr
    assert "rpm database" in p.stderr and "scriptlets" in p.stderr
    got, got_links = tar_snapshot(out)
    want, want_links = tree_snapshot(dnf_tree)
    for empty in ("proc", "dev", "sys"):  # packed as bare directories
        want = {k: v for k, v in want.items() if not k.startswith(empty + "/")}
    assert set(got) == set(want), set(got) ^ set(want)
    assert {k: (got[k], want[k]) for k in got if got[k] != want[k]} == {}
    assert got_links and len(got_links) == len(want_links)


@needs_tool("debugfs", "e2fsck", "mke2fs")
def test_ext2_output_read_back(appliance, tmp_path):
    out = tmp_path / "rootfs.ext2"
    p = rootfs("build", appliance, "--format", "ext2", "--mode", "extract", "-o", out)
    assert p.returncode == 0, p.stderr
    assert subprocess.run(["e2fsck", "-fn", str(out)], capture_output=True).returncode == 0

    def debugfs(cmd: str) -> str:
        return subprocess.run(["debugfs", "-R", cmd, str(out)], capture_output=True, text=True, check=True).stdout

    s = debugfs("stat /usr/bin/fx-passwd")
    assert "Mode:  04755" in s and "User:     0" in s
    s = debugfs("stat /var/lib/fx-daemon/state.json")
    assert "Mode:  0640" in s and "User:   990" in s and "Group:   990" in s
    assert "security.capability (20) = 01 00 00 02 00 20 00 00" in debugfs("ea_list /usr/bin/fx-ping")
    listing = debugfs("ls -l /usr/bin")
    assert "fx-devtool" in listing and "fx-vim" in listing
    assert "fx-daemon.log" not in debugfs("ls -l /var/log")


# -- payload formats ----------------------------------------------------------------------

def lock_for(paths: list[Path]) -> tuple[Lock, dict[str, Path]]:
    pkgs, files = [], {}
    for path in paths:
        r = open_rpm(path)
        h = r.header
        e = h.list(H.EPOCH)
        lp = LockedPackage(name=r.name, version=f"{e[0] if e else 0}:{h.str(H.VERSION)}-{h.str(H.RELEASE)}",
                           architecture=h.str(H.ARCH), url=path.as_uri(), size=path.stat().st_size,
                           sha256=hashlib.sha256(path.read_bytes()).hexdigest())
        pkgs.append(lp)
        files[lp.key] = path
    return Lock(backend="rpm", recipe="t", distribution="", suite="", architecture="x86_64", packages=tuple(pkgs)), files


@pytest.mark.parametrize("name", ["fx-gzip", "fx-bzip2", "fx-xz", "fx-zstd", "fx-lzma", "fx-plain"])
def test_payload_compressions(built, tmp_path, name):
    rpm = built.payloads[name]
    comp = open_rpm(rpm).header.str(H.PAYLOADCOMPRESSOR)
    assert comp == {"fx-gzip": "gzip", "fx-bzip2": "bzip2", "fx-xz": "xz", "fx-zstd": "zstd",
                    "fx-lzma": "lzma", "fx-plain": ""}[name]
    lock, files = lock_for([rpm])
    root = tmp_path / "root"
    root.mkdir()
    record = AttrRecord()
    report = install(lock, files, root, InstallOptions(mode="extract", attrs=record))
    assert report.packages == 1
    d = root / "usr/share" / name
    assert (d / "file.txt").read_text() == f"payload of {name}\n"
    assert (d / "sub/numbers").read_text() == "".join(f"{i}\n" for i in range(1, 2001))
    assert os.path.samefile(d / "sub/numbers", d / "sub/numbers-link")
    assert os.readlink(d / "link") == "sub/numbers"
    assert record.get(f"usr/share/{name}/sub").mode == stat.S_IFDIR | 0o755


def test_writes_stay_inside_the_root(built, tmp_path):
    lock, files = lock_for(built.evil)
    root = tmp_path / "root"
    root.mkdir()
    install(lock, files, root, InstallOptions(mode="extract", attrs=AttrRecord()))
    host_side = Path(built.evil_target)
    assert not host_side.exists()
    assert os.readlink(root / "usr/share/evil") == str(host_side)
    inside = root / str(host_side).lstrip("/") / "pwned"
    assert inside.read_text() == "pwned\n"


# -- scriptlets and the rpm database ----------------------------------------------------

@needs_root()
def test_scriptlets_run_inside_the_root(built, tmp_path, cache_dir):
    repo = rpmrepo.make_repo(tmp_path / "repo", built.scripted)
    appl = tmp_path / "appl"
    p = rootfs("prepare", "--no-check-gpg", "--repo", repo.as_uri(), "--cache-dir", cache_dir, "fx-scripted", "-o", appl)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "out"
    p = rootfs("build", appl, "--format", "chroot", "-o", out)
    assert p.returncode == 0, p.stderr
    trace = (out / "var/lib/fx/trace").read_text().splitlines()
    # %pretrans ran before /bin/sh existed, so it is reported, not run; %pre
    # ran before the unpack, %post after it with /proc mounted, the trigger
    # when both packages were in, %posttrans last.
    assert trace == ["pre 1 empty", "post 1 data", "proc mounted", "triggerin 1 1", "posttrans"], trace
    assert "%pretrans of fx-scripted" in p.stderr
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()  # nothing left mounted
    q = subprocess.run(["rpm", "--root", str(out), "--dbpath", "/var/lib/rpm", "-qa", "--qf", "%{NAME}\n"],
                       capture_output=True, text=True, check=True)
    assert sorted(q.stdout.split()) == ["fx-hostsh", "fx-scripted"]


# -- signatures, tampering, bad input ---------------------------------------------------

@pytest.fixture(scope="session")
def signed_rpms(built, gpg_key, tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("signed")
    copies = []
    for r in built.fx:
        shutil.copy2(r, d / r.name)
        copies.append(d / r.name)
    rpmrepo.sign_rpms(copies, gpg_key)
    return copies


def test_signed_packages(signed_rpms, built, tmp_path, gpg_key, other_gpg_key, cache_dir):
    repo = rpmrepo.make_repo(tmp_path / "good", signed_rpms, key=gpg_key)
    out = tmp_path / "appl"
    p = rootfs("prepare", "--repo", repo.as_uri(), "--gpgkey", gpg_key.armored, "--cache-dir", cache_dir, "fx-libc", "-o", out)
    assert p.returncode == 0, p.stderr
    assert "BEGIN PGP PUBLIC KEY BLOCK" in json.loads((out / "lock.json").read_text())["keys"][0]
    p = rootfs("build", out, "--format", "tar", "--mode", "extract", "-o", tmp_path / "t.tar")
    assert p.returncode == 0, p.stderr
    # A binary keyring is armoured for rpmkeys by rootfs itself.
    p = rootfs("prepare", "--repo", repo.as_uri(), "--gpgkey", gpg_key.keyring, "--cache-dir", cache_dir, "fx-libc",
               "-o", tmp_path / "appl-bin")
    assert p.returncode == 0, p.stderr
    # A signed repository of unsigned packages: refused once a key is given.
    unsigned = rpmrepo.make_repo(tmp_path / "unsigned", built.fx, key=gpg_key)
    bad_out = tmp_path / "appl-unsigned"
    p = rootfs("prepare", "--repo", unsigned.as_uri(), "--gpgkey", gpg_key.armored, "--cache-dir", cache_dir, "fx-libc", "-o", bad_out)
    assert p.returncode == 4 and "signature check failed" in p.stderr, p.stderr
    assert not bad_out.exists() and not list(tmp_path.glob(".appl-unsigned*"))
    # `rootfs make` with a recipe naming the key checks the packages too.
    recipe = tmp_path / "signed.toml"
    recipe.write_text(f'backend = "rpm"\narchitecture = "x86_64"\n[rpm]\nrepos = ["{unsigned.as_uri()}"]\n'
                      f'packages = ["fx-libc"]\ngpgkey = "{gpg_key.armored}"\n')
    p = rootfs("make", recipe, "-f", "tar", "--mode", "extract", "--cache-dir", cache_dir, "--no-sbom", "-o", tmp_path / "m.tar")
    assert p.returncode == 4 and "signature check failed" in p.stderr, p.stderr
    assert not (tmp_path / "m.tar").exists()
    # Packages signed by another key, metadata by ours.
    other = [tmp_path / "o" / r.name for r in built.fx]
    (tmp_path / "o").mkdir()
    for src, dst in zip(built.fx, other):
        shutil.copy2(src, dst)
    rpmrepo.sign_rpms(other, other_gpg_key)
    repo = rpmrepo.make_repo(tmp_path / "other", other, key=gpg_key)
    p = rootfs("prepare", "--repo", repo.as_uri(), "--gpgkey", gpg_key.armored, "--cache-dir", cache_dir, "fx-libc", "-o", bad_out)
    assert p.returncode == 4 and "signature" in p.stderr, p.stderr
    assert not bad_out.exists()


def test_tampered_package(built, tmp_path, cache_dir):
    repo = rpmrepo.make_repo(tmp_path / "repo", built.fx)
    victim = next((repo / "Packages").glob("fx-setup-*.rpm"))
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF
    victim.write_bytes(bytes(data))
    out = tmp_path / "appl"
    p = rootfs("prepare", "--no-check-gpg", "--repo", repo.as_uri(), "--cache-dir", tmp_path / "c", "fx-libc", "-o", out)
    assert p.returncode == 4 and "sha256" in p.stderr, p.stderr
    assert not out.exists()


def test_tampered_appliance_and_bad_build_input(appliance, tmp_path):
    copy = tmp_path / "appl"
    shutil.copytree(appliance, copy)
    victim = next((copy / "packages").glob("fx-data-*.rpm"))
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    out = tmp_path / "out.tar"
    p = rootfs("build", copy, "--format", "tar", "--mode", "extract", "-o", out)
    assert p.returncode == 4 and "does not match the sha256" in p.stderr, p.stderr
    assert not out.exists() and os.listdir(tmp_path) == ["appl"]
    p = rootfs("build", appliance, "--format", "floppy", "--mode", "extract", "-o", out)
    assert p.returncode == 8 and "unknown format" in p.stderr, p.stderr
    p = rootfs("build", tmp_path, "--format", "tar", "-o", out)
    assert p.returncode == 2 and "not an appliance" in p.stderr, p.stderr
    assert not out.exists()


def test_prepare_missing_package_leaves_nothing(fx_repo, tmp_path, cache_dir):
    out = tmp_path / "appl"
    p = rootfs("prepare", "--no-check-gpg", "--repo", fx_repo.as_uri(), "--cache-dir", cache_dir, "fx-libc", "fx-nope", "-o", out)
    assert p.returncode == 3 and "fx-nope" in p.stderr
    assert not out.exists() and os.listdir(tmp_path) == []


def test_appliance_contents(appliance, fx_repo):
    lock = json.loads((appliance / "lock.json").read_text())
    assert lock["backend"] == "rpm"
    names = sorted(p["name"] for p in lock["packages"])
    assert names == sorted(["fx-bash", "fx-coreutils", "fx-daemon", "fx-data", "fx-devtools", "fx-docs",
                            "fx-editor-vim", "fx-filesystem", "fx-libc", "fx-newtool", "fx-setup"])
    for p in lock["packages"]:
        f = appliance / "packages" / p["url"].rsplit("/", 1)[1]
        assert f.stat().st_size == p["size"]
        assert f.read_bytes() == (fx_repo / "Packages" / f.name).read_bytes()


def test_payload_digest_checked(built, tmp_path):
    """A package changed before the repository was made matches its
    sha256 in primary.xml; the header's payload digest still catches it."""
    bad = tmp_path / "src"
    bad.mkdir()
    for r in built.fx:
        shutil.copy2(r, bad / r.name)
    victim = next(bad.glob("fx-setup-*.rpm"))
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF
    victim.write_bytes(bytes(data))
    repo = rpmrepo.make_repo(tmp_path / "repo", sorted(bad.iterdir()))
    out = tmp_path / "appl"
    p = rootfs("prepare", "--no-check-gpg", "--repo", repo.as_uri(), "--cache-dir", tmp_path / "c", "fx-libc", "-o", out)
    assert p.returncode == 4 and "fx-setup" in p.stderr and "payload does not match" in p.stderr, p.stderr
    assert not out.exists()


def test_make_with_an_rpm_recipe(fx_repo, tmp_path, cache_dir):
    recipe = tmp_path / "fx.toml"
    recipe.write_text(f'backend = "rpm"\ndistribution = "fixture"\narchitecture = "x86_64"\n[rpm]\n'
                      f'repos = ["{fx_repo.as_uri()}"]\npackages = ["fx-oldtool"]\n')
    out = tmp_path / "fx.tar"
    p = rootfs("make", "--no-check-gpg", recipe, "-f", "tar", "--mode", "extract", "--cache-dir", cache_dir, "--no-sbom", "-o", out)
    assert p.returncode == 0, p.stderr
    with tarfile.open(out) as t:
        names = set(t.getnames())
        assert "./usr/bin/fx-newtool" in names and "./bin" in names
        assert t.getmember("./usr/bin/fx-oldtool").linkname == "fx-newtool"  # the obsoleting package's
        assert "./etc/passwd" in names


def test_device_nodes(built, tmp_path):
    """%dev nodes in a payload are refused by the payload policy, and made
    as the header says when the user waives the rule."""
    from rootfs.host.policy import Policy, PolicyViolation

    lock, files = lock_for([built.devnodes])
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(PolicyViolation, match="ships '/dev/fx-(null|loop0)', a device node.*--allow device"):
        install(lock, files, root, InstallOptions(mode="extract", attrs=AttrRecord()))
    shutil.rmtree(root)
    root.mkdir()
    nodes = Policy(frozenset({"device"}))
    record = AttrRecord()
    install(lock, files, root, InstallOptions(mode="extract", attrs=record, policy=nodes))
    null = record.get("dev/fx-null")
    assert null.mode == stat.S_IFCHR | 0o666 and null.rdev == os.makedev(1, 3)
    assert record.get("dev/fx-loop0").rdev == os.makedev(7, 0)
    if os.geteuid() == 0:
        root2 = tmp_path / "root2"
        root2.mkdir()
        install(lock, files, root2, InstallOptions(mode="root", policy=nodes))
        st = (root2 / "dev/fx-null").lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3) and stat.S_IMODE(st.st_mode) == 0o666
        assert stat.S_ISBLK((root2 / "dev/fx-loop0").lstat().st_mode)


def test_paths_through_the_roots_own_symlinks(built, tmp_path):
    """fx-oldtool ships /bin/fx-oldtool; fx-filesystem made /bin a symlink
    to usr/bin, so the file lands in /usr/bin and /bin stays a symlink."""
    pick = [p for p in built.fx if p.name.startswith(("fx-setup-", "fx-filesystem-", "fx-oldtool-", "fx-bash-"))
            or p.name.startswith("fx-libc-2.36-9.fx1.x86_64")]
    lock, files = lock_for(pick)
    root = tmp_path / "root"
    root.mkdir()
    record = AttrRecord()
    install(lock, files, root, InstallOptions(mode="extract", attrs=record))
    assert os.readlink(root / "bin") == "usr/bin"
    assert (root / "usr/bin/fx-oldtool").read_text() == '#!/bin/sh\necho "fx-oldtool 1.0"\n'
    assert record.get("usr/bin/fx-oldtool").mode == stat.S_IFREG | 0o755
    assert "bin/fx-oldtool" not in record
    # Directory modes come out exact in the record, and usable on disk.
    assert record.get("proc").mode == stat.S_IFDIR | 0o555 and record.get("root").mode == stat.S_IFDIR | 0o550
    assert record.get("etc/shadow").mode == stat.S_IFREG | 0o000
    assert os.access(root / "etc/shadow", os.R_OK)


@pytest.mark.parametrize("mode", ["root", "extract"])
def test_builds_are_reproducible(appliance, tmp_path, mode):
    """One appliance, two builds, the same bytes: the rpm database included
    (its install times come from the lock's SOURCE_DATE_EPOCH)."""
    if mode == "root" and os.geteuid() != 0:
        pytest.skip("needs root")
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    for out in (a, b):
        p = rootfs("build", appliance, "--format", "tar", "--mode", mode, "-o", out)
        assert p.returncode == 0, p.stderr
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as t:
        assert ("./var/lib/rpm/rpmdb.sqlite" in t.getnames()) == (mode == "root")


@needs_root()
@needs_tool("rpm")
def test_lua_scriptlet_runs_with_the_roots_rpm(tmp_path):
    """A root that has rpm runs Lua scriptlets with it. The root here is
    the host's rpm with its libraries, the minimum that runs `rpm --eval`."""
    from rootfs.backends.rpm.scriptlets import Runner, Scriptlet, ScriptletError
    from rootfs.host.unpacker import Extractor

    root = tmp_path / "root"
    ldd = subprocess.run(["ldd", shutil.which("rpm")], capture_output=True, text=True, check=True).stdout
    for f in [shutil.which("rpm"), "/usr/lib/rpm/rpmrc", "/usr/lib/rpm/macros",
              *(w for w in ldd.split() if w.startswith("/"))]:
        dest = root / ("usr/bin/rpm" if f == shutil.which("rpm") else f.lstrip("/"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    (root / "var/tmp").mkdir(parents=True)
    runner = Runner(Extractor(root))
    body = 'local f = io.open("/var/tmp/trace", "w") f:write("lua post " .. arg[2]) f:close()'
    s = Scriptlet("fx-lua-1-1.noarch", "post", ("<lua>",), body)
    assert runner.can_run(s) is None
    runner.run(s, ["1"])
    assert (root / "var/tmp/trace").read_text() == "lua post 1"
    assert list((root / "var/tmp").iterdir()) == [root / "var/tmp/trace"]  # the script file is gone
    with pytest.raises(ScriptletError, match="failed"):
        runner.run(Scriptlet("fx-lua-1-1.noarch", "post", ("<lua>",), 'error("boom")'), ["1"])
    (tmp_path / "empty").mkdir()
    assert "needs rpm inside the root" in Runner(Extractor(tmp_path / "empty")).can_run(s)


def test_file_conflicts(built, tmp_path):
    """Identical files may be shared; a path with two different contents is
    refused before anything is written, as rpm's transaction check does."""
    from rootfs.backends.rpm.install import check_file_conflicts

    a, b = (open_rpm(p) for p in built.clash)
    with pytest.raises(InstallError, match="file /usr/share/fx-clash/differs of fx-clash-b-1.0-1.noarch conflicts"):
        check_file_conflicts([a, b])
    lock, files = lock_for(built.clash)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(InstallError):
        install(lock, files, root, InstallOptions(mode="extract", attrs=AttrRecord()))
    assert list(root.iterdir()) == []
    # The real package sets share directories and identical files only.
    check_file_conflicts([open_rpm(p) for p in built.fx if "fx-libc-2.35" not in p.name and "aarch64" not in p.name
                          and "coreutils-single" not in p.name and "oldtool" not in p.name and "nano" not in p.name])


@needs_root()
@needs_tool("rpm")
def test_rpmdb_goes_where_the_roots_rpm_looks(built, tmp_path):
    """A root whose rpm keeps its database in /usr/lib/sysimage/rpm (newer
    Fedora, with /var/lib/rpm a symlink to it) gets it there."""
    from rootfs.backends.rpm.install import register, target_macro

    root = tmp_path / "root"
    (root / "usr/lib/rpm/macros.d").mkdir(parents=True)
    (root / "usr/lib/rpm/macros").write_text("%_dbpath\t\t/var/lib/rpm\n%_db_backend sqlite\n")
    (root / "usr/lib/rpm/macros.d/macros.sysimage").write_text("%_dbpath\t%{_usr}/lib/sysimage/rpm\n")
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/rpm").symlink_to("../../usr/lib/sysimage/rpm")
    assert target_macro(root, "_dbpath") == "/usr/lib/sysimage/rpm"
    assert register(root, [built.payloads["fx-gzip"]], rpmrepo.SOURCE_DATE_EPOCH) is None
    assert (root / "usr/lib/sysimage/rpm/rpmdb.sqlite").is_file()
    q = subprocess.run(["rpm", "--root", str(root), "--dbpath", "/usr/lib/sysimage/rpm", "-qa"],
                       capture_output=True, text=True, check=True)
    assert q.stdout.strip() == "fx-gzip-1.0-1.noarch"
    # A root set up for Berkeley DB is told, not given a database it cannot read.
    (root / "usr/lib/rpm/macros.d/macros.bdb").write_text("%_db_backend bdb\n")
    assert "bdb backend" in register(root, [built.payloads["fx-gzip"]])


def test_build_writes_an_sbom_the_image_names(appliance, tmp_path):
    out = tmp_path / "img"
    p = rootfs("build", appliance, "--format", "oci", "--mode", "extract", "-o", out)
    assert p.returncode == 0, p.stderr
    sbom = tmp_path / "img.spdx.json"
    doc = json.loads(sbom.read_text())
    names = sorted(x["name"] for x in doc["packages"] if x["SPDXID"] != "SPDXRef-Subject")
    lock = json.loads((appliance / "lock.json").read_text())
    assert names == sorted(pk["name"] for pk in lock["packages"])
    assert all(any(r["referenceType"] == "purl" and r["referenceLocator"].startswith("pkg:rpm/")
                   for r in x.get("externalRefs", [])) for x in doc["packages"] if x["SPDXID"] != "SPDXRef-Subject")
    index = json.loads((out / "index.json").read_text())
    manifest = json.loads((out / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    assert manifest["annotations"]["org.rootfs.sbom.digest"] == \
        "sha256:" + hashlib.sha256(sbom.read_bytes()).hexdigest()
