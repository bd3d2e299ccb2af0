"""The seam between the pipeline and the backends.

A backend knows one package format and its repositories; nothing else
does. Each is a package (rootfs.backends.deb, rootfs.backends.rpm) whose
`backend` module satisfies the Backend protocol below, and whose `settings`
module reads its own recipe section.
"""

from __future__ import annotations

import enum
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rootfs.host.policy import DEFAULT as DEFAULT_POLICY
from rootfs.host.policy import Policy
from rootfs.model.attrs import AttrRecord
from rootfs.model.customize import Customize
from rootfs.model.errors import UsageError

if TYPE_CHECKING:
    from rootfs.model.lock import Lock
    from rootfs.model.recipe import Recipe
    from rootfs.net.fetch import Downloader


class Mode(str, enum.Enum):
    """How a root is installed."""

    # extract with real owners and configure chrooted (needs root)
    ROOT = "root"
    # extract as EXTRACT does, then configure in a user namespace with
    # ownership changes recorded
    ROOTLESS = "rootless"
    # stage 1 only: owners recorded in the attrs record rather than applied
    EXTRACT = "extract"

    @classmethod
    def parse(cls, text: str | None) -> Mode:
        """The mode a user named; the default is root for root, else rootless."""
        if text is None:
            return cls.ROOT if os.geteuid() == 0 else cls.ROOTLESS
        try:
            return cls(text)
        except ValueError:
            raise UsageError(f"unknown mode {text!r} (known: {', '.join(m.value for m in cls)})") from None

    @property
    def configures(self) -> bool:
        """Whether maintainer scripts / scriptlets run."""
        return self is not Mode.EXTRACT


@dataclass(frozen=True)
class ResolveOptions:
    check_gpg: bool = True  # False only with --no-check-gpg
    check_valid_until: bool = True  # False with --ignore-valid-until (snapshot mirrors)
    keyring: str = ""  # overrides the recipe's keyring / gpgkey
    # Where verified indices may be kept between runs (the package cache);
    # None: fetch them every time.
    cache_dir: Path | None = None
    # The lock this recipe resolved to last time (the published build's):
    # a backend may return it as it is when every source's signed metadata
    # is, byte for byte, what that lock records (still fetched and checked
    # now), since the same metadata gives the same choice.
    previous: Lock | None = None


@dataclass
class InstallOptions:
    mode: Mode = Mode.ROOT
    attrs: AttrRecord | None = None  # where owners are recorded when not applied (not ROOT)
    progress: Callable[[str, int, int], None] | None = None  # (stage, done, total)
    log: Callable[[str], None] = lambda msg: None
    customize: Customize = field(default_factory=Customize)  # hooks and [customize] entries
    settings: object = None  # the recipe's backend section, for what it configures beyond packages
    verbosity: int = 1  # for hooks: 0 quiet, 1 normal, 2 verbose
    # What payloads may hold (rootfs.host.policy); every backend's unpacking
    # goes through an Extractor made with it.
    policy: Policy = DEFAULT_POLICY

    def __post_init__(self) -> None:
        self.mode = Mode(self.mode)


@dataclass
class InstallReport:
    packages: int = 0
    configured: bool = False
    skipped: list[str] = field(default_factory=list)  # steps not run, said to the user
    # Every payload went through an Extractor holding it to opts.policy, so
    # any device node or FIFO left in the root was made by a script: the
    # packer may pack them (PackOptions.nodes_checked).
    payloads_checked: bool = False


class Backend(Protocol):
    """What the pipeline asks of a backend."""

    def resolve(self, recipe: Recipe, opts: ResolveOptions, downloader: Downloader) -> Lock:
        """The recipe resolved against its repositories' verified metadata."""
        ...

    def install(self, lock: Lock, files: dict[str, Path], root: Path, opts: InstallOptions) -> InstallReport:
        """Install the lock's packages into root. `files` maps
        LockedPackage.key to the verified package file in the cache."""
        ...

    def locked(self, lock: Lock, recipe: Recipe, sources_given: bool,
               opts: ResolveOptions) -> tuple[Lock, dict[str, str]]:
        """A lock read from a file, adapted to this run's command line, and
        the URLs (package key -> URL) to fetch some packages from instead
        of the lock's, when the user named sources (`make --locked`)."""
        ...


def backend_module(name: str) -> Backend:
    return importlib.import_module(f"rootfs.backends.{name}.backend")  # type: ignore[return-value]

