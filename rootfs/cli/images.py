"""Commands on images and roots: pack, push, pull, history, inspect, sbom, graph."""


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
    ArchOpt,
    ImagePlatformOpt,
    CaCertOpt,
    CertDirOpt,
    CredsOpt,
    ExcludeOpt,
    FormatOpt,
    IgnoreValidOpt,
    IncludeOpt,
    InsecureOpt,
    KeyringOpt,
    MirrorOpt,
    NoGpgOpt,
    NoUpdatesOpt,
    RetriesOpt,
    SecurityMirrorOpt,
    SourceOpt,
    VariantOpt,
    check_allow,
    check_table_format,
    registry_options,
    selection_from,
)
from rootfs.model.errors import UsageError
from rootfs.model.recipe import load_recipe, recipe_names, split_list
from rootfs.net.fetch import Downloader

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
    security_mirror: SecurityMirrorOpt = None,
    source: SourceOpt = None,
    no_updates: NoUpdatesOpt = False,
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

            r = selection_from(load_recipe(spec), mirror=mirror, variant=variant, include=include, exclude=exclude,
                               arch=arch, keyring=keyring, source=source, security_mirror=security_mirror,
                               no_updates=no_updates)
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


def _checked_platform(platform: str | None) -> str | None:
    """--platform as an image index spells it (linux/arm64/v8 -> linux/arm64/v8, linux/arm -> linux/arm/v7)."""
    if platform is None:
        return None
    from rootfs.model.arch import from_platform, platform_of

    return platform_of(from_platform(platform))


def _platform_lock(path: Path, platform: str | None):
    """The lock of one architecture: the file's only one, or the one of
    --platform in a lock of several architectures."""
    from rootfs.model.arch import from_platform, host_arch, lookup
    from rootfs.model.lock import read_lockset

    locks = read_lockset(path)
    if len(locks.locks) == 1:
        return locks.locks[0]
    want = from_platform(platform) if platform else host_arch()
    for lk in locks.locks:
        if lookup(lk.architecture) == want:
            return lk
    raise UsageError(f"{path} has no lock for {want.deb} (it has: {', '.join(locks.architectures)}); "
                     "name one with --platform")


