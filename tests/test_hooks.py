"""Hooks and [customize]: mmdebstrap's hook points and special hooks, files,
accounts, time zone and commands, root and rootless alike.

The hermetic repository is test_deb_install's (the host's own binaries)
plus the host's useradd and groupadd and a time zone file, so that
accounts are made by the image's own tools. mmdebstrap itself, run on the
same repository with the same hooks, is the reference for what hooks see
and leave.
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
from pathlib import Path

import pytest
from conftest import needs_root, needs_tool, serve_directory
from debrepo import Dir, File, Pkg, build_deb, build_repo, write_recipe
from test_deb_install import MULTIARCH, host_file, host_packages, shared_libraries, which
from test_rootless import unpriv  # noqa: F401,F811 (a fixture: the session's unprivileged user)

from rootfs.model.customize import Hook, check_hook, hook_dir
from rootfs.model.errors import UsageError

ROOTFS = [sys.executable, "-m", "rootfs.cli"]


def rootfs(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([*ROOTFS, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env or os.environ, timeout=timeout)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def members(tar: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(tar) as t:
        return {m.name: m for m in t}


# -- how a hook runs, as mmdebstrap decides -------------------------------------

def test_hook_kinds_follow_mmdebstrap(tmp_path):
    script = tmp_path / "myhook"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    cwd = str(tmp_path)
    assert Hook("customize", "copy-in a /b", cwd).kind == "special"
    assert Hook("customize", "myhook", cwd).kind == "exec"  # an executable file
    assert Hook("customize", "/usr/share/x/setup-testbed", cwd).kind == "exec"  # no shell metacharacters
    assert Hook("customize", 'chroot "$1" true', cwd).kind == "shell"
    assert Hook("customize", "echo hi > $1/x", cwd).kind == "shell"


def test_special_hooks_are_checked_before_anything_runs(tmp_path):
    cwd = str(tmp_path)
    (tmp_path / "present").write_text("x")
    check_hook(Hook("setup", "copy-in present /tmp", cwd))
    with pytest.raises(UsageError, match="unknown special hook 'copy-into'"):
        check_hook(Hook("customize", "copy-into present /tmp", cwd))
    with pytest.raises(UsageError, match="absent does not exist"):
        check_hook(Hook("customize", "copy-in absent /tmp", cwd))
    with pytest.raises(UsageError, match="exactly two paths"):
        check_hook(Hook("customize", "upload a b c", cwd))


def test_hook_dir_takes_executables_by_point_in_name_order(tmp_path):
    d = tmp_path / "hooks"
    d.mkdir()
    for name in ("customize02-b", "customize01-a.sh", "setup00", "extract-x", "essential.sh", "README"):
        (d / name).write_text("#!/bin/sh\n")
        (d / name).chmod(0o755 if name != "extract-x" else 0o644)
    warned = []
    hooks = hook_dir("hooks", str(tmp_path), warn=warned.append)
    assert [(h.point, Path(h.command).name) for h in hooks] == [
        ("setup", "setup00"), ("essential", "essential.sh"),
        ("customize", "customize01-a.sh"), ("customize", "customize02-b")]
    assert any("extract-x" in w for w in warned)


def test_command_line_order_is_kept_across_hook_options(tmp_path):
    from rootfs.cli.options import hooks_in_order

    d = tmp_path / "hooks"
    d.mkdir()
    (d / "customize01").write_text("#!/bin/sh\n")
    (d / "customize01").chmod(0o755)
    argv = ["rootfs", "make", "r", "--customize-hook", "echo A", "--hook-dir", "hooks",
            "--customize-hook=echo B", "--setup-hook", "echo S"]
    hooks = hooks_in_order(argv, {"--customize-hook": ["echo A", "echo B"], "--hook-dir": ["hooks"],
                                  "--setup-hook": ["echo S"]}, str(tmp_path))
    assert [(h.point, Path(h.command).name if "/" in h.command else h.command) for h in hooks] == [
        ("customize", "echo A"), ("customize", "customize01"), ("customize", "echo B"), ("setup", "echo S")]


# -- the hermetic repository ------------------------------------------------------

def account_package(libc_files: set[str]) -> Pkg:
    tools = {t: which(t) for t in ("useradd", "groupadd")}
    libs, _ = shared_libraries(list(tools.values()))
    files: dict = {f"usr/sbin/{t}": host_file(p) for t, p in tools.items()}
    for lib in libs:
        key = f"{MULTIARCH}/{Path(lib).name}"
        if key not in libc_files:
            files[key] = host_file(lib)
    files["etc/login.defs"] = host_file("/etc/login.defs")
    files["etc/default/useradd"] = b"SHELL=/bin/sh\n"
    files["etc/skel/.profile"] = b"# ~/.profile\n"
    return Pkg("passwd", "1:4.13", priority="required", depends="libc6", files=files)


def zone_package() -> Pkg:
    return Pkg("tzdata", "2024a-1", files={"usr/share/zoneinfo/Europe/Berlin": host_file("/usr/share/zoneinfo/Europe/Berlin"),
                                          "usr/share/zoneinfo/Etc/UTC": host_file("/usr/share/zoneinfo/Etc/UTC")})


def doc_package() -> Pkg:
    """Paths dpkg's slim filters decide about, every kind of them."""
    return Pkg("docs", "1.0", files={
        "usr/share/doc/docs/README": b"readme\n", "usr/share/doc/docs/copyright": b"(c)\n",
        "usr/share/doc/docs/examples/ex.txt": b"ex\n", "usr/share/man/man1/docs.1.gz": b"man\n",
        "usr/share/man/de/man1/docs.1.gz": b"mann\n", "usr/share/locale/de/LC_MESSAGES/docs.mo": b"mo\n",
        "usr/share/locale/locale.alias": b"alias\n", "usr/share/info/docs.info.gz": b"info\n",
        "usr/share/lintian/overrides/docs": b"docs: x\n", "usr/bin/docs": File(b"#!/bin/sh\n", 0o755),
    })


