"""What the user sees: messages on stderr, rich progress bars unless --quiet.

Standard output is kept for data (resolve lists, `-o -` tar streams, --json).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

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

# soft_wrap: a message is one line however wide the terminal, so that what a
# log or grep sees is what was said.
_console = Console(stderr=True, highlight=False, soft_wrap=True)
_state = {"quiet": False, "verbose": False}


def configure(quiet: bool = False, verbose: bool = False) -> None:
    """Global options; given twice (before and after the command), either
    one turns its mode on."""
    _state["quiet"] = _state["quiet"] or quiet
    _state["verbose"] = _state["verbose"] or verbose


def reset() -> None:
    _state["quiet"] = _state["verbose"] = False


def _say(msg: str, style: str | None = None) -> None:
    if _console.is_terminal:
        _console.print(msg, markup=False, style=style)
    else:
        # Not a terminal (cron, CI, a pipe to a log): plain lines, never
        # wrapped, flushed as they happen.
        print(msg, file=sys.stderr, flush=True)


def verbosity() -> int:
    """0 with --quiet, 2 with --verbose, else 1 (as mmdebstrap counts)."""
    return 0 if _state["quiet"] else 2 if _state["verbose"] else 1


def info(msg: str) -> None:
    if not _state["quiet"]:
        _say(msg)


def detail(msg: str) -> None:
    if _state["verbose"] and not _state["quiet"]:
        _say(msg, "dim")


def warn(msg: str) -> None:
    if not _state["quiet"]:  # --quiet: errors only
        _say(f"warning: {msg}", "yellow")


def error(msg: str) -> None:
    print(f"rootfs: error: {msg}", file=sys.stderr, flush=True)


@dataclass
class Phase:
    """What a finished phase says: its counts (set by the code that ran it)."""

    name: str
    summary: str = ""


@contextlib.contextmanager
def phase(name: str) -> Iterator[Phase]:
    """One line when the phase ends, as mmdebstrap's `I:` lines:
    `I: fetch: 97 packages, 31.4 MB in 2.1 s`. Nothing when it fails: the
    error says what happened."""
    p = Phase(name)
    start = time.monotonic()
    yield p
    took = time.monotonic() - start
    info(f"I: {name}: {p.summary + ' ' if p.summary else ''}in {took:.1f} s")


def size_text(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB" if nbytes >= 100_000 else f"{nbytes / 1e3:.1f} kB"


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
