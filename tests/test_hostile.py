"""Nothing hostile gets through: what a package may install (the payload
policy), the names its control archive gives, the paths an index gives,
overlapping packages, commands that hang, and images rootfs reads.

Every case asserts the exit code, the one sentence, and that nothing was
written outside the target or rootfs's own temporary directory. Hostile
packages are raw ar/tar bytes (dpkg-deb refuses to build them), put into a
signed repository by debrepo in place of what dpkg-deb would have built.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import debrepo
import pytest
from unpriv import import_all_of_rootfs
from conftest import needs_root
from debrepo import Pkg, build_repo, write_recipe
from test_escapes import ar_archive

from rootfs.host.policy import Policy, PolicyViolation
from rootfs.model.attrs import Attr, AttrRecord, sidecar_path

ROOTFS = [sys.executable, "-m", "rootfs.cli"]
MTIME = 1_700_000_000


# -- building hostile packages ----------------------------------------------------


def tar_archive(members) -> bytes:
    """members: (name, type, mode, data-or-linkname, extra TarInfo attrs)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, kind, mode, data, *extra in members:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = kind, mode, MTIME
            for k, v in (extra[0] if extra else {}).items():
                setattr(ti, k, v)
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                ti.linkname = data
                tf.addfile(ti)
            elif kind == tarfile.REGTYPE:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def raw_deb(name: str, data: list, control_files: dict[str, bytes] | None = None, arch: str = "amd64") -> bytes:
    control = (f"Package: {name}\nVersion: 1.0\nArchitecture: {arch}\nMaintainer: t <t@example.org>\n"
               f"Priority: optional\nDescription: hostile\n").encode()
    members = [("./", tarfile.DIRTYPE, 0o755, b""), ("./control", tarfile.REGTYPE, 0o644, control)]
    members += [(f"./{k}", tarfile.REGTYPE, 0o755 if k in ("preinst", "postinst") else 0o644, v)
                for k, v in (control_files or {}).items()]
    return ar_archive([("debian-binary", b"2.0\n"), ("control.tar.gz", gzip.compress(tar_archive(members), mtime=0)),
                     ("data.tar", tar_archive([("./", tarfile.DIRTYPE, 0o755, b"")] + data))])


def hostile_repo(tmp: Path, key, hostile: dict[str, bytes], extra: list[Pkg] = (), monkeypatch=None,
                 filenames: dict[str, str] | None = None):
    """A signed repository of a tiny base set plus the raw .debs in
    `hostile` (name -> bytes); `filenames` rewrites their Filename field."""
    real = debrepo.build_deb

    def build(pkg, dest_dir):
        if pkg.name not in hostile:
            return real(pkg, dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        out = dest_dir / pkg.deb_name
        out.write_bytes(hostile[pkg.name])
        return out

    monkeypatch.setattr(debrepo, "build_deb", build)
    pkgs = [Pkg("base-files", priority="required", essential=True, files={"etc/debian_version": b"12\n"}),
            *extra, *[Pkg(n) for n in hostile]]
    repo = build_repo(tmp / "repo", pkgs, key=key, suite="stable")
    if filenames:
        _rewrite_filenames(repo, key, filenames)
    return repo


def _rewrite_filenames(repo, key, filenames: dict[str, str]) -> None:
    """Give packages other Filename fields and re-sign the Release."""
    plain = repo.path / "dists/stable/main/binary-amd64/Packages"
    text = plain.read_text()
    for name, fn in filenames.items():
        stanza_start = text.index(f"Package: {name}\n")
        i = text.index("Filename: ", stanza_start)
        j = text.index("\n", i)
        text = text[:i] + f"Filename: {fn}" + text[j:]
    plain.write_text(text)
    (repo.path / "dists/stable/main/binary-amd64/Packages.xz").unlink()
    release = repo.release.read_text()
    data = plain.read_bytes()
    out, section = [], ""
    for line in release.splitlines():
        if not line.startswith(" "):
            section = line
        if line.startswith(" ") and line.endswith("main/binary-amd64/Packages.xz"):
            continue
        if line.startswith(" ") and line.endswith("main/binary-amd64/Packages"):
            h = hashlib.sha256(data).hexdigest() if section.startswith("SHA256") else hashlib.md5(data).hexdigest()
            line = f" {h} {len(data):>16} main/binary-amd64/Packages"
        out.append(line)
    repo.release.write_text("\n".join(out) + "\n")
    for f in ("InRelease", "Release.gpg"):
        (repo.path / "dists/stable" / f).unlink()
    key.clearsign(repo.release, repo.path / "dists/stable/InRelease")


class Recorder(http.server.SimpleHTTPRequestHandler):
    """Serves a directory and remembers every path asked for."""

    seen: list[str] = []

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):  # noqa: N802
        type(self).seen.append(self.path)
        super().do_GET()


