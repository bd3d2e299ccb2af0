"""The command line: commands and their options, nothing else.

Every command turns a RootfsError into one sentence on stderr and its
documented exit code (rootfs.model.errors); only bugs print tracebacks.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from rootfs import ui
from rootfs.backends import ResolveOptions, default_mode
from rootfs.model.errors import RootfsError, UsageError
from rootfs.net.fetch import Cache, Downloader, default_cache_dir, default_jobs
from rootfs.model.recipe import load_recipe, recipe_names, split_list

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build minimal, verified, reproducible base images from distribution packages.",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def command(fn, group: typer.Typer | None = None):
    """Register fn as a command (of group, default the top level) whose
    user errors exit cleanly."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RootfsError as exc:
            ui.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            ui.error("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader of our stdout went away (`| head`): not our error.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None

    return (group or app).command()(wrapper)


@app.callback()
def _global(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors (for cron).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the details of each step.")] = False,
) -> None:
    ui.configure(quiet=quiet, verbose=verbose)


# Options shared by the commands that select packages.
MirrorOpt = Annotated[Optional[str], typer.Option("--mirror", help="Repository URL (default: recipe, ROOTFS_MIRROR, host apt).")]
VariantOpt = Annotated[Optional[str], typer.Option("--variant", help="essential, minbase, buildd or default.")]
IncludeOpt = Annotated[Optional[list[str]], typer.Option("--include", help="Extra packages (comma separated, repeatable).")]
ExcludeOpt = Annotated[Optional[list[str]], typer.Option("--exclude", help="Packages to leave out (comma separated, repeatable).")]
ComponentsOpt = Annotated[Optional[str], typer.Option("--components", help="Archive components, comma separated.")]
ArchOpt = Annotated[Optional[str], typer.Option("--arch", help="Target architecture (default: the host's).")]
KeyringOpt = Annotated[Optional[Path], typer.Option("--keyring", help="Keyring to verify the repository with.")]
NoGpgOpt = Annotated[bool, typer.Option("--no-check-gpg", help="DANGEROUS: accept unsigned or badly signed metadata.")]
IgnoreValidOpt = Annotated[bool, typer.Option("--ignore-valid-until", help="Accept an expired Release (snapshot mirrors).")]
RepoOpt = Annotated[Optional[list[str]], typer.Option("--repo", help="rpm-md repository URL (repeatable).")]
GpgKeyOpt = Annotated[Optional[Path], typer.Option("--gpgkey", help="Key to verify rpm-md metadata and packages with.")]
WeakDepsOpt = Annotated[Optional[bool], typer.Option("--weak-deps/--no-weak-deps", help="rpm: install Recommends/Supplements.")]


def _selection(recipe, *, mirror=None, variant=None, include=None, exclude=None, components=None,
               arch=None, keyring=None, repo=None, packages=(), weak_deps=None):
    from rootfs.pipeline.stages import Selection, apply_selection

    if keyring is not None and not keyring.is_file():
        raise UsageError(f"keyring {keyring} does not exist")
    sel = Selection(
        mirror=mirror,
        variant=variant,
        include=tuple(x for v in include or () for x in split_list(v)),
        exclude=tuple(x for v in exclude or () for x in split_list(v)),
        components=split_list(components),
        arch=arch,
        keyring=str(keyring) if keyring else None,
        repos=tuple(repo or ()),
        packages=tuple(packages),
        weak_deps=weak_deps,
    )
    return apply_selection(recipe, sel)


@command
def recipes() -> None:
    """List the recipes with their backend, suite and description."""
    for name in recipe_names():
        r = load_recipe(name)
        print(f"{name:<12} {r.backend:<4} {r.distribution + ' ' + r.suite:<24} {r.description}")


def _recipe_or_adhoc(args: list[str], repo, arch):
    """`RECIPE` or, with --repo, `PACKAGE...` for an ad-hoc rpm recipe."""
    from rootfs.model.recipe import Recipe, host_architecture

    if repo:
        if not args:
            raise UsageError("name at least one package to resolve with --repo")
        return Recipe(name="adhoc", backend="rpm", distribution="", suite="",
                      architecture=arch or host_architecture("rpm"), repos=tuple(repo), packages=tuple(args)), ()
    if not args:
        raise UsageError("name a recipe (see `rootfs recipes`), or pass --repo URL and packages")
    return load_recipe(args[0]), tuple(args[1:])


@command
def resolve(
    args: Annotated[list[str], typer.Argument(metavar="RECIPE | PACKAGE...", help="Recipe name or file; with --repo, packages.")],
    mirror: MirrorOpt = None,
    variant: VariantOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    components: ComponentsOpt = None,
    arch: ArchOpt = None,
    keyring: KeyringOpt = None,
    repo: RepoOpt = None,
    gpgkey: GpgKeyOpt = None,
    weak_deps: WeakDepsOpt = None,
    no_check_gpg: NoGpgOpt = False,
    ignore_valid_until: IgnoreValidOpt = False,
    lock: Annotated[Optional[Path], typer.Option("--lock", help="Write the lock file here instead of printing.")] = None,
) -> None:
    """Resolve without installing: one `name version arch` line per package, sorted by name."""
    from rootfs.pipeline import stages as pipeline

    base, extra = _recipe_or_adhoc(args, repo, arch)
    if extra:
        raise UsageError(f"unexpected arguments after the recipe: {' '.join(extra)} (use --include)")
    r = _selection(base, mirror=mirror, variant=variant, include=include, exclude=exclude,
                   components=components, arch=arch, keyring=keyring or gpgkey, weak_deps=weak_deps)
    opts = ResolveOptions(check_gpg=not no_check_gpg, check_valid_until=not ignore_valid_until)
    result = pipeline.resolve(r, opts, Downloader())
    if lock:
        result.write(lock)
        ui.info(f"wrote {lock}: {len(result.packages)} packages")
    else:
        sys.stdout.write("".join(line + "\n" for line in result.package_lines()))


ArtifactFormatOpt = Annotated[Optional[list[str]], typer.Option(
    "--format", "-f", help="tar, tar.gz, tar.zst, tar.xz, oci, oci-archive, docker-archive, ext2, ext4, squashfs, dir (repeatable).")]
TagOpt = Annotated[Optional[str], typer.Option("--tag", help="Image NAME[:TAG] (default: the recipe's).")]


def _mode(mode: str | None) -> str:
    mode = mode or default_mode()
    if mode not in ("root", "rootless", "extract"):
        raise UsageError(f"unknown mode {mode!r} (known: root, rootless, extract)")
    return mode


@command
def make(
    recipe: Annotated[str, typer.Argument(help="Recipe name or path to a recipe file.")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="The artifact (one format), a directory (several), or - for a tar on stdout. Default: out/RECIPE.")] = None,
    fmt: ArtifactFormatOpt = None,
    tag: TagOpt = None,
    mirror: MirrorOpt = None,
    variant: VariantOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    components: ComponentsOpt = None,
    arch: ArchOpt = None,
    keyring: KeyringOpt = None,
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
    push: Annotated[Optional[str], typer.Option("--push", help="Push the OCI image to HOST[:PORT]/NAME[:TAG].")] = None,
    creds: Annotated[Optional[str], typer.Option("--creds", help="Registry USER:PASS.")] = None,
    ca_cert: Annotated[Optional[Path], typer.Option("--ca-cert", help="CA certificate for the registry.")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain-HTTP registry.")] = False,
) -> None:
    """Resolve, fetch, install and pack a recipe; publish the result atomically."""
    from rootfs.pipeline.make import MakeRequest, make as run_make
    from rootfs.host.mounts import enter_private_mount_namespace
    from rootfs.pack import check_formats

    # Before any thread starts: mounts of the configure stage then vanish
    # with this process, even on SIGKILL.
    enter_private_mount_namespace()
    r = _selection(load_recipe(recipe), mirror=mirror, variant=variant, include=include, exclude=exclude,
                   components=components, arch=arch, keyring=keyring)
    formats = check_formats([x for v in fmt or ["dir"] for x in split_list(v)])
    if push and "oci" not in formats:
        formats.append("oci")
    if output == "-" and (keep or push):
        raise UsageError("-o - cannot be combined with --keep or --push")
    if json_out and output == "-":
        raise UsageError("--json and -o - both want standard output")
    _check_pack_flags(tag or r.image.tag, layer_compression)
    if push:
        from rootfs.registry import parse_reference

        parse_reference(push)
    registry = _registry_options(creds, ca_cert, insecure, 4) if push else None
    req = MakeRequest(
        recipe=r,
        output=output or str(Path("out") / r.name),
        formats=tuple(formats),
        resolve_opts=ResolveOptions(check_gpg=not no_check_gpg, check_valid_until=not ignore_valid_until),
        cache_dir=cache_dir or default_cache_dir(),
        jobs=jobs,
        mode=_mode(mode),
        locked=locked,
        force=force,
        keep=keep,
        wait=wait,
        tag=tag or "",
        layer_compression=layer_compression,
        push=push,
        registry=registry,
        sbom=not no_sbom,
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
    variant: VariantOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    components: ComponentsOpt = None,
    arch: ArchOpt = None,
    keyring: KeyringOpt = None,
    no_check_gpg: NoGpgOpt = False,
    ignore_valid_until: IgnoreValidOpt = False,
) -> None:
    """Resolve a recipe and write the exact package set to a lock file."""
    from rootfs.pipeline import stages as pipeline

    r = _selection(load_recipe(recipe), mirror=mirror, variant=variant, include=include, exclude=exclude,
                   components=components, arch=arch, keyring=keyring)
    opts = ResolveOptions(check_gpg=not no_check_gpg, check_valid_until=not ignore_valid_until)
    result = pipeline.resolve(r, opts, Downloader())
    result.write(output)
    ui.info(f"wrote {output}: {len(result.packages)} packages, lock digest {result.digest()[:12]}")


GraphFormatOpt = Annotated[Optional[str], typer.Option("--format", "-f", help="dot, svg or png (default: from -o's suffix, else dot).")]


def _graph_input_kind(spec: str) -> str:
    """"lock", "image", "root" or "recipe" for one `rootfs graph` argument."""
    from rootfs.inventory.pkgdb import has_package_db

    path = Path(spec)
    if path.is_dir():
        if (path / "index.json").is_file():
            return "image"
        if has_package_db(path):
            return "root"
        if os.sep not in spec and spec in recipe_names():
            return "recipe"  # a directory that happens to share a recipe's name
        raise UsageError(f"{spec} is neither an OCI layout nor a root with a package database")
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(512).lstrip()
        if path.suffix == ".json" or head.startswith(b"{"):
            return "lock"
        if path.suffix == ".toml":
            return "recipe"
        return "image"
    head, sep, _ = spec.rpartition(":")
    if sep and head and Path(head).exists():
        return "image"
    return "recipe"


def _layout_specs(spec: str) -> list[str]:
    """An OCI layout named without a tag stands for every tag it holds."""
    import json

    from rootfs.image.reader import REF_NAME

    path = Path(spec)
    if not (path.is_dir() and (path / "index.json").is_file()):
        return [spec]
    try:
        entries = json.loads((path / "index.json").read_text()).get("manifests") or []
    except (OSError, ValueError, AttributeError):
        return [spec]
    tags = [e.get("annotations", {}).get(REF_NAME) for e in entries if isinstance(e, dict)]
    if len(tags) <= 1 or not all(tags):
        return [spec]
    return [f"{spec}:{t}" for t in tags]


@command
def graph(
    inputs: Annotated[list[str], typer.Argument(metavar="RECIPE | LOCK | ROOT | IMAGE...",
                                                help="What to draw; several images draw their lineage.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output file (default: stdout).")] = None,
    fmt: GraphFormatOpt = None,
    lineage: Annotated[bool, typer.Option("--lineage", help="Draw image lineage by shared layers, even for one image.")] = False,
    mirror: MirrorOpt = None,
    variant: VariantOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    arch: ArchOpt = None,
    keyring: KeyringOpt = None,
    no_check_gpg: NoGpgOpt = False,
    ignore_valid_until: IgnoreValidOpt = False,
) -> None:
    """Draw the package dependency graph of a recipe, lock, root or image,
    or the lineage of several images by the layers they share."""
    from rootfs.inventory import graph as g
    from rootfs.inventory import pkgdb

    form = g.format_from_path(output, fmt)
    if form not in g.FORMATS:
        raise UsageError(f"unknown graph format {form!r} (known: {', '.join(g.FORMATS)})")
    kinds = [_graph_input_kind(s) for s in inputs]
    if lineage or len(inputs) > 1:
        bad = [s for s, k in zip(inputs, kinds) if k != "image"]
        if bad:
            raise UsageError(f"lineage is drawn between images; {bad[0]} is not an image")
        from rootfs.image.reader import open_image

        images = []
        for spec in (x for s in inputs for x in _layout_specs(s)):
            with open_image(spec) as img:
                diff_ids = (img.config.get("rootfs") or {}).get("diff_ids") or []
                layers = diff_ids if len(diff_ids) == len(img.layers) else [d.digest for d in img.layers]
                images.append(g.ImageLayers(g.image_tags(img, spec), tuple(layers)))
        text = g.lineage_dot(images)
    else:
        spec, kind = inputs[0], kinds[0]
        if kind == "lock":
            from rootfs.model.lock import read_lock

            lk = read_lock(Path(spec))
            packages, backend, title = lk.packages, lk.backend, lk.recipe or Path(spec).stem
        elif kind == "recipe":
            from rootfs.pipeline import stages as pipeline

            r = _selection(load_recipe(spec), mirror=mirror, variant=variant, include=include, exclude=exclude,
                           arch=arch, keyring=keyring)
            opts = ResolveOptions(check_gpg=not no_check_gpg, check_valid_until=not ignore_valid_until)
            lk = pipeline.resolve(r, opts, Downloader())
            packages, backend, title = lk.packages, lk.backend, r.name
        elif kind == "root":
            db = pkgdb.read_root(Path(spec))
            packages, backend, title = db.packages, db.format, Path(spec).resolve().name
        else:
            from rootfs.image.reader import open_image

            with open_image(spec) as img:
                db = pkgdb.read_image(img)
            packages, backend, title = db.packages, db.format, spec
        pg = g.package_graph(packages, backend)
        if pg.unresolved:
            ui.detail(f"{len(pg.unresolved)} relations not satisfied inside the set (listed at the end of the DOT)")
        text = g.package_dot(pg, title)
    g.write_output(g.render(text, form), output)
    if output is not None and str(output) != "-":
        ui.info(f"wrote {output}")


@command
def sbom(
    target: Annotated[str, typer.Argument(metavar="ROOT | IMAGE", help="A root directory or an image (DIR[:TAG], oci-archive, docker-archive).")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the SPDX JSON here (default: stdout).")] = None,
    lock: Annotated[Optional[Path], typer.Option("--lock", help="The lock the target was built from (adds package checksums and URLs).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="The document's name (default: the lock's recipe, the tag or the directory).")] = None,
) -> None:
    """Write an SPDX 2.3 JSON SBOM of the packages installed in a root or an image."""
    from rootfs.model.errors import OutputError
    from rootfs.model.lock import read_lock
    from rootfs.inventory.sbom import SbomOptions, sbom_bytes, write_sbom

    path = Path(target)
    if not path.exists() and not (":" in target and Path(target.rpartition(":")[0]).exists()):
        raise OutputError(f"{target} does not exist (expected a root directory or an image)")
    lk = read_lock(lock) if lock else None
    opts = SbomOptions(name=name or "")
    if output is None or str(output) == "-":
        data, _ = sbom_bytes(target, lk, opts)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        _, digest = write_sbom(target, lk, output, opts)
        ui.info(f"wrote {output} (sha256:{digest})")


# -- publishing: push, pull, history, inspect ---------------------------------------

CredsOpt = Annotated[Optional[str], typer.Option("--creds", help="USER:PASSWORD for the registry (default: auth.json / docker config.json).")]
CaCertOpt = Annotated[Optional[Path], typer.Option("--ca-cert", help="Trust this CA (PEM) besides the system CAs.")]
InsecureOpt = Annotated[bool, typer.Option("--insecure", help="Plain HTTP, no TLS (never implied, not even for 127.0.0.1).")]
RetriesOpt = Annotated[int, typer.Option("--retries", min=0, max=20, help="Attempts after a reset, timeout or 5xx.")]
FormatOpt = Annotated[str, typer.Option("--format", help="table or json.")]


CertDirOpt = Annotated[Optional[Path], typer.Option("--cert-dir", help="certs.d-style directory: *.crt CAs, *.cert/*.key client certificates.")]


def _registry_options(creds, ca_cert, insecure, retries, cache_dir=None, cert_dir=None):
    from rootfs.registry import RegistryOptions, parse_creds

    if ca_cert is not None and not ca_cert.is_file():
        raise UsageError(f"CA certificate {ca_cert} does not exist")
    if cert_dir is not None and not cert_dir.is_dir():
        raise UsageError(f"certificate directory {cert_dir} does not exist")
    if (ca_cert is not None or cert_dir is not None) and insecure:
        raise UsageError("--ca-cert/--cert-dir are for TLS and --insecure turns TLS off; pass one of them")
    return RegistryOptions(creds=parse_creds(creds) if creds is not None else None, ca_cert=ca_cert,
                           cert_dir=cert_dir, insecure=insecure, retries=retries,
                           cache_dir=cache_dir or default_cache_dir())


def _check_format(fmt: str) -> None:
    if fmt not in ("table", "json"):
        raise UsageError(f"unknown --format {fmt!r} (known: table, json)")


@command
def push(
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="OCI layout DIR[:TAG] or oci-archive.")],
    ref: Annotated[str, typer.Argument(metavar="REF", help="HOST[:PORT]/NAME[:TAG]")],
    creds: CredsOpt = None,
    ca_cert: CaCertOpt = None,
    cert_dir: CertDirOpt = None,
    insecure: InsecureOpt = False,
    retries: RetriesOpt = 4,
) -> None:
    """Push an image to a registry; prints the pushed manifest digest."""
    from rootfs.registry import push_spec

    result = push_spec(image, ref, _registry_options(creds, ca_cert, insecure, retries, cert_dir=cert_dir))
    ui.info(f"pushed {result.ref}: {len(result.uploaded)} blobs uploaded, {len(result.skipped)} already there, "
            f"{len(result.mounted)} mounted from other repositories")
    print(result.digest)


@command
def pull(
    ref: Annotated[str, typer.Argument(metavar="REF", help="HOST[:PORT]/NAME[:TAG|@DIGEST]")],
    dest: Annotated[str, typer.Argument(metavar="DIR[:TAG]", help="OCI layout to create or add the tag to.")],
    creds: CredsOpt = None,
    ca_cert: CaCertOpt = None,
    cert_dir: CertDirOpt = None,
    insecure: InsecureOpt = False,
    retries: RetriesOpt = 4,
) -> None:
    """Pull an image into an OCI layout, every blob checked against its digest."""
    from rootfs.registry import pull as pull_ref

    path, tag, digest = pull_ref(ref, dest, _registry_options(creds, ca_cert, insecure, retries, cert_dir=cert_dir))
    ui.info(f"pulled {ref} into {path}:{tag}")
    print(digest)


@command
def history(
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="OCI layout DIR[:TAG], oci-archive or docker-archive.")],
    format: FormatOpt = "table",  # noqa: A002
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Do not shorten IDs and commands.")] = False,
) -> None:
    """The image's history like `docker history`, newest first."""
    import json

    from rootfs.image import info as imageinfo
    from rootfs.image.reader import open_image

    _check_format(format)
    with open_image(image) as img:
        rows = imageinfo.history(img)
    if format == "json":
        print(json.dumps(imageinfo.history_json(rows), indent=2))
    else:
        print("\n".join(imageinfo.history_table(rows, no_trunc=no_trunc)))


