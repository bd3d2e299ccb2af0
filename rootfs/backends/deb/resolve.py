"""recipe -> Lock for apt repositories: fetch and verify the metadata, load
the indices, resolve the variant, describe the result as a Lock."""

from __future__ import annotations

import os
import shutil
import subprocess

from rootfs import ui
from rootfs.backends import ResolveOptions
from rootfs.backends.deb.index import Index, Package, decompress_chunks
from rootfs.backends.deb.mirror import choose_mirror
from rootfs.backends.deb.release import (
    check_release,
    fetch_index,
    fetch_release,
    keyring_for,
    parse_date,
)
from rootfs.backends.deb.resolver import resolve_set, variant_request
from rootfs.model.lock import Lock, LockedPackage, LockSource
from rootfs.model.recipe import Recipe
from rootfs.net.fetch import Downloader


def apt_checks_valid_until() -> bool:
    """apt's own Acquire::Check-Valid-Until on this host (default true)."""
    if not shutil.which("apt-config"):
        return True
    try:
        out = subprocess.run(["apt-config", "dump", "Acquire::Check-Valid-Until"],
                             capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return True
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key == "Acquire::Check-Valid-Until":
            return value.strip().strip(";").strip('"').lower() not in ("false", "no", "0", "off")
    return True


def _mirror_is_from_host(recipe: Recipe) -> bool:
    return not recipe.settings.mirror and not os.environ.get("ROOTFS_MIRROR")


def _locked(p: Package) -> LockedPackage:
    depends = []
    if p.pre_depends:
        depends.append(f"Pre-Depends: {p.pre_depends}")
    if p.depends:
        depends.append(f"Depends: {p.depends}")
    return LockedPackage(
        name=p.name,
        version=p.version,
        architecture=p.architecture,
        url=p.url,
        size=p.size,
        sha256=p.sha256,
        source=p.source_name,
        essential=p.essential,
        priority=p.priority,
        depends=tuple(depends),
        provides=tuple(x.strip() for x in p.provides.split(",") if x.strip()),
    )


def load_index(recipe: Recipe, opts: ResolveOptions, downloader: Downloader, mirror: str):
    """(fetched Release, Index) for the recipe's suite, components and arch."""
    keyring = keyring_for(recipe.settings.keyring, opts.keyring, opts.check_gpg, recipe.name)
    fetched, _ = fetch_release(downloader, mirror, recipe.suite, keyring, check_gpg=opts.check_gpg)
    rel = fetched.release
    check_valid_until = opts.check_valid_until
    if check_valid_until and _mirror_is_from_host(recipe) and not apt_checks_valid_until():
        # The mirror is the one this host's apt uses, and the host's apt was
        # told not to check Valid-Until (typical for snapshot or cached
        # mirrors, as on build farms): judging the same Release more strictly
        # than apt would only make a host that can run apt fail to bootstrap.
        # An explicitly named mirror keeps the strict check.
        check_valid_until = False
        if rel.valid_until:
            ui.detail("apt's Acquire::Check-Valid-Until is false here; not checking Valid-Until")
    check_release(rel, recipe.suite, check_valid_until=check_valid_until)

    index = Index(recipe.architecture, mirror)
    arches = [recipe.architecture]
    # binary-all carries the Architecture: all packages only when the archive
    # does not also put them into every binary-ARCH index.
    if "all" in rel.architectures and not rel.no_arch_all_packages and recipe.architecture != "all":
        arches.append("all")
    for component in recipe.settings.components:
        for arch in arches:
            data, ext = fetch_index(downloader, fetched, component, arch)
            index.add(decompress_chunks(data, ext, f"{component}/binary-{arch}/Packages{ext}"))
    ui.detail(f"{index.stanzas} stanzas in {recipe.suite} {' '.join(recipe.settings.components)} ({' '.join(arches)})")
    return fetched, index


def local_package(path: str, architecture: str) -> str:
    """The Packages stanza of a package file named in --include, with its
    file:// URL, size and sha256 (which the lock records)."""
    import hashlib

    from rootfs.backends.deb.debfile import DebFile
    from rootfs.model.errors import UsageError

    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise UsageError(f"--include: package file {path} does not exist")
    with DebFile(full, path) as deb:
        fields = deb.control().fields
    arch = fields.get("Architecture", "")
    if not fields.get("Package") or not fields.get("Version"):
        raise UsageError(f"--include: {path} has no Package or Version in its control file")
    if arch not in (architecture, "all"):
        raise UsageError(f"--include: {path} is for {arch}, not {architecture}")
    h = hashlib.sha256()
    with open(full, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    lines = [f"{k}: {v}" for k, v in fields.items() if k not in ("Filename", "Size", "SHA256", "MD5sum")]
    lines += [f"Filename: file://{full}", f"Size: {os.path.getsize(full)}", f"SHA256: {h.hexdigest()}"]
    return "\n".join(lines) + "\n"


def resolve(recipe: Recipe, opts: ResolveOptions, downloader: Downloader) -> Lock:
    from rootfs.backends.deb.index import parse_stanza
    from rootfs.model.recipe import is_local_package

    mirror = choose_mirror(None, recipe.settings.mirror, recipe.distribution, recipe.settings.origin)
    fetched, index = load_index(recipe, opts, downloader, mirror)
    rel = fetched.release
    names = []
    for entry in recipe.include:
        if is_local_package(entry):
            stanza = local_package(entry, recipe.architecture)
            index.override(stanza)
            names.append(parse_stanza(stanza.encode()).name)
        else:
            names.append(entry)
    request = variant_request(index, recipe.settings.variant, names, recipe.exclude,
                              https=mirror.startswith("https://"))
    result = resolve_set(index, request)
    for w in result.warnings:
        ui.warn(w)
    epoch = int(parse_date(rel.date, f"the Release for {recipe.suite}").timestamp()) if rel.date else 0
    return Lock(
        backend="deb",
        recipe=recipe.name,
        distribution=recipe.distribution,
        suite=recipe.suite,
        architecture=recipe.architecture,
        variant=recipe.settings.variant,
        components=tuple(recipe.settings.components),
        sources=(LockSource(url=mirror, suite=recipe.suite, metadata=fetched.metadata,
                            sha256=fetched.sha256, date=rel.date),),
        packages=tuple(_locked(p) for p in result.packages),
        merged_usr=recipe.settings.merged_usr,
        source_date_epoch=epoch,
        requested=tuple(os.path.abspath(e) if is_local_package(e) else e for e in recipe.include),
    )