@pytest.fixture(scope="session")
def custom_repo(tmp_path_factory, gpg_key):
    tmp = tmp_path_factory.mktemp("custom-repo")
    base = host_packages(tmp)
    libc = next(p for p in base if p.name == "libc6")
    repo = build_repo(tmp / "repo", base + [account_package(set(libc.files)), zone_package(), doc_package()],
                      key=gpg_key, suite="testing")
    os.chmod(tmp, 0o755)
    server = serve_directory(repo.path)
    keyring = tmp / "keyring.gpg"
    shutil.copy(repo.keyring, keyring)
    os.chmod(keyring, 0o644)
    yield {"repo": repo, "url": server.url + "/", "keyring": keyring, "tmp": tmp}
    server.httpd.shutdown()
    server.httpd.server_close()


CUSTOMIZE = """
[customize]
groups = [{ name = "staff2", gid = 2000 }]
users = [{ name = "app", uid = 10000, gid = 10000, home = "/home/app", shell = "/bin/sh", groups = ["staff2"] }]
files = [
  { src = "files/app.conf", dest = "/etc/app/app.conf", mode = "0640", owner = "app:app" },
  { src = "files/tree", dest = "/opt/tree", owner = "app" },
]
timezone = "Europe/Berlin"
locale = "C.UTF-8"
commands = ["echo customized > /etc/customized"]
hook_dirs = ["hookdir"]

[customize.hooks]
setup = ['echo setup > "$1/etc/hook-setup"', "upload files/app.conf /tmp/uploaded"]
extract = ['chroot "$1" /bin/sh -c "echo extracted > /etc/hook-extract"']
essential = ['chroot "$1" chown 1234:42 /etc/hook-extract', 'chroot "$1" chmod 0604 /etc/hook-extract']
customize = [
  'chroot "$1" useradd -u 10001 -m hookuser',
  "copy-in files/tree /usr/share",
  "tar-in files/in.tar /opt",
  "sync-in files/tree /var/lib",
  "copy-out /etc/hook-extract outside/copied",
  "download /etc/passwd outside/passwd",
  "tar-out /opt/tree outside/tree.tar",
  "sync-out /opt/tree outside/synced",
]
"""


