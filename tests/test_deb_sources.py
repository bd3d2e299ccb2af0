"""Several apt sources on hermetic signed repositories served on 127.0.0.1:
each verified with its own key, apt's choice among them (checked against
apt itself on the same repositories), the image's own sources, the lock's
record of where each package came from, and the errors users can cause."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aptpolicy import AptSource, apt_candidates, have_apt
from conftest import make_gpg_key
from debrepo import Pkg, Symlink, build_repo, copy_repo, write_recipe

ROOTFS = [sys.executable, "-m", "rootfs.cli"]
needs_apt = pytest.mark.skipif(not have_apt(), reason="apt-get is not installed")

BASE = [
    Pkg("base-files", version="12.4", priority="required", essential=True, files={"etc/debian_version": b"12.4\n"}),
    Pkg("dash", version="0.5.12-2", priority="required", essential=True, pre_depends="libc6 (>= 2.34)"),
    Pkg("libc6", version="2.36-9", priority="required", multi_arch="same", source="glibc"),
    Pkg("apt", version="2.6.1", priority="important", depends="libapt (>= 2.6), gpgv"),
    Pkg("libapt", version="2.6.1", source="apt"),
    Pkg("gpgv", version="2.2.40"),
    Pkg("hello", version="1.0", depends="libc6"),
    Pkg("libfoo", version="1.0"),
    Pkg("tool", version="1.0", depends="libc6 (>= 2.36)"),
]
SECURITY = [
    Pkg("libc6", version="2.36-9+deb12u1", priority="required", multi_arch="same", source="glibc"),
    Pkg("tool", version="1.1", depends="libc6 (>= 2.36-9+deb12u1)"),
    Pkg("newtool", version="1.0"),
]
BACKPORTS = [
    Pkg("libc6", version="2.40-1~bpo12+1", priority="required", multi_arch="same", source="glibc"),
    Pkg("hello", version="2.0~bpo12+1", depends="libfoo (>= 2)"),
    Pkg("libfoo", version="2.0~bpo12+1"),
    Pkg("bpo-only", version="1.0~bpo12+1"),
]
NAMES = sorted({p.name for p in BASE + SECURITY + BACKPORTS})
MINBASE = ["apt", "base-files", "dash", "gpgv", "libapt", "libc6"]


@pytest.fixture(scope="session")
def repos(tmp_path_factory, gpg_key, other_gpg_key):
    """base (signed by gpg_key), security and backports (other_gpg_key)
    under one directory; backports says NotAutomatic and
    ButAutomaticUpgrades, as Debian's does."""
    top = tmp_path_factory.mktemp("sources")
    build_repo(top / "base", BASE, key=gpg_key, suite="stable")
    build_repo(top / "security", SECURITY, key=other_gpg_key, suite="stable-security", label="Rootfs-Security")
    build_repo(top / "backports", BACKPORTS, key=other_gpg_key, suite="stable-backports",
               release_fields={"NotAutomatic": "yes", "ButAutomaticUpgrades": "yes"})
    return top


class Env:
    def __init__(self, tmp: Path, top: Path, url: str, gpg_key, other_gpg_key):
        self.tmp, self.top, self.url = tmp, top, url
        self.key_a, self.key_b = gpg_key.keyring, other_gpg_key.keyring

    @property
    def base(self) -> str:
        return f"{self.url}/base/"

    @property
    def security(self) -> str:
        return f"{self.url}/security/"

    @property
    def backports(self) -> str:
        return f"{self.url}/backports/"

    def recipe(self, *, security_key=None, security_priority=None, sources_format="list", name="multi",
               extra_deb="") -> Path:
        """A recipe like the Debian ones: the mirror's suite, then the
        security mirror's (an update suite), signed by another key."""
        pri = f"priority = {security_priority}\n" if security_priority is not None else ""
        extra = (f'sources_format = "{sources_format}"\n{extra_deb}'
                 '[[deb.sources]]\nuris = ["@mirror"]\nsuites = ["stable"]\n\n'
                 '[[deb.sources]]\nuris = ["@security-mirror"]\nsuites = ["stable-security"]\n'
                 f'signed_by = "{security_key or self.key_b}"\nupdates = true\n{pri}')
        repo = build_repo_stub(self.top / "base")
        return write_recipe(self.tmp, repo, name=name, extra=extra, keyring=self.key_a)

    def backports_source(self) -> str:
        return f"deb [signed-by={self.key_b}] {self.backports} stable-backports main"

    def run(self, *args, recipe=None, cmd="resolve") -> subprocess.CompletedProcess:
        recipe = recipe or self.recipe()
        security = [] if "--no-updates" in args else ["--security-mirror", self.security]
        argv = [*ROOTFS, cmd, str(recipe), "--mirror", self.base, *security, *map(str, args)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=300)

    def lock(self, *args, recipe=None) -> dict:
        out = self.tmp / "lock.json"
        p = self.run(*args, "--lock", out, recipe=recipe)
        assert p.returncode == 0, p.stderr
        return json.loads(out.read_text())


