"""A private mount namespace for the whole build.

The configure stage mounts /proc, /sys and /dev inside the target. If rootfs
is killed with SIGKILL no finally-block runs, and mounts made in the host's
namespace would stay behind (and a later `rm -rf` of the half-built target
would walk into the host's /dev). Mounts made in a namespace that only this
process holds disappear with it, however it dies.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import threading

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_entered = False


def enter_private_mount_namespace() -> bool:
    """Move this process into a new mount namespace in which nothing
    propagates back to the host. Must run before any thread starts (the
    kernel refuses CLONE_NEWNS for a process whose threads share its fs
    state). Returns False where it is not possible (not root, or the kernel
    refuses); the build then relies on its own unmounting."""
    global _entered
    if _entered:
        return True
    if os.geteuid() != 0 or threading.active_count() > 1:
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    _entered = True
    return True


def _unescape(field: bytes) -> str:
    """A mountinfo path field: the kernel writes space, tab, newline and
    backslash as \\ooo and every other byte as it is, so the octal escapes
    are bytes, and the whole is decoded as the file system's names are."""
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field))


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Every mount point this process sees, in mount order."""
    with open(mountinfo, "rb") as f:
        return [_unescape(line.split(b" ")[4]) for line in f if line.strip()]


def mounts_under(path: str | os.PathLike) -> list[str]:
    """Mount points at or below path, as this process sees them."""
    prefix = os.path.realpath(os.fspath(path)).rstrip("/")
    return [p for p in mount_points() if p == prefix or p.startswith(prefix + "/")]
