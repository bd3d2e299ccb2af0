"""Commands that resolve and build recipes: recipes, resolve, make, lock."""


import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from rootfs import ui
from rootfs.backends import ResolveOptions
from rootfs.cli.app import command
from rootfs.cli.options import (
    AllowOpt,
    AptOptOpt,
    ArchesOpt,
    PlatformOpt,
    architectures_of,
    ArtifactFormatOpt,
    ComponentsOpt,
    ContainerProfileOpt,
    CustomizeHookOpt,
    DpkgOptOpt,
    EssentialHookOpt,
    ExtractHookOpt,
    HookDirOpt,
    SetupHookOpt,
    SlimOpt,
    ExcludeOpt,
    GpgKeyOpt,
    IgnoreValidOpt,
    IncludeOpt,
    KeyringOpt,
    ImageMirrorOpt,
    ImageSecurityMirrorOpt,
    MirrorOpt,
    NoGpgOpt,
    NoUpdatesOpt,
    RepoGpgcheckOpt,
    RepoOpt,
    SecurityMirrorOpt,
    SourceOpt,
    TagOpt,
    VariantOpt,
    ModuleOpt,
    NoDepsOpt,
    WeakDepsOpt,
    check_allow,
    check_mode,
    customize_from,
    hooks_in_order,
    registry_options,
    selection,
    selection_from,
)
from rootfs.model.errors import RootfsError, UsageError
from rootfs.model.recipe import load_recipe, recipe_names, split_list
from rootfs.net.fetch import Downloader, default_cache_dir, default_jobs


@command
def recipes() -> None:
    """List the recipes with their backend, suite and description."""
    for name in recipe_names():
        r = load_recipe(name)
        print(f"{name:<12} {r.backend:<4} {r.distribution + ' ' + r.suite:<24} {r.description}")


@command
def matrix(
    names: Annotated[Optional[list[str]], typer.Argument(metavar="RECIPE...", help="Recipe names or files (default: every recipe).")] = None,
    arch: Annotated[Optional[list[str]], typer.Option("--arch", help="Architectures, comma separated or repeated (default: each recipe's own).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json (a list of jobs), github (strategy.matrix via fromJSON) or gitlab (parallel: matrix:).")] = "json",
) -> None:
    """Print the job matrix of a fleet: one job per recipe and architecture, for a CI engine's matrix."""
    from rootfs.model import matrix as fleet

    if fmt not in fleet.FORMATS:
        raise UsageError(f"unknown matrix format {fmt!r} (known: {', '.join(fleet.FORMATS)})")
    chosen = list(names or recipe_names())
    arches = tuple(a for v in arch or () for a in split_list(v))
    jobs = fleet.plan([(n, load_recipe(n)) for n in chosen], arches)
    if not jobs:
        raise UsageError("no recipes to make a matrix of")
    sys.stdout.write(fleet.render(jobs, fmt))


def _recipe_or_adhoc(args: list[str], repo, arch):
    """`RECIPE` or, with --repo, `PACKAGE...` for an ad-hoc rpm recipe."""
    from rootfs.backends.rpm.settings import adhoc_recipe

    if repo:
        if not args:
            raise UsageError("name at least one package to resolve with --repo")
        return adhoc_recipe("adhoc", arch, repo, args), ()
    if not args:
        raise UsageError("name a recipe (see `rootfs recipes`), or pass --repo URL and packages")
    return load_recipe(args[0]), tuple(args[1:])


