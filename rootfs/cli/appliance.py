"""The supermin-style pair: prepare and build."""


from pathlib import Path
from typing import Annotated, Optional

import typer

from rootfs import ui
from rootfs.backends import ResolveOptions
from rootfs.cli.app import command
from rootfs.cli.options import (
    AllowOpt,
    ArchOpt,
    GpgKeyOpt,
    ModuleOpt,
    NoDepsOpt,
    NoGpgOpt,
    RepoGpgcheckOpt,
    check_allow,
    check_mode,
)
from rootfs.model.errors import UsageError
from rootfs.net.fetch import Cache, Downloader, default_cache_dir, default_jobs


@command
def prepare(
    packages: Annotated[list[str], typer.Argument(metavar="PACKAGE...", help="Packages to install (with their dependencies).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The appliance directory to write.")],
    repo: Annotated[list[str], typer.Option("--repo", help="rpm-md repository URL (repeatable).")],
    gpgkey: GpgKeyOpt = None,
    repo_gpgcheck: RepoGpgcheckOpt = False,
    arch: ArchOpt = None,
    weak_deps: Annotated[bool, typer.Option("--weak-deps", help="Install Recommends/Supplements too.")] = False,
    nodeps: NoDepsOpt = False,
    module: ModuleOpt = None,
    no_check_gpg: NoGpgOpt = False,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Package cache (default: XDG cache).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=64, help="Parallel downloads.")] = default_jobs(),
) -> None:
    """Resolve rpm packages and write an appliance: the lock and the verified package files."""
    from rootfs.backends.rpm.settings import adhoc_recipe
    from rootfs.pipeline.appliance import prepare as run_prepare

    if gpgkey is not None and not gpgkey.is_file():
        raise UsageError(f"gpgkey {gpgkey} does not exist")
    from rootfs.backends.rpm.settings import check_modules
    from rootfs.model.recipe import split_list

    modules = check_modules([x for v in module or () for x in split_list(v)], "--module")
    recipe = adhoc_recipe("appliance", arch, repo, packages, gpgkey=str(gpgkey) if gpgkey else "",
                          weak_deps=weak_deps, nodeps=nodeps, modules=modules,
                          repo_gpgcheck=repo_gpgcheck)
    opts = ResolveOptions(check_gpg=not no_check_gpg)
    lock = run_prepare(recipe, opts, Downloader(), output, Cache(cache_dir or default_cache_dir()), jobs)
    ui.info(f"wrote {output}: {len(lock.packages)} packages")


@command
def build(
    appliance: Annotated[Path, typer.Argument(help="An appliance directory written by `rootfs prepare`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where the root or artifact goes (its suffix names the format when --format is not given).")],
    fmt: Annotated[Optional[list[str]], typer.Option("--format", "-f", help="chroot (a directory), ext2, tar, or any packer format (repeatable; default: from -o's suffix, else chroot).")] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="root (scriptlets, rpmdb), rootless or extract.")] = None,
    allow: AllowOpt = None,
) -> None:
    """Install an appliance offline into a chroot directory, an ext2 image, a tarball or another packer format."""
    from rootfs.backends.rpm.appliance import FORMAT_ALIASES
    from rootfs.host.mounts import enter_private_mount_namespace
    from rootfs.model.recipe import split_list
    from rootfs.pack import check_formats
    from rootfs.pack.outputs import choose_formats
    from rootfs.pipeline.appliance import build as run_build

    enter_private_mount_namespace()  # as make: configure-stage mounts vanish with the process
    asked = [FORMAT_ALIASES.get(x, x) for v in fmt or () for x in split_list(v)]
    report = run_build(appliance, check_formats(choose_formats(output, asked)), output, check_mode(mode),
                         policy=check_allow(allow))
    for path in report.artifacts:
        ui.info(f"wrote {path}")