def build_repo_stub(path: Path):
    """The Repo fields write_recipe needs, for a repository already built."""
    from debrepo import Repo

    return Repo(path, "stable", "stable", None, ("main",), ("amd64",))


@pytest.fixture
def env(tmp_path, repos, http_serve, gpg_key, other_gpg_key):
    server = http_serve(repos)
    return Env(tmp_path, repos, server.url, gpg_key, other_gpg_key)


def said(p: subprocess.CompletedProcess) -> str:
    """Standard error with its line breaks undone (messages may be wrapped)."""
    return " ".join(p.stderr.split())


def versions(lock: dict) -> dict[str, str]:
    return {p["name"]: p["version"] for p in lock["packages"]}


def origins(lock: dict) -> dict[str, str]:
    return {p["name"]: p["repository"] for p in lock["packages"]}


def apt_says(env: Env, names, *, backports=False, pins=()) -> dict[str, str | None]:
    sources = [AptSource(env.base, "stable", ("main",), env.key_a),
               AptSource(env.security, "stable-security", ("main",), env.key_b)]
    if backports:
        sources.append(AptSource(env.backports, "stable-backports", ("main",), env.key_b))
    return apt_candidates(env.tmp, sources, list(names), pins=list(pins))


# -- choice among sources ------------------------------------------------------


@needs_apt
def test_each_source_has_its_own_key_and_the_newer_version_wins_as_with_apt(env):
    lock = env.lock("--include", "hello,tool")
    assert sorted(versions(lock)) == sorted(MINBASE + ["hello", "tool"])
    assert versions(lock)["libc6"] == "2.36-9+deb12u1" and versions(lock)["tool"] == "1.1"
    assert [(s["url"], s["suite"], s["keyring"], s["role"]) for s in lock["sources"]] == [
        (env.base, "stable", str(env.key_a), "mirror"),
        (env.security, "stable-security", str(env.key_b), "security-mirror"),
    ]
    assert origins(lock)["libc6"] == f"{env.security} stable-security"
    assert origins(lock)["dash"] == f"{env.base} stable"
    for p in lock["packages"]:
        assert p["url"].startswith(p["repository"].split()[0] + "pool/")
    theirs = apt_says(env, versions(lock))
    assert versions(lock) == theirs


def test_a_package_only_the_second_source_has(env):
    lock = env.lock("--include", "newtool")
    assert versions(lock)["newtool"] == "1.0"
    assert origins(lock)["newtool"] == f"{env.security} stable-security"


@needs_apt
def test_notautomatic_backports_are_not_chosen_unless_asked_for(env):
    lock = env.lock("--source", env.backports_source(), "--include", "hello,libfoo,bpo-only")
    ours = versions(lock)
    # backports' newer libc6, hello and libfoo stay where they are; a
    # package only backports has is its own candidate (priority 100 > 0)
    assert (ours["libc6"], ours["hello"], ours["libfoo"], ours["bpo-only"]) == (
        "2.36-9+deb12u1", "1.0", "1.0", "1.0~bpo12+1")
    assert ours == apt_says(env, ours, backports=True)
    assert {n: c for n, c in apt_says(env, NAMES, backports=True).items() if c} == {
        n: versions(env.lock("--source", env.backports_source(), "--include", n))[n] for n in NAMES}


