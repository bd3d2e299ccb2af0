"""Running rootfs as an unprivileged user from the tests (which run as root).

The user is `nobody`. It needs an interpreter and the rootfs package it can
read: the test virtual environment when nobody can reach it, else a
world-readable copy of the package and its site-packages under /tmp with
Debian's /usr/bin/python3 (same minor version).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
USER = "nobody"


@dataclass
class Unpriv:
    python: str
    pythonpath: str
    uid: int
    gid: int
    scratch: Path | None = None  # the copy made for the user, removed at the end

    def sandbox(self, prefix: str = "rootfs-unpriv.") -> Path:
        """A directory the user owns, reachable from /."""
        d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        os.chmod(d, 0o755)
        os.chown(d, self.uid, self.gid)
        return d

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_RUNTIME_DIR": str(home / "run"),
            "PYTHONPATH": self.pythonpath,
            "PYTHONDONTWRITEBYTECODE": "1",
            **extra,
        }

    def rootfs(self, home: Path, *args, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
        for d in ("tmp", "cache", "run"):
            (home / d).mkdir(exist_ok=True)
            os.chown(home / d, self.uid, self.gid)
        return subprocess.run(
            ["runuser", "-u", USER, "--", "env", "-i", *[f"{k}={v}" for k, v in self.env(home, **(env or {})).items()],
             self.python, "-m", "rootfs.cli", *map(str, args)],
            capture_output=True, text=True, timeout=timeout, cwd=str(home),
        )


def _works(python: str, pythonpath: str) -> bool:
    p = subprocess.run(["runuser", "-u", USER, "--", "env", "-i", f"PYTHONPATH={pythonpath}", python, "-c",
                        "import rootfs.cli, libarchive, debian, typer"], capture_output=True, cwd="/")
    return p.returncode == 0


def make_unpriv(base: Path) -> Unpriv:
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root to switch to an unprivileged user")
    pw = pwd.getpwnam(USER)
    site = sysconfig.get_paths()["purelib"]
    direct = f"{PROJECT}:{site}"
    if _works(sys.executable, direct):
        return Unpriv(sys.executable, direct, pw.pw_uid, pw.pw_gid)
    python = "/usr/bin/python3"
    ver = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    if ver.stdout.strip() != str(tuple(sys.version_info[:2])):
        pytest.skip(f"no interpreter {USER} can run with this Python version")
    copy = Path(tempfile.mkdtemp(prefix="rootfs-unpriv-py.", dir="/tmp"))
    os.chmod(copy, 0o755)
    shutil.copytree(PROJECT / "rootfs", copy / "rootfs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PROJECT / "recipes", copy / "recipes")
    shutil.copytree(site, copy / "site", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "pip", "_pytest", "pytest*", "rootfs*", "__editable__*"))
    subprocess.run(["chmod", "-R", "a+rX", str(copy)], check=True)
    path = f"{copy}:{copy / 'site'}"
    if not _works(python, path):
        pytest.skip(f"cannot give {USER} a working rootfs")
    return Unpriv(python, path, pw.pw_uid, pw.pw_gid, copy)


def import_all_of_rootfs() -> None:
    """Import every rootfs module now, for a test that forks and drops to
    nobody in-process: the child may no longer read the checkout (a CI
    clone in a directory only root can enter), and rootfs imports lazily."""
    import importlib
    import pkgutil

    import rootfs

    for m in pkgutil.walk_packages(rootfs.__path__, "rootfs."):
        if not m.name.endswith("__main__"):
            importlib.import_module(m.name)
