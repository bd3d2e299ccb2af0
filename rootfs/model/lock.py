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

LOCK_FORMAT = 2
# Format 1 had one source and no record of where each package came from;
# it is still read (every field it has kept its meaning).
READABLE_FORMATS = (1, 2)
# A lock of several architectures (LockSet): {"format": 3, "architectures":
# [...], "locks": [one format-2 lock, without its "format", per
# architecture]}. A lock of one architecture is written as format 2, as
# before, so its bytes and digest do not change.
MULTI_FORMAT = 3


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
    repository: str = ""  # the source it came from (LockSource.id); "" in format 1 locks

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
    # deb: what the image's own apt sources say about it.
    components: tuple[str, ...] = ()  # empty in format 1 locks: the lock's components
    keyring: str = ""  # the keyring (signed-by) it was verified with
    priority: int = 0  # the apt pin priority set for it by hand; 0: apt's default for its Release
    role: str = ""  # "mirror" / "security-mirror": the distribution's mirrors, which --mirror and friends replace
    image_url: str = ""  # what the image's sources name instead of url ("" for url itself)
    origin: str = ""  # the Release's Origin, Label and Codename
    label: str = ""
    codename: str = ""

    @property
    def id(self) -> str:
        """How packages name their source: "URL SUITE" (URL alone for rpm)."""
        return f"{self.url} {self.suite}" if self.suite else self.url

    @property
    def security(self) -> bool:
        """Whether it is a security archive (Debian labels them
        "Debian-Security"; Ubuntu's suites end in -security)."""
        return self.label.lower().endswith("-security") or self.suite.endswith(("-security", "/updates"))


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
    # deb: how the image lists its apt sources ("list": sources.list lines,
    # "deb822": sources.list.d/DISTRIBUTION.sources).
    sources_format: str = "list"

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

    def source_of(self, p: LockedPackage) -> LockSource | None:
        """The source a package came from (a format 1 lock: its one source)."""
        for src in self.sources:
            if src.id == p.repository:
                return src
        return self.sources[0] if not p.repository and len(self.sources) == 1 else None

    def package_lines(self) -> list[str]:
        """`name version arch`, sorted by name: what `rootfs resolve` prints."""
        return [f"{p.name} {p.version} {p.architecture}" for p in sorted(self.packages, key=lambda p: (p.name, p.architecture))]


def _tuple_fields(d: dict, names: tuple[str, ...]) -> dict:
    return {k: (tuple(v) if k in names and isinstance(v, list) else v) for k, v in d.items()}


def _json(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON: {exc}") from None


def lock_from_json(text: str, where: str = "lock") -> Lock:
    return _lock_from_data(_json(text, where), where)


def _lock_from_data(data, where: str) -> Lock:
    if isinstance(data, dict) and data.get("format") == MULTI_FORMAT:
        arches = data.get("architectures")
        raise UsageError(f"{where} holds the locks of several architectures ({', '.join(map(str, arches or []))}); "
                         "this command reads a lock of one")
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        found = data.get("format") if isinstance(data, dict) else None
        if isinstance(found, int) and found > MULTI_FORMAT:
            raise UsageError(f"{where} is not a rootfs lock file this rootfs reads: its format {found} is newer "
                             f"than {MULTI_FORMAT}; upgrade rootfs")
        raise UsageError(f"{where} is not a rootfs lock file (format {LOCK_FORMAT})")
    try:
        packages = tuple(
            LockedPackage(**_tuple_fields(p, ("depends", "provides"))) for p in data.pop("packages")
        )
        sources = tuple(LockSource(**_tuple_fields(s, ("components",))) for s in data.pop("sources", []))
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


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read lock file {path}: {exc.strerror}") from None


def read_lock(path: Path) -> Lock:
    return lock_from_json(_read_text(path), str(path))


@dataclass(frozen=True)
class LockSet:
    """The locks of one recipe for several architectures, in the order
    they were asked for: one file, one digest, `--locked` builds them all
    (or the architectures named). One lock is written exactly as a Lock."""

    locks: tuple[Lock, ...]

    @property
    def architectures(self) -> tuple[str, ...]:
        return tuple(lk.architecture for lk in self.locks)

    def to_json(self) -> str:
        if len(self.locks) == 1:
            return self.locks[0].to_json()
        bodies = []
        for lk in self.locks:
            body = json.loads(lk.to_json())
            body.pop("format")
            bodies.append(body)
        data = {"format": MULTI_FORMAT, "architectures": list(self.architectures), "locks": bodies}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def write(self, path: Path) -> None:
        from rootfs.host.atomic import atomic_write_text

        atomic_write_text(path, self.to_json())

    def package_lines(self) -> list[str]:
        return [line for lk in self.locks for line in lk.package_lines()]

    def merged(self) -> Lock:
        """One lock, for what looks at the whole set (the report, the
        up-to-date check, fetching): the only lock, or every lock's packages
        once (an architecture "all" package is one file for all of them)
        under the architectures joined with commas."""
        if len(self.locks) == 1:
            return self.locks[0]
        import dataclasses

        packages = tuple(dict.fromkeys(p for lk in self.locks for p in lk.packages))
        return dataclasses.replace(self.locks[0], architecture=",".join(self.architectures), packages=packages)

    def select(self, names: tuple[str, ...], where: str) -> LockSet:
        """The locks of the architectures named (any spelling), in that order."""
        if not names:
            return self
        from rootfs.model.arch import lookup

        by_arch = {lookup(lk.architecture): lk for lk in self.locks}
        out = []
        for n in names:
            lk = by_arch.get(lookup(n))
            if lk is None:
                raise UsageError(f"{where} has no lock for {n} (it has: {', '.join(self.architectures)})")
            out.append(lk)
        return LockSet(tuple(out))


def lockset_from_json(text: str, where: str = "lock") -> LockSet:
    data = _json(text, where)
    if not (isinstance(data, dict) and data.get("format") == MULTI_FORMAT):
        return LockSet((_lock_from_data(data, where),))
    bodies = data.get("locks")
    if not isinstance(bodies, list) or not bodies or not all(isinstance(b, dict) for b in bodies):
        raise UsageError(f"{where} is not a valid rootfs lock file: its locks are not a list of locks")
    locks = tuple(_lock_from_data({**b, "format": LOCK_FORMAT}, f"{where} ({b.get('architecture')})") for b in bodies)
    if len({lk.architecture for lk in locks}) != len(locks) or len({lk.backend for lk in locks}) != 1:
        raise UsageError(f"{where} is not a valid rootfs lock file: two of its locks share an architecture, "
                         "or they differ in backend")
    return LockSet(locks)


def read_lockset(path: Path) -> LockSet:
    """A lock file of one architecture or several."""
    return lockset_from_json(_read_text(path), str(path))