def serve(root: Path):
    handler = type("H", (Recorder,), {"seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root)))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/", handler.seen


def tree(base: Path, skip: tuple[Path, ...] = ()) -> dict:
    """Every path under base (but those in skip): type, mode, size, content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            if p in skip:
                continue
            st = os.lstat(p)
            entry = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size]
            if stat.S_ISREG(st.st_mode):
                entry.append(hashlib.sha256(p.read_bytes()).hexdigest())
            elif stat.S_ISLNK(st.st_mode):
                entry.append(os.readlink(p))
            out[str(p.relative_to(base))] = entry
    return out


@pytest.fixture
def world(tmp_path):
    """A world-readable base with a sentinel beside where outputs go; TMPDIR
    is a directory of its own, to see that rootfs leaves nothing there."""
    base = Path(tempfile.mkdtemp(prefix="rootfs-hostile.", dir="/tmp"))
    os.chmod(base, 0o755)
    (base / "sentinel").mkdir()
    (base / "sentinel" / "secret").write_text("keep\n")
    (base / "tmp").mkdir(mode=0o1777)
    os.chmod(base / "tmp", 0o1777)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def run_rootfs(args, world: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    e = {**os.environ, "TMPDIR": str(world / "tmp"), **(env or {})}
    return subprocess.run([*ROOTFS, *map(str, args)], capture_output=True, text=True, env=e, timeout=timeout)


def assert_refused(p: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    assert "rootfs: error:" in p.stderr
    for w in words:
        assert w in p.stderr, p.stderr
    # one sentence, of a readable length, whatever the hostile name
    assert len(p.stderr.strip().splitlines()[-1]) < 700, p.stderr


def assert_nothing_outside(world: Path, before: dict, allowed: tuple[str, ...] = ("cache",)) -> None:
    after = tree(world, tuple(world / a for a in allowed))
    assert after == before, sorted(set(after.items()) ^ set(before.items()))
    assert os.listdir(world / "tmp") == [], "rootfs left files in its temporary directory"


# -- the payload policy: installing packages ------------------------------------------

SETUID_WRITABLE = ("./usr/", tarfile.DIRTYPE, 0o755, b""), ("./usr/bin/", tarfile.DIRTYPE, 0o755, b""), \
    ("./usr/bin/own-me", tarfile.REGTYPE, 0o4777, b"#!/bin/sh\n")
DEVICE = ("./dev/", tarfile.DIRTYPE, 0o755, b""), ("./dev/mem", tarfile.CHRTYPE, 0o666, b"",
                                                    {"devmajor": 1, "devminor": 1}),
FIFO = ("./run/", tarfile.DIRTYPE, 0o755, b""), ("./run/pipe", tarfile.FIFOTYPE, 0o600, b""),

HAZARDS = {
    "setid-writable": (list(SETUID_WRITABLE), "/usr/bin/own-me"),
    "device": (list(DEVICE), "/dev/mem"),
    "fifo": (list(FIFO), "/run/pipe"),
}


@pytest.fixture
def policy_repo(tmp_path, gpg_key, monkeypatch, world):
    debs = {f"evil-{rule.replace('-', '')}": raw_deb(f"evil-{rule.replace('-', '')}", members)
            for rule, (members, _) in HAZARDS.items()}
    repo = hostile_repo(world, gpg_key, debs, monkeypatch=monkeypatch)
    subprocess.run(["chmod", "-R", "a+rX", str(world / "repo")], check=True)
    httpd, url, seen = serve(repo.path)
    keyring = world / "keyring.gpg"  # readable by the unprivileged user too
    shutil.copy(repo.keyring, keyring)
    os.chmod(keyring, 0o644)
    recipe = write_recipe(world, repo, variant="essential", keyring=keyring)
    os.chmod(recipe, 0o644)
    yield {"url": url, "recipe": recipe, "repo": repo}
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("mode", ["root", "extract"])
@pytest.mark.parametrize("rule", sorted(HAZARDS))
def test_payload_hazard_refused(policy_repo, world, rule, mode):
    if mode == "root" and os.geteuid() != 0:
        pytest.skip("root mode needs root")
    name = f"evil-{rule.replace('-', '')}"
    before = tree(world, (world / "cache",))
    out = world / "out.tar"
    p = run_rootfs(["make", policy_repo["recipe"], "--mirror", policy_repo["url"], "--include", name,
                    "--mode", mode, "-f", "tar", "-o", out, "--cache-dir", world / "cache", "--no-sbom"], world)
    assert_refused(p, 6, HAZARDS[rule][1], f"--allow {rule}")
    assert not out.exists()
    assert_nothing_outside(world, before)


def test_payload_hazard_refused_rootless(policy_repo, world):
    from unpriv import make_unpriv

    u = make_unpriv(Path("/tmp"))
    home = u.sandbox()
    try:
        q = u.rootfs(home, "make", policy_repo["recipe"], "--mirror", policy_repo["url"], "--include",
                     "evil-setidwritable", "--mode", "rootless", "-f", "tar", "-o", home / "out.tar", "--no-sbom")
        assert_refused(q, 6, "/usr/bin/own-me", "--allow setid-writable")
        assert not (home / "out.tar").exists()
        assert sorted(os.listdir(home)) == ["cache", "run", "tmp"] and os.listdir(home / "tmp") == []
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if u.scratch:
            shutil.rmtree(u.scratch, ignore_errors=True)


def test_a_waived_rule_lets_the_entry_through(policy_repo, world):
    out = world / "out.tar"
    p = run_rootfs(["make", policy_repo["recipe"], "--mirror", policy_repo["url"], "--include",
                    "evil-device,evil-setidwritable", "--mode", "extract", "-f", "tar", "-o", out,
                    "--cache-dir", world / "cache", "--no-sbom", "--allow", "device", "--allow", "setid-writable"],
                   world)
    assert p.returncode == 0, p.stderr
    with tarfile.open(out) as t:
        # /dev's contents are never packed; the set-id file is, as shipped
        assert "./dev/mem" not in t.getnames()
        assert t.getmember("./usr/bin/own-me").mode == 0o4777


def test_unknown_allow_rule(policy_repo, world):
    p = run_rootfs(["make", policy_repo["recipe"], "--allow", "everything", "-o", world / "o"], world)
    assert_refused(p, 2, "unknown --allow rule 'everything'")


def test_socket_member_refused_by_the_extractor(tmp_path):
    """tar cannot carry a socket, cpio can: the Extractor's rule, directly."""
    from rootfs.host.policy import SOCKET

    with pytest.raises(PolicyViolation, match="/run/sock.*--allow socket"):
        Policy().check_member("/run/sock", stat.S_IFSOCK | 0o755, "x.rpm")
    Policy(frozenset({SOCKET})).check_member("/run/sock", stat.S_IFSOCK | 0o755, "x.rpm")
    # set-id directories (2775 /var/mail) are not files: allowed
    Policy().check_member("/var/mail", stat.S_IFDIR | 0o2775, "x.deb")
    Policy().check_member("/usr/bin/passwd", stat.S_IFREG | 0o4755, "x.deb")


# -- the payload policy: packing any tree ----------------------------------------------

@needs_root()
def test_pack_refuses_setuid_writable_and_device_nodes(world):
    root = world / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/own-me").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "usr/bin/own-me", 0o4777)
    (root / "srv").mkdir()
    os.mknod(root / "srv/mem", stat.S_IFCHR | 0o666, os.makedev(1, 1))
    before = tree(world)
    out = world / "img.tar"
    p = run_rootfs(["pack", root, "-f", "tar", "-o", out], world)
    assert_refused(p, 6, "/srv/mem", "--allow device")
    assert not out.exists()
    assert_nothing_outside(world, before)
    p = run_rootfs(["pack", root, "-f", "tar", "-f", "oci", "-o", world / "img", "--allow", "device"], world)
    assert_refused(p, 6, "/usr/bin/own-me", "writable by group or others", "--allow setid-writable")
    assert not (world / "img").exists()
    p = run_rootfs(["pack", root, "-f", "tar", "-o", out, "--allow", "device,setid-writable"], world)
    assert p.returncode == 0, p.stderr
    with tarfile.open(out) as t:
        assert t.getmember("./srv/mem").ischr() and t.getmember("./usr/bin/own-me").mode == 0o4777


def test_pack_refuses_what_a_rootless_record_says(world):
    """The record is held to the same rules as the disk: a record that makes
    a file 4777, or a node no configure stage made, is refused."""
    root = world / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/x").write_bytes(b"x")
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/node").write_bytes(b"")
    rec = AttrRecord()
    rec.set("usr/bin/x", Attr(stat.S_IFREG | 0o4757))
    rec.set("var/lib/node", Attr(stat.S_IFCHR | 0o600, rdev=os.makedev(1, 3)))
    rec.save(sidecar_path(root))
    p = run_rootfs(["pack", root, "-f", "tar", "-o", world / "a.tar", "--allow", "device"], world)
    assert_refused(p, 6, "/usr/bin/x")
    rec.set("usr/bin/x", Attr(stat.S_IFREG | 0o4755))
    rec.save(sidecar_path(root))
    p = run_rootfs(["pack", root, "-f", "tar", "-o", world / "a.tar"], world)
    assert_refused(p, 6, "/var/lib/node", "--allow device")
    # a node the configure stage made (what the rootless session records) is packed
    rec.scripted.add("var/lib/node")
    rec.save(sidecar_path(root))
    p = run_rootfs(["pack", root, "-f", "tar", "-o", world / "a.tar"], world)
    assert p.returncode == 0, p.stderr
    with tarfile.open(world / "a.tar") as t:
        assert t.getmember("./var/lib/node").ischr() and t.getmember("./usr/bin/x").mode == 0o4755


# -- names in control archives ---------------------------------------------------------

def _install(debs: dict[str, bytes], root: Path, mode: str = "extract", tmp: Path | None = None):
    from rootfs.backends import InstallOptions
    from rootfs.backends.deb.install import install
    from rootfs.model.lock import Lock, LockedPackage

    files, pkgs = {}, []
    for name, data in sorted(debs.items()):
        path = (tmp or root.parent) / f"{name}_1.0_amd64.deb"
        path.write_bytes(data)
        p = LockedPackage(name, "1.0", "amd64", f"http://mirror.invalid/{path.name}", len(data), "0" * 64)
        files[p.key] = path
        pkgs.append(p)
    lock = Lock("deb", "t", "debian", "t", "amd64", packages=tuple(pkgs), merged_usr=False)
    return install(lock, files, root, InstallOptions(mode=mode, attrs=AttrRecord() if mode != "root" else None))


ETC = [("./etc/", tarfile.DIRTYPE, 0o755, b""), ("./etc/app.conf", tarfile.REGTYPE, 0o644, b"v=1\n")]


def test_conffile_climbing_is_normalised_not_a_traceback(world, tmp_path):
    root = world / "root"
    root.mkdir()
    before = tree(world, (root,))
    deb = raw_deb("climber", ETC, {"conffiles": b"/../../../etc/app.conf\n/etc/../../sentinel/secret\n",
                                   "md5sums": b"d41d8cd98f00b204e9800998ecf8427e  ../../etc/app.conf\n",
                                   "triggers": b"interest /../../usr/share/x\n"})
    _install({"climber": deb}, root, tmp=tmp_path)
    status = (root / "var/lib/dpkg/status").read_text()
    assert "\n /etc/app.conf " in status and "\n /sentinel/secret newconffile" in status
    assert (root / "var/lib/dpkg/info/climber.conffiles").read_text() == "/etc/app.conf\n/sentinel/secret\n"
    assert (root / "var/lib/dpkg/info/climber.md5sums").read_text().endswith("  etc/app.conf\n")
    assert (root / "var/lib/dpkg/triggers/File").read_text() == "/usr/share/x climber\n"
    assert tree(world, (root,)) == before


@pytest.mark.parametrize("case,files,words", [
    ("long-conffile", {"conffiles": b"/etc/" + b"a" * 5000 + b"\n"}, "longer than 4096"),
    ("long-component", {"conffiles": b"/etc/" + b"a" * 300 + b"\n"}, "component longer than 255"),
    ("nul-md5sums", {"md5sums": b"d41d8cd98f00b204e9800998ecf8427e  etc/a\x00b\n"}, "NUL or a newline"),
    ("named-trigger-path", {"triggers": b"interest ../../../../etc/cron.d/x\n"}, "invalid trigger"),
    ("control-member", {"..evil": b"x"}, "invalid name"),
])
def test_hostile_control_names_refused_in_one_sentence(world, tmp_path, case, files, words):
    root = world / "root"
    root.mkdir()
    before = tree(world, (root,))
    from rootfs.model.errors import InstallError

    with pytest.raises(InstallError) as exc:
        _install({"names": raw_deb("names", ETC, files)}, root, tmp=tmp_path)
    assert words in str(exc.value)
    assert len(str(exc.value)) < 500
    assert tree(world, (root,)) == before
    assert not (root / "var/lib/dpkg/status").exists(), "refused before anything was registered"


def test_hostile_package_name_through_the_cli(tmp_path, gpg_key, monkeypatch, world):
    """The CLI end to end: a control file whose Package field would aim
    dpkg's info files elsewhere, and a conffile thousands of bytes long."""
    long_name = b"/etc/" + b"x" * 3000
    debs = {"longconf": raw_deb("longconf", ETC, {"conffiles": long_name + b"\n"})}
    repo = hostile_repo(world, gpg_key, debs, monkeypatch=monkeypatch)
    httpd, url, _ = serve(repo.path)
    try:
        recipe = write_recipe(world, repo, variant="essential")
        before = tree(world, (world / "cache",))
        p = run_rootfs(["make", recipe, "--mirror", url, "--include", "longconf", "--mode", "extract", "-f", "tar",
                        "-o", world / "o.tar", "--cache-dir", world / "cache", "--no-sbom"], world)
        assert_refused(p, 6, "longconf", "…")
        assert "x" * 300 not in p.stderr
        assert_nothing_outside(world, before)
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- overlapping packages --------------------------------------------------------------

def _overlapping() -> dict[str, bytes]:
    """Four packages that replace each other's paths: the same file with
    other contents, a file one ships as a symlink, a hard link to a shared
    name, and a directory one ships as a symlink."""
    usr = [("./usr/", tarfile.DIRTYPE, 0o755, b""), ("./usr/share/", tarfile.DIRTYPE, 0o755, b""),
           ("./usr/share/x/", tarfile.DIRTYPE, 0o755, b"")]
    big = os.urandom(1 << 20)  # long enough for the two extractions to overlap in time
    return {
        "aaa": raw_deb("aaa", usr + [("./usr/share/x/file", tarfile.REGTYPE, 0o644, b"A\n" + big),
                                     ("./usr/share/x/link", tarfile.REGTYPE, 0o644, b"A-link\n"),
                                     ("./usr/share/x/hard", tarfile.LNKTYPE, 0o644, "./usr/share/x/file"),
                                     ("./opt/", tarfile.DIRTYPE, 0o755, b""),
                                     ("./opt/d", tarfile.SYMTYPE, 0o777, "../usr/share/x")]),
        "bbb": raw_deb("bbb", usr + [("./usr/share/x/file", tarfile.REGTYPE, 0o600, b"B\n" + big[::-1]),
                                     ("./usr/share/x/link", tarfile.SYMTYPE, 0o777, "file"),
                                     ("./opt/", tarfile.DIRTYPE, 0o755, b""),
                                     ("./opt/d/", tarfile.DIRTYPE, 0o755, b""),
                                     ("./opt/d/b", tarfile.REGTYPE, 0o644, b"in d\n")]),
        "ccc": raw_deb("ccc", usr + [("./usr/share/x/file", tarfile.REGTYPE, 0o640, b"C\n" + big)]),
        "ddd": raw_deb("ddd", usr + [("./usr/share/x/" + f"f{i}", tarfile.REGTYPE, 0o644, big[:4096])
                                     for i in range(50)]),
    }


def _reference(debs: dict[str, bytes], root: Path, tmp: Path) -> dict:
    """One package after the other, in lock (name) order: what dpkg would do."""
    from rootfs.backends.deb.debfile import DebFile
    from rootfs.host.unpacker import Extractor

    with Extractor(root, mode="extract", attrs=AttrRecord()) as ex:
        for name in sorted(debs):
            path = tmp / f"ref-{name}.deb"
            path.write_bytes(debs[name])
            with DebFile(path) as d:
                ex.extract(d.data_stream(), format_name="tar")
    return tree(root, (root / "var",))


@pytest.mark.parametrize("kinds", ["mixed", "files-only"])
def test_overlapping_packages_settle_the_same_every_run(tmp_path, kinds):
    """20 runs, each compared with a one-by-one extraction in lock order.
    "mixed": a path shipped as a directory and as a symlink (the stage
    starts again one by one); "files-only": the same files with other
    contents and a hard link to one of them (the packages that share them
    are extracted again in order)."""
    debs = _overlapping()
    if kinds == "files-only":
        debs["bbb"] = raw_deb("bbb", [("./usr/", tarfile.DIRTYPE, 0o755, b""),
                                      ("./usr/share/", tarfile.DIRTYPE, 0o755, b""),
                                      ("./usr/share/x/", tarfile.DIRTYPE, 0o700, b""),
                                      ("./usr/share/x/file", tarfile.REGTYPE, 0o600, b"B\n" * 300000),
                                      ("./usr/share/x/link", tarfile.REGTYPE, 0o644, b"B-link\n")])
    ref_root = tmp_path / "ref"
    ref_root.mkdir()
    reference = _reference(debs, ref_root, tmp_path)
    if kinds == "mixed":
        assert reference["usr/share/x/link"][0] == stat.S_IFLNK and reference["opt/d"][0] == stat.S_IFLNK
    else:
        assert (ref_root / "usr/share/x/link").read_bytes() == b"B-link\n"
        assert (ref_root / "usr/share/x/hard").read_bytes().startswith(b"A\n")  # linked to aaa's own file
        assert reference["usr/share/x"][1] == 0o755  # the first package's directory
    results = []
    for i in range(20):
        root = tmp_path / f"r{i}"
        root.mkdir()
        _install(debs, root, tmp=tmp_path)
        results.append(tree(root, (root / "var", root / "etc")))  # etc: only the fstab install adds
        shutil.rmtree(root)
    for got in results:
        assert got == reference


# -- paths an index gives --------------------------------------------------------------

@pytest.mark.parametrize("filename,why", [
    ("../../../etc/passwd", "climbs out of the repository"),
    ("pool/../../outside.deb", "climbs out of the repository"),
    ("/srv/outside.deb", "is absolute"),
    ("http://elsewhere.invalid/evil.deb", "carries a URL scheme"),
])
def test_index_filename_refused_before_any_fetch(tmp_path, gpg_key, monkeypatch, world, filename, why):
    debs = {"fetchme": raw_deb("fetchme", ETC)}
    repo = hostile_repo(world, gpg_key, debs, monkeypatch=monkeypatch, filenames={"fetchme": filename})
    httpd, url, seen = serve(repo.path)
    try:
        recipe = write_recipe(world, repo, variant="essential")
        before = tree(world, (world / "cache",))
        p = run_rootfs(["make", recipe, "--mirror", url, "--include", "fetchme", "--mode", "extract", "-f", "tar",
                        "-o", world / "o.tar", "--cache-dir", world / "cache", "--no-sbom"], world)
        assert_refused(p, 4, "fetchme", why)
        assert not [s for s in seen if s.endswith(".deb") or "outside" in s or "passwd" in s], seen
        assert_nothing_outside(world, before)
    finally:
        httpd.shutdown()
        httpd.server_close()


PRIMARY = """<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="1">
<package type="rpm"><name>x</name><arch>noarch</arch><version epoch="0" ver="1" rel="1"/>
<checksum type="sha256" pkgid="YES">{sha}</checksum><summary>x</summary>
<time file="1" build="1"/><size package="1" installed="1" archive="1"/><location href="{href}"/>
<format><rpm:license>MIT</rpm:license></format></package>
</metadata>
"""


def _locked_url(href: str) -> str:
    from rootfs.backends.rpm.comps import Comps
    from rootfs.backends.rpm.modules import Modules
    from rootfs.backends.rpm.repomd import Repomd
    from rootfs.backends.rpm.resolve import Loaded, locked
    from rootfs.backends.rpm.solver import Sack

    sack = Sack("x86_64")
    sack.add_primary(io.BytesIO(PRIMARY.format(sha="0" * 64, href=href).encode()), "primary.xml")
    sack.prepare()
    loaded = Loaded([Repomd("http://mirror.invalid/repo", b"", "1", {})], sack, Modules(), Comps())
    (solvable,) = list(sack.repos[0].solvables)
    return locked(solvable, loaded).url


@pytest.mark.parametrize("href,why", [("../x.rpm", "climbs out"), ("/x.rpm", "absolute"),
                                      ("https://elsewhere.invalid/x.rpm", "URL scheme"),
                                      ("a/b?c.rpm", "character")])
def test_rpm_location_refused_at_resolve_time(href, why):
    from rootfs.model.errors import VerifyError

    with pytest.raises(VerifyError, match=why):
        _locked_url(href)
    assert _locked_url("Packages/x/./x-1-1.noarch.rpm") == "http://mirror.invalid/repo/Packages/x/x-1-1.noarch.rpm"


# -- commands that hang ----------------------------------------------------------------

def test_a_command_past_the_deadline_is_killed_with_its_children(tmp_path):
    from rootfs.host.run import run
    from rootfs.model.errors import CommandTimeout

    pids = tmp_path / "pids"
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="sleeper did not finish within 0.5 seconds.*ROOTFS_TIMEOUT"):
        run(["sh", "-c", f"sleep 300 & echo $! > {pids}; echo $$ >> {pids}; wait"], what="sleeper", seconds=0.5)
    assert time.monotonic() - started < 10
    time.sleep(0.2)
    for pid in pids.read_text().split():
        stat_file = Path(f"/proc/{pid}/stat")
        assert not stat_file.exists() or stat_file.read_text().split()[2] == "Z", f"{pid} still runs"


def test_bad_rootfs_timeout(monkeypatch):
    from rootfs.host.run import run, timeout_seconds
    from rootfs.model.errors import UsageError

    monkeypatch.setenv("ROOTFS_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="ROOTFS_TIMEOUT must be a number of seconds"):
        run(["true"])
    monkeypatch.setenv("ROOTFS_TIMEOUT", "0")
    assert timeout_seconds() is None
    assert run(["true"]).returncode == 0


@needs_root()
def test_a_hanging_maintainer_script_ends_the_build_with_exit_11(tmp_path, gpg_key, world):
    """A preinst that never returns: killed after ROOTFS_TIMEOUT with what
    it started, the build fails with exit 11 naming it, no output."""
    from test_deb_install import host_packages

    hang = Pkg("hang", "1.0", depends="coreutils", scripts={"preinst": "#!/bin/sh\nsleep 600 &\nsleep 600\n"})
    repo = build_repo(world / "repo", host_packages(tmp_path) + [hang], key=gpg_key, suite="testing")
    httpd, url, _ = serve(repo.path)
    try:
        recipe = write_recipe(world, repo, variant="essential", include=("hang",))
        before = tree(world, (world / "cache", world / "repo"))
        started = time.monotonic()
        p = run_rootfs(["make", recipe, "--mirror", url, "-f", "tar", "-o", world / "o.tar",
                        "--cache-dir", world / "cache", "--no-sbom"], world, env={"ROOTFS_TIMEOUT": "10"})
        assert_refused(p, 11, "preinst", "did not finish within 10 seconds", "ROOTFS_TIMEOUT")
        assert time.monotonic() - started < 300
        assert not (world / "o.tar").exists()
        assert_nothing_outside(world, before, ("cache", "repo"))
        assert subprocess.run(["pgrep", "-f", "sleep 600"], capture_output=True).returncode == 1
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- images rootfs reads ---------------------------------------------------------------

def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(members) -> bytes:
    return tar_archive(members)


def _config(layers: list[bytes]) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
                       "rootfs": {"type": "layers", "diff_ids": [_digest(x) for x in layers]},
                       "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "test"}]}).encode()


def oci_layout(path: Path, layers: list[bytes], *, config: bytes | None = None, manifest: bytes | None = None,
               tamper=None) -> Path:
    """An OCI layout of uncompressed layers; tamper(path) may change it after."""
    config = config if config is not None else _config(layers)
    manifest = manifest if manifest is not None else json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(x), "size": len(x)}
                   for x in layers]}).encode()
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for b in [config, manifest, *layers]:
        (blobs / hashlib.sha256(b).hexdigest()).write_bytes(b)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _digest(manifest),
         "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))
    if tamper:
        tamper(path)
    return path


