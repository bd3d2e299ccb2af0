"""`rootfs make`: the whole pipeline for one recipe, safe to run from cron.

resolve (or read --locked) -> decide whether anything changed -> fetch ->
install into a staging directory -> SBOM -> pack -> publish atomically ->
push. The output is locked for the whole run, the cache is shared; the
report says what happened and why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from rootfs import __version__, ui
from rootfs.backends import InstallOptions, Mode, ResolveOptions
from rootfs.host.atomic import atomic_write_text
from rootfs.host.policy import DEFAULT as DEFAULT_POLICY
from rootfs.host.policy import Policy
from rootfs.host.mounts import mounts_under
from rootfs.model.attrs import Attr, AttrRecord, sidecar_path
from rootfs.model.errors import RootfsError, UsageError
from rootfs.model.inputs import SBOM_ANNOTATION, BuildInputs, build_inputs, provenance_annotations
from rootfs.model.lock import Lock, LockSet, read_lock, read_lockset
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
from rootfs.pack.outputs import check_output
from rootfs.pipeline.customize import check_image_user
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
    # --arch/--platform as given (empty: the recipe's, or the lock's). The
    # recipe carries the first; several make one multi-platform image.
    architectures: tuple[str, ...] = ()
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
    push: tuple[str, ...] = ()  # registry destinations, HOST[:PORT]/NAME[:TAG]
    registry: object = None  # rootfs.registry.RegistryOptions
    sbom: bool = True
    policy: Policy = DEFAULT_POLICY  # the payload and image rules, with what --allow waived
    command: str = "make"  # what the image history says built it
    verbosity: int = 1  # what hooks see as MMDEBSTRAP_VERBOSITY

    def __post_init__(self) -> None:
        if isinstance(self.push, str):
            self.push = (self.push,)
        self.push = tuple(self.push or ())


def artifact_name(fmt: str) -> str:
    from rootfs.pack import ARTIFACT_NAMES

    return ARTIFACT_NAMES[fmt]


def _load_lock(req: MakeRequest, downloader: Downloader,
               previous: Lock | None = None) -> tuple[LockSet, dict[str, str]]:
    """The locks to build (one per architecture) and the package URLs
    that differ from their own. Before anything is downloaded, a kernel that
    could not run the build's scripts is refused."""
    from rootfs.pipeline import stages as pipeline

    if req.locked is None:
        _check_runnable(req, req.architectures if len(req.architectures) > 1 else (req.recipe.architecture,))
        # The published lock may stand for a build of one architecture, its own.
        if len(req.architectures) > 1 or (previous is not None and req.recipe.architecture
                                          and previous.architecture != req.recipe.architecture):
            previous = None
        opts = req.resolve_opts if previous is None else dataclasses.replace(req.resolve_opts, previous=previous)
        return pipeline.resolve_all(req.recipe, req.architectures if len(req.architectures) > 1 else (),
                                    opts, downloader), {}
    locks = read_lockset(req.locked)
    if len(locks.locks) > 1:
        locks = locks.select(req.architectures, str(req.locked))
    elif len(req.architectures) > 1:
        raise UsageError(f"lock file {req.locked} holds one architecture ({locks.locks[0].architecture}); "
                         f"lock the {len(req.architectures)} named with `rootfs lock --arch {','.join(req.architectures)}`")
    if locks.locks[0].backend != req.recipe.backend:
        raise UsageError(f"lock file {req.locked} is for the {locks.locks[0].backend} backend, "
                         f"the recipe uses {req.recipe.backend}")
    _check_runnable(req, tuple(lock.architecture for lock in locks.locks))
    out, urls = [], {}
    for lock in locks.locks:
        recipe = req.recipe if len(locks.locks) == 1 else req.recipe.replace(architecture=lock.architecture)
        used, moved = pipeline.use_lock(lock, recipe, req.resolve_opts, req.relocate)
        out.append(used)
        urls.update(moved)
    return LockSet(tuple(out)), urls


def _check_runnable(req: MakeRequest, architectures: tuple[str, ...]) -> None:
    from rootfs.host.binfmt import check_runnable

    mode = Mode(req.mode)
    for arch in architectures:
        check_runnable(arch, mode.configures, rootless=mode is Mode.ROOTLESS)


IMAGE_FORMATS = ("oci", "oci-archive", "docker-archive")


