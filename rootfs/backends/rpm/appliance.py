"""rpm appliances: the directory `rootfs prepare` writes and `rootfs
build` reads (rootfs.pipeline.appliance runs both through the pipeline).

An appliance holds the lock (lock.json) and the verified package files
(packages/*.rpm); every file is checked against the lock, and against the
lock's keys when it has any, when it is placed and again when it is read.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rootfs.backends.rpm.header import open_rpm
from rootfs.backends.rpm.install import check_package, check_signatures
from rootfs.model.errors import UsageError, VerifyError
from rootfs.model.lock import Lock, read_lock
from rootfs.net.cache import sha256_file

LOCK_NAME = "lock.json"
PACKAGES = "packages"
FORMAT_ALIASES = {"chroot": "dir"}


def place_packages(lock: Lock, files: dict[str, Path], pkgdir: Path) -> None:
    """Link (or copy) the fetched files into pkgdir, each checked by its
    header against the lock and by its signature against the lock's keys."""
    pkgdir.mkdir()
    placed: dict[str, Path] = {}
    for p in lock.packages:
        dest = pkgdir / p.filename
        try:
            os.link(files[p.key], dest)
        except OSError:
            shutil.copyfile(files[p.key], dest)
        os.chmod(dest, 0o644)
        placed[p.key] = dest
    for p in lock.packages:
        check_package(open_rpm(placed[p.key]), p)
    if lock.keys:
        check_signatures(list(placed.values()), lock.keys)


def load_appliance(appliance: Path) -> tuple[Lock, dict[str, Path]]:
    """The lock and its package files, each checked against the lock."""
    appliance = Path(appliance)
    if not (appliance / LOCK_NAME).is_file():
        raise UsageError(f"{appliance} is not an appliance (no {LOCK_NAME}; make one with `rootfs prepare`)")
    lock = read_lock(appliance / LOCK_NAME)
    if lock.backend != "rpm":
        raise UsageError(f"{appliance} holds a {lock.backend} lock; `rootfs build` installs rpm appliances")
    files: dict[str, Path] = {}
    for p in lock.packages:
        path = appliance / PACKAGES / p.filename
        if not path.is_file():
            raise VerifyError(f"{appliance}: package file {p.filename} is missing")
        if path.stat().st_size != p.size or sha256_file(path) != p.sha256:
            raise VerifyError(f"{appliance}: {p.filename} does not match the sha256 in the lock")
        files[p.key] = path
    return lock, files
