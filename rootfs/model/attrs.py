"""The intended attributes of paths in a root, kept beside the tree.

Without root the tree on disk cannot hold other users' ownership, device
nodes or security.* xattrs. Extraction (and, later, the fakeroot-style
configure stage) therefore records what each path *should* be, and the packer
takes owners, modes, device numbers and xattrs from this record before it
falls back to what lstat says. As root the tree on disk holds the truth
(maintainer scripts chown and chmod it directly), so no record is kept; the
packer reads both through the same function and gives the same bytes.

Paths are relative to the root, without a leading slash ("etc/passwd"), as
str with surrogateescape so that non-UTF-8 names survive a JSON round trip.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rootfs.host.atomic import atomic_write_text


@dataclass(frozen=True)
class Attr:
    mode: int  # full st_mode: file type and permission bits (setuid, sticky...)
    uid: int = 0
    gid: int = 0
    rdev: int = 0  # os.makedev(major, minor) for character and block devices
    xattrs: tuple[tuple[str, bytes], ...] = ()

    @property
    def is_device(self) -> bool:
        return stat.S_ISCHR(self.mode) or stat.S_ISBLK(self.mode)

    def to_json(self) -> dict:
        d: dict = {"mode": self.mode, "uid": self.uid, "gid": self.gid}
        if self.rdev:
            d["rdev"] = [os.major(self.rdev), os.minor(self.rdev)]
        if self.xattrs:
            d["xattrs"] = {k: v.hex() for k, v in self.xattrs}
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Attr":
        rdev = os.makedev(*d["rdev"]) if "rdev" in d else 0
        xattrs = tuple(sorted((k, bytes.fromhex(v)) for k, v in d.get("xattrs", {}).items()))
        return cls(mode=d["mode"], uid=d["uid"], gid=d["gid"], rdev=rdev, xattrs=xattrs)


def relpath(path: str) -> str:
    """Normalise a member name to the record's key form."""
    path = path.lstrip("/")
    while path.startswith("./"):
        path = path[2:]
    return path.rstrip("/") or "."


class AttrRecord:
    """A mutable map of root-relative path -> Attr.

    `scripted` holds the paths of the device nodes and FIFOs that the
    configure stage (maintainer scripts, scriptlets) made, as opposed to
    ones a package payload shipped: the packer packs the former and holds
    the latter to the payload policy (rootfs.host.policy)."""

    def __init__(self, entries: dict[str, Attr] | None = None, scripted: set[str] | None = None):
        self._entries: dict[str, Attr] = dict(entries or {})
        self.scripted: set[str] = {relpath(p) for p in scripted or ()}

    def set(self, path: str, attr: Attr) -> None:
        self._entries[relpath(path)] = attr

    def get(self, path: str) -> Attr | None:
        return self._entries.get(relpath(path))

    def remove(self, path: str) -> None:
        """Forget a path and, if it was a directory, everything below it."""
        key = relpath(path)
        self._entries.pop(key, None)
        self.scripted.discard(key)
        prefix = key + "/"
        for k in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[k]
        for k in [k for k in self.scripted if k.startswith(prefix)]:
            self.scripted.discard(k)

    def chown(self, path: str, uid: int, gid: int) -> None:
        key = relpath(path)
        old = self._entries.get(key)
        if old is not None:
            self._entries[key] = Attr(old.mode, uid, gid, old.rdev, old.xattrs)

    def replace_with(self, other: "AttrRecord") -> None:
        """Take over other's entries (callers keep holding this object)."""
        self._entries = dict(other._entries)
        self.scripted = set(other.scripted)

    def __contains__(self, path: str) -> bool:
        return relpath(path) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> Iterator[tuple[str, Attr]]:
        return iter(sorted(self._entries.items()))

    def to_json(self) -> str:
        body = {k: v.to_json() for k, v in sorted(self._entries.items())}
        data: dict = {"format": 1, "paths": body}
        if self.scripted:
            data["scripted"] = sorted(self.scripted)
        return json.dumps(data, sort_keys=True) + "\n"

    def save(self, path: Path) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "AttrRecord":
        data = json.loads(Path(path).read_text())
        return cls({k: Attr.from_json(v) for k, v in data["paths"].items()}, set(data.get("scripted") or ()))


def sidecar_path(root: Path) -> Path:
    """Where the record of ROOT lives: ROOT.attrs.json, beside the tree, so
    that it is never packed into the image itself."""
    root = Path(root)
    return root.parent / f"{root.name}.attrs.json"


def load_for_root(root: Path) -> AttrRecord | None:
    path = sidecar_path(root)
    return AttrRecord.load(path) if path.exists() else None