def write_inputs(d: Path) -> None:
    """The host files the customization reads, as in a checkout (root's)."""
    files = d / "files"
    (files / "tree" / "sub").mkdir(parents=True)
    (files / "app.conf").write_text("key=value\n")
    (files / "tree" / "a.txt").write_text("a\n")
    (files / "tree" / "sub" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(files / "tree" / "sub" / "run.sh", 0o755)
    src = d / "intar"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "from-tar").write_text("tar\n")
    with tarfile.open(files / "in.tar", "w") as t:
        t.add(src / "etc" / "from-tar", arcname="from-tar")
    hd = d / "hookdir"
    hd.mkdir()
    for point in ("setup", "essential", "customize"):
        script = hd / f"{point}50-mark.sh"
        script.write_text('#!/bin/sh\nset -e\necho "$MMDEBSTRAP_HOOK" > "$1/etc/hookdir-$MMDEBSTRAP_HOOK"\n')
        script.chmod(0o755)
    for p in [d, *d.rglob("*")]:
        os.chmod(p, os.stat(p).st_mode | 0o044 | (0o011 if p.is_dir() else 0))


def custom_recipe(d: Path, repo, keyring: Path, customize: str = CUSTOMIZE, include=("passwd", "tzdata")) -> Path:
    # not marker: its postinst records its environment, which fakeroot is part of without root
    d.mkdir(parents=True, exist_ok=True)
    write_inputs(d)
    return write_recipe(d, repo, variant="essential", include=include, keyring=keyring, extra=customize)


