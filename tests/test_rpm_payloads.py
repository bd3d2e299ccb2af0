"""Every payload class rpm writes, in every payload compression, unpacked
by rootfs and by `rpm -i --root` of this machine, compared file by file:
paths, types, modes (set-id and sticky bits included), owners, symlink
targets, hard-link sets, file capabilities, mtimes of everything but
directories (whose mtimes rpm leaves at the time of the install), and
contents.

The packages are built here with rpmbuild (tests/rpmrepo.py build_matrix);
the forms rpmbuild 4.18 no longer writes (packages as rpm before 4.14 made
them, RPM v3, stripped 07070X payloads) are rewritten from them by
tests/rpmcraft.py, and `rpm -K` and `rpm -i` accept each rewrite before it
is used.
"""

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
import rpmcraft
import rpmrepo
from conftest import needs_root, needs_tool

from rootfs.backends import InstallOptions
from rootfs.backends.rpm.header import open_rpm
from rootfs.backends.rpm.install import install
from rootfs.model.attrs import AttrRecord, sidecar_path

pytestmark = needs_tool("rpmbuild", "createrepo_c", "rpm")

COMPRESSIONS = ["gzip", "bzip2", "xz", "lzma", "zstd", "plain"]
CLASSES = [(cls, comp) for cls in rpmrepo.MATRIX_CLASSES for comp in COMPRESSIONS] + [("many", "zstd")]
# rpm's and rootfs's own bookkeeping, not the packages' files.
STATE = ("var/lib/rpm",)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return rpmrepo.built_once(tmp_path_factory)


@pytest.fixture(scope="session")
def matrix(tmp_path_factory):
    return rpmrepo.matrix_once(tmp_path_factory)


@pytest.fixture(scope="session")
def setup_rpm(built) -> Path:
    """fx-setup: the passwd and group the owners bin and daemon come from."""
    return next(p for p in built.fx if p.name.startswith("fx-setup-"))


def rootfs(*args) -> subprocess.CompletedProcess:
    from typer.testing import CliRunner

    from rootfs.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def lock_for(paths):
    from test_rpm_install import lock_for as make

    return make(paths)


def appliance(paths: list[Path], dest: Path) -> Path:
    """An appliance directory (lock.json + packages/) for exactly paths,
    what `rootfs prepare --no-check-gpg` writes for them."""
    import dataclasses

    lock, files = lock_for(paths)
    # prepare takes it from the repository's revision: the fixtures' date.
    lock = dataclasses.replace(lock, source_date_epoch=rpmrepo.SOURCE_DATE_EPOCH)
    (dest / "packages").mkdir(parents=True)
    for p in lock.packages:
        shutil.copy2(files[p.key], dest / "packages" / p.filename)
    lock.write(dest / "lock.json")
    return dest


def rpm_install(root: Path, paths: list[Path]) -> None:
    """rpm's own installer, as dnf runs it, without scriptlets (the matrix
    packages have none) and without dependency checks."""
    root.mkdir(parents=True, exist_ok=True)
    home = root.parent / f"{root.name}.home"
    home.mkdir(exist_ok=True)
    p = subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-i", "--nodeps", "--noscripts",
                        "--notriggers", *map(str, paths)], capture_output=True, text=True,
                       env=dict(os.environ, HOME=str(home)))
    assert p.returncode == 0, p.stderr


def _skip(rel: str) -> bool:
    return any(rel == s or rel.startswith(s + "/") for s in STATE)


def tree(root: Path) -> tuple[dict, list]:
    """rel path (bytes) -> (st_mode, uid, gid, link target, capability,
    content sha256, mtime or None for directories), and the hard-link sets."""
    out: dict = {}
    inodes: dict[int, list[bytes]] = {}
    base = os.fsencode(root)
    for d, dirs, files in os.walk(base):
        for n in dirs + files:
            full = os.path.join(d, n)
            rel = os.path.relpath(full, base)
            if _skip(os.fsdecode(rel)):
                continue
            st = os.lstat(full)
            link = os.readlink(full) if stat.S_ISLNK(st.st_mode) else None
            try:
                cap = os.getxattr(full, "security.capability", follow_symlinks=False)
            except OSError:
                cap = None
            digest = hashlib.sha256(Path(os.fsdecode(full)).read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, link, cap, digest,
                        None if stat.S_ISDIR(st.st_mode) else int(st.st_mtime))
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                inodes.setdefault(st.st_ino, []).append(rel)
    return out, sorted(sorted(v) for v in inodes.values())