def check_index_formats(formats, output: str) -> None:
    """Several platforms make one image index: refused, before any work,
    where the output cannot hold one."""
    from rootfs.pack import INDEX_FORMATS

    if output == "-":
        raise UsageError("-o - streams one platform; write an image of several platforms to a file or directory")
    if "docker-archive" in formats:
        raise UsageError("a docker-archive holds one platform; for several architectures use --format oci or "
                         "oci-archive (an image index), or build each architecture on its own")
    other = [f for f in formats if f not in INDEX_FORMATS]
    if other:
        raise UsageError(f"several architectures make one image index (--format oci or oci-archive); {other[0]} "
                         "holds one platform: build each architecture on its own for it")


def inputs_of(req: MakeRequest, lock: Lock) -> BuildInputs:
    """The typed record of everything this build's artifacts depend on.
    The tag and layer compression count only where an image carries them."""
    from rootfs.pack import source_date_epoch
    from rootfs.pipeline.hooks import customize_inputs

    images = any(f in IMAGE_FORMATS for f in req.formats)
    # Several architectures: the merged lock names them all ("amd64,arm64").
    recipe = req.recipe.replace(architecture=lock.architecture) if "," in lock.architecture else req.recipe
    return build_inputs(
        recipe, lock,
        files=customize_inputs(req.recipe.customize),
        formats=req.formats,
        tag=(req.tag or req.recipe.image.tag) if images else "",
        layer_compression=req.layer_compression if images else "",
        source_date_epoch=source_date_epoch(lock.source_date_epoch or None) or 0,
        sbom=req.sbom,
    )


def _previous_lock(req: MakeRequest, prev: BuildReport | None, plan: OutputPlan) -> Lock | None:
    """The published build's lock, when this run selects what it selected
    (the same recipe selection, the same rootfs): resolving may keep it
    when the sources' metadata has not changed since."""
    if req.force or req.locked is not None or prev is None or prev.outcome not in ("built", "up-to-date"):
        return None
    # The whole recipe as this run has it, command-line sources included.
    if prev.inputs.get("tool_version") != __version__ or prev.recipe_digest != recipe_digest(req.recipe):
        return None
    try:
        lock = read_lock(plan.meta_path("lock.json"))
    except RootfsError:
        return None
    return lock if lock.digest() == prev.lock_digest and lock.backend == req.recipe.backend else None


def _up_to_date(prev: BuildReport | None, report: BuildReport, plan: OutputPlan) -> str:
    """Why the previous build still stands, or "" when it does not."""
    if prev is None or prev.outcome not in ("built", "up-to-date"):
        return ""
    if not prev.inputs_digest or prev.inputs_digest != report.inputs_digest:
        return ""
    for fmt in report.formats:
        if not plan.artifact_path(artifact_name(fmt)).exists():
            return ""
    return "every input is unchanged (recipe, packages, customization, formats, tag, SOURCE_DATE_EPOCH) " \
           "and the artifacts exist"


def _has_artifacts(prev: BuildReport | None, plan: OutputPlan) -> bool:
    """Whether the output holds a build of its own (not only a report that
    the registry had it): a stale local build is rebuilt, not skipped."""
    return prev is not None and any(plan.artifact_path(artifact_name(f)).exists() for f in prev.formats)


def _up_to_date_at(req: MakeRequest, lock: Lock, inputs: BuildInputs) -> tuple[dict[str, str] | None, str]:
    """Every push destination's digest when each already holds this build's
    image (its lock and inputs annotations match), else None and why not. A destination
    that does not exist is a reason to build; a registry that cannot be
    asked is an error (RegistryError, NetworkError), never a silent rebuild."""
    from rootfs.registry import RegistryOptions
    from rootfs.registry.transfer import remote_manifest

    wanted = provenance_annotations(lock.digest(), inputs)
    found = {}
    for dest in req.push:
        got = remote_manifest(dest, req.registry or RegistryOptions())
        if got is None:
            return None, f"{dest} does not exist yet"
        desc, doc = got
        annotations = doc.get("annotations")
        if not isinstance(annotations, dict) or any(annotations.get(k) != v for k, v in wanted.items()):
            return None, f"{dest} holds an image built from other inputs"
        found[dest] = desc.digest
    return found, ""


