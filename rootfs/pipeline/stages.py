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
from rootfs.backends import (
    InstallOptions,
    InstallReport,
    Mode,
    ResolveOptions,
    backend_module,
)
from rootfs.model.errors import OutputError, PrivilegeError
from rootfs.model.lock import Lock, LockSet
from rootfs.model.recipe import Recipe
from rootfs.net.fetch import Cache, Downloader, fetch_packages


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
    nodeps: bool | None = None
    modules: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # --source, in apt's one-line or deb822 form, or a file
    security_mirror: str | None = None
    updates: bool | None = None  # False with --no-updates
    image_mirror: str | None = None
    image_security_mirror: str | None = None

    @property
    def names_sources(self) -> bool:
        """Whether the command line says where packages come from."""
        return bool(self.mirror or self.security_mirror or self.sources or self.repos)


def apply_selection(recipe: Recipe, sel: Selection) -> Recipe:
    """The recipe with the command line's overrides; an option the
    recipe's backend has no use for is refused, not ignored."""
    from dataclasses import fields

    from rootfs.model.errors import UsageError

    common: dict = {}
    if sel.include:
        common["include"] = recipe.include + sel.include
    if sel.exclude:
        common["exclude"] = recipe.exclude + sel.exclude
    if sel.arch:
        common["architecture"] = sel.arch
    backend: dict = {}
    for option, key, url in (("--mirror", "mirror", sel.mirror), ("--security-mirror", "security_mirror", sel.security_mirror),
                             ("--image-mirror", "image_mirror", sel.image_mirror),
                             ("--image-security-mirror", "image_security_mirror", sel.image_security_mirror)):
        if url:
            if not url.startswith(("http://", "https://", "file:/")):
                raise UsageError(f"{option} {url!r} is not an http://, https:// or file:// URL")
            backend[key] = (option, url)
    if sel.sources:
        parsed: tuple = ()
        if recipe.backend == "deb":
            from rootfs.backends.deb.sources import parse_source_option

            parsed = tuple(spec for value in sel.sources for spec in parse_source_option(value))
        backend["added_sources"] = ("--source", getattr(recipe.settings, "added_sources", ()) + parsed)
    if sel.updates is not None:
        if not sel.updates and sel.security_mirror:
            raise UsageError("--no-updates leaves out the security suites, so --security-mirror would not be used; "
                             "pass one of them")
        backend["updates"] = ("--no-updates", sel.updates)
    if sel.variant:
        from rootfs.backends.deb.settings import check_variant

        backend["variant"] = ("--variant", check_variant(sel.variant) if recipe.backend == "deb" else sel.variant)
    if sel.components:
        backend["components"] = ("--components", sel.components)
    if sel.keyring:
        backend["keyring" if recipe.backend == "deb" else "gpgkey"] = ("--keyring", sel.keyring)
    if sel.repos:
        backend["repos"] = ("--repo", sel.repos)
    if sel.packages:
        backend["packages"] = ("PACKAGE", getattr(recipe.settings, "packages", ()) + sel.packages)
    if sel.weak_deps is not None:
        backend["weak_deps"] = ("--weak-deps", sel.weak_deps)
    if sel.nodeps is not None:
        backend["nodeps"] = ("--nodeps", sel.nodeps)
    if sel.modules:
        from rootfs.backends.rpm.settings import check_modules

        current = dict(m.split(":", 1) for m in getattr(recipe.settings, "modules", ()))
        current.update(m.split(":", 1) for m in check_modules(sel.modules, "--module"))
        backend["modules"] = ("--module", tuple(f"{k}:{v}" for k, v in current.items()))
    known = {f.name for f in fields(recipe.settings)}
    for key, (option, _) in backend.items():
        if key not in known:
            raise UsageError(f"{option} does not apply to {recipe.backend} recipes")
    out = recipe.replace(**common) if common else recipe
    if backend:
        out = out.with_settings(**{k: v for k, (_, v) in backend.items()})
    if out.backend == "deb":
        # Before anything is fetched: pkg=version and pkg/suite read, and
        # contradictions among the requests refused.
        from rootfs.backends.deb.resolver import parse_requests

        parse_requests(out.include, out.exclude)
    return out


def resolve(recipe: Recipe, opts: ResolveOptions, downloader: Downloader) -> Lock:
    with ui.phase("resolve") as ph:
        lock = backend_module(recipe.backend).resolve(recipe, opts, downloader)
        where = " ".join(x for x in (lock.suite, lock.architecture) if x)
        ph.summary = f"{len(lock.packages)} packages" + (f" ({where})" if where else "")
    return lock


def resolve_all(recipe: Recipe, arches: tuple[str, ...], opts: ResolveOptions, downloader: Downloader) -> LockSet:
    """One lock per architecture named (none named: the recipe's own)."""
    if len(arches) <= 1:
        return LockSet((resolve(recipe.replace(architecture=arches[0]) if arches else recipe, opts, downloader),))
    return LockSet(tuple(resolve(recipe.replace(architecture=a), opts, downloader) for a in arches))


def use_lock(lock: Lock, recipe: Recipe, opts: ResolveOptions, sources_given: bool) -> tuple[Lock, dict[str, str]]:
    """A lock read from a file, as this run uses it: the backend adapts
    what the command line changes (the image's own sources; where to fetch
    from when the user named sources) and says which URLs changed."""
    return backend_module(lock.backend).locked(lock, recipe, sources_given, opts)


def fetch(lock: Lock, cache: Cache, downloader: Downloader, jobs: int,
          urls: dict[str, str] | None = None) -> dict[str, Path]:
    """Every package file of the lock, verified; `urls` (package key ->
    URL) fetches some from elsewhere than the lock says, the same bytes."""
    import dataclasses

    packages = [dataclasses.replace(p, url=urls[p.key]) if urls and p.key in urls else p for p in lock.packages]
    total = sum(p.size for p in packages)
    with ui.phase("fetch") as ph, ui.download_bar(total, f"fetching {len(packages)} packages") as advance:
        files = fetch_packages(packages, cache, downloader, jobs=jobs, progress=advance)
        ph.summary = f"{len(packages)} packages, {ui.size_text(total)} verified"
    ui.detail(f"{len(files)} package files verified in {cache.root}")
    return files


def install(lock: Lock, files: dict[str, Path], root: Path, opts: InstallOptions) -> InstallReport:
    if opts.mode is Mode.ROOT and os.geteuid() != 0:
        raise PrivilegeError(
            "installing with maintainer scripts (stage 2) needs root; run as root, "
            "or pass --mode extract for an extract-only tree"
        )
    with ui.phase("install") as ph, ui.step_bar("installing") as update:
        opts.progress = update
        opts.log = ui.detail
        report = backend_module(lock.backend).install(lock, files, root, opts)
        ph.summary = f"{len(lock.packages)} packages ({opts.mode.value})"
    return report


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
