"""The package as users install it: a wheel built from this repository, in
a fresh virtual environment, away from the checkout, lists the recipes it
ships and builds one of them."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest
from conftest import packages
from debrepo import build_repo

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv holding rootfs from a wheel (its dependencies
    come from the test environment's site-packages, read-only)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        path = REPO / os.fsdecode(name)
        dest = src / os.fsdecode(name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            dest.symlink_to(os.readlink(path))
        elif path.is_file():
            dest.write_bytes(path.read_bytes())
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(src)], check=True, capture_output=True, timeout=300)
    [wheel] = wheels.glob("rootfs-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    site = Path(subprocess.run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The dependencies, without the checkout's editable rootfs (a plain path
    # entry: the .pth finders in it are not run).
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv / "bin"


def _run(bindir: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ROOTFS_RECIPES", "PYTHONPATH")}
    return subprocess.run([str(bindir / "rootfs"), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_the_wheel_ships_the_recipes(installed, tmp_path):
    p = _run(installed, "recipes", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    names = [line.split()[0] for line in p.stdout.splitlines()]
    assert names == sorted(x.stem for x in (REPO / "rootfs/recipes").glob("*.toml"))
    assert "bookworm" in names
    where = _run(installed, "--version", cwd=tmp_path)
    assert where.returncode == 0 and where.stdout.startswith("rootfs ")
    code = "import rootfs, sys; print(rootfs.__file__)"
    origin = subprocess.run([str(installed / "python"), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert not origin.stdout.startswith(str(REPO) + "/rootfs"), origin.stdout  # the wheel's, not the checkout's


def test_the_wheel_builds_a_shipped_recipe(installed, tmp_path, gpg_key, http_serve):
    repo = build_repo(tmp_path / "repo", packages(), key=gpg_key, suite="bookworm")
    server = http_serve(repo.path)
    out = tmp_path / "bookworm.tar"
    p = _run(installed, "make", "bookworm", "--no-updates", "--mirror", server.url + "/", "--keyring", repo.keyring, "--mode",
             "extract", "--cache-dir", tmp_path / "cache", "-o", out, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    with tarfile.open(out) as t:
        assert "./usr/bin/apt" in t.getnames()
