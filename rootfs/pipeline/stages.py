"""The pipeline: recipe -> lock -> package files -> root -> artifacts.

Each command runs a prefix or a suffix of it; the functions here are the
stages, each taking the previous stage's output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rootfs import ui
from rootfs.backends import InstallOptions, InstallReport, ResolveOptions, backend_module
from rootfs.model.errors import OutputError, PrivilegeError
from rootfs.net.fetch import Cache, Downloader, fetch_packages
from rootfs.model.lock import Lock
from rootfs.model.recipe import Recipe


@dataclass
class Selection:
    """Command-line overrides of a recipe's package selection."""

    mirror: str | None = None
    variant: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    arch: str | None = None
    keyring: str | None = None
    repos: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    weak_deps: bool | None = None


def apply_selection(recipe: Recipe, sel: Selection) -> Recipe:
    from rootfs.model.errors import UsageError
    from rootfs.model.recipe import DEB_VARIANTS

    changes: dict = {}
    if sel.mirror:
        if not sel.mirror.startswith(("http://", "https://", "file:/")):
            raise UsageError(f"mirror {sel.mirror!r} is not an http://, https:// or file:// URL")
        changes["mirror"] = sel.mirror
    if sel.variant:
        if recipe.backend == "deb" and sel.variant not in DEB_VARIANTS:
            raise UsageError(f"unknown variant {sel.variant!r} (known: {', '.join(DEB_VARIANTS)})")
        changes["variant"] = sel.variant
    if sel.include:
        changes["include"] = recipe.include + sel.include
    if sel.exclude:
        changes["exclude"] = recipe.exclude + sel.exclude
    if sel.components:
        changes["components"] = sel.components
    if sel.arch:
        changes["architecture"] = sel.arch
    if sel.keyring:
        changes["keyring" if recipe.backend == "deb" else "gpgkey"] = sel.keyring
    if sel.repos:
        changes["repos"] = sel.repos
    if sel.packages:
        changes["packages"] = recipe.packages + sel.packages
    if sel.weak_deps is not None:
        changes["weak_deps"] = sel.weak_deps
    return recipe.replace(**changes) if changes else recipe


def resolve(recipe: Recipe, opts: ResolveOptions, downloader: Downloader) -> Lock:
    return backend_module(recipe.backend).resolve(recipe, opts, downloader)


def fetch(lock: Lock, cache: Cache, downloader: Downloader, jobs: int) -> dict[str, Path]:
    total = sum(p.size for p in lock.packages)
    with ui.download_bar(total, f"fetching {len(lock.packages)} packages") as advance:
        files = fetch_packages(lock.packages, cache, downloader, jobs=jobs, progress=advance)
    ui.detail(f"{len(files)} package files verified in {cache.root}")
    return files


def install(lock: Lock, files: dict[str, Path], root: Path, opts: InstallOptions) -> InstallReport:
    if opts.mode == "root" and os.geteuid() != 0:
        raise PrivilegeError(
            "installing with maintainer scripts (stage 2) needs root; run as root, "
            "or pass --mode extract for an extract-only tree"
        )
    with ui.step_bar("installing") as update:
        opts.progress = update
        opts.log = ui.detail
        return backend_module(lock.backend).install(lock, files, root, opts)


@contextlib.contextmanager
def work_dir(near: Path) -> Iterator[Path]:
    """A scratch directory on the same filesystem as the output, so the
    finished root can be renamed into place; always removed."""
    parent = Path(near).resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        d = Path(tempfile.mkdtemp(prefix=f".{Path(near).name}.", suffix=".work", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write in {parent}: {exc.strerror}") from None
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
