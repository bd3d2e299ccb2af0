"""The command line: commands and their options, nothing else.

Every command turns a RootfsError into one sentence on stderr and its
documented exit code (rootfs.errors); only bugs print tracebacks.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from rootfs import ui
from rootfs.backend import InstallOptions, ResolveOptions, default_mode
from rootfs.errors import RootfsError, UsageError
from rootfs.fetch import Cache, Downloader, default_cache_dir, default_jobs
from rootfs.recipe import load_recipe, recipe_names, split_list

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build minimal, verified, reproducible base images from distribution packages.",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def command(fn):
    """Register fn as a command whose user errors exit cleanly."""

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

    return app.command()(wrapper)


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
    from rootfs.pipeline import Selection, apply_selection

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
    from rootfs.recipe import Recipe, host_architecture

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
    from rootfs import pipeline

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


@command
def make(
    recipe: Annotated[str, typer.Argument(help="Recipe name or path to a recipe file.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Where the root (or artifact) goes.")] = None,
    mirror: MirrorOpt = None,
    variant: VariantOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    components: ComponentsOpt = None,
    arch: ArchOpt = None,
    keyring: KeyringOpt = None,
    no_check_gpg: NoGpgOpt = False,
    ignore_valid_until: IgnoreValidOpt = False,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Package cache (default: XDG cache).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=64, help="Parallel downloads.")] = default_jobs(),
    mode: Annotated[Optional[str], typer.Option("--mode", help="root, rootless, or extract (stage 1 only).")] = None,
) -> None:
    """Resolve, fetch and install a recipe into a root directory."""
    from rootfs import pipeline
    from rootfs.atomic import atomic_path

    r = _selection(load_recipe(recipe), mirror=mirror, variant=variant, include=include, exclude=exclude,
                   components=components, arch=arch, keyring=keyring)
    mode = mode or default_mode()
    if mode not in ("root", "rootless", "extract"):
        raise UsageError(f"unknown mode {mode!r} (known: root, rootless, extract)")
    out = output or Path("out") / r.name
    opts = ResolveOptions(check_gpg=not no_check_gpg, check_valid_until=not ignore_valid_until)
    downloader = Downloader()
    lock = pipeline.resolve(r, opts, downloader)
    ui.info(f"resolved {len(lock.packages)} packages for {r.name}")
    files = pipeline.fetch(lock, Cache(cache_dir or default_cache_dir()), downloader, jobs)
    with atomic_path(out, directory=True) as root:
        report = pipeline.install(lock, files, root, InstallOptions(mode=mode))
    for step in report.skipped:
        ui.warn(f"skipped: {step}")
    ui.info(f"built {out} ({len(lock.packages)} packages)")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
