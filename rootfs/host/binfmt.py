"""Whether this kernel runs a foreign architecture's binaries, asked before
anything is downloaded (what mmdebstrap asks arch-test).

Maintainer scripts and scriptlets run inside the image, so a build for an
architecture the host cannot run needs an emulator that the kernel starts
by itself: a binfmt_misc handler whose magic and mask match that
architecture's ELF header. rootfs only reads /proc/sys/fs/binfmt_misc; it
never registers, enables or mounts anything there (that is the
administrator's: qemu-user-static registers its handlers through
systemd-binfmt or binfmt-support).

A handler must carry the F (fix-binary) flag: the kernel then opens the
interpreter when the handler is registered, and finds it from inside the
image's root, where the host's /usr/libexec/qemu-binfmt does not exist.
Its path need not exist on the host either: handlers registered from a
container (as CI set-up actions do) name a path inside that container.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rootfs.model import arch as archmod
from rootfs.model.errors import EmulationError

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")

ET_EXEC, ET_DYN = 2, 3  # static executables; PIE executables and the dynamic loader


@dataclass(frozen=True)
class Handler:
    name: str
    enabled: bool
    interpreter: str
    flags: str
    offset: int = 0
    magic: bytes = b""
    mask: bytes = b""  # empty: every bit counts

    def matches(self, header: bytes) -> bool:
        if not self.magic:  # an extension handler (".exe"), not a magic one
            return False
        window = header[self.offset:self.offset + len(self.magic)]
        if len(window) < len(self.magic):
            return False
        mask = self.mask or b"\xff" * len(self.magic)
        return all((h ^ m) & k == 0 for h, m, k in zip(window, self.magic, mask))


def parse_handler(name: str, text: str) -> Handler:
    """One /proc/sys/fs/binfmt_misc/NAME entry, as the kernel prints it."""
    enabled, interpreter, flags, offset = False, "", "", 0
    magic = mask = b""
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == "enabled":
            enabled = True
        elif key == "interpreter":
            interpreter = value
        elif key == "flags:":
            flags = value
        elif key == "offset":
            offset = int(value or 0)
        elif key in ("magic", "mask"):
            try:
                data = bytes.fromhex(value)
            except ValueError:
                data = b""
            magic, mask = (data, mask) if key == "magic" else (magic, data)
    return Handler(name, enabled, interpreter, flags, offset, magic, mask)


def elf_header(a: archmod.Arch, e_type: int) -> bytes:
    """The first 64 bytes of an executable of architecture a: what a
    binfmt_misc magic is matched against."""
    order = "little" if a.elf_little else "big"
    ident = b"\x7fELF" + bytes([2 if a.elf_64 else 1, 1 if a.elf_little else 2, 1]) + b"\x00" * 9
    head = ident + e_type.to_bytes(2, order) + a.elf_machine.to_bytes(2, order) + (1).to_bytes(4, order)
    return head.ljust(64, b"\x00")


def runs_natively(a: archmod.Arch, host: archmod.Arch | None = None) -> bool:
    host = host or archmod.host_arch()
    return a.deb == host.deb or host.deb in a.native_on


def handlers(root: Path = BINFMT_MISC) -> list[Handler]:
    out = []
    for entry in sorted(root.iterdir()):
        if entry.name in ("register", "status"):
            continue
        try:
            out.append(parse_handler(entry.name, entry.read_text(errors="replace")))
        except OSError:
            continue
    return out


def _fix() -> str:
    return ("install qemu-user-static (`apt-get install qemu-user-static`), whose handlers systemd-binfmt "
            "or binfmt-support register (`systemctl restart systemd-binfmt`, or `update-binfmts --enable`)")


def problem(architecture: str, root: Path = BINFMT_MISC, host: archmod.Arch | None = None) -> str:
    """Why this kernel would not run architecture's binaries, or "" when it
    would (natively, or through an enabled handler with the F flag)."""
    a = archmod.lookup(architecture)
    host = host or archmod.host_arch()
    if runs_natively(a, host):
        return ""
    what = (f"this {host.deb} host cannot run {a.deb} programs, and the package scripts run inside the "
            f"image")
    extract = "; or pass --mode extract to unpack without running them"
    if not (root / "register").exists():
        return (f"{what}: binfmt_misc is not mounted at {root}; mount it (`mount -t binfmt_misc binfmt_misc {root}`"
                f", or `systemctl start proc-sys-fs-binfmt_misc.mount`) and {_fix()}{extract}")
    try:
        status = (root / "status").read_text().strip()
    except OSError:
        status = "enabled"
    if status != "enabled":
        return f"{what}: binfmt_misc is disabled; enable it (`echo 1 > {root}/status`){extract}"
    found = [h for h in handlers(root) if h.matches(elf_header(a, ET_DYN)) or h.matches(elf_header(a, ET_EXEC))]
    usable = [h for h in found if h.enabled and "F" in h.flags]
    # PIE programs and the dynamic loader are ET_DYN, static ones ET_EXEC:
    # both must start.
    missing = [t for t in (ET_DYN, ET_EXEC) if not any(h.matches(elf_header(a, t)) for h in usable)]
    if usable and not missing:
        return ""
    if usable:
        kind = "position-independent (ET_DYN)" if missing == [ET_DYN] else "static (ET_EXEC)"
        return (f"{what}: the binfmt_misc handler {usable[0].name} does not match {kind} {a.deb} programs; "
                f"register qemu-user-static's ({_fix()}){extract}")
    enabled = [h for h in found if h.enabled]
    if enabled:
        h = enabled[0]
        return (f"{what}: the binfmt_misc handler {h.name} ({h.interpreter}) lacks the F (fix-binary) flag, so "
                f"the kernel would look for its interpreter inside the image; register it with F, as "
                f"qemu-user-static's handlers are ({_fix()}){extract}")
    if found:
        names = ", ".join(h.name for h in found)
        return (f"{what}: the binfmt_misc handler {names} is disabled; enable it (`update-binfmts --enable "
                f"{found[0].name}`, or `echo 1 > {root}/{found[0].name}`){extract}")
    return f"{what}: no binfmt_misc handler runs {a.deb} ELF programs; {_fix()}{extract}"


def check_runnable(architecture: str, configures: bool, root: Path = BINFMT_MISC, *, rootless: bool = False,
                   host: archmod.Arch | None = None) -> None:
    """Refuse (exit 7) a build whose scripts this kernel could not run."""
    if not configures or architecture in ("", "noarch", "all"):
        return
    from rootfs.model.errors import UsageError

    try:
        a = archmod.lookup(architecture)
    except UsageError:
        return  # not in the table: nothing to match handlers with (the packer names it)
    host = host or archmod.host_arch()
    if rootless and a.deb != host.deb:
        # The configure stage preloads the host's libfakeroot into the
        # image's programs, which a loader of another architecture refuses.
        raise EmulationError(
            f"a rootless build runs the host's fakeroot library inside the image, and {a.deb} programs cannot "
            f"load this {host.deb} host's; build as root (the maintainer scripts then run through binfmt_misc), "
            f"or pass --mode extract to unpack without running them")
    why = problem(architecture, root, host)
    if why:
        raise EmulationError(why)
