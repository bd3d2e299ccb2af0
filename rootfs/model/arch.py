"""Distribution architecture names -> OCI platform (architecture, variant).

Debian and rpm spell architectures their own way; image configs use Go's
GOARCH names plus a variant for ARM (the OCI image-index platform values).
When the caller does not say, the architecture is read from the root itself:
the ELF header of its /bin/sh, which exists in every image worth running.
"""

from __future__ import annotations

import os
import platform

from rootfs.model.errors import UsageError
from rootfs.host.safepath import PathEscape, resolve_in_root

_PLATFORMS: dict[str, tuple[str, str]] = {
    # Debian
    "amd64": ("amd64", ""),
    "arm64": ("arm64", "v8"),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v5"),
    "i386": ("386", ""),
    "ppc64el": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
    "mips64el": ("mips64le", ""),
    "mipsel": ("mipsle", ""),
    "loong64": ("loong64", ""),
    # rpm
    "x86_64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "armv7hl": ("arm", "v7"),
    "armv7l": ("arm", "v7"),
    "i686": ("386", ""),
    "i586": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "noarch": ("amd64", ""),
}

# e_machine -> distribution-neutral name; the ELF class and byte order pick
# between the variants that share a machine number.
_ELF = {62: "amd64", 183: "arm64", 3: "i386", 22: "s390x", 243: "riscv64", 258: "loong64"}


def oci_platform(arch: str) -> tuple[str, str]:
    """(architecture, variant) for an image config; variant may be ""."""
    try:
        return _PLATFORMS[arch]
    except KeyError:
        known = ", ".join(sorted(_PLATFORMS))
        raise UsageError(f"unknown architecture {arch!r} (known: {known})") from None


def detect(root: os.PathLike | str) -> str:
    """The root's architecture from its shell's ELF header, else the host's."""
    for candidate in ("bin/sh", "usr/bin/sh", "bin/busybox", "usr/bin/busybox"):
        try:
            path = resolve_in_root(os.fspath(root), candidate)
            with open(path, "rb") as f:
                head = f.read(20)
        except (OSError, PathEscape):
            continue
        if len(head) < 20 or head[:4] != b"\x7fELF":
            continue
        little = head[5] == 1
        machine = int.from_bytes(head[18:20], "little" if little else "big")
        if machine == 40:  # 32-bit ARM: hard float is what Debian and Fedora ship
            return "armhf"
        if machine == 21:
            return "ppc64el" if little else "ppc64"
        if machine in _ELF:
            return _ELF[machine]
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