def test_pkg_slash_suite_takes_the_suite_and_what_it_needs_from_there(env):
    p = env.run("--source", env.backports_source(), "--include", "hello/stable-backports", "--lock", env.tmp / "l")
    assert p.returncode == 0, p.stderr
    ours = versions(json.loads((env.tmp / "l").read_text()))
    assert (ours["hello"], ours["libfoo"], ours["libc6"]) == ("2.0~bpo12+1", "2.0~bpo12+1", "2.36-9+deb12u1")
    # apt's own words for the switch it makes for a dependency
    assert "Selected version 2.0~bpo12+1 (stable-backports) for libfoo because of hello" in said(p)


def test_pkg_equals_version_takes_that_version_alone(env):
    lock = env.lock("--source", env.backports_source(), "--include", "hello=2.0~bpo12+1,libfoo=2.0~bpo12+1")
    assert (versions(lock)["hello"], versions(lock)["libfoo"]) == ("2.0~bpo12+1", "2.0~bpo12+1")
    # pkg=version changes that package's candidate only, as apt: libfoo's
    # candidate 1.0 does not meet hello 2.0's Depends
    p = env.run("--source", env.backports_source(), "--include", "hello=2.0~bpo12+1")
    assert p.returncode == 3
    assert 'cannot satisfy "libfoo (>= 2)" needed by hello' in p.stderr
    assert f"the candidate is libfoo 1.0 (from {env.base} stable, priority 500)" in p.stderr
    p = env.run("--include", "hello=9.9")
    assert p.returncode == 3 and "version 9.9 of hello was not found (the sources have 1.0)" in p.stderr
    p = env.run("--include", "hello/nosuch")
    assert p.returncode == 3 and "release 'nosuch' for hello was not found" in p.stderr


@needs_apt
def test_a_lower_priority_pins_the_older_version_as_with_apt(env):
    recipe = env.recipe(security_priority=100)
    lock = env.lock("--include", "tool,newtool", recipe=recipe)
    ours = versions(lock)
    assert (ours["libc6"], ours["tool"], ours["newtool"]) == ("2.36-9", "1.0", "1.0")
    assert lock["sources"][1]["priority"] == 100 and lock["sources"][0]["priority"] == 0
    # apt, given the pin the image carries for it, chooses the same
    import re

    from rootfs.backends.deb import apt_sources
    from rootfs.model.lock import lock_from_json

    pins = [(expr, int(prio)) for expr, prio in re.findall(r"Pin: release (.*)\nPin-Priority: (-?\d+)",
                                                           apt_sources.preferences(lock_from_json(json.dumps(lock))))]
    assert pins == [("n=stable-security,o=Rootfs Test,l=Rootfs-Security", 100)]
    assert ours == apt_says(env, ours, pins=pins)


def test_a_negative_priority_never_gives_a_candidate(env):
    p = env.run("--include", "newtool", recipe=env.recipe(security_priority=-1))
    assert p.returncode == 3
    assert 'cannot satisfy "newtool" needed by (requested): no source offers it at a priority above 0' in p.stderr


def test_no_updates_builds_the_release_as_it_shipped(env):
    lock = env.lock("--no-updates", "--include", "tool")
    assert versions(lock)["libc6"] == "2.36-9" and versions(lock)["tool"] == "1.0"
    assert [s["suite"] for s in lock["sources"]] == ["stable"]
    p = env.run("--include", "tool", "--lock", env.tmp / "l2", recipe=env.recipe(extra_deb="updates = false\n"))
    assert p.returncode == 0, p.stderr
    assert json.loads((env.tmp / "l2").read_text())["sources"] == lock["sources"]


# -- verification per source ---------------------------------------------------


