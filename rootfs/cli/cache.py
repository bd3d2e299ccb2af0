"""`rootfs cache`: inspect and prune the package cache."""


from pathlib import Path
from typing import Annotated, Optional

import typer

from rootfs.cli.app import app, command
from rootfs.cli.options import (
    CacheDirOpt,
)
from rootfs.model.errors import UsageError
from rootfs.net.fetch import Cache, default_cache_dir

cache_app = typer.Typer(no_args_is_help=True, help="Inspect and prune the package cache.")
app.add_typer(cache_app, name="cache")



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
    from rootfs.model.lock import read_lockset
    from rootfs.net.cache import prune as prune_cache

    if all_ and (max_age is not None or keep_lock):
        raise UsageError("--all removes everything: it does not combine with --max-age or --keep-lock")
    keep = None
    if keep_lock:
        keep = {p.sha256 for f in keep_lock for lk in read_lockset(f).locks for p in lk.packages}
    cache = Cache(cache_dir or default_cache_dir())
    r = prune_cache(cache, max_age_days=max_age, keep=keep, everything=all_, wait=wait)
    print(f"{cache.root}: removed {r.removed} entries and {r.parts} unfinished downloads, "
          f"freed {_size(r.freed)} ({r.freed} bytes); {r.kept} entries kept")
