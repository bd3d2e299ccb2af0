"""The run-specific files that would make two builds of one lock differ.

The packer leaves them out of the image (or packs a fixed replacement) as a
filter on the stream: the caller's tree is never modified, so `rootfs pack
ROOT` on a user's own tree destroys nothing. The list follows mmdebstrap's
cleanup/reproducible, cleanup/run, cleanup/tmp and cleanup/apt steps, plus
what debuerreotype drops (dpkg and debconf `-old` backups, /etc/shadow's
last-change day, which debootstrap sets to the build day).

Independent of cleaning, the contents of /proc, /sys and /dev are never
packed (the directories themselves are): they are filled at run time, and a
host /dev bind-mounted into a build root must never end up in an image.
"""

from __future__ import annotations

import fnmatch
import os

SKIP = object()  # leave the path (and everything below it) out
EMPTY_DIR = object()  # pack the directory itself, none of its contents
KEEP = None

# Exact paths removed, as mmdebstrap's cleanup/reproducible does.
_FILES = {
    b"var/log/dpkg.log",
    b"var/log/alternatives.log",
    b"var/log/bootstrap.log",
    b"var/cache/ldconfig/aux-cache",
    b"var/lib/dbus/machine-id",
}

# (directory, glob over its direct children, kept names): what apt-get clean,
# log rotation and backups leave behind.
_GLOBS = (
    (b"var/log/apt", b"*", ()),
    (b"var/lib/apt/lists", b"*", (b"lock", b"partial")),
    (b"var/lib/apt/lists/partial", b"*", ()),
    (b"var/cache/apt", b"*.bin", ()),
    (b"var/cache/apt/archives", b"*.deb", ()),
    (b"var/cache/apt/archives/partial", b"*", ()),
    (b"var/lib/dpkg", b"*-old", ()),
    (b"var/cache/debconf", b"*-old", ()),
    (b"run", b"*", (b"lock",)),  # /var/lock -> /run/lock (Debian policy 9.1.4)
)

_ALWAYS_EMPTY = (b"proc", b"sys")
_EMPTY_WHEN_CLEAN = (b"tmp",)


class Filter:
    def __init__(self, *, clamp: int | None, keep_dev: bool, enabled: bool):
        self.clamp = clamp
        self.enabled = enabled
        self.empty = set(_ALWAYS_EMPTY) | ({b"dev"} if not keep_dev else set())
        if enabled:
            self.empty |= set(_EMPTY_WHEN_CLEAN)

    def action(self, rel: bytes):
        """SKIP, EMPTY_DIR, KEEP, or the bytes to pack instead of the file."""
        if rel in self.empty:
            return EMPTY_DIR
        if not self.enabled:
            return KEEP
        if rel in _FILES:
            return SKIP
        parent, _, name = rel.rpartition(b"/")
        for d, pattern, kept in _GLOBS:
            if parent == d and name not in kept and fnmatch.fnmatchcase(name, pattern):
                return SKIP
        if rel == b"etc/machine-id":
            # machine-id(5): an image carries it empty, so that the first
            # boot (or a bind mount) provides one.
            return b""
        if rel in (b"etc/shadow", b"etc/shadow-") and self.clamp is not None:
            return _ShadowFix(self.clamp)
        return KEEP


class _ShadowFix:
    """Contents computed from the file: the last-change day clamped."""

    def __init__(self, clamp: int):
        self.day = clamp // 86400

    def apply(self, text: bytes) -> bytes:
        out = []
        for line in text.split(b"\n"):
            f = line.split(b":")
            if len(f) >= 3 and f[2].isdigit() and int(f[2]) > self.day:
                f[2] = str(self.day).encode()
                line = b":".join(f)
            out.append(line)
        return b"\n".join(out)


def resolve_action(action, path: bytes):
    """Turn a content-computing action into the replacement bytes."""
    if isinstance(action, _ShadowFix):
        try:
            with open(path, "rb") as f:
                return action.apply(f.read())
        except OSError:
            return KEEP
    return action


def is_replacement(action) -> bool:
    return isinstance(action, bytes)


def describe() -> list[str]:
    """The rules, for --help and the README."""
    rules = [os.fsdecode(p) for p in sorted(_FILES)]
    rules += [os.fsdecode(d + b"/" + g) for d, g, _ in _GLOBS]
    return rules