def test_a_wrong_key_on_one_source_is_refused_naming_that_source(env):
    p = env.run(recipe=env.recipe(security_key=env.key_a))
    assert p.returncode == 4, p.stderr
    assert f"{env.security}dists/stable-security/InRelease is signed by a key that is not in the keyring" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_one_good_signature_from_the_keyring_suffices(env, tmp_path, gpg_key, other_gpg_key):
    """An InRelease signed by two keys, one of them in the keyring, is
    accepted as apt accepts it; a keyring directory holding .asc and
    .gpg files is one keyring; a changed InRelease still fails."""
    repo = copy_repo(build_repo_stub(env.top / "base"), tmp_path / "double")
    release = repo.path / "dists/stable/Release"
    home = tmp_path / "both"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--yes", "--homedir", str(home), "--pinentry-mode", "loopback", "--passphrase", ""]
    for key in (gpg_key, other_gpg_key):
        secret = subprocess.run(["gpg", "--batch", "--homedir", str(key.home), "--pinentry-mode", "loopback",
                                 "--passphrase", "", "--export-secret-keys", key.fingerprint],
                                capture_output=True, check=True).stdout
        subprocess.run([*gpg, "--import"], input=secret, capture_output=True, check=True)
    (repo.path / "dists/stable/InRelease").unlink()
    subprocess.run([*gpg, "--digest-algo", "SHA256", "-u", gpg_key.fingerprint, "-u", other_gpg_key.fingerprint,
                    "--clearsign", "-o", str(repo.path / "dists/stable/InRelease"), str(release)],
                   capture_output=True, check=True)
    keydir = tmp_path / "trusted.gpg.d"
    keydir.mkdir()
    shutil.copy(other_gpg_key.armored, keydir / "other.asc")
    unrelated = make_gpg_key(tmp_path / "unrelated", "unrelated")
    shutil.copy(unrelated.keyring, keydir / "unrelated.gpg")
    from conftest import serve_directory

    server = serve_directory(repo.path)
    try:
        for keyring in (gpg_key.keyring, other_gpg_key.armored, keydir):
            p = subprocess.run([*ROOTFS, "resolve", str(write_recipe(tmp_path, repo)), "--mirror", server.url,
                                "--keyring", str(keyring)], capture_output=True, text=True)
            assert p.returncode == 0, (keyring, p.stderr)
            assert p.stdout.split()[0] == "apt"
        only_unrelated = tmp_path / "unrelated.d"
        only_unrelated.mkdir()
        shutil.copy(unrelated.keyring, only_unrelated / "u.gpg")
        p = subprocess.run([*ROOTFS, "resolve", str(write_recipe(tmp_path, repo)), "--mirror", server.url,
                            "--keyring", str(only_unrelated)], capture_output=True, text=True)
        assert p.returncode == 4 and "signed by a key that is not in the keyring" in p.stderr
        inrelease = repo.path / "dists/stable/InRelease"
        inrelease.write_bytes(inrelease.read_bytes().replace(b"Suite: stable", b"Suite: stablE"))
        p = subprocess.run([*ROOTFS, "resolve", str(write_recipe(tmp_path, repo)), "--mirror", server.url,
                            "--keyring", str(keydir)], capture_output=True, text=True)
        assert p.returncode == 4 and "bad signature" in p.stderr
        empty = tmp_path / "empty.d"
        empty.mkdir()
        p = subprocess.run([*ROOTFS, "resolve", str(write_recipe(tmp_path, repo)), "--mirror", server.url,
                            "--keyring", str(empty)], capture_output=True, text=True)
        assert p.returncode == 2 and f"keyring directory {empty} holds no .gpg or .asc key files" in p.stderr
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


# -- bad input -------------------------------------------------------------------


def test_a_suite_the_source_does_not_have(env):
    p = env.run("--source", f"deb [signed-by={env.key_b}] {env.backports} nosuch main")
    assert p.returncode == 3, p.stderr
    assert p.stderr.strip() == f"rootfs: error: the mirror {env.backports} has no suite nosuch"


# rootfs with the Downloader's retries off, so that an unreachable mirror
# fails at once instead of after its back-off (the sentence is the same).
NO_RETRIES = [sys.executable, "-c",
              "import runpy, sys, rootfs.net.fetch as f; init = f.Downloader.__init__; "
              "f.Downloader.__init__ = lambda self, **k: init(self, **{'retries': 0, **k}); "
              "runpy.run_module('rootfs.cli', run_name='__main__')"]


