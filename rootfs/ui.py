"""What the user sees: messages on stderr, rich progress bars unless --quiet.

Standard output is kept for data (resolve lists, `-o -` tar streams, --json).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

_console = Console(stderr=True, highlight=False)
_state = {"quiet": False, "verbose": False}


def configure(quiet: bool = False, verbose: bool = False) -> None:
    _state["quiet"] = quiet
    _state["verbose"] = verbose


def verbosity() -> int:
    """0 with --quiet, 2 with --verbose, else 1 (as mmdebstrap counts)."""
    return 0 if _state["quiet"] else 2 if _state["verbose"] else 1


def info(msg: str) -> None:
    if not _state["quiet"]:
        _console.print(msg, markup=False)


def detail(msg: str) -> None:
    if _state["verbose"] and not _state["quiet"]:
        _console.print(msg, markup=False, style="dim")


def warn(msg: str) -> None:
    _console.print(f"warning: {msg}", markup=False, style="yellow")


def error(msg: str) -> None:
    print(f"rootfs: error: {msg}", file=sys.stderr, flush=True)


def _bars_wanted() -> bool:
    return not _state["quiet"] and _console.is_terminal


@contextlib.contextmanager
def download_bar(total_bytes: int, what: str) -> Iterator:
    """Yields a thread-safe advance(nbytes) callback."""
    if not _bars_wanted():
        yield lambda n: None
        return
    lock = threading.Lock()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeElapsedColumn(), console=_console, transient=True,
    ) as progress:
        task = progress.add_task(what, total=total_bytes)

        def advance(n: int) -> None:
            with lock:
                progress.advance(task, n)

        yield advance


@contextlib.contextmanager
def step_bar(what: str) -> Iterator:
    """Yields update(stage, done, total) for counted steps (extraction, configure)."""
    if not _bars_wanted():
        yield lambda stage, done, total: None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=_console, transient=True,
    ) as progress:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(f"{what}: {stage}", total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield update