def tar_tree(path: Path) -> tuple[dict, list]:
    """The same view of a tar the packer wrote (names as bytes)."""
    out: dict = {}
    links: dict[bytes, list[bytes]] = {}
    with tarfile.open(path, encoding="utf-8", errors="surrogateescape") as t:
        for m in t.getmembers():
            rel = os.fsencode(m.name.removeprefix("./").rstrip("/"))
            if rel in (b"", b".") or _skip(os.fsdecode(rel)):
                continue
            cap = m.pax_headers.get("SCHILY.xattr.security.capability")
            capb = cap.encode("utf-8", "surrogateescape") if isinstance(cap, str) else cap
            if m.islnk():
                target = os.fsencode(m.linkname.removeprefix("./"))
                links.setdefault(target, [target]).append(rel)
                out[rel] = out[target]
                continue
            kind = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK}.get(m.type, stat.S_IFREG)
            data = t.extractfile(m).read() if m.isreg() else None
            out[rel] = (kind | m.mode, m.uid, m.gid, os.fsencode(m.linkname) if m.issym() else None, capb,
                        hashlib.sha256(data).hexdigest() if data is not None else None,
                        None if m.isdir() else int(m.mtime))
    return out, sorted(sorted(v) for v in links.values())


def assert_same(got: tuple[dict, list], want: tuple[dict, list]) -> int:
    """Equal trees; the number of paths compared."""
    g, gl = got
    w, wl = want
    assert set(g) == set(w), sorted(set(g) ^ set(w))[:20]
    diffs = {k: (g[k], w[k]) for k in g if g[k] != w[k]}
    assert not diffs, dict(list(diffs.items())[:10])
    assert gl == wl
    return len(g)


def rootfs_install(root: Path, paths: list[Path], mode: str = "root") -> AttrRecord | None:
    root.mkdir(parents=True)
    lock, files = lock_for(paths)
    record = None if mode == "root" else AttrRecord()
    install(lock, files, root, InstallOptions(mode=mode, attrs=record))
    return record


# -- the classes, against rpm -i --root -----------------------------------------

@needs_root()
class TestRoundTripAgainstRpm:
    """As root the tree on disk is the result: compared with rpm's."""

    @pytest.mark.parametrize("cls,comp", CLASSES, ids=lambda v: v)
    def test_tree_equals_rpm(self, matrix, setup_rpm, tmp_path, cls, comp):
        pkg = matrix.packages[(cls, comp)]
        rpm_install(tmp_path / "rpm", [setup_rpm, pkg])
        rootfs_install(tmp_path / "rootfs", [setup_rpm, pkg])
        got, want = tree(tmp_path / "rootfs"), tree(tmp_path / "rpm")
        n = assert_same(got, want)
        files = got[0]
        if cls == "files":
            assert stat.S_IMODE(files[b"usr/bin/fx-mx-su"][0]) == 0o4755
            assert files[b"usr/bin/fx-mx-sugid"][:3] == (stat.S_IFREG | 0o6755, 1, 2)
            assert files[b"usr/sbin/fx-mx-ping"][4] is not None and files[b"usr/sbin/fx-mx-bind"][4] is not None
            assert [b"usr/libexec/fx-mx/tool", b"usr/libexec/fx-mx/tool-a", b"usr/libexec/fx-mx/tool-b"] in got[1]
            assert [b"usr/share/fx-mx/empty-a", b"usr/share/fx-mx/empty-b"] in got[1]
            assert b"usr/share/fx-mx/caf\xe9.txt" in files  # not UTF-8, kept as bytes
            assert stat.S_IMODE(files[b"srv/fx-mx/sticky"][0]) == 0o1777
            assert b"var/log/fx-mx.log" not in files and b"run/fx-mx" not in files  # %ghost
        elif cls == "dirs":
            assert stat.S_IMODE(files[b"opt/fx-mx-dirs/shared"][0]) == 0o3775
            assert all(stat.S_ISDIR(v[0]) for k, v in files.items() if k.startswith(b"opt/"))
        else:
            assert n > 5000
        assert not (tmp_path / "rootfs/var/lib/rpm/.rpm.lock").exists()


