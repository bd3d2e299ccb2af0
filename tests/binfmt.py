"""Emulation for tests of foreign architectures.

rootfs itself never touches the host's binfmt_misc settings; a test that
needs an arm64 or armhf root to run its maintainer scripts sets emulation up
the way an administrator would (qemu-user-static's files in
/usr/lib/binfmt.d), and puts the machine back as it found it afterwards:
handlers it registered are removed, and binfmt_misc is unmounted if it was
not mounted before.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from rootfs.model import arch as archmod

BINFMT = Path("/proc/sys/fs/binfmt_misc")
CONF = Path("/usr/lib/binfmt.d")

# The qemu-user-static handler names for the Debian architectures tests use.
QEMU = {"arm64": "qemu-aarch64", "armhf": "qemu-arm", "armel": "qemu-arm", "i386": "",
        "ppc64el": "qemu-ppc64le", "s390x": "qemu-s390x", "riscv64": "qemu-riscv64"}


def _mounted() -> bool:
    return (BINFMT / "register").exists()


def _native(deb_arch: str) -> bool:
    host = archmod.host_arch().deb
    return deb_arch == host or (host == "amd64" and deb_arch == "i386")


@contextlib.contextmanager
def emulation(*deb_arches: str):
    """Handlers for deb_arches registered for the duration; skips when the
    machine cannot (not root, no qemu-user-static)."""
    foreign = [a for a in deb_arches if not _native(a)]
    if not foreign:
        yield
        return
    if os.geteuid() != 0:
        pytest.skip("needs root")
    mounted_here = False
    registered: list[str] = []
    try:
        if not _mounted():
            subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True,
                           capture_output=True)
            mounted_here = True
        for a in foreign:
            name = QEMU[a]
            if (BINFMT / name).exists():
                continue
            conf = CONF / f"{name}.conf"
            # qemu-user-static is in the set-up: a machine without it is a
            # broken set-up, not a reason to skip.
            assert conf.exists(), f"{conf} is missing: qemu-user-static is not installed"
            (BINFMT / "register").write_text(conf.read_text().strip() + "\n")
            registered.append(name)
        yield
    finally:
        for name in registered:
            with contextlib.suppress(OSError):
                (BINFMT / name).write_text("-1")
        if mounted_here:
            subprocess.run(["umount", str(BINFMT)], capture_output=True)


@contextlib.contextmanager
def no_emulation(deb_arch: str):
    """The handler for deb_arch switched off for the duration (as on a machine
    without qemu-user-static set up), and restored afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = QEMU[deb_arch]
    entry = BINFMT / name
    was_enabled = entry.exists() and entry.read_text().startswith("enabled")
    try:
        if was_enabled:
            entry.write_text("0")
        yield
    finally:
        if was_enabled:
            entry.write_text("1")
