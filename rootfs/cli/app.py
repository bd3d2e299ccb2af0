"""The Typer application and the wrapper every command runs in.

Every command turns a RootfsError into one sentence on stderr and its
documented exit code (rootfs.model.errors); only bugs print tracebacks.
`--quiet` and `--verbose` are accepted before the command and after it
(`rootfs make bookworm --quiet`), as mmdebstrap and apt take options
anywhere.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from typing import Annotated, Optional

import typer
from typer.core import TyperArgument, TyperOption

from rootfs import __version__, ui
from rootfs.model.errors import OutputError, RootfsError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build minimal, verified, reproducible base images from distribution packages.",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    # click's plain help: a table of options that reads the same in a
    # terminal, a pipe and a man page.
    rich_markup_mode=None,
)

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors (for cron).")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show the details of each step.")]

# The reader of our standard output went away (`| head`, a `docker load`
# that failed): a stream cut short is no image, so it is an error, said once.
OUTPUT_CLOSED = OutputError("output closed: the reader of standard output went away")


def command(fn, group: typer.Typer | None = None):
    """Register fn as a command (of group, default the top level) whose
    user errors exit cleanly, and which takes the global options too."""

    @functools.wraps(fn)
    def wrapper(*args, global_quiet: bool = False, global_verbose: bool = False, **kwargs):
        ui.configure(quiet=global_quiet, verbose=global_verbose)
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return result
        except RootfsError as exc:
            ui.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            ui.error("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            _output_closed()

    sig = inspect.signature(fn, eval_str=True)
    extra = [
        inspect.Parameter("global_quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=QuietOpt),
        inspect.Parameter("global_verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=VerboseOpt),
    ]
    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])  # type: ignore[attr-defined]
    return (group or app).command()(wrapper)


def _output_closed():
    # Further writes (and the interpreter's final flush) go nowhere.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    ui.error(str(OUTPUT_CLOSED))
    raise typer.Exit(OUTPUT_CLOSED.exit_code) from None


def _show_version(value: bool) -> None:
    if value:
        print(f"rootfs {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_show_version, is_eager=True,
                                                    help="Print rootfs's version and exit.")] = None,
) -> None:
    ui.reset()
    ui.configure(quiet=quiet, verbose=verbose)


def plain_metavars(cmd):
    """Help that names values, not Python types: `--cache-dir DIR`,
    `--jobs N`, a flag alone; never `<bool>` or `<list[str]>`."""
    for param in cmd.params:
        if param.metavar is not None:
            continue
        if isinstance(param, TyperOption) and (param.is_flag or param.count):
            param.metavar = ""
        elif isinstance(param, TyperArgument):
            param.metavar = param.name.upper()
    for param in cmd.params:
        if isinstance(param, TyperArgument):
            # NAME, [NAME] or NAME... as in every man page; no type column.
            piece = param.metavar if param.required else f"[{param.metavar}]"
            piece += "..." if param.nargs != 1 and not param.metavar.endswith("...") else ""
            param.get_usage_pieces = lambda ctx, piece=piece: [piece]  # type: ignore[method-assign]
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
        else:
            param.metavar = _value_name(param)
    for sub in getattr(cmd, "commands", {}).values():
        plain_metavars(sub)
    return cmd


def _value_name(param) -> str:
    long = max(param.opts, key=len).lstrip("-")
    named = {"output": "PATH", "cache-dir": "DIR", "cert-dir": "DIR", "jobs": "N", "keep": "N", "retries": "N",
             "wait": "SECONDS", "max-age": "DAYS", "source-date-epoch": "SECONDS", "mirror": "URL", "repo": "URL",
             "keyring": "FILE", "gpgkey": "FILE", "ca-cert": "FILE", "locked": "FILE", "report": "FILE",
             "lock": "FILE", "keep-lock": "FILE", "creds": "USER:PASS", "push": "REF", "tag": "NAME[:TAG]",
             "include": "PKG,...", "exclude": "PKG,...", "components": "C,...", "format": "FORMAT", "layer-compression": "gzip|zstd", "mode": "MODE"}
    return named.get(long, long.upper())


def main() -> None:
    plain_metavars(typer.main.get_command(app))(prog_name="rootfs")