# -- without root: the record and the packer --------------------------------------

class TestRecordAndPacker:
    """--mode extract writes no owner to disk: the attrs record carries
    them (saved beside the tree and read back by `rootfs pack`), and the
    tar the packer writes equals rpm's tree."""

    @pytest.mark.parametrize("cls,comp", [(c, k) for c, k in CLASSES if c != "many"] + [("many", "zstd")],
                             ids=lambda v: v)
    def test_packed_tree_equals_rpm(self, matrix, setup_rpm, tmp_path, cls, comp):
        pkg = matrix.packages[(cls, comp)]
        root = tmp_path / "root"
        record = rootfs_install(root, [setup_rpm, pkg], mode="extract")
        record.set(".", record.get(".") or _dir_attr())
        record.save(sidecar_path(root))
        if cls == "files":  # a name that is not UTF-8 survives the record's JSON
            assert AttrRecord.load(sidecar_path(root)).get("usr/share/fx-mx/caf\udce9.txt") is not None
        p = rootfs("pack", root, "-f", "tar", "-o", tmp_path / "t.tar")
        assert p.returncode == 0, p.stderr
        got = tar_tree(tmp_path / "t.tar")
        if os.geteuid() != 0:
            pytest.skip("rpm -i --root, the oracle, needs root")
        rpm_install(tmp_path / "rpm", [setup_rpm, pkg])
        want = tree(tmp_path / "rpm")
        # rpm made var/lib for its database, which extract mode does not
        # write; the packer leaves out what its clean-up drops from images.
        dropped = set(want[0]) - set(got[0])
        assert all(k in (b"var", b"var/lib") or k.startswith((b"var/cache", b"var/log", b"tmp", b"run"))
                   for k in dropped), dropped
        assert_same(got, ({k: v for k, v in want[0].items() if k not in dropped}, want[1]))


def _dir_attr():
    from rootfs.model.attrs import Attr

    return Attr(stat.S_IFDIR | 0o755)


@needs_root()
class TestModesAgree:
    """The same appliance in every mode: root and rootless give the same
    bytes, with no rpm database leftovers; extract the same files."""

    @pytest.mark.parametrize("comp", ["gzip", "xz", "plain"])
    def test_root_equals_rootless(self, matrix, setup_rpm, tmp_path, comp):
        appl = appliance([setup_rpm, matrix.packages[("files", comp)], matrix.packages[("dirs", comp)]],
                         tmp_path / "appl")
        tars = {}
        for mode in ("root", "rootless"):
            out = tmp_path / f"{mode}.tar"
            p = rootfs("build", appl, "-f", "tar", "--mode", mode, "-o", out)
            assert p.returncode == 0, p.stderr
            tars[mode] = out.read_bytes()
            with tarfile.open(out) as t:
                db = sorted(n for n in t.getnames() if n.startswith("./var/lib/rpm/"))
            assert db == ["./var/lib/rpm/rpmdb.sqlite"], db  # no -shm, -wal, .rpm.lock
        assert tars["root"] == tars["rootless"]

    def test_no_usr_added_for_a_package_without_usr(self, setup_rpm, tmp_path):
        """fx-setup ships only /etc: no build mode may add a /usr."""
        appl = appliance([setup_rpm], tmp_path / "appl")
        tars = {}
        for mode in ("root", "rootless", "extract"):
            out = tmp_path / f"{mode}.tar"
            p = rootfs("build", appl, "-f", "tar", "--mode", mode, "-o", out)
            assert p.returncode == 0, p.stderr
            with tarfile.open(out) as t:
                tars[mode] = sorted(t.getnames())
        assert not any(n.startswith("./usr") for names in tars.values() for n in names), tars
        assert tars["root"] == tars["rootless"]
        assert [n for n in tars["root"] if not n.startswith("./var")] == tars["extract"]


# -- the forms rpmbuild 4.18 no longer writes ----------------------------------------

