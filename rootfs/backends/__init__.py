"""The seam between the pipeline and the two backends.

A backend module (rootfs.backends.deb.backend, rootfs.backends.rpm.backend) provides:

    resolve(recipe: Recipe, opts: ResolveOptions, downloader: Downloader) -> Lock
    install(lock: Lock, files: dict[str, Path], root: Path, opts: InstallOptions) -> InstallReport

`files` maps LockedPackage.key to the verified package file in the cache.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from rootfs.model.attrs import AttrRecord


@dataclass(frozen=True)
class ResolveOptions:
    check_gpg: bool = True  # False only with --no-check-gpg
    check_valid_until: bool = True  # False with --ignore-valid-until (snapshot mirrors)
    keyring: str = ""  # overrides the recipe's keyring / gpgkey


@dataclass
class InstallOptions:
    # "root": extract with real owners and configure chrooted (needs root).
    # "extract": stage 1 only, owners recorded in `attrs` rather than applied.
    # "rootless": extract as "extract" does, then configure in a user namespace
    # with ownership changes recorded (issue 7).
    mode: str = "root"
    attrs: AttrRecord | None = None
    progress: Callable[[str, int, int], None] | None = None  # (stage, done, total)
    log: Callable[[str], None] = lambda msg: None


@dataclass
class InstallReport:
    packages: int = 0
    configured: bool = False
    skipped: list[str] = field(default_factory=list)  # steps not run, said to the user


def backend_module(name: str):
    return importlib.import_module(f"rootfs.backends.{name}.backend")


def is_root() -> bool:
    return os.geteuid() == 0


def default_mode() -> str:
    return "root" if is_root() else "rootless"
