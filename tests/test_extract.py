"""rootfs.host.unpacker: metadata round trip, dpkg's replacement rules, every
compression, and the AttrRecord of unprivileged extraction; rootfs.backends.deb.debfile
on real dpkg-deb output."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import subprocess
import tarfile

import pytest
import zstandard
from conftest import needs_root, needs_tool

from rootfs.backends.deb.debfile import DebFile
from rootfs.host.policy import Policy
from rootfs.host.unpacker import extract
from rootfs.model.attrs import AttrRecord
from rootfs.model.errors import InstallError

MTIME = 1_600_000_000
# security.capability v2, cap_net_raw+ep
CAP_NET_RAW = b"\x01\x00\x00\x02" + b"\x00\x20\x00\x00" + b"\x00" * 12


def ti(name, kind=tarfile.REGTYPE, mode=0o644, uid=0, gid=0, link="", data=b"", **extra):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.linkname = kind, mode, uid, gid, link
    info.mtime = MTIME
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for k, v in extra.items():
        setattr(info, k, v)
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def tar_bytes(members, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, f in members:
            tf.addfile(info, f)
    return buf.getvalue()


# full_tree ships nodes on purpose: the round trip is of what a waived
# policy lets through (tests/test_hostile.py holds the policy itself).
NODES = Policy(frozenset({"device", "fifo"}))


def full_tree():
    cap = ti("./usr/bin/ping", mode=0o755, data=b"\x7fELF ping")
    cap[0].pax_headers = {"SCHILY.xattr.security.capability": CAP_NET_RAW.decode("utf-8", "surrogateescape")}
    chr_dev = ti("./dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3)
    blk_dev = ti("./dev/loop0", tarfile.BLKTYPE, mode=0o660, gid=6, devmajor=7, devminor=0)
    return [
        ti("./", tarfile.DIRTYPE, mode=0o755),
        ti("./usr/", tarfile.DIRTYPE, mode=0o755),
        ti("./usr/bin/", tarfile.DIRTYPE, mode=0o755),
        ti("./usr/bin/passwd", mode=0o4755, data=b"setuid"),
        ti("./usr/bin/wall", mode=0o2755, gid=5, data=b"setgid"),
        ti("./tmp/", tarfile.DIRTYPE, mode=0o1777),
        ti("./var/", tarfile.DIRTYPE, mode=0o755),
        ti("./var/mail/", tarfile.DIRTYPE, mode=0o2775, gid=8),
        ti("./home/", tarfile.DIRTYPE, mode=0o755),
        ti("./home/user/", tarfile.DIRTYPE, mode=0o750, uid=1234, gid=5678),
        ti("./home/user/file", mode=0o600, uid=1234, gid=5678, data=b"mine\n"),
        ti("./usr/bin/sh", tarfile.SYMTYPE, mode=0o777, link="dash"),
        ti("./usr/bin/abs", tarfile.SYMTYPE, mode=0o777, link="/usr/bin/passwd"),
        ti("./usr/bin/dash", mode=0o755, data=b"dash"),
        ti("./usr/bin/dash-hard", tarfile.LNKTYPE, link="./usr/bin/dash"),
        ti("./run/", tarfile.DIRTYPE, mode=0o755),
        ti("./run/initctl", tarfile.FIFOTYPE, mode=0o600),
        ti("./dev/", tarfile.DIRTYPE, mode=0o755),
        chr_dev, blk_dev, cap,
    ]


@needs_root()
def test_metadata_round_trip_as_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    archive = tmp_path / "t.tar"
    archive.write_bytes(tar_bytes(full_tree()))
    paths = extract(archive, root, mode="root", policy=NODES)

    assert paths[0] == "/." and "/usr/bin/dash-hard" in paths and "/dev/null" in paths
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o755  # "./" fixes mkdtemp's 0700

    def st(p):
        return os.lstat(root / p)

    assert stat.S_IMODE(st("usr/bin/passwd").st_mode) == 0o4755
    assert stat.S_IMODE(st("usr/bin/wall").st_mode) == 0o2755 and st("usr/bin/wall").st_gid == 5
    assert stat.S_IMODE(st("tmp").st_mode) == 0o1777
    assert stat.S_IMODE(st("var/mail").st_mode) == 0o2775 and st("var/mail").st_gid == 8
    assert (st("home/user").st_uid, st("home/user").st_gid) == (1234, 5678)
    assert (st("home/user/file").st_uid, stat.S_IMODE(st("home/user/file").st_mode)) == (1234, 0o600)
    assert os.readlink(root / "usr/bin/sh") == "dash"
    assert os.readlink(root / "usr/bin/abs") == "/usr/bin/passwd"
    assert st("usr/bin/dash").st_ino == st("usr/bin/dash-hard").st_ino
    assert st("usr/bin/dash").st_nlink == 2
    assert stat.S_ISFIFO(st("run/initctl").st_mode)
    assert stat.S_ISCHR(st("dev/null").st_mode) and st("dev/null").st_rdev == os.makedev(1, 3)
    assert stat.S_ISBLK(st("dev/loop0").st_mode) and st("dev/loop0").st_rdev == os.makedev(7, 0)
    assert stat.S_IMODE(st("dev/null").st_mode) == 0o666
    assert os.getxattr(root / "usr/bin/ping", "security.capability") == CAP_NET_RAW
    assert st("usr/bin/passwd").st_mtime == MTIME
    assert st("usr/bin").st_mtime == MTIME  # set after its children were created
    assert st("usr/bin/sh").st_mtime == MTIME


def test_attr_record_in_extract_mode(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    attrs = AttrRecord()
    paths = extract(io.BytesIO(tar_bytes(full_tree())), root, mode="extract", attrs=attrs, policy=NODES)
    assert len(paths) == len(full_tree())
    me = os.geteuid()

    # Nothing chowned, no device nodes, no security xattrs on disk.
    assert os.lstat(root / "home/user/file").st_uid == me
    assert stat.S_ISREG(os.lstat(root / "dev/null").st_mode)
    assert os.lstat(root / "dev/null").st_size == 0
    assert "security.capability" not in os.listxattr(root / "usr/bin/ping")

    a = attrs.get
    assert a(".").mode == stat.S_IFDIR | 0o755
    assert a("usr/bin/passwd").mode == stat.S_IFREG | 0o4755
    assert (a("usr/bin/wall").mode, a("usr/bin/wall").gid) == (stat.S_IFREG | 0o2755, 5)
    assert a("tmp").mode == stat.S_IFDIR | 0o1777
    assert (a("home/user").uid, a("home/user").gid) == (1234, 5678)
    assert (a("home/user/file").uid, a("home/user/file").mode) == (1234, stat.S_IFREG | 0o600)
    assert a("usr/bin/sh").mode == stat.S_IFLNK | 0o777
    assert a("usr/bin/dash-hard") == a("usr/bin/dash")
    assert a("run/initctl").mode == stat.S_IFIFO | 0o600
    assert a("dev/null").mode == stat.S_IFCHR | 0o666 and a("dev/null").rdev == os.makedev(1, 3)
    assert (a("dev/loop0").mode, a("dev/loop0").rdev, a("dev/loop0").gid) == (stat.S_IFBLK | 0o660, os.makedev(7, 0), 6)
    assert a("usr/bin/ping").xattrs == (("security.capability", CAP_NET_RAW),)
    # The record survives its JSON round trip.
    assert AttrRecord.load(_save(attrs, tmp_path)).get("dev/loop0") == a("dev/loop0")


def _save(attrs, tmp_path):
    p = tmp_path / "attrs.json"
    attrs.save(p)
    return p


@pytest.mark.parametrize("compress", ["none", "gz", "xz", "bz2", "zst"])
def test_every_compression(tmp_path, compress):
    raw = tar_bytes([ti("./", tarfile.DIRTYPE, mode=0o755), ti("./etc/", tarfile.DIRTYPE, mode=0o755),
                     ti("./etc/hello", data=b"hello " + compress.encode())])
    data = {"none": lambda b: b, "gz": gzip.compress, "xz": lzma.compress, "bz2": bz2.compress,
            "zst": zstandard.ZstdCompressor().compress}[compress](raw)
    (tmp_path / "root").mkdir()
    extract(io.BytesIO(data), tmp_path / "root", mode="extract")
    assert (tmp_path / "root/etc/hello").read_bytes() == b"hello " + compress.encode()


def test_dpkg_replacement_rules(tmp_path):
    """Merged /usr survives a package shipping /bin/...; an existing
    directory is kept; a file replaces a planted symlink instead of
    writing through it."""
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir(mode=0o700)
    os.symlink("usr/bin", root / "bin")
    (tmp_path / "elsewhere").write_bytes(b"untouched\n")
    os.symlink(str(tmp_path / "elsewhere"), root / "etc/motd")
    extract(io.BytesIO(tar_bytes([
        ti("./", tarfile.DIRTYPE, mode=0o755),
        ti("./bin/", tarfile.DIRTYPE, mode=0o755),
        ti("./bin/ls", mode=0o755, data=b"ls"),
        ti("./etc/", tarfile.DIRTYPE, mode=0o755),
        ti("./etc/motd", data=b"hello\n"),
    ])), root, mode="extract")
    assert os.readlink(root / "bin") == "usr/bin"
    assert (root / "usr/bin/ls").read_bytes() == b"ls"
    assert stat.S_IMODE(os.stat(root / "etc").st_mode) == 0o700  # kept as it was
    assert not (root / "etc/motd").is_symlink()
    assert (root / "etc/motd").read_bytes() == b"hello\n"
    assert (tmp_path / "elsewhere").read_bytes() == b"untouched\n"


def test_md5sums_and_claims(tmp_path):
    from rootfs.host.unpacker import Extractor

    root = tmp_path / "root"
    root.mkdir()
    os.makedirs(root / "usr/lib")
    os.symlink("usr/lib", root / "lib")
    md5, claims = {}, {}
    with Extractor(root, mode="extract") as ex:
        paths = ex.extract(io.BytesIO(tar_bytes([
            ti("./lib/", tarfile.DIRTYPE, mode=0o755),
            ti("./lib/x.so", data=b"abc"),
        ])), md5sums=md5, claims=claims)
    assert paths == ["/lib", "/lib/x.so"]
    assert md5 == {"lib/x.so": "900150983cd24fb0d6963f7d28e17f72"}
    # the kept link is not claimed; the file is claimed at its real place
    assert claims == {"usr/lib/x.so": (stat.S_IFREG | 0o644, 0, 0)}


def test_corrupt_archive_is_an_install_error(tmp_path):
    (tmp_path / "root").mkdir()
    good = lzma.compress(tar_bytes([ti("./a", data=b"x" * 100000)]))
    with pytest.raises(InstallError, match="cannot read the archive"):
        extract(io.BytesIO(good[: len(good) // 2]), tmp_path / "root", mode="extract", what="broken.tar.xz")


@needs_tool("dpkg-deb")
@pytest.mark.parametrize("comp", ["xz", "gzip", "zstd", "none"])
def test_debfile_reads_dpkg_deb_output(tmp_path, comp):
    src = tmp_path / "src"
    (src / "DEBIAN").mkdir(parents=True)
    (src / "etc").mkdir()
    (src / "etc/hello.conf").write_text("greeting=hi\n")
    (src / "DEBIAN/control").write_text(
        "Package: hello\nVersion: 1.0-1\nArchitecture: all\nMaintainer: T <t@example.invalid>\n"
        "Pre-Depends: libc6 (>= 2.36)\nDescription: test\n two lines\n")
    (src / "DEBIAN/conffiles").write_text("/etc/hello.conf\n")
    (src / "DEBIAN/postinst").write_text("#!/bin/sh\nexit 0\n")
    (src / "DEBIAN/postinst").chmod(0o755)
    (src / "DEBIAN/md5sums").write_text("0123456789abcdef0123456789abcdef  etc/hello.conf\n")
    deb = tmp_path / "hello.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{comp}", "--build", str(src), str(deb)],
                   check=True, capture_output=True)
    with DebFile(deb) as d:
        c = d.control()
        assert c.package == "hello"
        assert c.fields["Pre-Depends"] == "libc6 (>= 2.36)"
        assert c.fields["Description"] == "test\n two lines"
        assert c.conffiles == ["/etc/hello.conf"]
        assert c.scripts == {"postinst": b"#!/bin/sh\nexit 0\n"}
        assert c.md5sums == {"etc/hello.conf": "0123456789abcdef0123456789abcdef"}
        assert d.data_member.name.startswith("data.tar")
        root = tmp_path / "root"
        root.mkdir()
        paths = extract(d.data_stream(), root, mode="extract")
    assert paths == ["/.", "/etc", "/etc/hello.conf"]
    assert (root / "etc/hello.conf").read_text() == "greeting=hi\n"


def test_debfile_refuses_non_debs(tmp_path):
    p = tmp_path / "x.deb"
    p.write_bytes(b"not an ar archive")
    with pytest.raises(InstallError, match="not a Debian package"):
        DebFile(p)
    p.write_bytes(b"!<arch>\n" + b"debian-binary   0           0     0     100644  4         `\n2.0\n")
    with pytest.raises(InstallError, match="no control.tar member"):
        DebFile(p)


@needs_root()
def test_owners_and_modes_whatever_the_directory_and_the_umask_would_give(tmp_path):
    # A file created in a setgid directory takes the directory's group and
    # the umask strips mode bits: the archive's owner and mode still win.
    root = tmp_path / "root"
    root.mkdir()
    archive = tmp_path / "t.tar"
    archive.write_bytes(tar_bytes([
        ti("./var/", tarfile.DIRTYPE, mode=0o755),
        ti("./var/mail/", tarfile.DIRTYPE, mode=0o2775, gid=8),
        ti("./var/mail/root", mode=0o644, data=b"root's\n"),
        ti("./var/mail/shared", mode=0o666, data=b"anyone\n"),
        ti("./var/mail/group", mode=0o664, gid=8, data=b"mail\n"),
    ]))
    old = os.umask(0o022)
    try:
        extract(archive, root, mode="root")
    finally:
        os.umask(old)
    got = {n: os.lstat(root / "var/mail" / n) for n in ("root", "shared", "group")}
    assert (got["root"].st_uid, got["root"].st_gid, stat.S_IMODE(got["root"].st_mode)) == (0, 0, 0o644)
    assert (got["shared"].st_gid, stat.S_IMODE(got["shared"].st_mode)) == (0, 0o666)
    assert (got["group"].st_gid, stat.S_IMODE(got["group"].st_mode)) == (8, 0o664)


def test_a_directory_replaced_by_a_symlink_is_followed_inside_the_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    archive = tmp_path / "t.tar"
    archive.write_bytes(tar_bytes([
        ti("./x/", tarfile.DIRTYPE, mode=0o755),
        ti("./x/y/", tarfile.DIRTYPE, mode=0o755),
        ti("./x/y/a", data=b"in the directory\n"),
        ti("./x/y/a", tarfile.SYMTYPE, mode=0o777, link="../elsewhere"),  # a file replaced: y stays
        ti("./x/y/b", data=b"still in y\n"),
        ti("./z/", tarfile.DIRTYPE, mode=0o755),
        ti("./x/w/", tarfile.DIRTYPE, mode=0o755),
        ti("./x/w", tarfile.SYMTYPE, mode=0o777, link="/z"),  # the empty directory w replaced
        ti("./x/w/f", data=b"through the link\n"),
    ]))
    extract(archive, root, mode="extract")
    assert (root / "x/y/b").read_bytes() == b"still in y\n"
    assert os.readlink(root / "x/y/a") == "../elsewhere"
    assert os.readlink(root / "x/w") == "/z"
    assert (root / "z/f").read_bytes() == b"through the link\n"
    assert sorted(os.listdir(root)) == ["x", "z"]