def _registry_stands(req: MakeRequest, report: BuildReport, plan: OutputPlan, at: dict[str, str]) -> BuildReport:
    """Up to date at the registry: nothing is fetched or built; the output
    gets a report saying where the image is (with --keep, where there is no
    build to put it beside, only --report and --json tell)."""
    report.outcome = "up-to-date"
    report.reason = "up to date at " + ", ".join(at)
    report.pushed = dict(at)
    report.artifacts = {f"pushed:{dest}": digest for dest, digest in at.items()}
    for dest, digest in at.items():
        ui.info(f"{req.recipe.name}: up to date at {dest} ({digest})")
    if not req.keep:
        path = plan.report_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from rootfs.host.atomic import _output_error

            raise _output_error(path.parent, exc) from None
        atomic_write_text(path, report.to_json())
    return report


def _rebuild_reason(prev: BuildReport | None, report: BuildReport, force: bool) -> str:
    if force:
        return "--force"
    if prev is None:
        return "no previous build"
    if prev.outcome not in ("built", "up-to-date"):
        return "the previous build did not complete"
    old = BuildInputs.from_dict(prev.inputs) if prev.inputs else None
    new = BuildInputs.from_dict(report.inputs)
    if old is None or new is None:
        return "the previous build recorded no inputs"
    return new.changed_since(old) or "an artifact is missing"


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

    t0 = time.monotonic()

    report = BuildReport(recipe=req.recipe.name, started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    report.formats = list(req.formats)
    report.recipe_digest = recipe_digest(req.recipe)
    report.output = req.output
    # A bad output path is found now, not after the whole build.
    check_output(req.output, req.formats, req.keep)
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
            locks, urls = _load_lock(req, downloader, _previous_lock(req, prev, plan))
        if len(locks.locks) > 1:
            check_index_formats(req.formats, req.output)
        lock = locks.merged()
        report.lock_digest = locks.digest()
        report.packages_digest = packages_digest(lock)
        report.packages = package_versions(lock)
        report.changes = diff_packages(prev.packages if prev else {}, report.packages, lock)
        report.source_date_epoch = lock.source_date_epoch
        inputs = inputs_of(req, lock)
        report.inputs, report.inputs_digest = inputs.to_dict(), inputs.digest()
        why = "" if req.force else _up_to_date(prev, report, plan)
        remote_reason = ""
        if not why and req.push and not req.force and not _has_artifacts(prev, plan):
            at, remote_reason = _up_to_date_at(req, lock, inputs)
            if at is not None:
                return _registry_stands(req, report, plan, at)
        if why:
            report.outcome, report.reason = "up-to-date", why
            report.artifacts = {k: v for k, v in prev.artifacts.items() if not k.startswith("pushed:")}
            report.pushed = dict(prev.pushed)
            ui.info(f"{req.recipe.name}: up to date ({why})")
            todo = [d for d in req.push if d not in report.pushed]
            if todo:
                with report.stage("push"):
                    _push(req, plan, report, todo)
                _record_pushes(plan, report)
            for dest in req.push:
                report.artifacts[f"pushed:{dest}"] = report.pushed[dest]
            return report
        report.reason = remote_reason or _rebuild_reason(prev, report, req.force)
        ui.info(f"{req.recipe.name}: building {len(lock.packages)} packages ({report.reason})")
        if prev is not None and report.changes.summary:
            ui.info(f"{req.recipe.name}: {report.changes.summary}")

        cache = Cache(req.cache_dir)
        with cache_lock(req.cache_dir, shared=True, timeout=None):
            with report.stage("fetch"):
                files = pipeline.fetch(lock, cache, downloader, req.jobs, urls)
            build_and_publish(req, locks, files, report, plan)
        if req.push:
            with report.stage("push"):
                _push(req, plan, report, list(req.push))
            _record_pushes(plan, report)
    ui.info(f"I: success in {time.monotonic() - t0:.1f} s")
    return report


def build_and_publish(req: MakeRequest, lock: Lock | LockSet, files: dict[str, Path], report: BuildReport,
                      plan: OutputPlan) -> None:
    """Install, SBOM and pack in a staging directory beside the output, then
    publish it atomically: the part of `make` that `rootfs build` runs too.
    A LockSet of several architectures makes one image index."""
    if isinstance(lock, LockSet) and len(lock.locks) == 1:
        lock = lock.locks[0]
    bid = build_id(report.packages_digest)

    def final_path(fmt: str) -> Path:
        name = artifact_name(fmt)
        return plan.out / bid / name if req.keep else plan.artifact_path(name)

    staging = staging_dir(plan)
    try:
        if isinstance(lock, LockSet):
            _build_platforms_into(req, lock, files, staging, report, final_path)
        else:
            _build_into(req, lock, files, staging, report, final_path)
        with ui.phase("publish") as ph:
            publish(plan, staging, bid)
            ph.summary = str(plan.out)
    except BaseException:
        _safe_rmtree(staging)
        raise


def _build_into(req: MakeRequest, lock: Lock, files: dict[str, Path], staging: Path, report: BuildReport,
                final_path) -> None:
    keep_dir = "dir" in req.formats
    root = staging / (artifact_name("dir") if keep_dir else ".root")
    root.mkdir()
    result, attrs = _install_root(req, lock, files, root, report, ("install",))
    if attrs is not None and keep_dir:
        attrs.save(sidecar_path(root))
    atomic_write_text(staging / "lock.json", lock.to_json())
    annotations = _sbom(req, lock, root, staging / "sbom.spdx.json", report) | _provenance(req, lock)
    others = [f for f in req.formats if f != "dir"]
    if others:
        with report.stage("pack"), ui.phase("pack") as ph:
            arts = _pack(req, lock, root, attrs, others, staging, annotations, result.payloads_checked)
            ph.summary = ", ".join(f"{a.format} {ui.size_text(a.size)}" if a.size else a.format for a in arts)
        for a in arts:
            report.artifacts[str(final_path(a.format))] = a.digest
    if keep_dir:
        report.artifacts[str(final_path("dir"))] = ""
    else:
        _safe_rmtree(root)
    # Written last: its presence marks a complete build (publish moves it last).
    report.outcome = "built"
    atomic_write_text(staging / "build.json", report.to_json())


def _install_root(req: MakeRequest, lock: Lock, files: dict[str, Path], root: Path, report: BuildReport,
                  stages: tuple[str, ...], which: str = ""):
    """Install lock into root, timed as the report's stages; its image user
    checked. Returns the install report and the attrs record (None as root)."""
    from rootfs.pipeline import stages as pipeline

    attrs = None if req.mode == "root" else AttrRecord()
    with contextlib.ExitStack() as timed:
        for name in stages:
            timed.enter_context(report.stage(name))
        result = pipeline.install(lock, files, root, _install_options(req, attrs))
    if attrs is not None and attrs.get(".") is None:
        # The root directory itself belongs to root in the image, whoever built it.
        attrs.set(".", Attr(stat.S_IFDIR | 0o755))
    check_image_user(root, req.recipe.image.user)
    for step in result.skipped:
        ui.warn(f"skipped{which}: {step}")
    return result, attrs


def _build_platforms_into(req: MakeRequest, locks: LockSet, files: dict[str, Path], staging: Path,
                          report: BuildReport, final_path) -> None:
    """Each architecture installed, given its SBOM and packed into its layer
    in turn (one root on disk at a time), then one index of them all."""
    from rootfs.pack import pack_layer, write_index

    images = []
    for lock in locks.locks:
        arch = lock.architecture
        root = staging / f".root.{arch}"
        root.mkdir()
        ui.info(f"{req.recipe.name}: {arch}")
        # Each architecture's share too: a foreign one's configure stage runs under emulation.
        result, attrs = _install_root(req, lock, files, root, report, ("install", f"install:{arch}"), f" ({arch})")
        # Each platform's manifest is the one a build of that architecture
        # alone makes, provenance included.
        alone = dataclasses.replace(req, recipe=req.recipe.replace(architecture=arch))
        annotations = _sbom(req, lock, root, staging / f"sbom.{arch}.spdx.json", report) | _provenance(alone, lock)
        with report.stage("pack"), report.stage(f"pack:{arch}"), ui.phase("pack") as ph:
            image = pack_layer(root, staging / f".layer.{arch}",
                               _pack_options(req, lock, attrs, annotations, result.payloads_checked))
            ph.summary = f"{arch} layer {ui.size_text(image.layer.size)}"
        images.append(image)
        _safe_rmtree(root)
    atomic_write_text(staging / "lock.json", locks.to_json())
    names = {f: staging / artifact_name(f) for f in req.formats}
    with report.stage("pack"):
        # The index carries what `make --push` compares at the registry.
        arts = write_index(images, names, req.tag or req.recipe.image.tag, _provenance(req, locks.merged()))
    for a in arts:
        report.artifacts[str(final_path(a.format))] = a.digest
    report.outcome = "built"
    atomic_write_text(staging / "build.json", report.to_json())


def _sbom(req: MakeRequest, lock: Lock, root: Path, dest: Path, report: BuildReport) -> dict[str, str]:
    """Write the SBOM of root to dest; the image annotations that name it."""
    if not req.sbom:
        return {}
    from rootfs.inventory.sbom import SbomOptions, write_sbom
    from rootfs.pack import source_date_epoch

    with report.stage("sbom"), ui.phase("sbom") as ph:
        sde = source_date_epoch(lock.source_date_epoch or None)
        _, digest = write_sbom(root, lock, dest, SbomOptions(name=req.recipe.name, source_date_epoch=sde))
        ph.summary = f"SPDX 2.3, {len(lock.packages)} packages"
    return {SBOM_ANNOTATION: "sha256:" + digest}


def _provenance(req: MakeRequest, lock: Lock) -> dict[str, str]:
    """The lock and inputs annotations `make --push` compares at a registry."""
    return provenance_annotations(lock.digest(), inputs_of(req, lock))


def created_by(recipe: Recipe, lock: Lock, command: str = "make") -> str:
    """The image history's account of the layer: what was built, from which
    lock. Never the command line: paths and flags differ between two builds
    that must give the same bytes."""
    what = f"{lock.distribution} {lock.suite}".strip() or recipe.name
    variant = f" {lock.variant}" if lock.variant else ""
    return (f"rootfs {__version__} {command} {recipe.name}: {what}{variant}, {len(lock.packages)} {lock.backend} "
            f"packages, lock sha256:{lock.digest()}")


def _pack_options(req: MakeRequest, lock: Lock, attrs, annotations: dict, nodes_checked: bool):
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
        created_by=created_by(req.recipe, lock, req.command),
        policy=req.policy,
        nodes_checked=nodes_checked,
    )