@command
def sbom(
    target: Annotated[str, typer.Argument(metavar="ROOT | IMAGE", help="A root directory or an image (DIR[:TAG], oci-archive, docker-archive).")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the SPDX JSON here (default: stdout).")] = None,
    lock: Annotated[Optional[Path], typer.Option("--lock", help="The lock the target was built from (adds package checksums and URLs).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="The document's name (default: the lock's recipe, the tag or the directory).")] = None,
    platform: ImagePlatformOpt = None,
) -> None:
    """Write an SPDX 2.3 JSON SBOM of the packages installed in a root or an image."""
    from rootfs.inventory.sbom import SbomOptions, sbom_bytes, write_sbom
    from rootfs.model.errors import OutputError

    path = Path(target)
    if not path.exists() and not (":" in target and Path(target.rpartition(":")[0]).exists()):
        raise OutputError(f"{target} does not exist (expected a root directory or an image)")
    lk = _platform_lock(lock, platform) if lock else None
    opts = SbomOptions(name=name or "", platform=_checked_platform(platform))
    if output is None or str(output) == "-":
        data, _ = sbom_bytes(target, lk, opts)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        _, digest = write_sbom(target, lk, output, opts)
        ui.info(f"wrote {output} (sha256:{digest})")



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

    result = push_spec(image, ref, registry_options(creds, ca_cert, insecure, retries, cert_dir=cert_dir))
    ui.info(f"pushed {result.ref}: {len(result.uploaded)} blobs uploaded, {len(result.skipped)} already there, "
            f"{len(result.mounted)} mounted from other repositories")
    print(result.digest)


@command
def index(
    target: Annotated[str, typer.Argument(metavar="TARGET", help="HOST[:PORT]/NAME[:TAG]: where the index goes.")],
    sources: Annotated[list[str], typer.Argument(metavar="SOURCE...", help="HOST[:PORT]/NAME[:TAG|@DIGEST] on TARGET's registry: images or indexes.")],
    creds: CredsOpt = None,
    ca_cert: CaCertOpt = None,
    cert_dir: CertDirOpt = None,
    insecure: InsecureOpt = False,
    retries: RetriesOpt = 4,
) -> None:
    """Join images already in a registry into one multi-platform index; prints its digest."""
    from rootfs.registry.transfer import put_index

    result = put_index(target, sources, registry_options(creds, ca_cert, insecure, retries, cert_dir=cert_dir))
    ui.info(f"put {result.ref}: {', '.join(result.platforms)}; {len(result.mounted)} blobs mounted, "
            f"{len(result.copied)} copied, {len(result.present)} already there")
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
    platform: Annotated[Optional[str], typer.Option("--platform", help="Of an image index, pull only this platform's image (linux/arm64, linux/arm/v7, linux/386...); default: the whole index.")] = None,
) -> None:
    """Pull an image into an OCI layout, every blob checked against its digest."""
    from rootfs.registry import pull as pull_ref

    path, tag, digest = pull_ref(ref, dest, registry_options(creds, ca_cert, insecure, retries, cert_dir=cert_dir),
                                 _checked_platform(platform))
    ui.info(f"pulled {ref} into {path}:{tag}")
    print(digest)


@command
def history(
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="OCI layout DIR[:TAG], oci-archive or docker-archive.")],
    format: FormatOpt = "table",  # noqa: A002
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Do not shorten IDs and commands.")] = False,
    platform: ImagePlatformOpt = None,
) -> None:
    """The image's history like `docker history`, newest first."""
    import json

    from rootfs.image import info as imageinfo
    from rootfs.image.reader import open_image

    check_table_format(format)
    with open_image(image, platform=_checked_platform(platform)) as img:
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
    platform: ImagePlatformOpt = None,
) -> None:
    """Config, annotations, layers and installed packages of an image."""
    import json

    from rootfs.image import info as imageinfo
    from rootfs.image.reader import open_image

    check_table_format(format)
    with open_image(image, platform=_checked_platform(platform)) as img:
        info = imageinfo.inspect(img, with_packages=packages)
    if format == "json":
        print(json.dumps(info, indent=2))
    else:
        print("\n".join(imageinfo.inspect_text(info)))


@command
def pack(
    root: Annotated[Path, typer.Argument(help="The root directory to pack.")],
    output: Annotated[str, typer.Option("-o", "--output", help="The artifact (one format; without --format its suffix names it), a directory of artifacts (several), or - for standard output.")],
    fmt: Annotated[Optional[list[str]], typer.Option("--format", "-f", help="tar, tar.gz, tar.zst, tar.xz, oci, oci-archive, docker-archive, ext2, ext4, squashfs or dir (repeatable, or comma separated; default: from -o's suffix, else dir).")] = None,
    tag: Annotated[Optional[str], typer.Option("--tag", help="Image NAME[:TAG] (default: the recipe's, else localhost/rootfs:latest).")] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", help="Take the image config (cmd, env, labels, tag) from this recipe.")] = None,
    layer_compression: Annotated[str, typer.Option("--layer-compression", help="OCI layers: gzip or zstd.")] = "gzip",
    source_date_epoch: Annotated[Optional[int], typer.Option("--source-date-epoch", min=0, help="Clamp mtimes and set `created` (default: the lock's beside ROOT; env SOURCE_DATE_EPOCH overrides).")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="The root's architecture (default: from its /bin/sh).")] = None,
    keep_dev: Annotated[bool, typer.Option("--keep-dev", help="Pack the contents of /dev too.")] = False,
    no_clean: Annotated[bool, typer.Option("--no-clean", help="Pack logs, apt lists, machine-id... as they are.")] = False,
    allow: AllowOpt = None,
) -> None:
    """Pack an existing root directory into images; the tree itself is never changed."""
    from rootfs.pack import PackOptions, check_formats
    from rootfs.pack import pack as run_pack
    from rootfs.pack.outputs import check_output, choose_formats

    formats = check_formats(choose_formats(output, [x for v in fmt or () for x in split_list(v)]))
    check_output(output, formats)
    policy = check_allow(allow)
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
        policy=policy,
    )
    if image is not None:
        opts.image = image
    for a in run_pack(root, formats, output, opts):
        if a.path is not None:
            ui.info(f"wrote {a.format} {a.path}" + (f" {a.digest}" if a.digest else ""))
