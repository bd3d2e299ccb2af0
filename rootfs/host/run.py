"""Running host commands, every one under a deadline.

rootfs runs from cron and CI, where a command that never returns (a
maintainer script waiting on a terminal, gpgv on a stuck pipe, mke2fs on a
full disk's retries) would hold the output lock forever and report nothing.
Every command rootfs starts goes through run() or watch() here: each gets
the same deadline, ROOTFS_TIMEOUT seconds (default 3600, generous enough
for the slowest maintainer script on a loaded machine; 0 turns the limit
off), and a command still running then is killed with its whole process
group and reported in one sentence with exit code 11.

A command runs in a session of its own, so that a timeout or Ctrl-C takes
down everything it started (dpkg, a maintainer script, what that spawned),
not just the first process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from rootfs.model.errors import CommandTimeout, UsageError

ENV = "ROOTFS_TIMEOUT"
DEFAULT_TIMEOUT = 3600.0

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT


def timeout_seconds() -> float | None:
    """The deadline of one command in seconds, from ROOTFS_TIMEOUT; None
    when it is 0 (no limit)."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{ENV} must be a number of seconds, not {text!r}") from None
    if value < 0 or value != value:
        raise UsageError(f"{ENV} must not be negative, not {text!r}")
    return value or None


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _message(what: str, seconds: float) -> str:
    return (f"{what} did not finish within {seconds:g} seconds and was stopped "
            f"(set {ENV} to allow longer, 0 for no limit)")


@contextlib.contextmanager
def watch(proc: subprocess.Popen, what: str, seconds: float | None = None) -> Iterator[None]:
    """Hold a process started with start_new_session=True (see popen) to
    the deadline while the body talks to it: when it runs out, the whole
    process group is killed, which unblocks the body, and CommandTimeout is
    raised instead of whatever the body met. Ctrl-C and errors kill it too."""
    limit = timeout_seconds() if seconds is None else seconds
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        _kill_group(proc)

    timer = threading.Timer(limit, expire) if limit else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        yield
    except BaseException:
        if proc.poll() is None:
            _kill_group(proc)
            proc.wait()
        if fired.is_set():
            raise CommandTimeout(_message(what, limit or 0)) from None
        raise
    finally:
        if timer is not None:
            timer.cancel()
    if fired.is_set():
        raise CommandTimeout(_message(what, limit or 0))


def popen(argv: Sequence[str], **kwargs) -> subprocess.Popen:
    """subprocess.Popen in a session of its own (for watch)."""
    kwargs.setdefault("start_new_session", True)
    kwargs.setdefault("close_fds", True)
    return subprocess.Popen(list(argv), **kwargs)


def run(argv: Sequence[str], *, what: str = "", input: bytes | None = None, stdout=PIPE, stderr=PIPE,
        stdin=None, env: Mapping[str, str] | None = None, cwd: str | None = None,
        preexec_fn: Callable[[], None] | None = None, pass_fds: Sequence[int] = (),
        text: bool = False, seconds: float | None = None) -> subprocess.CompletedProcess:
    """Run argv to completion under the deadline; the output is captured
    (stdout and stderr as given). OSError (no such program) is the
    caller's to turn into a sentence."""
    if stdin is None:
        stdin = PIPE if input is not None else DEVNULL
    proc = popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, env=None if env is None else dict(env), cwd=cwd,
                 preexec_fn=preexec_fn, pass_fds=tuple(pass_fds), text=text)
    with watch(proc, what or os.path.basename(argv[0]), seconds):
        out, err = proc.communicate(input)
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


__all__ = ["DEFAULT_TIMEOUT", "DEVNULL", "ENV", "PIPE", "STDOUT", "popen", "run", "timeout_seconds", "watch"]
