"""What `-o` names: the format its suffix implies, and the checks made
before any work starts, so that a bad output path costs a second, not a
whole build.

As mmdebstrap does, without `--format` the output's suffix chooses the
format, and a name without a known suffix is a directory (the root itself);
`-o -` is a tar on standard output.

| suffix | format |
|---|---|
| `.tar` | tar |
| `.tar.gz`, `.tgz` | tar.gz |
| `.tar.zst`, `.tzst` | tar.zst |
| `.tar.xz`, `.txz` | tar.xz |
| `.oci.tar` | oci-archive |
| `.docker.tar` | docker-archive |
| `.ext2`, `.ext4` | ext2, ext4 |
| `.squashfs`, `.sqfs` | squashfs |
| anything else | dir |
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rootfs.model.errors import OutputError, UsageError

# Longest first: `.oci.tar` before `.tar`.
SUFFIXES: tuple[tuple[str, str], ...] = (
    (".oci.tar", "oci-archive"),
    (".docker.tar", "docker-archive"),
    (".tar.gz", "tar.gz"),
    (".tgz", "tar.gz"),
    (".tar.zst", "tar.zst"),
    (".tzst", "tar.zst"),
    (".tar.xz", "tar.xz"),
    (".txz", "tar.xz"),
    (".tar", "tar"),
    (".ext2", "ext2"),
    (".ext4", "ext4"),
    (".squashfs", "squashfs"),
    (".sqfs", "squashfs"),
)
# What `-o -` can stream: formats that are one file.
STREAMABLE = ("tar", "tar.gz", "tar.zst", "tar.xz", "oci-archive", "docker-archive")
DIRECTORY_FORMATS = ("oci", "dir")
# Archives are tars: `docker save -o image.tar` is the habit.
ALSO_NAMED = {"tar": ("oci-archive", "docker-archive")}


def suffix_format(output: str | os.PathLike) -> str | None:
    """The format output's name implies, or None for a name without a
    known suffix."""
    name = Path(output).name.lower()
    for suffix, fmt in SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return fmt
    return None


def choose_formats(output: str | os.PathLike, formats: list[str]) -> list[str]:
    """The formats asked for, or the one -o's suffix implies."""
    if formats:
        return formats
    if str(output) == "-":
        return ["tar"]
    return [suffix_format(output) or "dir"]


def check_output(output: str | os.PathLike, formats: list[str] | tuple[str, ...], keep: int = 0) -> None:
    """Refuse, before building, an output the build could not be published
    to: a suffix that names another format (an archive may end in .tar), an existing file where a
    directory goes (or the reverse), a parent that is not a directory or
    cannot be written."""
    if str(output) == "-":
        if len(formats) != 1 or formats[0] not in STREAMABLE:
            raise UsageError(f"-o - streams exactly one of {', '.join(STREAMABLE)} to standard output")
        if sys.stdout.isatty():
            raise UsageError("refusing to write an image to a terminal; redirect standard output")
        return
    out = Path(output)
    directory = keep > 0 or len(formats) != 1 or formats[0] in DIRECTORY_FORMATS
    implied = suffix_format(out)
    if implied is not None:
        if len(formats) != 1 or keep:
            raise OutputError(f"-o {out} is a directory of artifacts here, but its name ends like a {implied} file; "
                              "name it without that suffix")
        if implied != formats[0] and formats[0] not in ALSO_NAMED.get(implied, ()):
            raise OutputError(f"-o {out} names a {implied} file, but the format asked for is {formats[0]}; "
                              f"drop --format or change the name")
    if out.exists() or out.is_symlink():
        if directory and not out.is_dir():
            raise OutputError(f"{out} exists and is not a directory")
        if not directory and out.is_dir():
            raise OutputError(f"{out} is a directory; the {formats[0]} artifact is a file: remove it or choose another -o")
    parent = out if keep else out.absolute().parent
    while not parent.exists():
        if parent.is_symlink():
            raise OutputError(f"{parent} is a dangling symbolic link")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        why = "read-only file system" if os.statvfs(parent).f_flag & os.ST_RDONLY else "permission denied"
        raise OutputError(f"cannot write in {parent}: {why}")