def _pack(req, lock, root, attrs, formats, staging, annotations, nodes_checked):
    from rootfs.pack import pack

    opts = _pack_options(req, lock, attrs, annotations, nodes_checked)
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
    """`-o -`: the tar (or the oci- or docker-archive) goes to standard
    output; nothing is kept but the cache."""
    import tempfile

    from rootfs.host.locks import cache_lock
    from rootfs.pack import pack
    from rootfs.pipeline import stages as pipeline

    with report.stage("resolve"):
        locks, urls = _load_lock(req, downloader)
    if len(locks.locks) > 1:
        check_index_formats(req.formats, req.output)
    lock = locks.locks[0]
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
                result = pipeline.install(lock, files, root, _install_options(req, attrs))
            check_image_user(root, req.recipe.image.user)
            # The same image a file build writes: its SBOM is named in it,
            # though the SBOM itself is not kept.
            annotations = _sbom(req, lock, root, work / "sbom.spdx.json", report) | _provenance(req, lock)
            with report.stage("pack"), ui.phase("pack") as ph:
                arts = pack(root, list(req.formats), "-", _pack_options(req, lock, attrs, annotations,
                                                                          result.payloads_checked))
                ph.summary = f"{req.formats[0]} to standard output"
        finally:
            with contextlib.suppress(RootfsError):
                _safe_rmtree(work)
    report.outcome = "built"
    report.artifacts = {a.format: a.digest for a in arts}
    return report