def crafted(kind: str, src: Path, dest: Path) -> Path:
    pkg = rpmcraft.Package.read(src)
    pkg = {"pre414": rpmcraft.to_pre_414, "v3": rpmcraft.to_v3, "stripped": rpmcraft.to_stripped}[kind](pkg)
    out = pkg.write(dest / f"{kind}-{src.name}")
    k = subprocess.run(["rpm", "-Kv", str(out)], capture_output=True, text=True)
    assert k.returncode == 0 and "NOT OK" not in k.stdout, k.stdout + k.stderr
    return out


LEGACY = [("pre414", "legacy", "gzip"), ("pre414", "legacy", "plain"), ("v3", "legacy", "gzip"),
          ("stripped", "files", "gzip"), ("stripped", "files", "xz"), ("stripped", "files", "plain"),
          ("stripped", "files", "zstd"), ("stripped", "dirs", "bzip2")]


@needs_root()
class TestLegacyForms:
    """Packages as rpm before 4.14 wrote them (SIZE, MD5 and SHA1 only, MD5
    file digests), RPM v3 packages, and stripped 07070X payloads: read as
    rpm 4.18 reads them."""

    @pytest.mark.parametrize("kind,cls,comp", LEGACY, ids=lambda v: v)
    def test_tree_equals_rpm(self, matrix, setup_rpm, tmp_path, kind, cls, comp):
        src = matrix.legacy[comp] if cls == "legacy" else matrix.packages[(cls, comp)]
        pkg = crafted(kind, src, tmp_path)
        r = open_rpm(pkg)
        assert r.v3 == (kind == "v3")
        rpm_install(tmp_path / "rpm", [setup_rpm, pkg])
        appl = appliance([setup_rpm, pkg], tmp_path / "appl")
        p = rootfs("build", appl, "-f", "chroot", "-o", tmp_path / "rootfs")
        assert p.returncode == 0, p.stderr
        assert ("RPM v3 packages are deprecated" in p.stderr) == (kind == "v3")
        assert_same(tree(tmp_path / "rootfs"), tree(tmp_path / "rpm"))
        q = subprocess.run(["rpm", "--root", str(tmp_path / "rootfs"), "--dbpath", "/var/lib/rpm", "-q", r.name],
                           capture_output=True, text=True)
        assert q.returncode == 0, q.stderr  # registered, whatever its form


def test_source_package_refused(matrix, tmp_path):
    appl = appliance([matrix.source], tmp_path / "appl")
    p = rootfs("build", appl, "-f", "tar", "--mode", "extract", "-o", tmp_path / "t.tar")
    assert p.returncode == 4, p.stderr
    assert "is a source package" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "t.tar").exists()


@needs_root()
def test_non_utf8_names_through_record_sbom_and_image(matrix, setup_rpm, tmp_path):
    """A file name that is not UTF-8 goes through the rpm database query
    of the SBOM step, the packer, the SBOM of the image and the attrs
    record (JSON) as the same bytes."""
    appl = appliance([setup_rpm, matrix.packages[("files", "gzip")]], tmp_path / "appl")
    out = tmp_path / "img"
    p = rootfs("build", appl, "-f", "oci,tar", "--mode", "root", "-o", out)
    assert p.returncode == 0, p.stderr
    with tarfile.open(out / "rootfs.tar", encoding="utf-8", errors="surrogateescape") as t:
        assert os.fsencode("./usr/share/fx-mx/caf\udce9.txt") in {os.fsencode(n) for n in t.getnames()}
    sbom = json.loads((out / "sbom.spdx.json").read_bytes().decode("utf-8"))
    assert {x["name"] for x in sbom["packages"]} >= {"fx-setup", "fx-mx-files-gzip"}
    p = rootfs("sbom", out / "oci", "-o", tmp_path / "again.spdx.json")
    assert p.returncode == 0, p.stderr
    record = AttrRecord()
    record.set("usr/share/caf\udce9.txt", _dir_attr())
    record.save(tmp_path / "r.json")
    assert "caf\udce9.txt" in [k.rsplit("/", 1)[-1] for k, _ in AttrRecord.load(tmp_path / "r.json").items()]
