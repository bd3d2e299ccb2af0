"""The deb repository layer through the CLI, on signed repositories built by
tests/debrepo.py and served on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import lzma
import shutil
import socket

import pytest
from debrepo import EPOCH, Pkg, build_repo, build_trusty_repo, copy_repo, write_recipe
from typer.testing import CliRunner

from rootfs.cli import app

MINBASE = ["apt", "base-files", "dash", "gpgv", "libapt", "libc6", "mawk"]


def packages() -> list[Pkg]:
    return [
        Pkg("base-files", version="12.4", priority="required", essential=True,
            files={"etc/debian_version": b"12.4\n"}),
        Pkg("dash", version="0.5.12-2", priority="required", essential=True, pre_depends="libc6 (>= 2.34)",
            files={"usr/bin/dash": b"#!fake\n"}),
        Pkg("libc6", version="2.36-9", multi_arch="same", source="glibc"),
        Pkg("mawk", version="1.3.4", priority="required", provides="awk"),
        Pkg("apt", version="2.6.1", priority="important", depends="libapt (>= 2.6), gpgv | gpgv2"),
        Pkg("libapt", version="2.6.1", source="apt"),
        Pkg("gpgv", version="2.2.40"),
        Pkg("apt-doc", version="2.6.1", architecture="all", source="apt"),
        Pkg("hello", version="2.10", depends="libc6, hello-data"),
        Pkg("hello-data", version="2.10", architecture="all", source="hello"),
    ]


def run(*args: str):
    """(exit code, what it printed less the phase lines: package lines, warnings, the error)."""
    result = CliRunner().invoke(app, ["resolve", *args])
    return result.exit_code, "".join(x for x in result.output.splitlines(True) if not x.startswith("I: "))


@pytest.fixture(scope="session")
def signed_repo(tmp_path_factory, gpg_key):
    """One InRelease + Release.gpg repository for the tests that only read it."""
    return build_repo(tmp_path_factory.mktemp("debrepo") / "repo", packages(), key=gpg_key)


@pytest.fixture
def fresh(tmp_path, signed_repo):
    """A private copy of the signed repository, to tamper with."""
    return copy_repo(signed_repo, tmp_path / "repo")


def test_signed_repository_resolves_to_a_complete_lock(tmp_path, signed_repo, http_serve):
    server = http_serve(signed_repo.path)
    recipe = write_recipe(tmp_path, signed_repo)
    code, out = run(str(recipe), "--mirror", server.url)
    assert code == 0, out
    assert out.split("\n")[: len(MINBASE)] == [
        "apt 2.6.1 amd64", "base-files 12.4 amd64", "dash 0.5.12-2 amd64", "gpgv 2.2.40 amd64",
        "libapt 2.6.1 amd64", "libc6 2.36-9 amd64", "mawk 1.3.4 amd64",
    ]

    lockfile = tmp_path / "out.lock"
    code, out = run(str(recipe), "--mirror", server.url, "--lock", str(lockfile))
    assert code == 0, out
    lock = json.loads(lockfile.read_text())
    assert (lock["backend"], lock["suite"], lock["architecture"], lock["variant"]) == ("deb", "stable", "amd64", "minbase")
    assert lock["components"] == ["main"] and lock["merged_usr"] is True
    inrelease = (signed_repo.dists / "InRelease").read_bytes()
    assert lock["format"] == 2
    assert lock["sources"] == [{
        "url": server.url + "/", "suite": "stable", "metadata": "InRelease",
        "sha256": hashlib.sha256(inrelease).hexdigest(), "date": "Tue, 02 Jan 2024 03:04:05 UTC",
        "components": ["main"], "keyring": str(signed_repo.keyring), "priority": 0, "role": "mirror",
        "image_url": "", "origin": "Rootfs Test", "label": "Rootfs Test", "codename": "stable",
    }]
    assert lock["source_date_epoch"] == int(EPOCH.timestamp())
    by_name = {p["name"]: p for p in lock["packages"]}
    assert sorted(by_name) == MINBASE
    for name, p in by_name.items():
        deb = signed_repo.debs[name].read_bytes()
        assert p["url"] == server.url + "/" + str(signed_repo.debs[name].relative_to(signed_repo.path))
        assert (p["size"], p["sha256"]) == (len(deb), hashlib.sha256(deb).hexdigest())
    assert by_name["dash"]["depends"] == ["Pre-Depends: libc6 (>= 2.34)"]
    assert by_name["apt"]["depends"] == ["Depends: libapt (>= 2.6), gpgv | gpgv2"]
    assert by_name["dash"]["essential"] is True and by_name["dash"]["priority"] == "required"
    assert by_name["libapt"]["source"] == "apt" and by_name["apt"]["source"] == "apt"
    assert by_name["mawk"]["provides"] == ["awk"]
    assert {p["repository"] for p in lock["packages"]} == {f"{server.url}/ stable"}


def test_include_and_exclude_from_the_command_line(tmp_path, signed_repo, http_serve):
    server = http_serve(signed_repo.path)
    recipe = write_recipe(tmp_path, signed_repo)
    code, out = run(str(recipe), "--mirror", server.url, "--include", "hello", "--exclude", "gpgv")
    assert code == 0, out
    names = [line.split()[0] for line in out.splitlines() if line.count(" ") == 2]
    assert "hello" in names and "hello-data" in names and "gpgv" not in names
    assert "excluded" in out


def test_release_gpg_only_and_armoured_keyring(tmp_path, gpg_key, http_serve):
    repo = build_repo(tmp_path / "repo", packages(), key=gpg_key, sign="release.gpg")
    server = http_serve(repo.path)
    recipe = write_recipe(tmp_path, repo, keyring=gpg_key.armored)
    lockfile = tmp_path / "lock"
    code, out = run(str(recipe), "--mirror", server.url, "--lock", str(lockfile))
    assert code == 0, out
    source = json.loads(lockfile.read_text())["sources"][0]
    assert source["metadata"] == "Release"
    assert source["sha256"] == hashlib.sha256(repo.release.read_bytes()).hexdigest()


def test_changed_packages_file_is_refused_even_without_gpg(tmp_path, fresh, http_serve, monkeypatch):
    # An empty package cache: one holding the verified index would be used
    # instead of the changed download (rightly, but not what is tested).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    index = fresh.dists / "main" / "binary-amd64" / "Packages.xz"
    text = lzma.decompress(index.read_bytes()).replace(b"Version: 2.6.1", b"Version: 9.9.9")
    index.write_bytes(lzma.compress(text))
    server = http_serve(fresh.path)
    recipe = write_recipe(tmp_path, fresh)
    for extra in ([], ["--no-check-gpg"]):
        code, out = run(str(recipe), "--mirror", server.url, *extra)
        assert code == 4, out
        assert "main/binary-amd64/Packages.xz does not match the size and SHA256" in out


def test_signature_by_another_key_is_refused(tmp_path, gpg_key, other_gpg_key, http_serve):
    repo = build_repo(tmp_path / "repo", packages(), key=other_gpg_key)
    server = http_serve(repo.path)
    recipe = write_recipe(tmp_path, repo, keyring=gpg_key.keyring)
    code, out = run(str(recipe), "--mirror", server.url)
    assert code == 4, out
    assert "InRelease is signed by a key that is not in the keyring" in out
    code, out = run(str(recipe), "--mirror", server.url, "--no-check-gpg")
    assert code == 0, out
    assert "NOT checking the signature" in out and "apt 2.6.1 amd64" in out


def test_changed_inrelease_has_a_bad_signature(tmp_path, fresh, http_serve):
    inrelease = fresh.dists / "InRelease"
    inrelease.write_bytes(inrelease.read_bytes().replace(b"Label: Rootfs Test", b"Label: Rootfs Evil"))
    server = http_serve(fresh.path)
    code, out = run(str(write_recipe(tmp_path, fresh)), "--mirror", server.url)
    assert code == 4, out
    assert "bad signature" in out


def test_unsigned_repository_is_refused_unless_told(tmp_path, gpg_key, http_serve):
    repo = build_repo(tmp_path / "repo", packages(), key=None)
    server = http_serve(repo.path)
    recipe = write_recipe(tmp_path, repo, keyring=gpg_key.keyring)
    code, out = run(str(recipe), "--mirror", server.url)
    assert code == 4, out
    assert "Release is not signed (no InRelease, no Release.gpg)" in out
    code, out = run(str(recipe), "--mirror", server.url, "--no-check-gpg")
    assert code == 0, out
    assert "NOT checking the signature" in out and "mawk 1.3.4 amd64" in out


def test_expired_release_is_refused_unless_ignored(tmp_path, gpg_key, http_serve):
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
    repo = build_repo(tmp_path / "repo", packages(), key=gpg_key, valid_until=past)
    server = http_serve(repo.path)
    recipe = write_recipe(tmp_path, repo)
    code, out = run(str(recipe), "--mirror", server.url)
    assert code == 4, out
    assert "expired on" in out and "--ignore-valid-until" in out
    code, out = run(str(recipe), "--mirror", server.url, "--ignore-valid-until")
    assert code == 0, out


def test_release_valid_until_in_the_future_is_fine(tmp_path, gpg_key, http_serve):
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)
    repo = build_repo(tmp_path / "repo", packages(), key=gpg_key, valid_until=future)
    server = http_serve(repo.path)
    code, out = run(str(write_recipe(tmp_path, repo)), "--mirror", server.url)
    assert code == 0, out


def test_missing_keyring_is_a_usage_error(tmp_path, signed_repo, http_serve):
    server = http_serve(signed_repo.path)
    missing = tmp_path / "no-such-keyring.gpg"
    code, out = run(str(write_recipe(tmp_path, signed_repo, keyring=missing)), "--mirror", server.url)
    assert code == 2, out
    assert f"keyring {missing} does not exist" in out
    code, out = run(str(write_recipe(tmp_path, signed_repo, keyring="")), "--mirror", server.url)
    assert code == 2, out
    assert "names no keyring" in out


def test_keyring_option_overrides_the_recipe(tmp_path, signed_repo, gpg_key, other_gpg_key, http_serve):
    server = http_serve(signed_repo.path)
    recipe = write_recipe(tmp_path, signed_repo, keyring=other_gpg_key.keyring)
    code, out = run(str(recipe), "--mirror", server.url)
    assert code == 4, out
    code, out = run(str(recipe), "--mirror", server.url, "--keyring", str(gpg_key.keyring))
    assert code == 0, out


def test_suite_the_mirror_lacks(tmp_path, signed_repo, http_serve):
    server = http_serve(signed_repo.path)
    recipe = write_recipe(tmp_path, signed_repo)
    recipe.write_text(recipe.read_text().replace('suite = "stable"', 'suite = "nosuch"'))
    code, out = run(str(recipe), "--mirror", server.url)
    assert code == 3, out
    assert f"the mirror {server.url}/ has no suite nosuch" in out


def test_release_of_another_suite_is_refused(tmp_path, fresh, http_serve):
    # A mirror (or attacker) serving stable's signed Release as "testing".
    shutil.move(fresh.dists, fresh.path / "dists" / "testing")
    server = http_serve(fresh.path)
    recipe = write_recipe(tmp_path, fresh)
    recipe.write_text(recipe.read_text().replace('suite = "stable"', 'suite = "testing"'))
    code, out = run(str(recipe), "--mirror", server.url)
    assert code == 4, out
    assert "names Suite stable and Codename stable, not testing" in out


def test_codename_resolves_like_the_suite(tmp_path, gpg_key, http_serve):
    repo = build_repo(tmp_path / "repo", packages(), key=gpg_key, suite="stable", codename="bookworm")
    server = http_serve(repo.path)
    recipe = write_recipe(tmp_path, repo)
    recipe.write_text(recipe.read_text().replace('suite = "stable"', 'suite = "bookworm"'))
    code, out = run(str(recipe), "--mirror", server.url)
    assert code == 0, out


def test_unknown_component(tmp_path, signed_repo, http_serve):
    server = http_serve(signed_repo.path)
    code, out = run(str(write_recipe(tmp_path, signed_repo)), "--mirror", server.url, "--components", "main,nonfree")
    assert code == 3, out
    assert "has no component nonfree" in out


def test_unreachable_mirror(tmp_path, signed_repo, monkeypatch):
    # A port nobody listens on: bind, read the number, close.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import rootfs.cli.build
    from rootfs.net.fetch import Downloader

    monkeypatch.setattr(rootfs.cli.build, "Downloader", functools.partial(Downloader, retries=0))
    code, out = run(str(write_recipe(tmp_path, signed_repo)), "--mirror", f"http://127.0.0.1:{port}/")
    assert code == 5, out
    assert f"cannot reach the mirror http://127.0.0.1:{port}/" in out


def test_trusty_shaped_repository_resolves(tmp_path, gpg_key, http_serve):
    repo = build_trusty_repo(tmp_path / "repo", packages(), key=gpg_key)
    assert not (repo.dists / "InRelease").exists()
    server = http_serve(repo.path)
    recipe = write_recipe(tmp_path, repo)
    code, out = run(str(recipe), "--mirror", server.url)
    assert code == 0, out
    assert "dash 0.5.12-2 amd64" in out
    # Packages.gz gone from the mirror though the Release lists it: .bz2 is used.
    (repo.dists / "main" / "binary-amd64" / "Packages.gz").unlink()
    code, out = run(str(recipe), "--mirror", server.url)
    assert code == 0, out
    assert "dash 0.5.12-2 amd64" in out
    (repo.dists / "main" / "binary-amd64" / "Packages.bz2").unlink()
    code, out = run(str(recipe), "--mirror", server.url)
    assert code == 3, out
    assert "lacks" in out


def test_acquire_by_hash_is_used(tmp_path, gpg_key, http_serve):
    # Only by-hash copies exist for the compressed index: the plain name 404s.
    repo = build_repo(tmp_path / "repo", packages(), key=gpg_key, index_compressions=(".xz",),
                      acquire_by_hash=True, by_hash_only=True)
    assert not (repo.dists / "main" / "binary-amd64" / "Packages.xz").exists()
    server = http_serve(repo.path)
    code, out = run(str(write_recipe(tmp_path, repo)), "--mirror", server.url)
    assert code == 0, out
    assert "libapt 2.6.1 amd64" in out


def test_acquire_by_hash_falls_back_to_the_plain_name(tmp_path, gpg_key, http_serve):
    repo = build_repo(tmp_path / "repo", packages(), key=gpg_key, acquire_by_hash=True)
    shutil.rmtree(repo.dists / "main" / "binary-amd64" / "by-hash")
    server = http_serve(repo.path)
    code, out = run(str(write_recipe(tmp_path, repo)), "--mirror", server.url)
    assert code == 0, out


@pytest.mark.parametrize("compressions", [("",), (".gz",), (".bz2",), (".zst",), (".xz", ".gz")])
def test_every_listed_compression_works(tmp_path, gpg_key, http_serve, compressions):
    repo = build_repo(tmp_path / "repo", packages(), key=gpg_key, index_compressions=compressions,
                      list_unshipped_plain=True)
    server = http_serve(repo.path)
    code, out = run(str(write_recipe(tmp_path, repo)), "--mirror", server.url)
    assert code == 0, out
    assert "apt 2.6.1 amd64" in out


def test_binary_all_is_read_unless_the_release_says_not_to(tmp_path, gpg_key, http_serve):
    repo = build_repo(tmp_path / "repo", packages(), key=gpg_key, arch_all_index=True,
                      arch_all_in_arch_indices=False)
    server = http_serve(repo.path)
    recipe = write_recipe(tmp_path, repo)
    code, out = run(str(recipe), "--mirror", server.url, "--include", "hello")
    assert code == 0, out
    assert "hello-data 2.10 all" in out

    # With No-Support-for-Architecture-all, binary-all is not even fetched:
    # damage it and the resolve still works.
    repo2 = build_repo(tmp_path / "repo2", packages(), key=gpg_key, arch_all_index=True,
                       no_support_arch_all=True)
    for f in (repo2.dists / "main" / "binary-all").glob("Packages*"):
        f.write_bytes(b"garbage")
    server2 = http_serve(repo2.path)
    code, out = run(str(write_recipe(tmp_path, repo2, name="r2")), "--mirror", server2.url, "--include", "hello")
    assert code == 0, out
    assert "hello-data 2.10 all" in out


def test_unsatisfiable_dependency_through_the_cli(tmp_path, gpg_key, http_serve):
    pkgs = packages() + [Pkg("broken", depends="hello (>= 3)")]
    repo = build_repo(tmp_path / "repo", pkgs, key=gpg_key)
    server = http_serve(repo.path)
    code, out = run(str(write_recipe(tmp_path, repo)), "--mirror", server.url, "--include", "broken")
    assert code == 3, out
    assert 'cannot satisfy "hello (>= 3)" needed by broken <- (requested)' in out


# -- apt's Valid-Until setting, for mirrors taken from the host's apt ---------


def _apt_config(tmp_path, value: str):
    # Only this file: the host's apt.conf.d would otherwise have the last word.
    parts = tmp_path / "apt.conf.d"
    parts.mkdir(exist_ok=True)
    conf = tmp_path / f"apt-{value}.conf"
    conf.write_text(f'Dir::Etc::Parts "{parts}";\nAcquire::Check-Valid-Until "{value}";\n')
    return str(conf)


@pytest.mark.skipif(shutil.which("apt-config") is None, reason="needs apt-config")
def test_apt_check_valid_until_is_read_from_apt_config(tmp_path, monkeypatch):
    from rootfs.backends.deb.resolve import apt_checks_valid_until

    monkeypatch.setenv("APT_CONFIG", _apt_config(tmp_path, "false"))
    assert apt_checks_valid_until() is False
    monkeypatch.setenv("APT_CONFIG", _apt_config(tmp_path, "true"))
    assert apt_checks_valid_until() is True


@pytest.mark.skipif(shutil.which("apt-config") is None, reason="needs apt-config")
def test_host_mirror_follows_apts_valid_until_but_a_named_mirror_does_not(tmp_path, gpg_key, http_serve, monkeypatch):
    import rootfs.backends.deb.resolve as deb_resolve
    from rootfs.backends import ResolveOptions
    from rootfs.model.errors import VerifyError
    from rootfs.model.recipe import load_recipe
    from rootfs.net.fetch import Downloader

    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
    repo = build_repo(tmp_path / "repo", packages(), key=gpg_key, valid_until=past)
    server = http_serve(repo.path)
    recipe = load_recipe(str(write_recipe(tmp_path, repo)))
    monkeypatch.delenv("ROOTFS_MIRROR", raising=False)
    # Stand-in for the host's apt sources naming this mirror.
    monkeypatch.setattr(deb_resolve, "choose_mirror", lambda cli, rm, d, o="": rm or server.url + "/")
    monkeypatch.setenv("APT_CONFIG", _apt_config(tmp_path, "false"))
    lock = deb_resolve.resolve(recipe, ResolveOptions(), Downloader(retries=0))
    assert sorted(p.name for p in lock.packages) == MINBASE
    with pytest.raises(VerifyError, match="expired"):
        deb_resolve.resolve(recipe.with_settings(mirror=server.url + "/"), ResolveOptions(), Downloader(retries=0))
    monkeypatch.setenv("APT_CONFIG", _apt_config(tmp_path, "true"))
    with pytest.raises(VerifyError, match="expired"):
        deb_resolve.resolve(recipe, ResolveOptions(), Downloader(retries=0))


# -- gpg.py on its own ----------------------------------------------------------


def test_gpg_clearsigned_returns_only_the_signed_text(tmp_path, signed_repo, gpg_key):
    from rootfs.model.errors import VerifyError
    from rootfs.net.openpgp import dearmor, verify_clearsigned

    assert dearmor(gpg_key.armored.read_bytes()) == gpg_key.keyring.read_bytes()
    inrelease = (signed_repo.dists / "InRelease").read_bytes()
    # Text outside the signed block must not come back as if it were signed.
    smuggled = inrelease + b"\nSuite: evil\nSHA256:\n 00 1 main/binary-amd64/Packages\n"
    assert verify_clearsigned(inrelease, gpg_key.keyring) == signed_repo.release.read_bytes()
    # gpgv itself accepts all of these; apt and rootfs do not.
    with pytest.raises(VerifyError, match="text outside its signed message"):
        verify_clearsigned(smuggled, gpg_key.keyring)
    with pytest.raises(VerifyError, match="text outside its signed message"):
        verify_clearsigned(b"Suite: evil\n\n" + inrelease, gpg_key.keyring)
    with pytest.raises(VerifyError, match="more than one signed message"):
        verify_clearsigned(inrelease + inrelease, gpg_key.keyring)


def test_gpg_detached_binary_signature(tmp_path, gpg_key, other_gpg_key):
    from rootfs.model.errors import VerifyError
    from rootfs.net.openpgp import verify_detached

    data = tmp_path / "data"
    data.write_bytes(b"hello\n")
    gpg_key.detach_sign(data, tmp_path / "sig", armor=False)
    verify_detached(b"hello\n", (tmp_path / "sig").read_bytes(), gpg_key.armored)
    with pytest.raises(VerifyError, match="bad signature"):
        verify_detached(b"hello!\n", (tmp_path / "sig").read_bytes(), gpg_key.keyring)
    with pytest.raises(VerifyError, match="not in the keyring"):
        verify_detached(b"hello\n", (tmp_path / "sig").read_bytes(), other_gpg_key.keyring)


# -- the Release parser and the repository builder itself -----------------------


def test_release_parser_and_checks():
    from rootfs.backends.deb.release import (
        check_release,
        index_candidates,
        parse_release,
    )
    from rootfs.model.errors import VerifyError

    text = (
        "Origin: X\nSuite: oldstable\nCodename: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\n"
        "Acquire-By-Hash: yes\nNo-Support-for-Architecture-all: Packages\nArchitectures: all amd64\n"
        "Components: main contrib\nMD5Sum:\n 0123 10 main/binary-amd64/Packages.xz\nSHA256:\n"
        f" {'a' * 64} 10 main/binary-amd64/Packages.xz\n {'b' * 64} 30 main/binary-amd64/Packages\n"
        f" {'c' * 64} 12 main/binary-amd64/Packages.gz\n"
    )
    rel = parse_release(text)
    assert (rel.suite, rel.codename, rel.acquire_by_hash, rel.no_arch_all_packages) == ("oldstable", "bookworm", True, True)
    assert (rel.origin, rel.not_automatic, rel.but_automatic_upgrades) == ("X", False, False)
    backports = parse_release("Suite: b\nNotAutomatic: yes\nButAutomaticUpgrades: yes\n")
    assert (backports.not_automatic, backports.but_automatic_upgrades) == (True, True)
    assert rel.components == ("main", "contrib") and rel.architectures == ("all", "amd64")
    # gzip before xz: on a mirror close by, decoding costs more than the bytes.
    assert [f.path for f in index_candidates(rel, "main", "amd64")] == [
        "main/binary-amd64/Packages.gz", "main/binary-amd64/Packages.xz", "main/binary-amd64/Packages"
    ]
    assert rel.files["main/binary-amd64/Packages.xz"].sha256 == "a" * 64  # SHA256, not MD5Sum
    check_release(rel, "bookworm", check_valid_until=True)
    check_release(rel, "oldstable", check_valid_until=True)
    with pytest.raises(VerifyError, match="not trixie"):
        check_release(rel, "trixie", check_valid_until=True)
    with pytest.raises(VerifyError, match="malformed SHA256"):
        parse_release("Suite: x\nSHA256:\n abc main/Packages\n")
    with pytest.raises(VerifyError, match="no SHA256"):
        check_release(parse_release("Suite: x\nMD5Sum:\n 00 1 main/binary-amd64/Packages\n"), "x", check_valid_until=True)


def test_debrepo_builds_what_it_is_asked_for(tmp_path):
    import subprocess

    from debrepo import Dir, File, Symlink, build_deb

    pkg = Pkg("thing", version="1:2.0-1", priority="required", essential=True, depends="libc6",
              files={"etc/thing.conf": b"x=1\n", "usr/bin/thing": File(b"#!/bin/sh\n", 0o755),
                     "usr/lib/link": Symlink("../bin/thing"), "var/spool/thing": Dir(0o1777)},
              scripts={"postinst": "#!/bin/sh\nexit 0\n"}, conffiles=["/etc/thing.conf"], compression="zstd")
    deb = build_deb(pkg, tmp_path)
    assert deb.name == "thing_2.0-1_amd64.deb"
    assert subprocess.run(["ar", "t", str(deb)], capture_output=True, text=True).stdout.split() == [
        "debian-binary", "control.tar.zst", "data.tar.zst"
    ]
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "-rwxr-xr-x root/root        10 " in listing and "./usr/bin/thing" in listing
    assert "drwxrwxrwt root/root" in listing and "./usr/lib/link -> ../bin/thing" in listing
    info = subprocess.run(["dpkg-deb", "-I", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "Essential: yes" in info and "Version: 1:2.0-1" in info and "Depends: libc6" in info
    assert "postinst" in info and "conffiles" in info


def test_file_url_mirror(tmp_path, signed_repo):
    recipe = write_recipe(tmp_path, signed_repo)
    code, out = run(str(recipe), "--mirror", f"file://{signed_repo.path}")
    assert code == 0, out
    assert "dash 0.5.12-2 amd64" in out
    code, out = run(str(recipe), "--mirror", f"file://{tmp_path}/nowhere")
    assert code == 3, out
    assert "has no suite stable" in out


def test_resolve_options_keyring_overrides_the_recipe(tmp_path, signed_repo, gpg_key, http_serve):
    from rootfs.backends import ResolveOptions
    from rootfs.backends.deb.resolve import resolve
    from rootfs.model.errors import UsageError
    from rootfs.model.recipe import load_recipe
    from rootfs.net.fetch import Downloader

    server = http_serve(signed_repo.path)
    recipe = load_recipe(str(write_recipe(tmp_path, signed_repo, keyring=tmp_path / "gone.gpg")))
    recipe = recipe.with_settings(mirror=server.url)
    with pytest.raises(UsageError, match="gone.gpg does not exist"):
        resolve(recipe, ResolveOptions(), Downloader(retries=0))
    lock = resolve(recipe, ResolveOptions(keyring=str(gpg_key.armored)), Downloader(retries=0))
    assert sorted(p.name for p in lock.packages) == MINBASE


def test_unknown_architecture(tmp_path, signed_repo, http_serve):
    server = http_serve(signed_repo.path)
    code, out = run(str(write_recipe(tmp_path, signed_repo)), "--mirror", server.url, "--arch", "sparc64")
    assert code == 3, out
    assert "the suite stable has no architecture sparc64 (it has amd64)" in out