@command
def inspect(
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="OCI layout DIR[:TAG], oci-archive or docker-archive.")],
    format: FormatOpt = "table",  # noqa: A002
    packages: Annotated[bool, typer.Option("--packages/--no-packages", help="Read the package list from the layers.")] = True,
) -> None:
    """Config, annotations, layers and installed packages of an image."""
    import json

    from rootfs.image import info as imageinfo
    from rootfs.image.reader import open_image

    _check_format(format)
    with open_image(image) as img:
        info = imageinfo.inspect(img, with_packages=packages)
    if format == "json":
        print(json.dumps(info, indent=2))
    else:
        print("\n".join(imageinfo.inspect_text(info)))


@command
def pack(
    root: Annotated[Path, typer.Argument(help="The root directory to pack.")],
    fmt: Annotated[list[str], typer.Option("--format", "-f", help="tar, tar.gz, tar.zst, tar.xz, oci, oci-archive, docker-archive, ext2, ext4, squashfs or dir (repeatable, or comma separated).")],
    output: Annotated[str, typer.Option("-o", "--output", help="The artifact (one format), a directory of artifacts (several), or - for a tar on stdout.")],
    tag: Annotated[Optional[str], typer.Option("--tag", help="Image NAME[:TAG] (default: the recipe's, else localhost/rootfs:latest).")] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", help="Take the image config (cmd, env, labels, tag) from this recipe.")] = None,
    layer_compression: Annotated[str, typer.Option("--layer-compression", help="OCI layers: gzip or zstd.")] = "gzip",
    source_date_epoch: Annotated[Optional[int], typer.Option("--source-date-epoch", min=0, help="Clamp mtimes and set `created` (default: the lock's beside ROOT; env SOURCE_DATE_EPOCH overrides).")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="The root's architecture (default: from its /bin/sh).")] = None,
    keep_dev: Annotated[bool, typer.Option("--keep-dev", help="Pack the contents of /dev too.")] = False,
    no_clean: Annotated[bool, typer.Option("--no-clean", help="Pack logs, apt lists, machine-id... as they are.")] = False,
) -> None:
    """Pack an existing root directory into images; the tree itself is never changed."""
    from rootfs.pack import PackOptions, check_formats
    from rootfs.pack import pack as run_pack

    formats = check_formats([x for v in fmt for x in split_list(v)])
    if output == "-" and sys.stdout.isatty():
        raise UsageError("refusing to write a tar stream to a terminal; redirect standard output")
    image = load_recipe(recipe).image if recipe else None
    # A root that `rootfs make` wrote has its lock beside it (OUT.lock.json,
    # or lock.json next to OUT/rootfs): its SOURCE_DATE_EPOCH and
    # architecture are the build's.
    lock = None
    for candidate in (root.parent / f"{root.name}.lock.json", root.parent / "lock.json"):
        if candidate.is_file() and (candidate.name != "lock.json" or root.name == "rootfs"):
            from rootfs.model.lock import read_lock

            lock = read_lock(candidate)
            break
    if source_date_epoch is None and lock is not None and lock.source_date_epoch:
        source_date_epoch = lock.source_date_epoch
    if arch is None and lock is not None:
        arch = lock.architecture
    opts = PackOptions(
        source_date_epoch=source_date_epoch,
        tag=tag or "",
        layer_compression=layer_compression,
        architecture=arch or "",
        keep_dev=keep_dev,
        cleanup=not no_clean,
        created_by="rootfs pack: the root directory as one layer",
    )
    if image is not None:
        opts.image = image
    for a in run_pack(root, formats, output, opts):
        if a.path is not None:
            ui.info(f"wrote {a.format} {a.path}" + (f" {a.digest}" if a.digest else ""))


