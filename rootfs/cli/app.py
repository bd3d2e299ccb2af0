"""The Typer application and the wrapper every command runs in.

Every command turns a RootfsError into one sentence on stderr and its
documented exit code (rootfs.model.errors); only bugs print tracebacks.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Annotated

import typer

from rootfs import ui
from rootfs.model.errors import RootfsError

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
