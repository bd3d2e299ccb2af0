"""The supermin-style pair: `prepare` and `build`.

An appliance is a directory with the lock (lock.json) and the verified
package files (packages/*.rpm): everything `build` needs, offline, on any
later day. `prepare` writes it atomically (a failure leaves nothing at the
output); `build` installs it into a scratch root and hands the root to the
packer, so every packer format is an appliance format too (`chroot` is the
packer's `dir`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rootfs.backends import InstallOptions, InstallReport, Mode, ResolveOptions
from rootfs.backends.rpm.header import open_rpm
from rootfs.backends.rpm.install import check_package, check_signatures
from rootfs.backends.rpm.resolve import resolve
from rootfs.host.atomic import atomic_path
from rootfs.host.policy import DEFAULT as DEFAULT_POLICY
from rootfs.host.policy import Policy
from rootfs.model.attrs import AttrRecord
from rootfs.model.errors import OutputError, UsageError, VerifyError
from rootfs.model.lock import Lock, read_lock
from rootfs.model.recipe import Recipe
from rootfs.net.cache import Cache, sha256_file
from rootfs.net.fetch import Downloader, fetch_packages

LOCK_NAME = "lock.json"
PACKAGES = "packages"
FORMAT_ALIASES = {"chroot": "dir"}


def prepare(recipe: Recipe, opts: ResolveOptions, downloader: Downloader, output: Path,
            cache: Cache, jobs: int = 4, log=lambda msg: None) -> Lock:
    """Resolve, fetch and verify into the appliance directory output."""
    lock = resolve(recipe, opts, downloader)
    log(f"resolved {len(lock.packages)} packages")
    files = fetch_packages(lock.packages, cache, downloader, jobs=jobs)
    with atomic_path(Path(output), directory=True) as tmp:
        pkgdir = tmp / PACKAGES
        pkgdir.mkdir()
        placed: dict[str, Path] = {}
        for p in lock.packages:
            dest = pkgdir / p.filename
            try:
                os.link(files[p.key], dest)
            except OSError:
                shutil.copyfile(files[p.key], dest)
            os.chmod(dest, 0o644)
            placed[p.key] = dest
        for p in lock.packages:
            check_package(open_rpm(placed[p.key]), p)
        if lock.keys:
            check_signatures(list(placed.values()), lock.keys)
        lock.write(tmp / LOCK_NAME)
    return lock


def load_appliance(appliance: Path) -> tuple[Lock, dict[str, Path]]:
    """The lock and its package files, each checked against the lock."""
    appliance = Path(appliance)
    if not (appliance / LOCK_NAME).is_file():
        raise UsageError(f"{appliance} is not an appliance (no {LOCK_NAME}; make one with `rootfs prepare`)")
    lock = read_lock(appliance / LOCK_NAME)
    if lock.backend != "rpm":
        raise UsageError(f"{appliance} holds a {lock.backend} lock; `rootfs build` installs rpm appliances")
    files: dict[str, Path] = {}
    for p in lock.packages:
        path = appliance / PACKAGES / p.filename
        if not path.is_file():
            raise VerifyError(f"{appliance}: package file {p.filename} is missing")
        if path.stat().st_size != p.size or sha256_file(path) != p.sha256:
            raise VerifyError(f"{appliance}: {p.filename} does not match the sha256 in the lock")
        files[p.key] = path
    return lock, files


def build(appliance: Path, fmt: str, output: Path, mode: Mode, log=lambda msg: None,
          policy: Policy = DEFAULT_POLICY) -> InstallReport:
    """Install the appliance offline and pack the root as fmt at output."""
    from rootfs import pack as packer
    from rootfs.host.atomic import atomic_write_bytes
    from rootfs.inventory.sbom import SbomOptions, sbom_bytes
    from rootfs.model.recipe import ImageConfig
    from rootfs.pipeline import stages as pipeline
    from rootfs.pipeline.stages import work_dir

    lock, files = load_appliance(appliance)
    formats = [FORMAT_ALIASES.get(f, f) for f in fmt.replace(",", " ").split()]
    packer.check_formats(formats)
    output = Path(output)
    if output.resolve() == Path(appliance).resolve():
        raise OutputError("the output must not be the appliance itself")
    with work_dir(output) as work:
        root = work / "root"
        root.mkdir(mode=0o755)
        record = AttrRecord() if mode is not Mode.ROOT else None
        report = pipeline.install(lock, files, root, InstallOptions(mode=mode, attrs=record, log=log, policy=policy))
        if record is not None:
            record.set(".", record.get(".") or _root_attr())
        # Every build has its SBOM beside the artifacts, and the image names it.
        sde = packer.source_date_epoch(lock.source_date_epoch or None)
        sbom, digest = sbom_bytes(root, lock, SbomOptions(name=lock.recipe or Path(appliance).name,
                                                          source_date_epoch=sde))
        image = ImageConfig(annotations=(("org.rootfs.sbom.digest", "sha256:" + digest),))
        packer.pack(root, formats, output, packer.PackOptions(
            source_date_epoch=lock.source_date_epoch or None, attrs=record, image=image,
            architecture=lock.architecture, log=log, created_by="rootfs build", policy=policy,
            nodes_checked=report.payloads_checked,
        ))
        atomic_write_bytes(output.parent / f"{output.name}.spdx.json", sbom)
    return report


def _root_attr():
    import stat

    from rootfs.model.attrs import Attr

    return Attr(stat.S_IFDIR | 0o755)