def docker_archive(path: Path, layers: list[bytes], manifest_json=None) -> Path:
    config = _config(layers)
    names = [f"{hashlib.sha256(x).hexdigest()}/layer.tar" for x in layers]
    entries = manifest_json if manifest_json is not None else [
        {"Config": f"{hashlib.sha256(config).hexdigest()}.json", "RepoTags": ["evil:1"], "Layers": names}]
    files = {"manifest.json": json.dumps(entries).encode(), f"{hashlib.sha256(config).hexdigest()}.json": config}
    files.update(zip(names, layers))
    with tarfile.open(path, "w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return path


READERS = {
    "inspect": lambda img, w: ["inspect", img],
    "history": lambda img, w: ["history", img],
    "sbom": lambda img, w: ["sbom", img, "-o", w / "out.spdx.json"],
    "graph": lambda img, w: ["graph", img, "-o", w / "out.dot"],
    "push": lambda img, w: ["push", img, "127.0.0.1:9/evil:1", "--insecure", "--retries", "0"],
}


@pytest.mark.parametrize("command", sorted(READERS))
def test_rpmdb_members_climbing_out_of_a_layer_write_nothing_outside(world, command):
    """Layer members under var/lib/rpm/ with `..`: read as the image's own
    paths (chroot semantics), never written above rootfs's temporary
    directory."""
    escape = f"var/lib/rpm/{'../' * 12}{str(world).lstrip('/')}/escaped"
    layer = _layer([("var/", tarfile.DIRTYPE, 0o755, b""), ("var/lib/", tarfile.DIRTYPE, 0o755, b""),
                    ("var/lib/rpm/", tarfile.DIRTYPE, 0o755, b""),
                    ("var/lib/rpm/rpmdb.sqlite", tarfile.REGTYPE, 0o644, b"not a database"),
                    (escape, tarfile.REGTYPE, 0o644, b"written outside\n"),
                    ("var/lib/rpm/../../../../../../../../tmp/rootfs-escaped-by-layer", tarfile.REGTYPE, 0o644,
                     b"written outside\n")])
    img = docker_archive(world / "evil.docker.tar", [layer])
    before = tree(world)
    p = run_rootfs(READERS[command](img, world), world)
    assert "Traceback" not in p.stderr, p.stderr
    assert not (world / "escaped").exists() and not Path("/tmp/rootfs-escaped-by-layer").exists()
    assert os.listdir(world / "tmp") == []
    after = tree(world, (world / "out.spdx.json", world / "out.dot"))
    assert after == before
    if command in ("sbom", "graph"):
        # the image's rpm database is the bytes above: rpm cannot read it
        assert_refused(p, 8, "rpm")
    elif command == "push":
        assert_refused(p, 5, "127.0.0.1:9")  # read whole, then the registry is unreachable
    else:
        assert p.returncode == 0, p.stderr


def _symlinked_config(path: Path) -> None:
    index = json.loads((path / "index.json").read_text())
    manifest = json.loads((path / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    blob = path / "blobs/sha256" / manifest["config"]["digest"].split(":")[1]
    blob.unlink()
    blob.symlink_to("/etc/passwd")


def _tampered_layer(path: Path) -> None:
    index = json.loads((path / "index.json").read_text())
    manifest = json.loads((path / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    blob = path / "blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]
    data = bytearray(blob.read_bytes())
    i = data.index(b"Version: 1")
    data[i + 9] = ord("2")  # one byte: the package's version
    blob.write_bytes(bytes(data))


STATUS_LAYER = [("var/", tarfile.DIRTYPE, 0o755, b""), ("var/lib/", tarfile.DIRTYPE, 0o755, b""),
                ("var/lib/dpkg/", tarfile.DIRTYPE, 0o755, b""),
                ("var/lib/dpkg/status", tarfile.REGTYPE, 0o644,
                 b"Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n")]

HOSTILE_LAYOUTS = {
    # a blob that is a symlink out of the layout: never followed
    "symlinked-blob": (dict(tamper=_symlinked_config), 2, "links are not followed"),
    # a layer whose bytes no longer match its digest
    "tampered-layer": (dict(tamper=_tampered_layer), 4, "does not match its digest"),
    # a manifest larger than any registry accepts
    "huge-manifest": (dict(manifest=b'{"schemaVersion": 2, "pad": "' + b"x" * (5 << 20) + b'"}'), 2, "more than"),
    # a config whose fields have the wrong types
    "config-types": (dict(config=b'{"architecture": "amd64", "os": "linux", "history": [{"created": 5}]}'), 2,
                     "history[].created is not a string"),
}


@pytest.mark.parametrize("command", sorted(READERS))
@pytest.mark.parametrize("case", sorted(HOSTILE_LAYOUTS))
def test_hostile_oci_layouts(world, case, command):
    kwargs, code, words = HOSTILE_LAYOUTS[case]
    layout = oci_layout(world / "layout", [_layer(STATUS_LAYER)], **kwargs)
    before = tree(world)
    p = run_rootfs(READERS[command](layout, world), world)
    if case == "tampered-layer" and command == "history":
        assert p.returncode == 0, p.stderr  # history reads no layer
    elif case == "tampered-layer" and command == "push":
        assert_refused(p, 5, "127.0.0.1:9")  # push leaves the digest to the registry's final check
    else:
        assert_refused(p, code, words)
    assert tree(world, (world / "out.spdx.json", world / "out.dot")) == before
    assert os.listdir(world / "tmp") == []


def test_docker_archive_names_are_taken_inside_the_archive(world):
    layer = _layer(STATUS_LAYER)
    img = docker_archive(world / "a.tar", [layer], manifest_json=[
        {"Config": "../../../../etc/passwd", "RepoTags": ["x:1"], "Layers": ["../../../../etc/shadow"]}])
    p = run_rootfs(["inspect", img], world)
    assert_refused(p, 2, "'etc/passwd' is missing from the archive")
    config = _config([layer])
    img = docker_archive(world / "b.tar", [layer], manifest_json=[
        {"Config": "0" * 64 + ".json", "Layers": []}])
    with tarfile.open(img, "a") as t:
        ti = tarfile.TarInfo("0" * 64 + ".json")
        ti.size = len(config)
        t.addfile(ti, io.BytesIO(config))
    p = run_rootfs(["inspect", img], world)
    assert_refused(p, 4, "does not match the digest its name gives")


class HostileRegistry(http.server.BaseHTTPRequestHandler):
    """Answers /v2/ and the manifest of evil:1 with what the test says."""

    manifest: bytes = b""
    blobs: dict[str, bytes] = {}

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):  # noqa: N802
        if self.path == "/v2/":
            body, ctype = b"{}", "application/json"
        elif self.path.startswith("/v2/evil/manifests/"):
            body, ctype = self.manifest, "application/vnd.oci.image.manifest.v1+json"
        elif self.path.startswith("/v2/evil/blobs/"):
            body, ctype = self.blobs.get(self.path.rsplit("/", 1)[1], b""), "application/octet-stream"
        else:
            body, ctype = b'{"errors": [{"code": "NAME_UNKNOWN"}]}', "application/json"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("case", ["huge-manifest", "wrong-blob", "not-an-object"])
def test_pull_from_a_hostile_registry(world, case):
    layer = _layer(STATUS_LAYER)
    config = _config([layer])
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": _digest(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": _digest(layer), "size": len(layer)}]}).encode()
    blobs = {_digest(config): config, _digest(layer): layer}
    if case == "huge-manifest":
        manifest = manifest[:-1] + b', "pad": "' + b"x" * (5 << 20) + b'"}'
        words, code = ("more than",), 10
    elif case == "wrong-blob":
        blobs[_digest(layer)] = layer[:-1] + b"\x01"
        words, code = ("does not match its digest",), 4
    else:
        manifest = b"[1, 2, 3]"
        words, code = ("not a JSON object",), 10
    handler = type("R", (HostileRegistry,), {"manifest": manifest, "blobs": blobs})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        before = tree(world, (world / "tmp",))
        p = run_rootfs(["pull", f"127.0.0.1:{httpd.server_address[1]}/evil:1", world / "pulled", "--insecure",
                        "--retries", "0"], world, env={"XDG_CACHE_HOME": str(world / "tmp")})
        assert_refused(p, code, *words)
        assert not (world / "pulled").exists()
        assert tree(world, (world / "tmp",)) == before
    finally:
        httpd.shutdown()
        httpd.server_close()


