"""The one architecture table: Debian's and rpm's names, the kernel's
machine name, the OCI platform (GOARCH and variant) and the ELF machine.

Debian and rpm spell architectures their own way; image configs use Go's
GOARCH names plus a variant for ARM (the OCI image-index platform values).
When the caller does not say, the architecture is read from the root itself:
the ELF header of its /bin/sh, which exists in every image worth running.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from rootfs.host.safepath import PathEscape, resolve_in_root
from rootfs.model.errors import UsageError


@dataclass(frozen=True)
class Arch:
    deb: str  # dpkg --print-architecture
    rpm: str  # rpm's %_arch ("" where no rpm distribution ships it)
    machine: str  # uname -m of a kernel running it natively
    goarch: str  # OCI platform.architecture
    variant: str = ""  # OCI platform.variant
    elf_machine: int = 0  # e_machine of its binaries
    elf_64: bool = True  # ELF class
    elf_little: bool = True  # ELF byte order
    # Hosts (Debian names) whose kernels run it without an emulator: their
    # 32-bit compat mode (IA32 emulation; AArch32 at EL0, which most arm64
    # cores have).
    native_on: tuple[str, ...] = ()


ARCHES: tuple[Arch, ...] = (
    Arch("amd64", "x86_64", "x86_64", "amd64", "", 62),
    Arch("arm64", "aarch64", "aarch64", "arm64", "v8", 183),
    Arch("armhf", "armv7hl", "armv7l", "arm", "v7", 40, elf_64=False, native_on=("arm64",)),
    Arch("armel", "", "armv5tel", "arm", "v5", 40, elf_64=False, native_on=("arm64",)),
    Arch("i386", "i686", "i686", "386", "", 3, elf_64=False, native_on=("amd64",)),
    Arch("ppc64el", "ppc64le", "ppc64le", "ppc64le", "", 21),
    Arch("ppc64", "ppc64", "ppc64", "ppc64", "", 21, elf_little=False),
    Arch("s390x", "s390x", "s390x", "s390x", "", 22, elf_little=False),
    Arch("riscv64", "riscv64", "riscv64", "riscv64", "", 243),
    Arch("mips64el", "", "mips64", "mips64le", "", 8),
    Arch("mipsel", "", "mips", "mipsle", "", 8, elf_64=False),
    Arch("loong64", "loongarch64", "loongarch64", "loong64", "", 258),
)

# Other spellings users and tools write for the same architectures.
_ALIASES = {"i586": "i386", "armv7l": "armhf", "x86-64": "amd64"}


def lookup(name: str) -> Arch:
    """The architecture a Debian, rpm, machine or OCI name means."""
    name = _ALIASES.get(name, name)
    for a in ARCHES:
        if name in (a.deb, a.rpm, a.machine):
            return a
    for a in ARCHES:
        if name == a.goarch:
            return a
    known = ", ".join(sorted({a.deb for a in ARCHES} | {a.rpm for a in ARCHES if a.rpm}))
    raise UsageError(f"unknown architecture {name!r} (known: {known})")


def oci_platform(arch: str) -> tuple[str, str]:
    """(architecture, variant) for an image config; variant may be "".
    noarch packages make images for the host's platform."""
    if arch == "noarch":
        arch = platform.machine()
    a = lookup(arch)
    return a.goarch, a.variant


def host_arch() -> Arch:
    return lookup(platform.machine())


def host_architecture(backend: str) -> str:
    """The host's architecture as the backend spells it."""
    a = host_arch()
    return (a.rpm or a.machine) if backend == "rpm" else a.deb


def host_platform() -> str:
    """The host as an OCI platform string, linux/GOARCH[/VARIANT]."""
    a = host_arch()
    return "/".join(["linux", a.goarch] + ([a.variant] if a.variant and a.goarch == "arm" else []))


def detect(root: os.PathLike | str) -> str:
    """The root's architecture (Debian spelling) from its shell's ELF header,
    else the host's."""
    for candidate in ("bin/sh", "usr/bin/sh", "bin/busybox", "usr/bin/busybox"):
        try:
            path = resolve_in_root(os.fspath(root), candidate)
            with open(path, "rb") as f:
                head = f.read(20)
        except (OSError, PathEscape):
            continue
        if len(head) < 20 or head[:4] != b"\x7fELF":
            continue
        is_64, little = head[4] == 2, head[5] == 1
        machine = int.from_bytes(head[18:20], "little" if little else "big")
        matches = [a for a in ARCHES if a.elf_machine == machine]
        exact = [a for a in matches if a.elf_64 == is_64 and a.elf_little == little]
        # 32-bit ARM: hard float is what Debian and Fedora ship.
        if exact or matches:
            return (exact or matches)[0].deb
    return host_arch().deb


def platform_of(a: Arch) -> str:
    """The OCI platform string, linux/GOARCH[/VARIANT] (linux/arm64/v8, linux/arm/v7, linux/386)."""
    return "/".join(["linux", a.goarch] + ([a.variant] if a.variant else []))


def from_platform(spec: str) -> Arch:
    """The architecture an OCI platform names: linux/arm64[/v8], linux/arm/v7,
    linux/386, linux/amd64. linux/arm without a variant is v7 (armhf), as
    docker and podman read it."""
    parts = spec.split("/")
    if len(parts) not in (2, 3) or parts[0] != "linux" or not parts[1]:
        raise UsageError(f"--platform {spec!r} is not linux/ARCH[/VARIANT] (such as linux/arm64/v8 or linux/arm/v7)")
    goarch, variant = parts[1], parts[2] if len(parts) == 3 else ""
    matches = [a for a in ARCHES if a.goarch == goarch and (not variant or a.variant == variant)]
    if not matches:
        known = ", ".join(platform_of(a) for a in ARCHES)
        raise UsageError(f"unknown platform {spec!r} (known: {known})")
    return matches[0]


def architectures(arch_values, platform_values, backend: str) -> tuple[str, ...]:
    """The architectures `--arch` (comma separated and/or repeated) and
    `--platform` (the OCI spelling) name, in the order given, each once.
    One --arch name is kept as written, so one architecture builds exactly
    as it always has; with several, each must be known here, and
    --platform names become the backend's own spelling."""
    named = [x.strip() for v in arch_values or () for x in v.split(",") if x.strip()]
    platforms = list(platform_values or ())
    if len(named) == 1 and not platforms:
        return (named[0],)
    out: list[str] = []
    seen: set[Arch] = set()
    pairs = [(lookup(n), n) for n in named]
    for spec in platforms:
        a = from_platform(spec)
        name = a.rpm if backend == "rpm" else a.deb
        if not name:
            raise UsageError(f"--platform {spec}: no rpm distribution ships {a.deb}")
        pairs.append((a, name))
    for a, name in pairs:
        if a not in seen:
            seen.add(a)
            out.append(name)
    return tuple(out)