def test_an_unreachable_security_mirror_leaves_nothing(env, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    out = tmp_path / "out.tar"
    argv = [*NO_RETRIES, "make", str(env.recipe()), "--mirror", env.base, "--security-mirror",
            f"http://127.0.0.1:{port}/security/", "-f", "tar", "-o", str(out), "--cache-dir", str(tmp_path / "c")]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert p.returncode == 5, p.stderr
    assert p.stderr.startswith(f"rootfs: error: cannot reach the mirror http://127.0.0.1:{port}/security/")
    assert len(p.stderr.strip().splitlines()) == 1
    assert sorted(x.name for x in tmp_path.iterdir() if x.name != "multi.toml") == [], list(tmp_path.iterdir())


@pytest.mark.parametrize("args,words", [
    (["--mirror", "http://a.invalid/", "--mirror", "http://b.invalid/"], "--mirror names the distribution's mirror once"),
    (["--no-updates", "--security-mirror", "http://a.invalid/"], "--no-updates leaves out the security suites"),
    (["--include", "hello", "--exclude", "hello"], "hello is both included and excluded"),
    (["--include", "hello=1.0", "--include", "hello/stable"], "hello is asked for twice, as hello=1.0 and as hello/stable"),
    (["--variant", "standard"], "variant 'standard': mmdebstrap's standard variant"),
    (["--variant", "custom"], "variant 'custom': mmdebstrap's custom variant"),
    (["--source", "deb [trusted=yes] http://a.invalid/ stable main"], "trusted=yes (no signature check) is not accepted"),
    (["--source", "Types: deb\nURIs: http://a.invalid/\nSuites: stable\nSigned-By: 0123456789ABCDEF"],
     "Signed-By by fingerprint is not supported"),
    (["--source", "nonsense"], "not an apt source line"),
    (["--source", "/nonexistent/extra.list"], "--source /nonexistent/extra.list: cannot read it"),
    (["--image-mirror", "ftp://a.invalid/"], "--image-mirror 'ftp://a.invalid/' is not an http://"),
], ids=lambda v: v[0] if isinstance(v, list) else "")
def test_contradictory_or_unreadable_options(env, args, words):
    p = subprocess.run([*ROOTFS, "lock" if "--image-mirror" in args else "resolve", str(env.recipe()), *args,
                        *(["-o", str(env.tmp / "x.lock")] if "--image-mirror" in args else [])],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert words in p.stderr and p.stderr.startswith("rootfs: error:") and len(p.stderr.strip().splitlines()) == 1


def test_mmdebstrap_variant_names_that_mean_our_sets(env):
    assert versions(env.lock("--variant", "required")) == versions(env.lock("--variant", "minbase"))
    default = versions(env.lock("--variant", "default"))
    for name in ("important", "debootstrap", "-"):
        assert versions(env.lock("--variant", name)) == default
    assert env.lock("--variant", "required")["variant"] == "minbase"


# -- the image's own sources ---------------------------------------------------


def make_extract(env: Env, out: Path, *args, recipe=None) -> subprocess.CompletedProcess:
    return env.run("--mode", "extract", "-f", "dir", "-o", out, "--cache-dir", env.tmp / "cache", *args,
                   recipe=recipe, cmd="make")


def test_image_sources_deb822_name_every_source_and_the_image_mirror(env, tmp_path):
    out = tmp_path / "root"
    recipe = env.recipe(sources_format="deb822", security_priority=990)
    p = make_extract(env, out, "--source", env.backports_source(), "--image-mirror", "http://mirror.invalid/debian",
                     recipe=recipe)
    assert p.returncode == 0, p.stderr
    # The test keyrings are not in the image, so no Signed-By names them
    # (apt would refuse a source whose keyring is missing).
    assert (out / "etc/apt/sources.list.d/debian.sources").read_text() == (
        "Types: deb\nURIs: http://mirror.invalid/debian/\nSuites: stable\nComponents: main\n\n"
        f"Types: deb\nURIs: {env.security}\nSuites: stable-security\nComponents: main\n\n"
        f"Types: deb\nURIs: {env.backports}\nSuites: stable-backports\nComponents: main\n")
    assert not (out / "etc/apt/sources.list").exists()
    assert (out / "etc/apt/preferences.d/rootfs.pref").read_text() == (
        f"Explanation: {env.security} stable-security\nPackage: *\n"
        "Pin: release n=stable-security,o=Rootfs Test,l=Rootfs-Security\nPin-Priority: 990\n")
    lock = json.loads((out.parent / "root.lock.json").read_text())
    assert lock["sources"][0]["image_url"] == "http://mirror.invalid/debian/"
    assert lock["sources_format"] == "deb822"


def test_image_sources_as_lines_for_older_releases(env, tmp_path):
    out = tmp_path / "root"
    p = make_extract(env, out, "--image-security-mirror", "http://security.invalid/debian-security")
    assert p.returncode == 0, p.stderr
    assert (out / "etc/apt/sources.list").read_text() == (
        f"deb {env.base} stable main\ndeb http://security.invalid/debian-security/ stable-security main\n")
    assert not (out / "etc/apt/preferences.d/rootfs.pref").exists()


def test_signed_by_only_for_keyrings_the_image_holds():
    from rootfs.backends.deb import apt_sources
    from rootfs.model.lock import Lock, LockSource

    k = "/usr/share/keyrings/debian-archive-keyring.gpg"
    lock = Lock(backend="deb", recipe="r", distribution="debian", suite="bookworm", architecture="amd64",
                components=("main",), sources_format="deb822", sources=(
                    LockSource("http://m.invalid/debian/", "bookworm", keyring=k),
                    LockSource("http://m.invalid/debian/", "bookworm-updates", keyring=k),
                    LockSource("http://s.invalid/debian-security/", "bookworm-security", keyring=k,
                               components=("main", "contrib")),
                    LockSource("http://x.invalid/", "x", keyring="/tmp/host-only.gpg")))
    text = apt_sources.render(lock, lambda p: p == k.lstrip("/"))
    assert text == (
        "Types: deb\nURIs: http://m.invalid/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n"
        f"Signed-By: {k}\n\n"
        "Types: deb\nURIs: http://s.invalid/debian-security/\nSuites: bookworm-security\nComponents: main contrib\n"
        f"Signed-By: {k}\n\n"
        "Types: deb\nURIs: http://x.invalid/\nSuites: x\nComponents: main\n")
    one = apt_sources.render(lock.__class__(**{**lock.__dict__, "sources_format": "list"}), lambda p: True)
    assert one.splitlines()[0] == f"deb [signed-by={k}] http://m.invalid/debian/ bookworm main"
    assert apt_sources.sources_path(lock) == "etc/apt/sources.list.d/debian.sources"


# -- the lock, --locked and the report ------------------------------------------


def test_locked_build_fetches_from_the_sources_given_now(env, tmp_path, http_serve):
    lockfile = tmp_path / "pinned.lock"
    p = env.run("--include", "tool", "-o", lockfile, cmd="lock")
    assert p.returncode == 0, p.stderr
    # A second copy of both repositories, elsewhere: the lock names the first.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(env.top, elsewhere, symlinks=True)
    server = http_serve(elsewhere)
    out = tmp_path / "root"
    argv = [*ROOTFS, "make", str(env.recipe()), "--locked", str(lockfile), "--mirror", f"{server.url}/base/",
            "--security-mirror", f"{server.url}/security/", "--mode", "extract", "-f", "dir", "-o", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--report", str(tmp_path / "report.json")]
    # The first server answers nothing any more for pool/ files.
    for pool in env.top.glob("*/pool"):
        pool.rename(pool.with_name("pool.gone"))
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        assert f"fetching the locked packages from {server.url}/base/, {server.url}/security/" in said(p)
        assert (out / "usr/share/doc").exists() or (out / "var/lib/dpkg/status").exists()
        # every file is still checked against the lock's sha256
        shutil.rmtree(tmp_path / "cache")
        deb = next((elsewhere / "security/pool").rglob("tool_*.deb"))
        deb.write_bytes(deb.read_bytes()[:-1] + b"X")
        p = subprocess.run(argv + ["--force"], capture_output=True, text=True, timeout=300)
        assert p.returncode == 4, p.stderr
    finally:
        for pool in env.top.glob("*/pool.gone"):
            pool.rename(pool.with_name("pool"))


def test_a_format_1_lock_still_builds(env, tmp_path):
    lock = env.lock("--no-updates")
    one = dict(lock, format=1, sources=[{k: lock["sources"][0][k] for k in ("url", "suite", "metadata", "sha256", "date")}],
               packages=[{k: v for k, v in p.items() if k != "repository"} for p in lock["packages"]])
    one.pop("sources_format")
    old = tmp_path / "old.lock"
    old.write_text(json.dumps(one))
    out = tmp_path / "root"
    p = subprocess.run([*ROOTFS, "make", str(env.recipe()), "--locked", str(old), "--mode", "extract", "-f", "dir",
                        "-o", str(out), "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (out / "etc/apt/sources.list").read_text() == f"deb {env.base} stable main\n"
    assert json.loads((out.parent / "root.lock.json").read_text())["format"] == 2


def test_the_report_says_what_changed_and_where_it_came_from(env, tmp_path):
    out = tmp_path / "root"
    p = make_extract(env, out, "--no-updates", "--include", "tool")
    assert p.returncode == 0, p.stderr
    p = make_extract(env, out, "--include", "tool,newtool")
    assert p.returncode == 0, p.stderr
    report = json.loads((out.parent / "root.build.json").read_text())
    changes = report["changes"]
    assert changes["changed"] == ["libc6:amd64 2.36-9 -> 2.36-9+deb12u1", "tool:amd64 1.0 -> 1.1"]
    assert changes["added"] == ["newtool:amd64 1.0"]
    assert changes["sources"] == {k: f"{env.security} stable-security"
                                  for k in ("libc6:amd64", "newtool:amd64", "tool:amd64")}
    summary = "2 security updates: libc6 2.36-9+deb12u1, tool 1.1; 1 added: newtool 1.0"
    assert changes["summary"] == summary
    assert f"multi: {summary}" in said(p)


# -- the sources' own syntax -------------------------------------------------------


def test_source_forms_apt_and_mmdebstrap_accept(tmp_path):
    from rootfs.backends.deb.sources import parse_source_option

    one = parse_source_option("deb [arch=amd64 signed-by=/k.gpg] http://a.invalid/debian bookworm main contrib")
    assert [(s.uris, s.suites, s.components, s.signed_by, s.architectures) for s in one] == [
        (("http://a.invalid/debian",), ("bookworm",), ("main", "contrib"), "/k.gpg", ("amd64",))]
    stanza = parse_source_option("Types: deb deb-src\nURIs: http://a.invalid/d http://b.invalid/d\n"
                                 "Suites: s1 s2\nComponents: main\nSigned-By: /k.gpg\nPriority: 100\n")
    assert [(s.uris, s.suites, s.priority) for s in stanza] == [
        (("http://a.invalid/d", "http://b.invalid/d"), ("s1", "s2"), 100)]
    (tmp_path / "x.list").write_text("# comment\ndeb-src http://a.invalid/ s main\ndeb http://a.invalid/ s main\n")
    (tmp_path / "x.sources").write_text("Types: deb\nURIs: http://a.invalid/\nSuites: s\nComponents: main\n\n"
                                        "Types: deb\nEnabled: no\nURIs: http://b.invalid/\nSuites: s\n")
    assert [s.uris for s in parse_source_option(str(tmp_path / "x.list"))] == [("http://a.invalid/",)]
    assert [s.uris for s in parse_source_option(str(tmp_path / "x.sources"))] == [("http://a.invalid/",)]


def test_unchanged_indices_come_from_the_cache_checked(env, tmp_path, http_serve):
    """The uncompressed index is kept in the package cache by the SHA256
    its signed Release lists: a second resolve needs only the InRelease;
    a damaged entry is dropped and the index fetched again."""
    from rootfs.backends import ResolveOptions
    from rootfs.backends.deb.resolve import resolve
    from rootfs.model.recipe import load_recipe
    from rootfs.net.cache import Cache
    from rootfs.net.fetch import Downloader

    top = tmp_path / "served"
    shutil.copytree(env.top, top, symlinks=True)
    server = http_serve(top)
    recipe = load_recipe(str(env.recipe())).with_settings(mirror=f"{server.url}/base/",
                                                          security_mirror=f"{server.url}/security/")
    opts = ResolveOptions(cache_dir=tmp_path / "cache")
    first = resolve(recipe, opts, Downloader(retries=0))
    entries = sorted(e.sha256 for e in Cache(tmp_path / "cache").entries())
    assert len(entries) == 2  # main/binary-amd64/Packages of each source
    for index in top.glob("*/dists/*/main/binary-amd64/Packages*"):
        index.unlink()
    assert resolve(recipe, opts, Downloader(retries=0)).packages == first.packages
    cached = Cache(tmp_path / "cache").path(entries[0])
    cached.write_bytes(cached.read_bytes() + b"\n")
    with pytest.raises(Exception, match="lacks .*Packages in every form"):
        resolve(recipe, opts, Downloader(retries=0))
    assert not cached.exists()


def test_signed_by_names_a_keyring_the_image_holds_through_a_link(tmp_path, gpg_key, http_serve):
    """As trixie's debian-archive-keyring.gpg, a link to its .pgp: the
    image's sources name it with Signed-By."""
    keyring = tmp_path / "keys" / "test-archive-keyring.gpg"
    keyring.parent.mkdir()
    shutil.copy(gpg_key.keyring, keyring)
    inside = str(keyring.parent).lstrip("/")
    pkgs = [Pkg("base-files", version="1", priority="required", essential=True,
                files={f"{inside}/test-archive-keyring.pgp": gpg_key.keyring.read_bytes(),
                       f"{inside}/test-archive-keyring.gpg": Symlink("test-archive-keyring.pgp")})]
    repo = build_repo(tmp_path / "repo", pkgs, key=gpg_key, suite="stable")
    server = http_serve(repo.path)
    recipe = write_recipe(tmp_path, repo, variant="essential", keyring=keyring,
                          extra='sources_format = "deb822"\n')
    out = tmp_path / "root"
    p = subprocess.run([*ROOTFS, "make", str(recipe), "--mirror", server.url, "--mode", "extract", "-f", "dir",
                        "-o", str(out), "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (out / "etc/apt/sources.list.d/debian.sources").read_text() == (
        f"Types: deb\nURIs: {server.url}/\nSuites: stable\nComponents: main\nSigned-By: {keyring}\n")


@pytest.mark.parametrize("table,words", [
    ('uris = ["@mirror"]\nsuites = ["s"]\nmirror = "x"\n', "unknown key 'mirror'"),
    ('uris = ["@mirror"]\n', "a source needs 'suites'"),
    ('uris = ["@elsewhere"]\nsuites = ["s"]\n', "'@elsewhere' is not an http://, https:// or file:// URL"),
    ('uris = ["@mirror"]\nsuites = ["s"]\npriority = 0\n', "priority 0 is not a pin apt accepts"),
    ('uris = ["@mirror"]\nsuites = ["s"]\npriority = 40000\n', "outside apt's range"),
    ('uris = ["@mirror"]\nsuites = ["./"]\n', "flat repositories"),
])
def test_recipe_sources_are_checked_with_the_key_named(table, words):
    from rootfs.model.errors import UsageError
    from rootfs.model.recipe import parse_recipe

    text = f'backend = "deb"\nsuite = "s"\n[deb]\n[[deb.sources]]\n{table}'
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_recipe(text, "r")
    with pytest.raises(UsageError, match="must be an array of tables"):
        parse_recipe('backend = "deb"\nsuite = "s"\n[deb]\nsources = ["x"]\n', "r")
