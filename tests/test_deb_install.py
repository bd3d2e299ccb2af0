"""The deb backend's two-stage install, end to end, against a hermetic
repository whose packages carry the host's own dpkg, shell, libc and tools,
so that stage 2 really runs the target's dpkg chrooted.

`rootfs make` resolves, fetches and installs from a signed repository
served on 127.0.0.1; the tests then look at the finished root with the
root's own dpkg.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from unpriv import import_all_of_rootfs
from conftest import needs_root, needs_tool
from debrepo import Dir, File, Pkg, Symlink, build_repo, write_recipe

from rootfs.host.mounts import mounts_under

pytestmark = [needs_root(), needs_tool("dpkg", "ldd", "chroot")]

MULTIARCH = "lib/x86_64-linux-gnu"
CORE_TOOLS = ["rm", "mkdir", "chown", "chmod", "cat", "touch", "ln", "mv", "cp", "ls", "readlink",
              "id", "env", "true", "false", "sleep", "tar", "diff", "sed", "grep", "sort"]
DPKG_TOOLS = ["dpkg", "dpkg-deb", "dpkg-query", "dpkg-divert", "dpkg-split", "dpkg-trigger",
              "dpkg-statoverride", "dpkg-realpath", "dpkg-maintscript-helper", "update-alternatives"]

MARKER_CONF = b"setting=1\n"


def host_file(path: str) -> File:
    real = Path(path).resolve()
    return File(real.read_bytes(), stat.S_IMODE(real.stat().st_mode))


def which(name: str) -> str:
    found = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if not found:
        pytest.skip(f"host lacks {name}")
    return found


def shared_libraries(binaries: list[str]) -> tuple[set[str], str]:
    """The host libraries the binaries load, and the dynamic linker."""
    libs: set[str] = set()
    interp = ""
    for b in binaries:
        out = subprocess.run(["ldd", b], capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.search(r"=>\s+(/\S+)", line)
            if m:
                libs.add(m.group(1))
            elif line.strip().startswith("/"):
                interp = line.split()[0]
    return libs, interp


def host_packages(tmp: Path) -> list[Pkg]:
    """A minimal Debian made of the host's binaries: enough for dpkg and
    maintainer scripts to run inside the target."""
    tools = {t: which(t) for t in CORE_TOOLS + ["dash"]}
    dpkg_tools = {t: which(t) for t in DPKG_TOOLS}
    ssd = which("start-stop-daemon")
    ldconfig = which("ldconfig")
    libs, interp = shared_libraries([p for p in list(tools.values()) + list(dpkg_tools.values()) + [ssd]
                                     if Path(p).read_bytes()[:4] == b"\x7fELF"])
    libc_files: dict = {f"{MULTIARCH}/{Path(lib).name}": host_file(lib) for lib in libs}
    libc_files[f"{MULTIARCH}/{Path(interp).name}"] = host_file(interp)
    libc_files[interp.lstrip("/")] = Symlink(f"/{MULTIARCH}/{Path(interp).name}")
    libc_files["sbin/ldconfig"] = host_file(ldconfig)
    libc_files["etc/ld.so.conf"] = b"include /etc/ld.so.conf.d/*.conf\n"
    libc_files["etc/ld.so.conf.d"] = Dir()

    dpkg_files: dict = {f"usr/bin/{t}": host_file(p) for t, p in dpkg_tools.items()}
    dpkg_files["sbin/start-stop-daemon"] = host_file(ssd)
    dpkg_files["etc/dpkg/dpkg.cfg"] = b"# dpkg configuration\nno-debsig\nlog /var/log/dpkg.log\n"
    dpkg_files["etc/dpkg/dpkg.cfg.d"] = Dir()
    dpkg_files["etc/alternatives"] = Dir()
    for d in ("info", "updates", "alternatives", "parts"):
        dpkg_files[f"var/lib/dpkg/{d}"] = Dir()
    for table in ("cputable", "ostable", "tupletable", "abitable"):
        if Path(f"/usr/share/dpkg/{table}").exists():
            dpkg_files[f"usr/share/dpkg/{table}"] = host_file(f"/usr/share/dpkg/{table}")

    base = Pkg("base-files", "12.4", priority="required", essential=True, files={
        "etc/debian_version": b"12.4\n", "etc/issue": b"Test GNU/Linux\n",
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n", "etc/group": b"root:x:0:\n",
        "tmp": Dir(0o1777), "root": Dir(0o700), "var/tmp": Dir(0o1777), "var/lib": Dir(), "var/log": Dir(),
        "proc": Dir(), "sys": Dir(), "dev": Dir(), "usr/share/base-files": Dir(),
    }, conffiles=["/etc/issue"], scripts={
        "postinst": "#!/bin/sh\nset -e\necho \"$1\" > /usr/share/base-files/configured\n",
    }, compression="xz")
    libc = Pkg("libc6", "2.36-9", priority="required", multi_arch="same", section="libs",
               files=libc_files, compression="zstd", scripts={
                   "postinst": "#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then ldconfig; fi\n"})
    dash = Pkg("dash", "0.5.12-2", priority="required", essential=True, pre_depends="libc6 (>= 2.34)",
               files={"usr/bin/dash": host_file(tools["dash"]), "bin/sh": Symlink("dash")}, compression="gzip")
    core = Pkg("coreutils", "9.1-1", priority="required", essential=True, pre_depends="libc6 (>= 2.34)",
               files={f"usr/bin/{t}": host_file(tools[t]) for t in CORE_TOOLS}, compression="zstd")
    dpkg = Pkg("dpkg", "1.21.22", priority="required", essential=True,
               pre_depends="libc6 (>= 2.34)", depends="tar (>= 1.28)", files=dpkg_files,
               conffiles=["/etc/dpkg/dpkg.cfg"], compression="zstd")
    tar = Pkg("tar", "1.34+dfsg-1.2", priority="required", section="utils",
              provides="", depends="", extra={}, files={"usr/share/doc/tar/README": b"tar lives in coreutils here\n"})
    predep = Pkg("predep", "1.0", scripts={
        "postinst": "#!/bin/sh\nset -e\nmkdir -p /var/lib/predep\necho \"$1\" > /var/lib/predep/configured\n"})
    marker = Pkg("marker", "2.0-1", pre_depends="predep", depends="coreutils",
                 files={"etc/marker.conf": MARKER_CONF, "var/lib/marker": Dir()},
                 conffiles=["/etc/marker.conf"], scripts={
        "preinst": "#!/bin/sh\nset -e\n"
                   "test -f /var/lib/predep/configured || { echo 'predep is not configured yet' >&2; exit 1; }\n"
                   "mkdir -p /var/lib/marker\necho \"$1\" > /var/lib/marker/preinst\n",
        "postinst": "#!/bin/sh\nset -e\n"
                    "echo \"$@\" > /var/lib/marker/postinst\n"
                    "env | sort > /var/lib/marker/env\n"
                    "test -x /usr/sbin/policy-rc.d && echo policy > /var/lib/marker/policy-rc.d\n"
                    "test -r /proc/self/status && echo proc > /var/lib/marker/proc\n"
                    "echo probe > /dev/null && echo dev > /var/lib/marker/dev\n",
    })
    owners = Pkg("owners", "1.0", depends="coreutils", files={"srv/data": Dir(0o755)}, scripts={
        "postinst": "#!/bin/sh\nset -e\nchown 1234:1234 /srv/data\nchmod 2770 /srv/data\n"})
    return [base, libc, dash, core, dpkg, tar, predep, marker, owners]


@pytest.fixture(scope="session")
def host_repo(tmp_path_factory, gpg_key):
    tmp = tmp_path_factory.mktemp("hostrepo")
    broken = Pkg("broken", "1.0", scripts={"postinst": "#!/bin/sh\necho 'about to fail' >&2\nexit 3\n"})
    slow = Pkg("slow", "1.0", depends="coreutils", scripts={
        "postinst": "#!/bin/sh\nsleep 120 &\necho $! > /slow-started\nwait\n"})
    return build_repo(tmp / "repo", host_packages(tmp) + [broken, slow], key=gpg_key, suite="testing")


def rootfs(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rootfs.cli", *args], capture_output=True, text=True,
                          env=env or os.environ, timeout=300)


@pytest.fixture(scope="session")
def built(host_repo, tmp_path_factory):
    """One full `rootfs make` of the host repository (root mode)."""
    from conftest import serve_directory

    tmp = tmp_path_factory.mktemp("built")
    server = serve_directory(host_repo.path)
    recipe = write_recipe(tmp, host_repo, variant="essential", include=("marker", "owners"))
    out = tmp / "out"
    env = dict(os.environ, ROOTFS_LEAK_TEST="leaked", XDG_CACHE_HOME=str(tmp / "cache"))
    proc = rootfs("make", str(recipe), "--mirror", server.url + "/", "-o", str(out),
                  "--cache-dir", str(tmp / "cache"), env=env)
    yield proc, out, server, tmp
    server.httpd.shutdown()
    server.httpd.server_close()


def chroot(out: Path, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["chroot", str(out), *cmd], capture_output=True, text=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})


def test_make_succeeds(built):
    proc, out, _, _ = built
    assert proc.returncode == 0, proc.stderr
    assert out.is_dir()


def test_dpkg_audit_is_clean_and_all_installed(built):
    _, out, _, _ = built
    audit = chroot(out, "dpkg", "--audit")
    assert audit.returncode == 0 and audit.stdout == "" and audit.stderr == ""
    q = chroot(out, "dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n")
    rows = dict(line.split(" ", 1) for line in q.stdout.splitlines())
    assert set(rows) == {"base-files", "libc6", "dash", "coreutils", "dpkg", "tar", "predep", "marker", "owners"}
    assert all(v.strip() == "ii" for v in rows.values()), rows


def test_maintainer_scripts_ran_in_order_inside(built):
    _, out, _, _ = built
    lib = out / "var/lib"
    assert (lib / "predep/configured").read_text() == "configure\n"
    # the preinst ran after predep (its Pre-Depends) was configured
    assert (lib / "marker/preinst").read_text() == "install\n"
    assert (lib / "marker/postinst").read_text().split()[0] == "configure"
    assert (out / "usr/share/base-files/configured").read_text() == "configure\n"
    assert (lib / "marker/proc").read_text() == "proc\n"
    assert (lib / "marker/dev").read_text() == "dev\n"
    assert (lib / "marker/policy-rc.d").read_text() == "policy\n"
    data = os.lstat(out / "srv/data")
    assert (data.st_uid, data.st_gid, stat.S_IMODE(data.st_mode)) == (1234, 1234, 0o2770)


def test_scripts_see_a_clean_environment(built):
    _, out, _, _ = built
    env = dict(line.split("=", 1) for line in (out / "var/lib/marker/env").read_text().splitlines() if "=" in line)
    assert "ROOTFS_LEAK_TEST" not in env
    assert env["DEBIAN_FRONTEND"] == "noninteractive"
    assert env["DEBCONF_NONINTERACTIVE_SEEN"] == "true"
    assert env["LC_ALL"] == "C.UTF-8"
    assert "/usr/sbin" in env["PATH"].split(":") and "/sbin" in env["PATH"].split(":")
    assert env["DPKG_MAINTSCRIPT_PACKAGE"] == "marker"


def test_conffiles_and_info_files_registered(built):
    _, out, _, _ = built
    q = chroot(out, "dpkg-query", "-W", "-f", "${Conffiles}\n", "marker")
    assert q.stdout.split() == ["/etc/marker.conf", hashlib.md5(MARKER_CONF).hexdigest()]
    info = out / "var/lib/dpkg/info"
    assert (info / "libc6:amd64.list").is_file()  # Multi-Arch: same
    assert (info / "marker.list").read_text().splitlines()[:2] == ["/.", "/etc"]
    assert (info / "marker.preinst").stat().st_mode & 0o111
    listed = chroot(out, "dpkg", "-S", "/etc/marker.conf")
    assert listed.stdout.strip() == "marker: /etc/marker.conf"
    # dpkg can verify what stage 1 extracted against the md5sums
    verify = chroot(out, "dpkg", "--verify", "marker", "coreutils")
    assert verify.returncode == 0 and verify.stdout == "", verify.stdout


def test_merged_usr_layout(built):
    _, out, _, _ = built
    for d in ("bin", "sbin", "lib", "lib64"):
        assert os.readlink(out / d) == f"usr/{d}"
    assert (out / "usr/bin/dash").is_file() and os.readlink(out / "usr/bin/sh") == "dash"
    assert os.path.islink(out / "usr/lib64/ld-linux-x86-64.so.2")
    assert chroot(out, "/bin/sh", "-c", "true").returncode == 0


def test_no_build_time_leftovers(built):
    _, out, server, _ = built
    for p in ("usr/sbin/policy-rc.d", "etc/resolv.conf", "sbin/start-stop-daemon.REAL",
              "var/lib/dpkg/tmp.ci", "var/log/dpkg.log", "usr/bin/awk"):
        assert not os.path.lexists(out / p), p
    ssd = (out / "usr/sbin/start-stop-daemon").read_bytes()
    assert ssd[:4] == b"\x7fELF"  # the real one is back
    assert mounts_under(out) == []
    with open("/proc/mounts") as f:
        assert str(out) not in f.read()
    assert (out / "etc/apt/sources.list").read_text() == f"deb {server.url}/ testing main\n"
    assert list(out.parent.glob(".out.*")) == []


def test_failing_postinst_names_package_and_script(host_repo, tmp_path, http_serve):
    server = http_serve(host_repo.path)
    recipe = write_recipe(tmp_path, host_repo, variant="essential", include=("broken",))
    out = tmp_path / "out"
    proc = rootfs("make", str(recipe), "--mirror", server.url + "/", "-o", str(out),
                  "--cache-dir", str(tmp_path / "cache"))
    assert proc.returncode == 6, proc.stderr
    assert "the postinst script of package broken failed (exit status 3): about to fail" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert mounts_under(tmp_path) == []
    assert list(tmp_path.glob(".out.*")) == []


def test_extract_mode_stops_after_stage_one(host_repo, tmp_path, http_serve):
    server = http_serve(host_repo.path)
    recipe = write_recipe(tmp_path, host_repo, variant="essential", include=("marker", "owners"))
    out = tmp_path / "out"
    proc = rootfs("make", str(recipe), "--mirror", server.url + "/", "-o", str(out), "--mode", "extract",
                  "--cache-dir", str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    assert "stage 2 (maintainer scripts) not run" in proc.stderr
    status = (out / "var/lib/dpkg/status").read_text()
    states = re.findall(r"^Status: (.*)$", status, re.M)
    assert len(states) == 9 and set(states) == {"install ok unpacked"}
    assert not (out / "var/lib/marker/preinst").exists()
    assert not (out / "var/lib/predep").exists()
    assert stat.S_IMODE(os.lstat(out / "srv/data").st_mode) == 0o755
    assert (out / "var/lib/dpkg/info/marker.postinst").is_file()
    # dpkg itself accepts the database stage 1 wrote
    q = chroot(out, "dpkg-query", "-W", "-f", "${db:Status-Abbrev}\n")
    assert q.returncode == 0 and set(q.stdout.split()) == {"iU"}


def test_root_mode_without_root_is_a_privilege_error(tmp_path):
    from rootfs.backends import InstallOptions
    from rootfs.model.errors import PrivilegeError
    from rootfs.model.lock import Lock
    from rootfs.pipeline.stages import install

    r, w = os.pipe()
    import_all_of_rootfs()  # the child, as nobody, may not read the checkout
    pid = os.fork()
    if pid == 0:
        msg = b"no error"
        try:
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            install(Lock("deb", "t", "debian", "t", "amd64"), {}, tmp_path, InstallOptions(mode="root"))
        except PrivilegeError as exc:
            msg = str(exc).encode()
        except BaseException as exc:  # noqa: BLE001
            msg = repr(exc).encode()
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode()
    os.waitpid(pid, 0)
    assert "needs root" in msg and "--mode extract" in msg


def _lock_for(repo, names):
    from rootfs.backends.deb.debfile import DebFile
    from rootfs.model.lock import Lock, LockedPackage, LockSource

    pkgs, files = [], {}
    for name in names:
        deb = repo.debs[name]
        with DebFile(deb) as d:
            f = d.control().fields
        p = LockedPackage(name, f["Version"], f["Architecture"], f"http://127.0.0.1/{deb.name}",
                          deb.stat().st_size, hashlib.sha256(deb.read_bytes()).hexdigest())
        pkgs.append(p)
        files[p.key] = deb
    lock = Lock("deb", "t", "debian", "testing", "amd64", components=("main",),
                sources=(LockSource("http://127.0.0.1/debian/", "testing"),), packages=tuple(pkgs))
    return lock, files


def test_extract_mode_as_nobody_records_owners(host_repo, tmp_path):
    """Stage 1 without privileges: nothing chowned, the intended owners
    and modes of package files and of the dpkg database are recorded."""
    import json
    import tempfile

    from rootfs.backends import InstallOptions
    from rootfs.backends.deb.install import install
    from rootfs.model.attrs import AttrRecord

    lock, files = _lock_for(host_repo, ["base-files", "dash", "owners", "marker"])
    base = Path(tempfile.mkdtemp(prefix="rootfs-nobody-", dir="/tmp"))
    try:
        base.chmod(0o755)
        debs = base / "debs"
        debs.mkdir()
        for key, path in list(files.items()):
            files[key] = Path(shutil.copy(path, debs / path.name))
        root = base / "root"
        root.mkdir()
        os.chown(root, 65534, 65534)
        r, w = os.pipe()
        import_all_of_rootfs()  # the child, as nobody, may not read the checkout
        pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
                attrs = AttrRecord()
                report = install(lock, files, root, InstallOptions(mode="extract", attrs=attrs))
                result = {"skipped": report.skipped, "attrs": json.loads(attrs.to_json())["paths"]}
            except BaseException as exc:  # noqa: BLE001
                result = {"error": repr(exc)}
            os.write(w, json.dumps(result).encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            result = json.loads(f.read())
        os.waitpid(pid, 0)
        assert "error" not in result, result
        assert result["skipped"] == ["stage 2 (maintainer scripts) not run"]
        rec = result["attrs"]
        assert os.lstat(root / "usr/bin/dash").st_uid == 65534  # not chowned on disk
        assert rec["usr/bin/dash"]["uid"] == 0 and rec["usr/bin/dash"]["mode"] == stat.S_IFREG | 0o755
        assert rec["tmp"]["mode"] == stat.S_IFDIR | 0o1777
        assert rec["root"]["mode"] == stat.S_IFDIR | 0o700
        assert rec["bin"]["mode"] == stat.S_IFLNK | 0o777  # merged /usr link
        assert rec["var/lib/dpkg/status"] == {"mode": stat.S_IFREG | 0o644, "uid": 0, "gid": 0}
        assert rec["var/lib/dpkg/info/marker.preinst"]["mode"] == stat.S_IFREG | 0o755
        assert rec["etc/apt/sources.list"]["uid"] == 0
        status = (root / "var/lib/dpkg/status").read_text()
        assert status.count("Status: install ok unpacked") == 4
        # every path on disk is in the record, so the packer never falls back to lstat owners
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                rel = os.path.relpath(os.path.join(dirpath, n), root)
                assert rel in rec, rel
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_unmerged_trusty_shape_extracts(tmp_path, http_serve, gpg_key):
    """An old-style archive (Release.gpg only, Packages.gz, gzip members)
    into a root without merged /usr: /bin stays a real directory."""
    from debrepo import build_trusty_repo

    repo = build_trusty_repo(tmp_path / "repo", [
        Pkg("base-files", "7.2", priority="required", essential=True,
            files={"bin/true-ish": File(b"#!/bin/sh\n", 0o755), "etc/issue": b"Ubuntu 14.04\n"},
            conffiles=["/etc/issue"]),
        Pkg("libfoo1", "1.0", priority="required", multi_arch="same", depends="base-files",
            files={"lib/x86_64-linux-gnu/libfoo.so.1": b"\x7fELF"}),
    ], key=gpg_key)
    server = http_serve(repo.path)
    recipe = write_recipe(tmp_path, repo, variant="essential", include=("libfoo1",), merged_usr=False,
                          distribution="ubuntu")
    out = tmp_path / "out"
    proc = rootfs("make", str(recipe), "--mirror", server.url + "/", "-o", str(out), "--mode", "extract",
                  "--cache-dir", str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    assert (out / "bin").is_dir() and not (out / "bin").is_symlink()
    assert (out / "bin/true-ish").read_bytes() == b"#!/bin/sh\n"
    assert (out / "lib/x86_64-linux-gnu/libfoo.so.1").is_file()
    assert (out / "var/lib/dpkg/info/libfoo1:amd64.list").read_text().splitlines()[-1] == \
        "/lib/x86_64-linux-gnu/libfoo.so.1"
    status = (out / "var/lib/dpkg/status").read_text()
    issue_md5 = hashlib.md5(b"Ubuntu 14.04\n").hexdigest()
    assert f"Conffiles:\n /etc/issue {issue_md5}\n" in status
    assert (out / "etc/apt/sources.list").read_text() == f"deb {server.url}/ trusty main\n"


def test_sigterm_during_stage_two_leaves_nothing(host_repo, tmp_path, http_serve):
    import signal
    import time

    server = http_serve(host_repo.path)
    recipe = write_recipe(tmp_path, host_repo, variant="essential", include=("slow",))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "rootfs.cli", "make", str(recipe), "--mirror", server.url + "/",
                             "-o", str(out), "--cache-dir", str(tmp_path / "cache")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sleeper = None
    for _ in range(1200):  # until the slow postinst runs inside the root being built
        found = [p for p in tmp_path.glob(".out.*/*/slow-started") if p.read_text().strip()]
        if found:
            sleeper = int(found[0].read_text())
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    assert sleeper is not None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists()
    assert list(tmp_path.glob(".out.*")) == []
    assert mounts_under(tmp_path) == []
    stat_file = Path(f"/proc/{sleeper}/stat")
    assert not stat_file.exists() or stat_file.read_text().split()[2] == "Z"


def test_overlaps_settle_like_one_by_one_extraction(tmp_path):
    """Parallel extraction, sequential result: a file two packages ship is
    the later one's (by name), a directory keeps the first one's mode."""
    from debrepo import build_deb

    from rootfs.backends import InstallOptions
    from rootfs.backends.deb.install import install
    from rootfs.model.lock import Lock, LockedPackage

    debs = [build_deb(Pkg("aaa", files={"usr/share/x/file": b"A\n", "var/spool/q": Dir(0o700)}), tmp_path),
            build_deb(Pkg("bbb", files={"usr/share/x/file": b"B\n", "var/spool/q": Dir(0o755)}), tmp_path)]
    pkgs = [LockedPackage(n, "1.0", "amd64", f"http://mirror.invalid/{d.name}", d.stat().st_size, "0" * 64)
            for n, d in zip(("aaa", "bbb"), debs)]
    # the lock lists them in the "wrong" order on purpose
    lock = Lock("deb", "t", "debian", "t", "amd64", packages=(pkgs[1], pkgs[0]), merged_usr=False)
    root = tmp_path / "root"
    root.mkdir()
    install(lock, {p.key: d for p, d in zip(pkgs, debs)}, root, InstallOptions(mode="extract"))
    assert (root / "usr/share/x/file").read_bytes() == b"B\n"
    assert stat.S_IMODE(os.stat(root / "var/spool/q").st_mode) == 0o700
    assert "/usr/share/x/file" in (root / "var/lib/dpkg/info/aaa.list").read_text().splitlines()
