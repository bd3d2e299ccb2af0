"""`rootfs make`: the whole pipeline for one recipe, safe to run from cron.

resolve (or read --locked) -> decide whether anything changed -> fetch ->
install into a staging directory -> SBOM -> pack -> publish atomically ->
push. The output is locked for the whole run, the cache is shared; the
report says what happened and why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rootfs import __version__, ui
from rootfs.backends import InstallOptions, Mode, ResolveOptions
from rootfs.host.atomic import atomic_write_text
from rootfs.host.mounts import mounts_under
from rootfs.model.attrs import AttrRecord, sidecar_path
from rootfs.model.errors import RootfsError, UsageError
from rootfs.model.lock import Lock, read_lock
from rootfs.model.recipe import Recipe
from rootfs.model.report import (
    BuildReport,
    diff_packages,
    package_versions,
    packages_digest,
    read_report,
    recipe_digest,
)
from rootfs.net.fetch import Cache, Downloader
from rootfs.pipeline.publish import (
    OutputPlan,
    build_id,
    clean_stale_staging,
    publish,
    staging_dir,
)


@dataclass
class MakeRequest:
    recipe: Recipe
    output: str  # a path, or "-" for a tar stream on standard output
    formats: tuple[str, ...] = ("dir",)
    resolve_opts: ResolveOptions = field(default_factory=ResolveOptions)
    cache_dir: Path = Path(".")
    jobs: int = 4
    mode: Mode = Mode.ROOT
    locked: Path | None = None
    relocate: bool = False  # the command line named sources: --locked fetches from them
    force: bool = False
    keep: int = 0
    wait: float = 0.0
    tag: str = ""
    layer_compression: str = "gzip"
    push: str | None = None
    registry: object = None  # rootfs.registry.RegistryOptions
    sbom: bool = True


def artifact_name(fmt: str) -> str:
    from rootfs.pack import ARTIFACT_NAMES

    return ARTIFACT_NAMES[fmt]


def _load_lock(req: MakeRequest, downloader: Downloader) -> tuple[Lock, dict[str, str]]:
    """The lock to build and the package URLs that differ from its own."""
    from rootfs.pipeline import stages as pipeline

    if req.locked is None:
        return pipeline.resolve(req.recipe, req.resolve_opts, downloader), {}
    lock = read_lock(req.locked)
    if lock.backend != req.recipe.backend:
        raise UsageError(f"lock file {req.locked} is for the {lock.backend} backend, the recipe uses {req.recipe.backend}")
    return pipeline.use_lock(lock, req.recipe, req.resolve_opts, req.relocate)


def _up_to_date(prev: BuildReport | None, report: BuildReport, plan: OutputPlan) -> str:
    """Why the previous build still stands, or "" when it does not."""
    if prev is None or prev.outcome != "built":
        return ""
    if prev.tool_version != report.tool_version:
        return ""
    if prev.recipe_digest != report.recipe_digest or prev.packages_digest != report.packages_digest:
        return ""
    if sorted(prev.formats) != sorted(report.formats):
        return ""
    for fmt in report.formats:
        if not plan.artifact_path(artifact_name(fmt)).exists():
            return ""
    return "the resolved package set, the recipe and rootfs are unchanged and the artifacts exist"


def _rebuild_reason(prev: BuildReport | None, report: BuildReport, force: bool) -> str:
    if force:
        return "--force"
    if prev is None:
        return "no previous build"
    if prev.outcome != "built":
        return "the previous build did not complete"
    if prev.tool_version != report.tool_version:
        return f"rootfs changed ({prev.tool_version} -> {report.tool_version})"
    if prev.recipe_digest != report.recipe_digest:
        return "the recipe changed"
    if prev.packages_digest != report.packages_digest:
        return "the resolved package set changed"
    if sorted(prev.formats) != sorted(report.formats):
        return "other formats were asked for"
    return "an artifact is missing"


def _safe_rmtree(path: Path) -> None:
    """rm -rf that refuses to walk into a mounted /proc, /sys or /dev."""
    if not path.exists():
        return
    mounted = mounts_under(path)
    if mounted:
        raise RootfsError(f"refusing to remove {path}: {mounted[0]} is still mounted")
    shutil.rmtree(path, ignore_errors=True)


def make(req: MakeRequest) -> BuildReport:
    from rootfs.pipeline import stages as pipeline

    report = BuildReport(recipe=req.recipe.name, started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    report.formats = list(req.formats)
    report.recipe_digest = recipe_digest(req.recipe)
    report.output = req.output
    downloader = Downloader()
    if req.output == "-":
        return _make_stream(req, report, downloader)

    from rootfs.host.locks import cache_lock, output_lock

    out = Path(req.output)
    plan = OutputPlan(out, tuple(artifact_name(f) for f in req.formats), req.keep)
    with output_lock(out, timeout=req.wait):
        clean_stale_staging(out if req.keep else out.parent, out.name)
        prev = read_report(plan.report_path())
        with report.stage("resolve"):
            lock, urls = _load_lock(req, downloader)
        report.lock_digest = lock.digest()
        report.packages_digest = packages_digest(lock)
        report.packages = package_versions(lock)
        report.changes = diff_packages(prev.packages if prev else {}, report.packages, lock)
        report.source_date_epoch = lock.source_date_epoch
        why = "" if req.force else _up_to_date(prev, report, plan)
        if why:
            report.outcome, report.reason = "up-to-date", why
            report.artifacts = prev.artifacts
            ui.info(f"{req.recipe.name}: up to date ({why})")
            return report
        report.reason = _rebuild_reason(prev, report, req.force)
        ui.info(f"{req.recipe.name}: building {len(lock.packages)} packages ({report.reason})")
        if prev is not None and report.changes.summary:
            ui.info(f"{req.recipe.name}: {report.changes.summary}")

        cache = Cache(req.cache_dir)
        with cache_lock(req.cache_dir, shared=True, timeout=None):
            with report.stage("fetch"):
                files = pipeline.fetch(lock, cache, downloader, req.jobs, urls)
            bid = build_id(report.packages_digest)

            def final_path(fmt: str) -> Path:
                name = artifact_name(fmt)
                return out / bid / name if req.keep else plan.artifact_path(name)

            staging = staging_dir(plan)
            try:
                _build_into(req, lock, files, staging, report, final_path)
                publish(plan, staging, bid)
            except BaseException:
                _safe_rmtree(staging)
                raise
    if req.push:
        with report.stage("push"):
            _push(req, plan, report)
    return report


def _build_into(req: MakeRequest, lock: Lock, files: dict[str, Path], staging: Path, report: BuildReport,
                final_path) -> None:
    from rootfs.pipeline import stages as pipeline

    keep_dir = "dir" in req.formats
    root = staging / (artifact_name("dir") if keep_dir else ".root")
    root.mkdir()
    attrs = None if req.mode == "root" else AttrRecord()
    with report.stage("install"):
        result = pipeline.install(lock, files, root, InstallOptions(mode=req.mode, attrs=attrs))
    for step in result.skipped:
        ui.warn(f"skipped: {step}")
    if attrs is not None and keep_dir:
        attrs.save(sidecar_path(root))
    atomic_write_text(staging / "lock.json", lock.to_json())
    annotations = {}
    if req.sbom:
        with report.stage("sbom"):
            from rootfs.inventory.sbom import SbomOptions, write_sbom
            from rootfs.pack import source_date_epoch

            sde = source_date_epoch(lock.source_date_epoch or None)
            _, sbom_digest = write_sbom(root, lock, staging / "sbom.spdx.json",
                                        SbomOptions(name=req.recipe.name, source_date_epoch=sde))
        annotations["org.rootfs.sbom.digest"] = "sha256:" + sbom_digest
    others = [f for f in req.formats if f != "dir"]
    if others:
        with report.stage("pack"):
            arts = _pack(req, lock, root, attrs, others, staging, annotations)
        for a in arts:
            report.artifacts[str(final_path(a.format))] = a.digest
    if keep_dir:
        report.artifacts[str(final_path("dir"))] = ""
    else:
        _safe_rmtree(root)
    # Written last: its presence marks a complete build (publish moves it last).
    report.outcome = "built"
    atomic_write_text(staging / "build.json", report.to_json())


def created_by(recipe: Recipe, lock: Lock) -> str:
    """The image history's account of the layer: what was built, from which
    lock. Never the command line: paths and flags differ between two builds
    that must give the same bytes."""
    what = f"{lock.distribution} {lock.suite}".strip() or recipe.name
    variant = f" {lock.variant}" if lock.variant else ""
    return (f"rootfs {__version__} make {recipe.name}: {what}{variant}, {len(lock.packages)} {lock.backend} packages, "
            f"lock sha256:{lock.digest()}")


def _pack_options(req: MakeRequest, lock: Lock, attrs, annotations: dict):
    from rootfs.pack import PackOptions

    image = req.recipe.image
    if annotations:
        image = type(image)(**{**image.__dict__, "annotations": tuple(sorted({**dict(image.annotations), **annotations}.items()))})
    return PackOptions(
        source_date_epoch=lock.source_date_epoch or None,
        attrs=attrs,
        tag=req.tag or image.tag,
        image=image,
        architecture=lock.architecture,
        layer_compression=req.layer_compression,
        created_by=created_by(req.recipe, lock),
    )


def _pack(req, lock, root, attrs, formats, staging, annotations):
    from rootfs.pack import pack

    opts = _pack_options(req, lock, attrs, annotations)
    if len(formats) == 1:
        return pack(root, formats, staging / artifact_name(formats[0]), opts)
    arts = pack(root, formats, staging / ".pack", opts)
    moved = []
    for a in arts:
        dest = staging / a.path.name
        os.rename(a.path, dest)
        moved.append(type(a)(a.format, dest, a.digest, a.size))
    os.rmdir(staging / ".pack")
    return moved


def _make_stream(req: MakeRequest, report: BuildReport, downloader: Downloader) -> BuildReport:
    """`-o -`: the tar goes to standard output; nothing is kept but the cache."""
    import tempfile

    from rootfs.host.locks import cache_lock
    from rootfs.pack import pack
    from rootfs.pipeline import stages as pipeline

    if len(req.formats) != 1 or not req.formats[0].startswith("tar"):
        raise UsageError("-o - streams exactly one tar format (--format tar, tar.gz, tar.zst or tar.xz)")
    if sys.stdout.isatty():
        raise UsageError("refusing to write a tar stream to a terminal; redirect standard output")
    with report.stage("resolve"):
        lock, urls = _load_lock(req, downloader)
    report.packages = package_versions(lock)
    with cache_lock(req.cache_dir, shared=True, timeout=None):
        with report.stage("fetch"):
            files = pipeline.fetch(lock, Cache(req.cache_dir), downloader, req.jobs, urls)
        work = Path(tempfile.mkdtemp(prefix="rootfs-stream."))
        try:
            root = work / "root"
            root.mkdir()
            attrs = None if req.mode == "root" else AttrRecord()
            with report.stage("install"):
                pipeline.install(lock, files, root, InstallOptions(mode=req.mode, attrs=attrs))
            with report.stage("pack"):
                arts = pack(root, list(req.formats), "-", _pack_options(req, lock, attrs, {}))
        finally:
            with contextlib.suppress(RootfsError):
                _safe_rmtree(work)
    report.outcome = "built"
    report.artifacts = {a.format: a.digest for a in arts}
    return report


def _push(req: MakeRequest, plan: OutputPlan, report: BuildReport) -> None:
    from rootfs.pack import oci
    from rootfs.registry import RegistryOptions, push

    layout = plan.artifact_path(artifact_name("oci"))
    tag = oci.parse_tag(req.tag or req.recipe.image.tag or oci.DEFAULT_TAG)
    result = push(layout, tag, req.push, req.registry or RegistryOptions())
    report.artifacts[f"pushed:{req.push}"] = result.digest
    ui.info(f"pushed {req.push}@{result.digest}")
