"""The Lock: the exact package set a build installs, as plain JSON.

It is the contract between resolving and installing. Everything after the
lock (fetch, install, pack) is a function of the lock, the package files it
names and SOURCE_DATE_EPOCH; nothing after it looks at a repository index.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from rootfs.model.errors import UsageError

LOCK_FORMAT = 1


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str  # deb: the Debian version; rpm: epoch:version-release (epoch may be 0)
    architecture: str
    url: str
    size: int
    sha256: str
    # Facts the installer and the reports want without reopening indices.
    source: str = ""  # deb: source package; rpm: source rpm
    essential: bool = False  # deb: Essential: yes
    priority: str = ""  # deb: Priority
    depends: tuple[str, ...] = ()  # raw relation strings: Pre-Depends+Depends or Requires
    provides: tuple[str, ...] = ()  # raw Provides entries
    build_time: int = 0  # rpm build time / 0 when unknown

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def key(self) -> str:
        return f"{self.name}:{self.architecture}"


@dataclass(frozen=True)
class LockSource:
    """One repository the lock was resolved from, with the digest of its
    signed metadata (Release or repomd.xml) at that time."""

    url: str
    suite: str = ""
    metadata: str = ""  # "InRelease", "Release", "repodata/repomd.xml"
    sha256: str = ""
    date: str = ""  # the Release Date or repomd revision, for SOURCE_DATE_EPOCH


@dataclass(frozen=True)
class Lock:
    backend: str
    recipe: str
    distribution: str
    suite: str
    architecture: str
    variant: str = ""
    components: tuple[str, ...] = ()
    sources: tuple[LockSource, ...] = ()
    packages: tuple[LockedPackage, ...] = ()
    merged_usr: bool = True
    source_date_epoch: int = 0  # the default SOURCE_DATE_EPOCH for builds of this lock
    requested: tuple[str, ...] = ()  # what the user asked for, as they wrote it
    # OpenPGP public keys (ASCII armour) that every package's own signature
    # must verify against at install time (rpm); empty: no package signatures.
    keys: tuple[str, ...] = ()

    def to_json(self) -> str:
        data = asdict(self)
        data["format"] = LOCK_FORMAT
        data["packages"] = sorted(data["packages"], key=lambda p: (p["name"], p["architecture"]))
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def write(self, path: Path) -> None:
        from rootfs.host.atomic import atomic_write_text

        atomic_write_text(path, self.to_json())

    def package_lines(self) -> list[str]:
        """`name version arch`, sorted by name: what `rootfs resolve` prints."""
        return [f"{p.name} {p.version} {p.architecture}" for p in sorted(self.packages, key=lambda p: (p.name, p.architecture))]


def _tuple_fields(d: dict, names: tuple[str, ...]) -> dict:
    return {k: (tuple(v) if k in names and isinstance(v, list) else v) for k, v in d.items()}


def lock_from_json(text: str, where: str = "lock") -> Lock:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != LOCK_FORMAT:
        raise UsageError(f"{where} is not a rootfs lock file (format {LOCK_FORMAT})")
    try:
        packages = tuple(
            LockedPackage(**_tuple_fields(p, ("depends", "provides"))) for p in data.pop("packages")
        )
        sources = tuple(LockSource(**s) for s in data.pop("sources", []))
        data.pop("format")
        # Locks written before `requested` and `keys` were fields kept them in "extra".
        extra = data.pop("extra", None) or {}
        data.setdefault("requested", extra.get("requested", ()))
        data.setdefault("keys", [extra["gpgkey"]] if extra.get("gpgkey") else [])
        for name in ("components", "requested", "keys"):
            data[name] = tuple(data.get(name, ()))
        lock = Lock(packages=packages, sources=sources, **data)
    except (TypeError, KeyError, AttributeError) as exc:
        raise UsageError(f"{where} is not a valid rootfs lock file: {exc}") from None
    for p in lock.packages:
        if not (isinstance(p.sha256, str) and len(p.sha256) == 64 and isinstance(p.size, int)):
            raise UsageError(f"{where}: package {p.name} lacks a valid sha256 and size")
    return lock


def read_lock(path: Path) -> Lock:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read lock file {path}: {exc.strerror}") from None
    return lock_from_json(text, str(path))