@command
def resolve(
    args: Annotated[list[str], typer.Argument(metavar="RECIPE | PACKAGE...", help="Recipe name or file; with --repo, packages.")],
    mirror: MirrorOpt = None,
    security_mirror: SecurityMirrorOpt = None,
    source: SourceOpt = None,
    no_updates: NoUpdatesOpt = False,
    variant: VariantOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    components: ComponentsOpt = None,
    arch: ArchesOpt = None,
    platform: PlatformOpt = None,
    keyring: KeyringOpt = None,
    repo: RepoOpt = None,
    gpgkey: GpgKeyOpt = None,
    repo_gpgcheck: RepoGpgcheckOpt = False,
    weak_deps: WeakDepsOpt = None,
    nodeps: NoDepsOpt = False,
    module: ModuleOpt = None,
    no_check_gpg: NoGpgOpt = False,
    ignore_valid_until: IgnoreValidOpt = False,
    lock: Annotated[Optional[Path], typer.Option("--lock", help="Write the lock file here instead of printing.")] = None,
) -> None:
    """Resolve without installing: one `name version arch` line per package, sorted by name."""
    from rootfs.pipeline import stages as pipeline

    from rootfs.model.arch import architectures

    arches = architectures(arch, platform, "rpm" if repo else "deb") if (arch or platform) else ()
    base, extra = _recipe_or_adhoc(args, repo, arches[0] if arches else None)
    if platform and base.backend != ("rpm" if repo else "deb"):
        arches = architectures_of(base, arch, platform)
    if extra:
        raise UsageError(f"unexpected arguments after the recipe: {' '.join(extra)} (use --include)")
    r = selection_from(base, mirror=mirror, variant=variant, include=include, exclude=exclude,
                       components=components, arch=arches[0] if arches else None, keyring=keyring or gpgkey,
                       weak_deps=weak_deps, nodeps=nodeps, modules=module, source=source,
                       security_mirror=security_mirror, no_updates=no_updates)
    if repo_gpgcheck:
        if r.backend != "rpm":
            raise UsageError(f"--repo-gpgcheck does not apply to {r.backend} recipes")
        r = r.with_settings(repo_gpgcheck=True)
    opts = ResolveOptions(check_gpg=not no_check_gpg, check_valid_until=not ignore_valid_until,
                          cache_dir=default_cache_dir())
    result = pipeline.resolve_all(r, arches, opts, Downloader())
    if lock:
        result.write(lock)
        ui.info(f"wrote {lock}: {sum(len(lk.packages) for lk in result.locks)} packages")
    else:
        sys.stdout.write("".join(line + "\n" for line in result.package_lines()))