@needs_root()
def test_a_copy_keeps_the_marks_of_script_made_nodes(world):
    """`rootfs pack -f dir` without root writes a record beside the copy:
    the nodes the configure stage made stay packable from it, a waived one
    needs waiving again."""
    from rootfs.pack import PackOptions, pack

    root = world / "root"
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/scripted").write_bytes(b"")
    (root / "var/lib/waived").write_bytes(b"")
    rec = AttrRecord()
    rec.set(".", Attr(stat.S_IFDIR | 0o755))
    rec.set("var/lib/scripted", Attr(stat.S_IFCHR | 0o620, rdev=os.makedev(1, 3)))
    rec.set("var/lib/waived", Attr(stat.S_IFCHR | 0o600, rdev=os.makedev(1, 1)))
    rec.scripted.add("var/lib/scripted")
    import_all_of_rootfs()  # the child, as nobody, may not read the checkout
    pid = os.fork()
    if pid == 0:  # as nobody: the copy cannot hold device nodes, so it gets a record
        code = 1
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            pack(root, ["dir"], world / "tmp" / "copy", PackOptions(attrs=rec, policy=Policy(frozenset({"device"}))))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    copy = AttrRecord.load(sidecar_path(world / "tmp" / "copy"))
    assert copy.scripted == {"var/lib/scripted"}


@pytest.mark.parametrize("data", [
    b'<?xml version="1.0" encoding="UTF-7"?>\n<metadata packages="0"></metadata>\n',
    b"<\x00\x00\x00\xd0\x92eta\x00\x00\xd0\x92etadata>\n",
    b"<metadata>\xff\xfe</metadata>\n",
])
def test_primary_xml_that_crashed_libsolv_is_refused_first(data):
    """Inputs the fuzzer found that kill the process inside libsolv's XML
    reader: refused in one sentence before libsolv sees them."""
    from rootfs.backends.rpm.solver import Sack
    from rootfs.model.errors import VerifyError

    with pytest.raises(VerifyError, match="UTF-7|NUL byte|not UTF-8"):
        Sack("x86_64").add_primary(io.BytesIO(data), "primary.xml")
