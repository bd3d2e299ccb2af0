"""Shared fixtures: a local HTTP server and a throwaway GnuPG key; in CI,
skips that are not on the allow list fail (ci_skips.py)."""

from __future__ import annotations

import functools
import http.server
import os
import random
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from ci_skips import (  # noqa: F401 (hooks)
    pytest_make_collect_report,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real mirrors do

    def log_message(self, format, *args):  # noqa: A002
        pass


@dataclass
class Server:
    url: str
    root: Path
    httpd: http.server.ThreadingHTTPServer


def serve_directory(root: Path) -> Server:
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return Server(f"http://127.0.0.1:{httpd.server_address[1]}", Path(root), httpd)


@pytest.fixture
def http_serve():
    """http_serve(dir) -> Server serving dir on 127.0.0.1; stopped afterwards."""
    servers: list[Server] = []

    def start(root: Path) -> Server:
        s = serve_directory(root)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.httpd.shutdown()
        s.httpd.server_close()


@dataclass
class GpgKey:
    home: Path
    keyring: Path  # binary public keyring, for gpgv --keyring
    armored: Path  # ASCII-armoured public key, for rpm --import
    fingerprint: str

    def _gpg(self, *args: str, input: bytes | None = None) -> bytes:
        return subprocess.run(
            ["gpg", "--batch", "--yes", "--homedir", str(self.home), "--pinentry-mode", "loopback", "--passphrase", "", *args],
            input=input,
            check=True,
            capture_output=True,
        ).stdout

    def clearsign(self, src: Path, dest: Path) -> None:
        self._gpg("--digest-algo", "SHA256", "--clearsign", "-o", str(dest), str(src))

    def detach_sign(self, src: Path, dest: Path, armor: bool = True) -> None:
        self._gpg("--digest-algo", "SHA256", *(["--armor"] if armor else []), "--detach-sign", "-o", str(dest), str(src))


def make_gpg_key(base: Path, name: str = "rootfs test") -> GpgKey:
    home = base / "gnupg"
    home.mkdir(mode=0o700, parents=True)
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run(["gpg", "--batch", "--homedir", str(home), "--pinentry-mode", "loopback", "--passphrase", "",
         "--quick-gen-key", f"{name} <test@rootfs.invalid>", "rsa2048", "sign", "never"])
    out = run(["gpg", "--batch", "--homedir", str(home), "--with-colons", "--list-keys"]).stdout.decode()
    fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
    keyring = base / "keyring.gpg"
    keyring.write_bytes(run(["gpg", "--batch", "--homedir", str(home), "--export", fpr]).stdout)
    armored = base / "key.asc"
    armored.write_bytes(run(["gpg", "--batch", "--homedir", str(home), "--armor", "--export", fpr]).stdout)
    return GpgKey(home, keyring, armored, fpr)


@pytest.fixture(scope="session")
def gpg_key(tmp_path_factory) -> GpgKey:
    return make_gpg_key(tmp_path_factory.mktemp("gpg"))


@pytest.fixture(scope="session")
def other_gpg_key(tmp_path_factory) -> GpgKey:
    """A second key: signatures by it must be refused."""
    return make_gpg_key(tmp_path_factory.mktemp("gpg-other"), "rootfs intruder")


def needs_root():
    return pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def needs_tool(*names: str):
    missing = [n for n in names if shutil.which(n) is None]
    return pytest.mark.skipif(bool(missing), reason=f"missing tool(s): {', '.join(missing)}")


@dataclass
class RealBuild:
    """One root-mode `rootfs make` of a real Debian release (see bookworm_build)."""

    mirror: str
    args: list  # the make arguments after the recipe, minus -o and --cache-dir
    out: Path  # holds rootfs/ (the tree), rootfs.tar, oci/, lock.json, build.json, sbom.spdx.json
    cache: Path

    @property
    def root(self) -> Path:
        return self.out / "rootfs"


BOOKWORM_ARGS = ["--variant", "minbase", "-f", "dir", "-f", "tar", "-f", "oci"]


@pytest.fixture(scope="session")
def bookworm_build(tmp_path_factory) -> RealBuild:
    """bookworm minbase, built once per session by `rootfs make` as root from
    the mirror apt is configured with (no --mirror: rootfs finds it there);
    skipped only when there is none. Every test that needs a real Debian root
    uses this one."""
    import sys

    from rootfs.backends.deb.mirror import host_mirror

    mirror = host_mirror("debian", "Debian")
    if not mirror:
        pytest.skip("no Debian mirror configured for apt on this machine")
    if os.geteuid() != 0:
        pytest.skip("needs root")
    base = tmp_path_factory.mktemp("bookworm")
    build = RealBuild(mirror, BOOKWORM_ARGS, base / "out", base / "cache")
    p = subprocess.run([sys.executable, "-m", "rootfs.cli", "make", "bookworm", *BOOKWORM_ARGS,
                        "-o", str(build.out), "--cache-dir", str(build.cache)],
                       capture_output=True, text=True, timeout=900)
    # A mirror is configured: that it does not answer is a failure, not a
    # reason to skip the tests that need it.
    assert p.returncode == 0, f"rootfs make bookworm failed: {p.stderr[-2000:]}"
    return build


# -- a small signed apt repository for `rootfs make` runs ---------------------

def packages(version: str = "1.0") -> list:
    from debrepo import File, Pkg, Symlink

    big = random.Random(7).randbytes(3 << 20)  # large enough that a kill lands mid-download
    return [
        Pkg("base-files", version=version, priority="required", essential=True,
            files={"etc/os-release": f"VERSION={version}\n".encode(), "usr/bin/tool": File(b"#!/bin/sh\n", 0o755),
                   "usr/share/blob": big}),
        Pkg("libthing", priority="required", files={"usr/lib/libthing.so.1": b"\x7fELF" + b"x" * 5000}),
        Pkg("apt", priority="important", depends="libthing", files={"usr/bin/apt": File(b"#!/bin/sh\n", 0o755)}),
        Pkg("linkpkg", priority="required", files={"usr/lib/link": Symlink("libthing.so.1")}),
    ]


@pytest.fixture
def repo_env(tmp_path, gpg_key, http_serve):
    """A signed repository of packages() served on 127.0.0.1, its recipe, and
    the `rootfs make` arguments that build it in --mode extract."""
    from debrepo import build_repo, write_recipe

    repo = build_repo(tmp_path / "repo", packages(), key=gpg_key, suite="stable")
    server = http_serve(repo.path)
    recipe = write_recipe(tmp_path, repo, variant="minbase")
    return {
        "tmp": tmp_path,
        "repo": repo,
        "server": server,
        "recipe": recipe,
        "base": ["make", recipe, "--mirror", server.url + "/", "--mode", "extract",
                 "--cache-dir", tmp_path / "cache"],
        "key": gpg_key,
    }