@command
def make(
    recipe: Annotated[str, typer.Argument(help="Recipe name or path to a recipe file.")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="The artifact (its suffix names the format when --format is not given: .tar, .tar.zst, .oci.tar, .docker.tar, .ext4, .squashfs...; else a directory), a directory (several formats), or - for standard output. Default: out/RECIPE.")] = None,
    fmt: ArtifactFormatOpt = None,
    tag: TagOpt = None,
    mirror: MirrorOpt = None,
    security_mirror: SecurityMirrorOpt = None,
    source: SourceOpt = None,
    no_updates: NoUpdatesOpt = False,
    image_mirror: ImageMirrorOpt = None,
    image_security_mirror: ImageSecurityMirrorOpt = None,
    variant: VariantOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    components: ComponentsOpt = None,
    arch: ArchesOpt = None,
    platform: PlatformOpt = None,
    keyring: KeyringOpt = None,
    nodeps: NoDepsOpt = False,
    module: ModuleOpt = None,
    no_check_gpg: NoGpgOpt = False,
    ignore_valid_until: IgnoreValidOpt = False,
    locked: Annotated[Optional[Path], typer.Option("--locked", help="Build exactly the packages of this lock file.")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Package cache (default: XDG cache).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=64, help="Parallel downloads.")] = default_jobs(),
    mode: Annotated[Optional[str], typer.Option("--mode", help="root, rootless, or extract (stage 1 only). Default: root as root, else rootless.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when nothing changed.")] = False,
    keep: Annotated[int, typer.Option("--keep", min=0, help="Keep this many previous builds under OUT, with OUT/latest.")] = 0,
    wait: Annotated[float, typer.Option("--wait", min=0, help="Seconds to wait for another run on the same output.")] = 0.0,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write the build report (JSON) here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the build report (JSON) on stdout.")] = False,
    layer_compression: Annotated[str, typer.Option("--layer-compression", help="OCI layers: gzip or zstd.")] = "gzip",
    no_sbom: Annotated[bool, typer.Option("--no-sbom", help="Do not write the SPDX SBOM.")] = False,
    push: Annotated[Optional[list[str]], typer.Option("--push", help="Push the OCI image to HOST[:PORT]/NAME[:TAG] (repeatable).")] = None,
    creds: Annotated[Optional[str], typer.Option("--creds", help="Registry USER:PASS.")] = None,
    ca_cert: Annotated[Optional[Path], typer.Option("--ca-cert", help="CA certificate for the registry.")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain-HTTP registry.")] = False,
    setup_hook: SetupHookOpt = None,
    extract_hook: ExtractHookOpt = None,
    essential_hook: EssentialHookOpt = None,
    customize_hook: CustomizeHookOpt = None,
    hook_dir: HookDirOpt = None,
    aptopt: AptOptOpt = None,
    dpkgopt: DpkgOptOpt = None,
    slim: SlimOpt = False,
    container_profile: ContainerProfileOpt = None,
    allow: AllowOpt = None,
) -> None:
    """Resolve, fetch, install and pack a recipe; publish the result atomically."""
    from rootfs.host.mounts import enter_private_mount_namespace
    from rootfs.pack import check_formats
    from rootfs.pack.outputs import check_output, choose_formats, suffix_format
    from rootfs.pipeline.make import MakeRequest, check_index_formats
    from rootfs.pipeline.make import make as run_make

    # Before any thread starts: mounts of the configure stage then vanish
    # with this process, even on SIGKILL.
    enter_private_mount_namespace()
    policy = check_allow(allow)
    from rootfs.pipeline.stages import apply_selection

    base = load_recipe(recipe)
    arches = architectures_of(base, arch, platform) if (arch or platform) else ()
    sel = selection(mirror=mirror, variant=variant, include=include, exclude=exclude, components=components,
                    arch=arches[0] if arches else None, keyring=keyring, nodeps=nodeps, modules=module, source=source,
                    security_mirror=security_mirror, no_updates=no_updates, image_mirror=image_mirror,
                    image_security_mirror=image_security_mirror)
    r = apply_selection(base, sel)
    hooks = hooks_in_order(sys.argv, {"--setup-hook": setup_hook, "--extract-hook": extract_hook,
                                      "--essential-hook": essential_hook, "--customize-hook": customize_hook,
                                      "--hook-dir": hook_dir}, os.getcwd())
    r = customize_from(r, hooks=hooks, aptopt=aptopt, dpkgopt=dpkgopt, slim=slim, container=container_profile)
    from rootfs.model.customize import check_sources

    check_sources(r.customize)
    output = output or str(Path("out") / r.name)
    asked = [x for v in fmt or () for x in split_list(v)]
    platforms = len(arches)
    if locked is not None and len(arches) <= 1:
        from rootfs.model.lock import read_lockset

        platforms = len(read_lockset(locked).select(arches, str(locked)).locks)
    if platforms > 1 and not asked and output != "-" and suffix_format(output) is None:
        asked = ["oci"]  # several platforms make one image index
    formats = check_formats(choose_formats(output, asked))
    if push and "oci" not in formats:
        formats.append("oci")
    if platforms > 1:
        check_index_formats(formats, output)
    if output == "-" and (keep or push):
        raise UsageError("-o - cannot be combined with --keep or --push")
    if json_out and output == "-":
        raise UsageError("--json and -o - both want standard output")
    _check_pack_flags(tag or r.image.tag, layer_compression)
    for dest in push or ():
        from rootfs.registry import parse_reference

        if parse_reference(dest).digest:
            raise UsageError(f"--push takes a tag, not a digest: {dest}")
    registry = registry_options(creds, ca_cert, insecure, 4) if push else None
    check_output(output, formats, keep)
    req = MakeRequest(
        recipe=r,
        output=output,
        formats=tuple(formats),
        architectures=arches,
        resolve_opts=ResolveOptions(check_gpg=not no_check_gpg, check_valid_until=not ignore_valid_until,
                                    cache_dir=cache_dir or default_cache_dir()),
        cache_dir=cache_dir or default_cache_dir(),
        jobs=jobs,
        mode=check_mode(mode),
        locked=locked,
        relocate=sel.names_sources,
        force=force,
        keep=keep,
        wait=wait,
        tag=tag or "",
        layer_compression=layer_compression,
        push=tuple(push or ()),
        registry=registry,
        sbom=not no_sbom,
        verbosity=ui.verbosity(),
        policy=policy,
    )
    _run_with_report(req, run_make, report, json_out)