@pytest.fixture(scope="session")
def custom_pair(custom_repo, unpriv, tmp_path_factory):
    """The customized image built as root and as nobody (rootless)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    base = tmp_path_factory.mktemp("custom-pair")
    recipe = custom_recipe(base / "recipe", custom_repo["repo"], custom_repo["keyring"])
    p = rootfs("make", recipe, "--mirror", custom_repo["url"], "-f", "tar", "-f", "dir", "-o", base / "out",
               "--cache-dir", base / "cache")
    home = unpriv.sandbox()
    shutil.copy(custom_repo["keyring"], home / "keyring.gpg")
    urecipe = custom_recipe(home / "recipe", custom_repo["repo"], home / "keyring.gpg")
    subprocess.run(["chown", "-R", f"{unpriv.uid}:{unpriv.gid}", str(home / "recipe")], check=True)
    q = unpriv.rootfs(home, "make", urecipe, "--mirror", custom_repo["url"], "-f", "tar", "-o", home / "out")
    yield {"root": base, "root_proc": p, "home": home, "user_proc": q}
    if not os.environ.get("ROOTFS_TEST_KEEP"):
        shutil.rmtree(home, ignore_errors=True)


@needs_root()
@needs_tool("runuser", "unshare", "faked-sysv")
def test_customized_root_and_rootless_images_are_identical(custom_pair):
    p, q = custom_pair["root_proc"], custom_pair["user_proc"]
    assert p.returncode == 0, p.stderr
    assert q.returncode == 0, q.stderr
    assert sha256(custom_pair["home"] / "out") == sha256(custom_pair["root"] / "out" / "rootfs.tar")


@needs_root()
def test_accounts_files_and_zone_reach_the_image(custom_pair):
    assert custom_pair["root_proc"].returncode == 0, custom_pair["root_proc"].stderr
    m = members(custom_pair["root"] / "out" / "rootfs.tar")
    tree = custom_pair["root"] / "out" / "rootfs"
    passwd = (tree / "etc/passwd").read_text()
    entries = {line.split(":")[0]: line.split(":")[2:] for line in passwd.splitlines()}
    assert entries["app"] == ["10000", "10000", "", "/home/app", "/bin/sh"]
    assert entries["hookuser"][0] == "10001"
    group = (tree / "etc/group").read_text().splitlines()
    assert "app:x:10000:" in group and "staff2:x:2000:app" in group
    conf = m["./etc/app/app.conf"]
    assert (conf.uid, conf.gid, conf.mode) == (10000, 10000, 0o640)
    run = m["./opt/tree/sub/run.sh"]
    assert (run.uid, run.gid, run.mode) == (10000, 10000, 0o755)
    assert m["./home/app"].uid == 10000 and m["./home/app/.profile"].uid == 10000
    assert m["./etc/localtime"].issym() and m["./etc/localtime"].linkname == "/usr/share/zoneinfo/Europe/Berlin"
    assert (tree / "etc/timezone").read_text() == "Europe/Berlin\n"
    assert (tree / "etc/default/locale").read_text() == "LANG=C.UTF-8\n"
    assert (tree / "etc/customized").read_text() == "customized\n"
    # every point ran, in the session, with the effects the image keeps
    assert (tree / "etc/hook-setup").read_text() == "setup\n"
    assert (tree / "tmp/uploaded").read_text() == "key=value\n"
    ext = m["./etc/hook-extract"]
    assert (ext.uid, ext.gid, ext.mode) == (1234, 42, 0o604)
    for point in ("setup", "essential", "customize"):
        assert (tree / f"etc/hookdir-{point}").read_text() == point + "\n"
    assert (tree / "usr/share/tree/a.txt").read_text() == "a\n"
    assert (tree / "opt/from-tar").read_text() == "tar\n"
    assert (tree / "var/lib/sub/run.sh").exists()
    # and what the -out hooks wrote outside, relative to the recipe
    outside = custom_pair["root"] / "recipe" / "outside"
    assert (outside / "copied" / "hook-extract").read_text() == "extracted\n"
    assert (outside / "passwd").read_text() == passwd
    assert sorted(n for n in members(outside / "tree.tar")) == ["tree", "tree/a.txt", "tree/sub", "tree/sub/run.sh"]
    assert (outside / "synced" / "sub" / "run.sh").exists()


@needs_root()
def test_the_report_counts_what_the_customization_reads(custom_pair):
    assert custom_pair["root_proc"].returncode == 0
    report = json.loads((custom_pair["root"] / "out" / "build.json").read_text())
    read = {what for what, _ in report["inputs"]["files"]}
    recipe_dir = custom_pair["root"] / "recipe"
    assert {"setup:files/app.conf", "customize:files/tree", "customize:files/in.tar",
            f"file:{recipe_dir}/files/app.conf", f"file:{recipe_dir}/files/tree"} <= read
    assert any(w.endswith("customize50-mark.sh") for w in read)


def test_a_locale_sets_lang_in_the_image_config(tmp_path):
    from rootfs.model.recipe import load_recipe

    recipe = tmp_path / "r.toml"
    recipe.write_text('backend = "deb"\nsuite = "stable"\n[customize]\nlocale = "en_US.UTF-8"\n')
    assert dict(load_recipe(str(recipe)).image.env)["LANG"] == "en_US.UTF-8"


# -- against mmdebstrap -----------------------------------------------------------

MMDEBSTRAP_HOOKS = [
    ("--setup-hook", 'mkdir -p "$1/etc" && echo setup > "$1/etc/hook-setup"'),
    ("--setup-hook", "upload files/app.conf /etc/uploaded"),
    ("--setup-hook", 'env | grep -E "^(MMDEBSTRAP_(HOOK|MODE|VERBOSITY|INCLUDE)|DEBIAN_FRONTEND|LC_ALL)=" '
                     '| sort > "$1/etc/setup-env"'),
    ("--extract-hook", 'chroot "$1" /bin/sh -c "echo extracted > /etc/hook-extract"'),
    ("--essential-hook", 'chroot "$1" chown 1234:42 /etc/hook-extract'),
    ("--customize-hook", "copy-in files/tree /etc"),
    ("--customize-hook", "tar-in files/in.tar /root"),
    ("--customize-hook", "sync-in files/tree /var/lib"),
    ("--customize-hook", 'chroot "$1" useradd -u 10001 -m hookuser'),
    ("--customize-hook", "copy-out /etc/hook-extract outside/copied"),
    ("--customize-hook", "download /etc/passwd outside/passwd"),
    ("--customize-hook", "tar-out /etc/tree outside/tree.tar"),
    ("--customize-hook", "sync-out /etc/tree outside/synced"),
    ("--hook-dir", "hookdir"),
    ("--aptopt", 'Acquire::Languages "none"'),
    ("--dpkgopt", "path-exclude=/usr/share/doc/*"),
    ("--dpkgopt", "path-include=/usr/share/doc/*/copyright"),
]

# What one tool leaves and the other does not, for reasons that are not hooks':
# mmdebstrap's directory output keeps the device nodes it made and its apt
# state (lock files, partial directories, extended_states, its copies of the
# host's hostname and resolv.conf); rootfs writes dpkg's available,
# diversions and triggers/File files as dpkg itself would; dpkg's -old
# backups and logs are not compared; the marker package records its own
# environment; ld.so.cache is made at different moments (rootfs runs
# ldconfig once everything is extracted, mmdebstrap before apt adds the
# included packages' libraries).
ONLY_MMDEBSTRAP = ("dev/", "etc/hostname", "etc/resolv.conf", "var/cache/apt/archives", "var/lib/apt/extended_states",
                   "var/lib/apt/lists/lock", "var/log/apt/eipp.log.xz")
ONLY_ROOTFS = ("var/lib/dpkg/available", "var/lib/dpkg/diversions", "var/lib/dpkg/triggers/File")
NOT_COMPARED = ("var/lib/dpkg/status-old", "var/lib/dpkg/diversions-old", "var/lib/marker/env", "var/log/",
                "var/cache/debconf/", "var/lib/apt/lists/partial", "var/cache/ldconfig/aux-cache", "etc/ld.so.cache")


def tree_listing(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            body = os.readlink(p) if stat.S_ISLNK(st.st_mode) else \
                hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, body)
    return out


def _skipped(rel: str, names: tuple[str, ...]) -> bool:
    return any(rel == n.rstrip("/") or rel.startswith(n.rstrip("/") + "/") for n in names)


@needs_root()
@needs_tool("mmdebstrap")
def test_hooks_leave_the_same_files_as_mmdebstraps(custom_repo, tmp_path):
    """The same hooks, the same repository: mmdebstrap's tree and rootfs's
    are the same file for file (owners, modes, contents, links), and what
    the -out hooks wrote outside is the same."""
    repo = custom_repo["repo"]
    flags = [f"{opt}={value}" for opt, value in MMDEBSTRAP_HOOKS]
    include = "marker,passwd,tzdata,docs"
    trees = {}
    for tool in ("mmdebstrap", "rootfs"):
        d = tmp_path / tool
        d.mkdir()
        write_inputs(d)
        if tool == "mmdebstrap":
            # mmdebstrap sets up merged /usr with a hook (rootfs does it itself).
            merged = "for d in bin sbin lib lib32 lib64 libx32; do ln -s usr/$d \"$1/$d\"; mkdir -p \"$1/usr/$d\"; done"
            p = subprocess.run(["mmdebstrap", "--mode=root", "--variant=essential", f"--include={include}",
                                f"--keyring={custom_repo['keyring']}", f"--setup-hook={merged}", *flags,
                                repo.suite, str(d / "tree"), f"deb {custom_repo['url']} {repo.suite} main"],
                               capture_output=True, text=True, cwd=d, timeout=600)
        else:
            recipe = write_recipe(d, repo, variant="essential", include=tuple(include.split(",")),
                                  keyring=custom_repo["keyring"])
            p = rootfs("make", recipe, "--mirror", custom_repo["url"], "-o", d / "tree", "--cache-dir", d / "cache",
                       *flags, cwd=d)
        assert p.returncode == 0, f"{tool}: {p.stderr[-3000:]}"
        trees[tool] = tree_listing(d / "tree")
    mm, ours = trees["mmdebstrap"], trees["rootfs"]
    only_mm = sorted(k for k in mm.keys() - ours.keys() if not _skipped(k, ONLY_MMDEBSTRAP + NOT_COMPARED))
    only_ours = sorted(k for k in ours.keys() - mm.keys() if not _skipped(k, ONLY_ROOTFS + NOT_COMPARED))
    differ = sorted(k for k in mm.keys() & ours.keys() if mm[k] != ours[k] and not _skipped(k, NOT_COMPARED))
    assert (only_mm, only_ours, differ) == ([], [], [])
    compared = len(mm.keys() & ours.keys())
    print(f"mmdebstrap comparison: {compared} paths compared, identical")
    assert compared > 150
    # the hooks' own traces are among them
    for path in ("etc/hook-setup", "etc/uploaded", "etc/hook-extract", "etc/tree/sub/run.sh", "root/from-tar",
                 "etc/hookdir-customize", "etc/apt/apt.conf.d/99mmdebstrap", "etc/dpkg/dpkg.cfg.d/99mmdebstrap",
                 "usr/share/doc/docs/copyright", "etc/setup-env"):
        assert path in ours, path
    assert "usr/share/doc/docs/README" not in ours  # --dpkgopt path-exclude, as dpkg applies it
    assert ours["etc/hook-extract"][2:4] == (1234, 42)
    for name in ("copied/hook-extract", "passwd", "synced/sub/run.sh"):
        assert (tmp_path / "mmdebstrap/outside" / name).read_bytes() == (tmp_path / "rootfs/outside" / name).read_bytes()
    assert sorted(members(tmp_path / "mmdebstrap/outside/tree.tar")) == sorted(members(tmp_path / "rootfs/outside/tree.tar"))


# -- dpkg's path filters ------------------------------------------------------------

SLIM_RULES = [("path-exclude", p) for p in ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*",
                                             "/usr/share/info/*", "/usr/share/lintian/overrides/*")] + \
             [("path-include", p) for p in ("/usr/share/doc/*/copyright", "/usr/share/locale/locale.alias")]


@needs_tool("dpkg")
def test_path_filter_extracts_what_dpkg_does(tmp_path):
    """dpkg --path-exclude on one side, rootfs's stage 1 on the other: the
    same files on disk, the same .list (dpkg lists what it filtered)."""
    from rootfs.backends.deb.profile import PathFilter, dpkg_rules
    from rootfs.host.unpacker import Extractor

    deb = build_deb(doc_package(), tmp_path)
    ref = tmp_path / "dpkg"
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"):
        (ref / d).mkdir(parents=True)
    (ref / "var/lib/dpkg/status").write_text("")
    p = subprocess.run(["dpkg", f"--root={ref}", "--force-not-root", "--force-script-chrootless", "--log=/dev/null",
                        *[f"--{k}={v}" for k, v in SLIM_RULES], "--install", str(deb)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    flt = PathFilter(tuple(dpkg_rules("".join(f"{k} {v}\n" for k, v in SLIM_RULES))))
    ours = tmp_path / "ours"
    ours.mkdir()
    from rootfs.backends.deb.debfile import DebFile

    with DebFile(deb) as f, Extractor(ours, mode="extract") as ex:
        listed = ex.extract(f.data_stream(), format_name="tar", skip=flt.skips)
    ref_list = (ref / "var/lib/dpkg/info/docs.list").read_text().splitlines()
    assert sorted(listed) == sorted(ref_list)

    def on_disk(root: Path) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if "var/lib/dpkg" not in str(p)
                      and str(p.relative_to(root)) not in ("var", "var/lib"))

    assert on_disk(ours) == on_disk(ref)
    assert "usr/share/doc/docs/copyright" in on_disk(ours) and "usr/share/doc/docs/README" not in on_disk(ours)


# -- bad input: one sentence, its exit code, nothing published ------------------------

@needs_root()
def test_failing_hook_names_itself_and_publishes_nothing(custom_repo, tmp_path):
    recipe = write_recipe(tmp_path, custom_repo["repo"], variant="essential", keyring=custom_repo["keyring"])
    out = tmp_path / "img.tar"
    p = rootfs("make", recipe, "--mirror", custom_repo["url"], "-f", "tar", "-o", out, "--cache-dir", tmp_path / "c",
               "--customize-hook", 'echo half > "$1/half"; exit 3')
    assert p.returncode == 6, p.stderr
    err = [line for line in p.stderr.splitlines() if line.startswith("rootfs: error:")]
    assert err == ["rootfs: error: the customize hook 'echo half > \"$1/half\"; exit 3' failed (exit status 3)"]
    assert not out.exists() and not (tmp_path / "img.tar.build.json").exists()
    assert not [x for x in tmp_path.iterdir() if x.name.startswith(".img.tar.")]


@needs_root()
def test_failing_special_hook_says_why(custom_repo, tmp_path):
    recipe = write_recipe(tmp_path, custom_repo["repo"], variant="essential", keyring=custom_repo["keyring"])
    (tmp_path / "f").write_text("x")
    p = rootfs("make", recipe, "--mirror", custom_repo["url"], "-f", "tar", "-o", tmp_path / "img.tar",
               "--cache-dir", tmp_path / "c", "--customize-hook", "copy-in f /no/such/dir", cwd=tmp_path)
    assert p.returncode == 6, p.stderr
    assert "the customize hook 'copy-in f /no/such/dir' failed (exit status 2): /no/such/dir does not exist" in p.stderr


@pytest.mark.parametrize("customize, exit_code, message", [
    ('[customize]\nusers = [{ name = "intruder", uid = 0 }]\n', 2,
     "uid 0 of user intruder is already taken by user root in the image"),
    ('[customize]\nfiles = [{ src = "missing.conf", dest = "/etc/x" }]\n', 2, "missing.conf does not exist"),
    ('[customize.hooks]\ncustomize = ["tar-inn x /"]\n', 2, "unknown special hook 'tar-inn'"),
    ('[customize]\ntimezone = "Mars/Olympus"\n', 2, "/usr/share/zoneinfo/Mars/Olympus is not in the image"),
    ('[image]\nuser = "ghost"\n', 2, "[image] user ghost does not exist in the image"),
    ('[customize]\ncommands = ["false"]\n', 6, "the customize command 'false' failed (exit status 1)"),
])
@needs_root()
def test_bad_customization_is_one_sentence(custom_repo, tmp_path, customize, exit_code, message):
    recipe = write_recipe(tmp_path, custom_repo["repo"], variant="essential", include=("passwd", "tzdata"),
                          keyring=custom_repo["keyring"], extra=customize)
    p = rootfs("make", recipe, "--mirror", custom_repo["url"], "-f", "tar", "-o", tmp_path / "img.tar",
               "--cache-dir", tmp_path / "c")
    assert p.returncode == exit_code, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("rootfs: error:")]
    assert len(errors) == 1 and message in errors[0], p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "img.tar").exists()


def test_missing_recipe_file_is_refused_before_any_download(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('backend = "deb"\nsuite = "stable"\n[deb]\nmirror = "http://mirror.invalid/debian/"\n'
                      '[customize]\nfiles = [{ src = "nope", dest = "/etc/nope" }]\n')
    p = rootfs("make", recipe, "-o", tmp_path / "o", "--cache-dir", tmp_path / "c")
    assert p.returncode == 2 and f"{tmp_path}/nope does not exist" in p.stderr
    assert not (tmp_path / "c").exists()


def test_extract_mode_refuses_late_hooks(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('backend = "deb"\nsuite = "stable"\n[deb]\nmirror = "http://127.0.0.1:9/"\nkeyring = ""\n')
    from rootfs.backends import Mode
    from rootfs.backends.deb.install import check_points
    from rootfs.model.customize import Customize

    with pytest.raises(UsageError, match="--mode extract runs no customize hooks"):
        check_points(Customize(hooks=(Hook("customize", "true", str(tmp_path)),)), Mode.EXTRACT)
    check_points(Customize(hooks=(Hook("setup", "true", str(tmp_path)),)), Mode.EXTRACT)


# -- local package files ------------------------------------------------------------------

@needs_root()
def test_include_takes_a_local_package_file_recorded_by_sha256(custom_repo, tmp_path):
    local = build_deb(Pkg("localtool", "9.9", files={"usr/bin/localtool": File(b"#!/bin/sh\necho local\n", 0o755),
                                                      "var/lib/localtool": Dir()}), tmp_path / "debs")
    recipe = write_recipe(tmp_path, custom_repo["repo"], variant="essential", keyring=custom_repo["keyring"])
    out = tmp_path / "img"
    p = rootfs("make", recipe, "--mirror", custom_repo["url"], "-f", "dir", "-o", out, "--cache-dir", tmp_path / "c",
               "--include", f"./debs/{local.name}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lock = json.loads((tmp_path / "img.lock.json").read_text())
    entry = next(x for x in lock["packages"] if x["name"] == "localtool")
    assert entry["url"] == f"file://{local}" and entry["sha256"] == sha256(local)
    assert entry["size"] == local.stat().st_size
    assert (out / "usr/bin/localtool").read_text() == "#!/bin/sh\necho local\n"
    status = subprocess.run(["dpkg-query", f"--admindir={out}/var/lib/dpkg", "-W", "-f", "${Status} ${Version}",
                             "localtool"], capture_output=True, text=True).stdout
    assert status == "install ok installed 9.9"


# -- the rpm backend's points ----------------------------------------------------------

@needs_root()
@needs_tool("rpmbuild", "createrepo_c")
def test_rpm_hooks_run_at_setup_extract_and_customize(tmp_path_factory, tmp_path):
    import rpmrepo

    built = rpmrepo.built_once(tmp_path_factory)
    repo = rpmrepo.make_repo(tmp_path / "repo", built.scripted)
    recipe = tmp_path / "fx.toml"
    recipe.write_text(f'backend = "rpm"\ndistribution = "fixture"\narchitecture = "x86_64"\n[rpm]\n'
                      f'repos = ["{repo.as_uri()}"]\npackages = ["fx-scripted"]\n')
    (tmp_path / "note").write_text("note\n")
    out = tmp_path / "out"
    common = ["make", recipe, "-f", "dir", "--cache-dir", tmp_path / "c", "--no-sbom", "--no-check-gpg"]
    p = rootfs(*common, "-o", out, "--setup-hook", 'echo "$MMDEBSTRAP_HOOK" > "$1/setup-mark"',
               "--extract-hook", 'cp "$1/var/lib/fx/trace" "$1/trace-at-extract"',
               "--customize-hook", 'chroot "$1" /bin/sh -c "echo custom > /custom-mark"',
               "--customize-hook", "upload note /note", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (out / "setup-mark").read_text() == "setup\n"
    at_extract = (out / "trace-at-extract").read_text().splitlines()
    assert "posttrans" not in at_extract and "posttrans" in (out / "var/lib/fx/trace").read_text().splitlines()
    assert (out / "custom-mark").read_text() == "custom\n"
    assert (out / "note").read_text() == "note\n"
    q = rootfs(*common, "-o", tmp_path / "out2", "--essential-hook", "true", cwd=tmp_path)
    assert q.returncode == 2 and "rpm installs have no essential point" in q.stderr


@needs_root()
def test_a_changed_customize_entry_rebuilds_and_an_unchanged_one_does_not(custom_repo, tmp_path):
    def make(command: str) -> dict:
        recipe = write_recipe(tmp_path, custom_repo["repo"], variant="essential", keyring=custom_repo["keyring"],
                              extra=f'[customize]\ncommands = ["{command}"]\n')
        p = rootfs("make", recipe, "--mirror", custom_repo["url"], "-f", "tar", "-o", tmp_path / "img.tar",
                   "--cache-dir", tmp_path / "c", "--json")
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    assert make("echo 1 > /etc/x")["outcome"] == "built"
    assert make("echo 1 > /etc/x")["outcome"] == "up-to-date"
    again = make("echo 2 > /etc/x")
    assert again["outcome"] == "built" and again["reason"] == "the customization (hooks, [customize]) changed"
