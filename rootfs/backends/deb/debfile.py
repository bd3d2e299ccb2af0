"""Read a .deb without dpkg-deb: the ar container, the control archive, and
the data archive as a stream.

A .deb is an ar archive of `debian-binary` ("2.0"), `control.tar[.gz|.xz|
.zst]` and `data.tar[.xz|.gz|.zst|.bz2|.lzma]`. libarchive decodes every one
of those compressions, so the members are handed to it as windows of the
file, never copied out.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import libarchive
from debian.deb822 import Deb822
from libarchive import ffi

from rootfs.host.safepath import normalise, shown
from rootfs.host.unpacker import slice_stream
from rootfs.model.errors import InstallError

AR_MAGIC = b"!<arch>\n"
MAINTAINER_SCRIPTS = ("preinst", "postinst", "prerm", "postrm", "config")
# A control file is read whole into memory; the largest in Debian (a
# templates or md5sums file) are a few MiB.
CONTROL_LIMIT = 64 << 20
# The names every other file in dpkg's database is derived from: the package
# and architecture become info/NAME[:ARCH].*, a control member's name the
# suffix, a trigger's name triggers/NAME. Anything else could aim those
# writes elsewhere in the root.
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]*\Z")
ARCH_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
CONTROL_MEMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*\Z")
# dpkg's trig_name_is_illegal: printable ASCII, no space; we also keep the
# name a single path component.
TRIGGER_NAME = re.compile(r"[!-.0-~][!-.0-~]*\Z")


@dataclass(frozen=True)
class ArMember:
    name: str
    offset: int  # of the member's data in the file
    size: int


def ar_members(fd: int, what: str) -> list[ArMember]:
    """The members of an ar archive (common format, as dpkg-deb writes it;
    GNU `/` name suffixes are tolerated)."""
    if os.pread(fd, 8, 0) != AR_MAGIC:
        raise InstallError(f"{what} is not a Debian package (no ar header)")
    end = os.fstat(fd).st_size
    pos = 8
    out = []
    while pos < end:
        header = os.pread(fd, 60, pos)
        if len(header) < 60 or header[58:60] != b"`\n":
            raise InstallError(f"{what} is not a Debian package (bad ar member header at {pos})")
        name = header[:16].decode("ascii", "replace").rstrip()
        if name.endswith("/") and name != "/":
            name = name[:-1]
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise InstallError(f"{what} is not a Debian package (bad ar member size)") from None
        if pos + 60 + size > end:
            raise InstallError(f"{what} is truncated (ar member {name} runs past the end)")
        out.append(ArMember(name, pos + 60, size))
        pos += 60 + size + (size & 1)
    return out


def parse_control(text: str) -> dict[str, str]:
    """The first deb822 paragraph as an ordered dict (python-debian's
    Deb822); continuation lines are kept with their leading space, as dpkg
    stores them. Stricter than Deb822, as dpkg is: a line that is neither a
    field nor a continuation is refused, not skipped."""
    lines = text.lstrip("\n").split("\n\n", 1)[0].splitlines()
    if lines and lines[0][:1] in (" ", "\t"):
        raise ValueError("continuation line before the first field")
    for line in lines:
        if line.strip() and line[0] not in " \t" and ":" not in line:
            raise ValueError(f"line without a colon: {line!r}")
    return dict(Deb822(lines))


@dataclass
class ControlInfo:
    fields: dict[str, str]
    files: dict[str, bytes] = field(default_factory=dict)  # every control member by name
    what: str = ""  # the package file, for messages

    @property
    def package(self) -> str:
        return self.fields.get("Package", "")

    def _path(self, path: str, where: str) -> str:
        return normalise(path, f"{self.what}: {where}")

    @property
    def conffiles(self) -> list[str]:
        """Absolute paths, normalised with chroot semantics ("/etc/x")."""
        text = self.files.get("conffiles", b"").decode("utf-8", "surrogateescape")
        out = []
        for line in text.splitlines():
            line = line.strip()
            # dpkg >= 1.20.1 allows "remove-on-upgrade /path"; the path is last.
            if line:
                out.append(self._path(line.split()[-1], "conffiles"))
        return out

    @property
    def scripts(self) -> dict[str, bytes]:
        return {k: v for k, v in self.files.items() if k in MAINTAINER_SCRIPTS}

    @property
    def md5sums(self) -> dict[str, str] | None:
        """path (normalised, no leading slash) -> md5, or None when the
        package has none."""
        raw = self.files.get("md5sums")
        if raw is None:
            return None
        out = {}
        for line in raw.decode("utf-8", "surrogateescape").splitlines():
            m = re.match(r"([0-9a-f]{32})\s+\*?(.*)$", line.strip())
            if m:
                out[self._path(m.group(2), "md5sums")[1:]] = m.group(1)
        return out

    @property
    def triggers(self) -> list[tuple[str, str]]:
        """(directive, trigger) for each line of the triggers file: a file
        trigger is a normalised absolute path, a named trigger one plain
        name."""
        raw = self.files.get("triggers", b"").decode("utf-8", "surrogateescape")
        out = []
        for line in raw.splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) != 2:
                continue
            directive, name = words
            if name.startswith("/"):
                name = self._path(name, "triggers")
            elif not TRIGGER_NAME.match(name) or name in (".", ".."):
                raise InstallError(f"{self.what}: the triggers file names an invalid trigger {shown(name)}")
            out.append((directive, name))
        return out

    @property
    def canonical(self) -> dict[str, bytes]:
        """The control files dpkg reads paths from (conffiles, md5sums), as
        the normalised paths say them. An honest package's bytes come back
        unchanged."""
        out = {}
        if "md5sums" in self.files:
            sums = self.md5sums or {}
            out["md5sums"] = "".join(f"{h}  {p}\n" for p, h in sums.items()).encode("utf-8", "surrogateescape")
        if "conffiles" in self.files:
            text = self.files["conffiles"].decode("utf-8", "surrogateescape")
            lines = []
            for line in text.splitlines():
                words = line.split()
                if words:
                    words[-1] = self._path(words[-1], "conffiles")
                    lines.append(" ".join(words) + "\n")
            out["conffiles"] = "".join(lines).encode("utf-8", "surrogateescape")
        return out


class DebFile:
    """An open .deb. Use as a context manager."""

    def __init__(self, path: str | os.PathLike, what: str = ""):
        self.path = os.fspath(path)
        self.what = what or os.path.basename(self.path)
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise InstallError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            self.members = ar_members(self.fd, self.what)
            self._check_layout()
        except BaseException:
            os.close(self.fd)
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "DebFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_layout(self) -> None:
        names = [m.name for m in self.members]
        if not names or names[0] != "debian-binary":
            raise InstallError(f"{self.what} is not a Debian package (first member is not debian-binary)")
        version = os.pread(self.fd, min(self.members[0].size, 16), self.members[0].offset)
        if not version.startswith(b"2."):
            raise InstallError(f"{self.what} has unsupported format version {version.strip().decode(errors='replace')}")
        self.control_member = self._find("control.tar")
        self.data_member = self._find("data.tar")

    def _find(self, prefix: str) -> ArMember:
        for m in self.members:
            if m.name == prefix or m.name.startswith(prefix + "."):
                return m
        raise InstallError(f"{self.what} is not a Debian package (no {prefix} member)")

    def control(self) -> ControlInfo:
        """The control archive's regular files (control, md5sums, conffiles,
        maintainer scripts, triggers, shlibs...)."""
        files: dict[str, bytes] = {}
        m = self.control_member
        try:
            with libarchive.stream_reader(slice_stream(self.fd, m.offset, m.size), "tar") as reader:
                for entry in reader:
                    name = (ffi.entry_pathname(entry._entry_p) or b"").decode("utf-8", "surrogateescape")
                    name = name[2:] if name.startswith("./") else name.lstrip("/")
                    if not entry.isreg or "/" in name or not name:
                        continue
                    if not CONTROL_MEMBER.match(name):
                        # info/PKG.NAME and tmp.ci/NAME are made from it
                        raise InstallError(f"{self.what}: the control archive holds a file with an invalid name "
                                           f"{shown(name)}")
                    if entry.size > CONTROL_LIMIT:
                        raise InstallError(f"{self.what}: control file {name} is {entry.size} bytes, more than "
                                           f"{CONTROL_LIMIT} (a hostile package?)")
                    files[name] = b"".join(entry.get_blocks())
        except libarchive.ArchiveError as exc:
            raise InstallError(f"{self.what}: cannot read {m.name}: {exc.msg or exc}") from None
        if "control" not in files:
            raise InstallError(f"{self.what} has no control file")
        try:
            fields = parse_control(files["control"].decode("utf-8", "surrogateescape"))
        except ValueError as exc:
            raise InstallError(f"{self.what}: malformed control file: {exc}") from None
        if not fields.get("Package"):
            raise InstallError(f"{self.what}: control file has no Package field")
        if not PACKAGE_NAME.match(fields["Package"]):
            raise InstallError(f"{self.what}: control file names an invalid package {shown(fields['Package'])}")
        if "Architecture" in fields and not ARCH_NAME.match(fields["Architecture"]):
            raise InstallError(f"{self.what}: control file names an invalid architecture "
                               f"{shown(fields['Architecture'])}")
        info = ControlInfo(fields, files, self.what)
        # Every path the control files name, checked before any is used.
        info.conffiles, info.md5sums, info.triggers  # noqa: B018
        return info

    def data_stream(self):
        """The compressed data.tar member as a stream for libarchive."""
        m = self.data_member
        return slice_stream(self.fd, m.offset, m.size)
