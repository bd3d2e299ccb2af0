"""Hostile archives must never write outside the target root.

Every payload is a raw tar written with Python's tarfile (dpkg-deb refuses
to build these). Each case runs twice: as root in mode "root", and as an
unprivileged user (uid 65534, in a forked child) in mode "extract". After
each run the whole directory around the root, including a sentinel
directory beside it, must be exactly as before, byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
import traceback
from pathlib import Path

import pytest

from rootfs.host.policy import Policy
from rootfs.host.unpacker import HostileArchive, extract
from rootfs.model.attrs import AttrRecord
from rootfs.model.errors import InstallError

NOBODY = 65534


def member(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.linkname = link
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    ti.mtime = 1_700_000_000
    return ti, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def write_tar(path: Path, members) -> Path:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for ti, f in members:
            tf.addfile(ti, f)
    return path


def snapshot(base: Path, skip: Path) -> dict:
    """Everything under base except the root: type, mode, owner, size,
    mtime, link count, link target, content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(base):
        if Path(dirpath) == skip or Path(dirpath).is_relative_to(skip):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p == skip:
                continue
            st = os.lstat(p)
            entry = [st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_nlink]
            if stat.S_ISLNK(st.st_mode):
                entry.append(os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                entry.append(hashlib.sha256(p.read_bytes()).hexdigest())
            out[str(p.relative_to(base))] = entry
        dirnames[:] = [d for d in dirnames if Path(dirpath) / d != skip]
    return out


class Arena:
    """A world-traversable base directory holding the root, a sentinel
    directory beside it and the archives."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "root"
        self.sentinel = base / "sentinel"
        self.root.mkdir()
        self.sentinel.mkdir()
        (self.sentinel / "secret").write_bytes(b"do not touch\n")
        (self.sentinel / "target").write_bytes(b"link target\n")
        (self.base / "beside").write_bytes(b"beside the root\n")
        for p in (self.base, self.root, self.sentinel):
            p.chmod(0o777)
        (self.sentinel / "secret").chmod(0o666)
        (self.sentinel / "target").chmod(0o666)
        (self.base / "beside").chmod(0o666)


@pytest.fixture
def arena():
    base = Path(tempfile.mkdtemp(prefix="rootfs-escape-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield Arena(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_extract(tar: Path, root: Path, as_user: str, allow=()) -> dict:
    """Extract tar into root, as root ("root" mode) or as uid 65534
    ("extract" mode, in a forked child). Returns {"error", "paths", "attrs"}."""
    def body(mode: str) -> dict:
        attrs = AttrRecord()
        try:
            paths = extract(tar, root, mode=mode, attrs=attrs, policy=Policy(frozenset(allow)))
            return {"error": None, "paths": paths, "attrs": json.loads(attrs.to_json())["paths"]}
        except HostileArchive as exc:
            return {"error": "hostile", "message": str(exc)}
        except InstallError as exc:
            return {"error": "install", "message": str(exc)}

    if as_user == "root":
        if os.geteuid() != 0:
            pytest.skip("needs root")
        return body("root")
    if os.geteuid() != 0:
        return body("extract")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, extract, report, exit
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            result = body("extract")
        except BaseException:
            result = {"error": "crash", "message": traceback.format_exc()}
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    result = json.loads(data)
    assert result["error"] != "crash", result["message"]
    return result


def prepare_for(arena: Arena, as_user: str) -> None:
    if as_user == "nobody" and os.geteuid() == 0:
        for dirpath, dirnames, filenames in os.walk(arena.root):
            for n in dirnames + filenames + ["."]:
                os.lchown(os.path.join(dirpath, n), NOBODY, NOBODY)


USERS = ["root", "nobody"]


def check(arena: Arena, members, as_user: str, expect_error: bool, allow=()):
    tar = write_tar(arena.base / "payload.tar", members)
    prepare_for(arena, as_user)
    before = snapshot(arena.base, arena.root)
    etc_before = set(os.listdir("/etc"))
    result = run_extract(tar, arena.root, as_user, allow)
    assert snapshot(arena.base, arena.root) == before, "something outside the root changed"
    assert set(os.listdir("/etc")) == etc_before
    if expect_error:
        assert result["error"] == "hostile", result
    else:
        assert result["error"] is None, result
    return result


@pytest.mark.parametrize("as_user", USERS)
def test_dotdot_member_is_refused(arena, as_user):
    result = check(arena, [member("../../sentinel/secret", data=b"owned\n"),
                           member("../beside", data=b"owned\n")], as_user, expect_error=True)
    assert "'..'" in result["message"]


@pytest.mark.parametrize("as_user", USERS)
def test_dotdot_in_the_middle_is_refused(arena, as_user):
    check(arena, [member("usr/", tarfile.DIRTYPE, mode=0o755),
                  member("usr/../../sentinel/x", data=b"owned\n")], as_user, expect_error=True)


@pytest.mark.parametrize("as_user", USERS)
def test_absolute_symlink_dir_then_member_lands_inside(arena, as_user):
    # `etc -> /etc` then `etc/passwd`: the link is resolved inside the root.
    result = check(arena, [
        member("s", tarfile.SYMTYPE, link=str(arena.sentinel)),
        member("s/secret", data=b"owned\n"),
    ], as_user, expect_error=False)
    # Read back without following the link on the host.
    inside = arena.root / str(arena.sentinel).lstrip("/") / "secret"
    assert inside.read_bytes() == b"owned\n"
    assert result["paths"] == ["/s", "/s/secret"]


@pytest.mark.parametrize("as_user", USERS)
def test_etc_linked_to_slash_etc_then_passwd(arena, as_user):
    # Inside the root, `etc -> /etc` points at itself: a loop, refused (the
    # kernel would say ELOOP too); the host's /etc is never reached.
    result = check(arena, [
        member("etc", tarfile.SYMTYPE, link="/etc"),
        member("etc/passwd", data=b"root::0:0::/:/bin/sh\n"),
    ], as_user, expect_error=True)
    assert "symbolic links" in result["message"]


@pytest.mark.parametrize("as_user", USERS)
def test_symlink_dotdot_chain_is_clamped_at_the_root(arena, as_user):
    check(arena, [
        member("a", tarfile.SYMTYPE, link="../../../../../../../../"),
        member("a/beside", data=b"owned\n"),
        member("b", tarfile.SYMTYPE, link="a/../../sentinel"),
        member("b/secret", data=b"owned\n"),
    ], as_user, expect_error=False)
    assert (arena.root / "beside").read_bytes() == b"owned\n"
    assert (arena.root / "sentinel" / "secret").read_bytes() == b"owned\n"


@pytest.mark.parametrize("as_user", USERS)
def test_hard_link_to_outside_is_refused(arena, as_user):
    for target in (str(arena.sentinel / "secret"), "../sentinel/secret", "sentinel/secret"):
        result = check(arena, [member("x", tarfile.LNKTYPE, link=target)], as_user, expect_error=True)
        assert os.stat(arena.sentinel / "secret").st_nlink == 1
        assert "hard link" in result["message"] or "'..'" in result["message"]


@pytest.mark.parametrize("as_user", USERS)
def test_hard_link_to_a_planted_symlink_is_refused(arena, as_user):
    check(arena, [
        member("s", tarfile.SYMTYPE, link=str(arena.sentinel / "secret")),
        member("h", tarfile.LNKTYPE, link="s"),
    ], as_user, expect_error=True)


@pytest.mark.parametrize("as_user", USERS)
def test_symlink_replacing_a_full_directory_is_refused(arena, as_user):
    result = check(arena, [
        member("d/", tarfile.DIRTYPE, mode=0o755),
        member("d/f", data=b"inside\n"),
        member("d", tarfile.SYMTYPE, link=str(arena.sentinel)),
        member("d/secret", data=b"owned\n"),
    ], as_user, expect_error=True)
    assert "non-empty directory" in result["message"]
    assert (arena.root / "d" / "f").read_bytes() == b"inside\n"


@pytest.mark.parametrize("as_user", USERS)
def test_symlink_replacing_an_empty_directory_stays_inside(arena, as_user):
    check(arena, [
        member("d/", tarfile.DIRTYPE, mode=0o755),
        member("d", tarfile.SYMTYPE, link="../../sentinel"),
        member("d/secret", data=b"owned\n"),
    ], as_user, expect_error=False)
    assert (arena.root / "sentinel" / "secret").read_bytes() == b"owned\n"


@pytest.mark.parametrize("as_user", USERS)
def test_file_over_a_planted_symlink_replaces_the_link(arena, as_user):
    check(arena, [
        member("victim", tarfile.SYMTYPE, link=str(arena.sentinel / "target")),
        member("victim", data=b"replaced\n"),
        member("rel", tarfile.SYMTYPE, link="../sentinel/target"),
        member("rel", data=b"replaced\n"),
    ], as_user, expect_error=False)
    assert not (arena.root / "victim").is_symlink()
    assert (arena.root / "victim").read_bytes() == b"replaced\n"
    assert (arena.root / "rel").read_bytes() == b"replaced\n"


@pytest.mark.parametrize("as_user", USERS)
def test_symlink_loop_is_refused(arena, as_user):
    check(arena, [
        member("l1", tarfile.SYMTYPE, link="l2"),
        member("l2", tarfile.SYMTYPE, link="l1"),
        member("l1/x", data=b"owned\n"),
    ], as_user, expect_error=True)


@pytest.mark.parametrize("as_user", USERS)
def test_absolute_member_names_land_inside(arena, as_user):
    target = str(arena.sentinel / "secret")
    check(arena, [member(target, data=b"owned\n"), member("/beside", data=b"owned\n")],
          as_user, expect_error=False)
    assert (arena.root / target.lstrip("/")).read_bytes() == b"owned\n"
    assert (arena.root / "beside").read_bytes() == b"owned\n"


@pytest.mark.parametrize("as_user", USERS)
def test_link_planted_in_the_root_beforehand(arena, as_user):
    # An earlier package left usr/lib/evil -> <sentinel>; a later member
    # going through it still lands inside.
    (arena.root / "usr" / "lib").mkdir(parents=True)
    os.symlink(str(arena.sentinel), arena.root / "usr" / "lib" / "evil")
    os.symlink("../../../../..", arena.root / "usr" / "lib" / "up")
    check(arena, [member("usr/lib/evil/secret", data=b"owned\n"),
                  member("usr/lib/up/beside", data=b"owned\n")], as_user, expect_error=False)
    assert (arena.root / str(arena.sentinel).lstrip("/") / "secret").read_bytes() == b"owned\n"
    assert (arena.root / "beside").read_bytes() == b"owned\n"


@pytest.mark.parametrize("as_user", USERS)
def test_file_where_a_directory_is_needed_is_refused(arena, as_user):
    check(arena, [member("f", data=b"x"), member("f/g", data=b"y")], as_user, expect_error=True)


def test_device_node_unprivileged_is_a_placeholder(arena):
    dev = tarfile.TarInfo("dev/sda")
    dev.type = tarfile.CHRTYPE
    dev.devmajor, dev.devminor = 8, 0
    dev.mode = 0o660
    dev.uid, dev.gid = 0, 6
    result = check(arena, [(dev, None)], "nobody", expect_error=False, allow=("device",))
    node = arena.root / "dev" / "sda"
    st = os.lstat(node)
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    rec = result["attrs"]["dev/sda"]
    assert stat.S_ISCHR(rec["mode"]) and stat.S_IMODE(rec["mode"]) == 0o660
    assert rec["rdev"] == [8, 0] and rec["gid"] == 6


def test_hostile_deb_through_the_installer(arena, tmp_path):
    """The whole installer in extract mode: a .deb (raw ar) whose data.tar
    climbs out fails with an install error, and nothing outside changes."""
    from rootfs.backends import InstallOptions
    from rootfs.backends.deb.install import install
    from rootfs.model.lock import Lock, LockedPackage

    control = write_tar(tmp_path / "control.tar", [member("./control", data=(
        b"Package: evil\nVersion: 1\nArchitecture: all\nMaintainer: x <x@x>\nDescription: evil\n"))])
    data = write_tar(tmp_path / "data.tar", [
        member("./", tarfile.DIRTYPE, mode=0o755),
        member("./etc", tarfile.SYMTYPE, link=str(arena.sentinel)),
        member("./etc/secret", data=b"owned via link\n"),
        member("./../beside", data=b"owned\n"),
    ])
    deb = tmp_path / "evil_1_all.deb"
    deb.write_bytes(ar_archive([("debian-binary", b"2.0\n"), ("control.tar", control.read_bytes()),
                                ("data.tar", data.read_bytes())]))
    pkg = LockedPackage("evil", "1", "all", "http://mirror.invalid/evil_1_all.deb", deb.stat().st_size, "0" * 64)
    lock = Lock("deb", "t", "debian", "t", "amd64", packages=(pkg,), merged_usr=False)
    before = snapshot(arena.base, arena.root)
    with pytest.raises(InstallError, match="evil_1_all.deb: member '\\./\\.\\./beside' refused"):
        install(lock, {pkg.key: deb}, arena.root, InstallOptions(mode="extract", attrs=AttrRecord()))
    assert snapshot(arena.base, arena.root) == before
    assert (arena.root / str(arena.sentinel).lstrip("/") / "secret").read_bytes() == b"owned via link\n"


def ar_archive(members: list[tuple[str, bytes]]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        out.append(f"{name:<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n".encode())
        out.append(data + (b"\n" if len(data) % 2 else b""))
    return b"".join(out)


@pytest.mark.parametrize("as_user", USERS)
def test_newline_in_a_name_is_refused(arena, as_user):
    # it would forge extra lines in dpkg's PKG.list
    check(arena, [member("etc/ok\n/etc/shadow", data=b"x")], as_user, expect_error=True)