def _install_options(req: MakeRequest, attrs) -> InstallOptions:
    return InstallOptions(mode=req.mode, attrs=attrs, customize=req.recipe.customize,
                          settings=req.recipe.settings, verbosity=req.verbosity, policy=req.policy)


def _push(req: MakeRequest, plan: OutputPlan, report: BuildReport, destinations: list[str]) -> None:
    from rootfs.pack import oci
    from rootfs.registry import RegistryOptions, push

    layout = plan.artifact_path(artifact_name("oci"))
    tag = oci.parse_tag(req.tag or req.recipe.image.tag or oci.DEFAULT_TAG)
    for dest in destinations:
        result = push(layout, tag, dest, req.registry or RegistryOptions())
        report.pushed[dest] = result.digest
        report.artifacts[f"pushed:{dest}"] = result.digest
        ui.info(f"pushed {dest}@{result.digest}")


def _record_pushes(plan: OutputPlan, report: BuildReport) -> None:
    """The published build's report learns where it was pushed, so that the
    next run pushes only to destinations it has not reached."""
    path = plan.report_path()
    prev = read_report(path)
    if prev is None or prev.inputs_digest != report.inputs_digest:
        return
    prev.pushed = dict(report.pushed)
    for dest, digest in report.pushed.items():
        prev.artifacts[f"pushed:{dest}"] = digest
    atomic_write_text(path, prev.to_json())
