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


def lock_from_json(text: str, where: str = "lock") -> Lock:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        found = data.get("format") if isinstance(data, dict) else None
        if isinstance(found, int) and found > LOCK_FORMAT:
            raise UsageError(f"{where} is not a rootfs lock file this rootfs reads: its format {found} is newer "
                             f"than {LOCK_FORMAT}; upgrade rootfs")
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


def read_lock(path: Path) -> Lock:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read lock file {path}: {exc.strerror}") from None
    return lock_from_json(text, str(path))