# -- the package cache ------------------------------------------------------

cache_app = typer.Typer(no_args_is_help=True, help="Inspect and prune the package cache.")
app.add_typer(cache_app, name="cache")
CacheDirOpt = Annotated[Optional[Path], typer.Option("--cache-dir", help="Package cache (default: XDG cache).")]


def _cache_command(fn):
    return command(fn, group=cache_app)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@_cache_command
def info(cache_dir: CacheDirOpt = None) -> None:
    """Number and total size of the cached package files."""
    from rootfs.net.cache import cache_info

    i = cache_info(Cache(cache_dir or default_cache_dir()))
    print(f"{i.root}: {i.entries} entries, {_size(i.bytes)} ({i.bytes} bytes)")
    if i.parts:
        print(f"{i.parts} unfinished downloads (.part), {_size(i.part_bytes)}")


@_cache_command
def prune(
    max_age: Annotated[Optional[float], typer.Option("--max-age", min=0, metavar="DAYS", help="Remove entries unused for DAYS days.")] = None,
    keep_lock: Annotated[Optional[list[Path]], typer.Option("--keep-lock", metavar="FILE", help="Keep the packages of this lock file (repeatable); remove the rest.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove every entry.")] = False,
    wait: Annotated[float, typer.Option("--wait", min=0, metavar="SECONDS", help="Wait this long for builds using the cache to finish.")] = 0.0,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Remove old or unreferenced package files and unfinished downloads.

    With --max-age and --keep-lock together, an entry goes when it is old
    and no given lock names it."""
    from rootfs.net.cache import prune as prune_cache
    from rootfs.model.lock import read_lock

    if all_ and (max_age is not None or keep_lock):
        raise UsageError("--all removes everything: it does not combine with --max-age or --keep-lock")
    keep = None
    if keep_lock:
        keep = {p.sha256 for f in keep_lock for p in read_lock(f).packages}
    cache = Cache(cache_dir or default_cache_dir())
    r = prune_cache(cache, max_age_days=max_age, keep=keep, everything=all_, wait=wait)
    print(f"{cache.root}: removed {r.removed} entries and {r.parts} unfinished downloads, "
          f"freed {_size(r.freed)} ({r.freed} bytes); {r.kept} entries kept")


# -- supermin-style appliances (rpm) --------------------------------------------


@command
def prepare(
    packages: Annotated[list[str], typer.Argument(metavar="PACKAGE...", help="Packages to install (with their dependencies).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The appliance directory to write.")],
    repo: Annotated[list[str], typer.Option("--repo", help="rpm-md repository URL (repeatable).")],
    gpgkey: GpgKeyOpt = None,
    arch: ArchOpt = None,
    weak_deps: Annotated[bool, typer.Option("--weak-deps", help="Install Recommends/Supplements too.")] = False,
    no_check_gpg: NoGpgOpt = False,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Package cache (default: XDG cache).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=64, help="Parallel downloads.")] = default_jobs(),
) -> None:
    """Resolve rpm packages and write an appliance: the lock and the verified package files."""
    from rootfs.model.recipe import Recipe, host_architecture
    from rootfs.backends.rpm.appliance import prepare as run_prepare

    if gpgkey is not None and not gpgkey.is_file():
        raise UsageError(f"gpgkey {gpgkey} does not exist")
    recipe = Recipe(name="appliance", backend="rpm", distribution="", suite="",
                    architecture=arch or host_architecture("rpm"), repos=tuple(repo), packages=tuple(packages),
                    gpgkey=str(gpgkey) if gpgkey else "", weak_deps=weak_deps)
    opts = ResolveOptions(check_gpg=not no_check_gpg)
    lock = run_prepare(recipe, opts, Downloader(), output, Cache(cache_dir or default_cache_dir()), jobs, ui.detail)
    ui.info(f"wrote {output}: {len(lock.packages)} packages")


@command
def build(
    appliance: Annotated[Path, typer.Argument(help="An appliance directory written by `rootfs prepare`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where the root or artifact goes.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="chroot (a directory), ext2, tar, or any packer format.")] = "chroot",
    mode: Annotated[Optional[str], typer.Option("--mode", help="root (scriptlets, rpmdb), rootless or extract.")] = None,
) -> None:
    """Install an appliance offline into a chroot directory, an ext2 image, a tarball or another packer format."""
    from rootfs.backends.rpm.appliance import build as run_build

    report = run_build(appliance, fmt, output, _mode(mode), ui.detail)
    for step in report.skipped:
        ui.warn(f"skipped: {step}")
    ui.info(f"built {output} ({report.packages} packages)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