def _check_pack_flags(tag: str, layer_compression: str) -> None:
    """Flags the packer would refuse, refused before any download starts."""
    from rootfs.pack import oci, source_date_epoch

    if tag:
        oci.parse_tag(tag)
    if layer_compression not in ("gzip", "zstd"):
        raise UsageError(f"unknown layer compression {layer_compression!r} (known: gzip, zstd)")
    source_date_epoch(None)


def _run_with_report(req, run, report_path: Path | None, json_out: bool) -> None:
    """Run a build; the report is written (and printed) whatever the outcome."""
    from rootfs.host.atomic import atomic_write_text
    from rootfs.model.report import BuildReport

    try:
        result = run(req)
    except RootfsError as exc:
        failed = BuildReport(recipe=req.recipe.name, outcome="failed", error=str(exc), exit_code=exc.exit_code,
                             output=req.output, formats=list(req.formats))
        if report_path:
            atomic_write_text(report_path, failed.to_json())
        if json_out:
            sys.stdout.write(failed.to_json())
        raise
    if report_path:
        atomic_write_text(report_path, result.to_json())
    if json_out:
        sys.stdout.write(result.to_json())
    if result.outcome == "built":
        for path in result.artifacts:
            ui.info(f"wrote {path}")


@command
def lock(
    recipe: Annotated[str, typer.Argument(help="Recipe name or path to a recipe file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The lock file to write.")],
    mirror: MirrorOpt = None,
    security_mirror: SecurityMirrorOpt = None,
    source: SourceOpt = None,
    no_updates: NoUpdatesOpt = False,
    image_mirror: ImageMirrorOpt = None,
    image_security_mirror: ImageSecurityMirrorOpt = None,
    variant: VariantOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    components: ComponentsOpt = None,
    arch: ArchesOpt = None,
    platform: PlatformOpt = None,
    keyring: KeyringOpt = None,
    nodeps: NoDepsOpt = False,
    module: ModuleOpt = None,
    no_check_gpg: NoGpgOpt = False,
    ignore_valid_until: IgnoreValidOpt = False,
) -> None:
    """Resolve a recipe and write the exact package set to a lock file
    (with several architectures, one file holding a lock for each)."""
    from rootfs.pipeline import stages as pipeline

    base = load_recipe(recipe)
    arches = architectures_of(base, arch, platform) if (arch or platform) else ()
    r = selection_from(base, mirror=mirror, variant=variant, include=include, exclude=exclude,
                       components=components, arch=arches[0] if arches else None, keyring=keyring, nodeps=nodeps,
                       modules=module,
                       source=source, security_mirror=security_mirror, no_updates=no_updates,
                       image_mirror=image_mirror, image_security_mirror=image_security_mirror)
    opts = ResolveOptions(check_gpg=not no_check_gpg, check_valid_until=not ignore_valid_until,
                          cache_dir=default_cache_dir())
    result = pipeline.resolve_all(r, arches, opts, Downloader())
    result.write(output)
    count = sum(len(lk.packages) for lk in result.locks)
    where = f" for {', '.join(result.architectures)}" if len(result.locks) > 1 else ""
    ui.info(f"wrote {output}: {count} packages{where}, lock digest {result.digest()[:12]}")
