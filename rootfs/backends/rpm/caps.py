"""File capabilities: rpm's text form (`cap_net_raw=ep`, as cap_to_text
writes it into FILECAPS) to the binary `security.capability` xattr the
kernel reads (struct vfs_cap_data, revision 2)."""

from __future__ import annotations

import struct

from rootfs.model.errors import InstallError

XATTR = "security.capability"

NAMES = (
    "chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap linux_immutable "
    "net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner sys_module sys_rawio "
    "sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice sys_resource sys_time "
    "sys_tty_config mknod lease audit_write audit_control setfcap mac_override mac_admin syslog "
    "wake_alarm block_suspend audit_read perfmon bpf checkpoint_restore"
).split()
NUMBERS = {f"cap_{n}": i for i, n in enumerate(NAMES)}
ALL = (1 << len(NAMES)) - 1

VFS_CAP_REVISION_2 = 0x02000000
VFS_CAP_FLAGS_EFFECTIVE = 0x000001


def _caps(names: str, text: str) -> int:
    if names in ("", "all"):
        return ALL
    mask = 0
    for n in names.split(","):
        n = n.strip().lower()
        if n.isdigit():
            bit = int(n)
        elif n in NUMBERS:
            bit = NUMBERS[n]
        else:
            raise InstallError(f"unknown capability {n!r} in {text!r}")
        mask |= 1 << bit
    return mask


def parse_caps(text: str) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) masks of a cap_from_text string."""
    eff = perm = inh = 0
    for clause in text.split():
        for i, ch in enumerate(clause):
            if ch in "=+-":
                break
        else:
            raise InstallError(f"capability clause {clause!r} lacks an operator")
        names = clause[:i]
        # A clause may chain operators: cap_x=ep-i, cap_x+e-p ...
        rest = clause[i:]
        mask = _caps(names, text)
        first = True
        while rest:
            op = rest[0]
            j = 1
            while j < len(rest) and rest[j] not in "=+-":
                j += 1
            flags = rest[1:j]
            rest = rest[j:]
            if op == "=" :
                if not first:
                    raise InstallError(f"capability clause {clause!r} is malformed")
                eff &= ~mask
                perm &= ~mask
                inh &= ~mask
                if not names and not flags:
                    eff = perm = inh = 0
                op = "+"
            first = False
            for fl in flags:
                if fl not in "eip":
                    raise InstallError(f"unknown capability flag {fl!r} in {text!r}")
                if op == "+":
                    if fl == "e":
                        eff |= mask
                    elif fl == "p":
                        perm |= mask
                    else:
                        inh |= mask
                else:
                    if fl == "e":
                        eff &= ~mask
                    elif fl == "p":
                        perm &= ~mask
                    else:
                        inh &= ~mask
    return eff, perm, inh


def xattr_value(text: str) -> bytes:
    """The security.capability value for text (v2: permitted/inheritable
    words for caps 0-31 and 32-63, the effective bit as one flag)."""
    eff, perm, inh = parse_caps(text)
    magic = VFS_CAP_REVISION_2 | (VFS_CAP_FLAGS_EFFECTIVE if eff else 0)
    return struct.pack("<IIIII", magic, perm & 0xFFFFFFFF, inh & 0xFFFFFFFF, perm >> 32, inh >> 32)
