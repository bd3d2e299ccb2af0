"""Syncs that return at once, for the programs run inside a root being built.

dpkg syncs its database journal after every step and maintainer scripts
sync what they rewrite (add-shell, update-alternatives): some 600 syncs for
a minimal Debian, each waiting for the disk. A root under construction is
thrown away when the build does not finish, and what is published is synced
by the publisher itself (rootfs.host.atomic), so those syncs buy nothing:
`dpkg --force-unsafe-io` turns off only some of them, eatmydata (which
mmdebstrap offers as a hook) needs a library of the target's architecture
inside the target.

A seccomp filter does it for any architecture, emulated ones included (qemu
makes the host's system calls): fsync, fdatasync, sync, syncfs and
sync_file_range return 0 without being run. The filter is installed in the
child between fork and exec and is inherited by everything it starts. It
needs CAP_SYS_ADMIN, or no_new_privs (set here when not root: set-id
programs then gain nothing, as they gain nothing in a user namespace
anyway). On a host architecture not listed below nothing is filtered and
the programs simply sync.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import struct

# (audit architecture, syscall numbers of fsync, fdatasync, sync, syncfs, sync_file_range)
_SYSCALLS = {
    "x86_64": (0xC000003E, (74, 75, 162, 306, 277)),
    "aarch64": (0xC00000B7, (82, 83, 81, 267, 84)),
}

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000  # | errno; 0: the call "succeeds"
# classic BPF
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_RET_K = 0x06


def _program(arch: int, numbers: tuple[int, ...]) -> bytes:
    insns = [(_LD_W_ABS, 0, 0, 4)]  # seccomp_data.arch
    n = len(numbers)
    # another ABI (x32, i386 on amd64): allowed, jump to the last-but-one
    insns.append((_JEQ_K, 0, n + 1, arch))
    insns.append((_LD_W_ABS, 0, 0, 0))  # seccomp_data.nr
    for i, nr in enumerate(numbers):
        insns.append((_JEQ_K, n - i, 0, nr))  # to the final "return 0"
    insns.append((_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    insns.append((_RET_K, 0, 0, _SECCOMP_RET_ERRNO | 0))
    return b"".join(struct.pack("HBBI", *i) for i in insns)


def _prepare():
    """What the child needs, built before fork (no allocation after it)."""
    entry = _SYSCALLS.get(platform.machine())
    if entry is None:
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    code = _program(*entry)
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    return libc, prog, buf


_PREPARED = None


def no_syncs() -> None:
    """In a child between fork and exec: make the syncs of it and of
    everything it starts no-ops. Best effort: a kernel without seccomp
    leaves them as they are."""
    prepared = _PREPARED
    if prepared is None:
        return
    libc, prog, _ = prepared
    if os.geteuid() != 0:
        libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0)


def enable() -> None:
    """Build the filter once, in the parent (call before the first fork)."""
    global _PREPARED
    if _PREPARED is None:
        _PREPARED = _prepare()
