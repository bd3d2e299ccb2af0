"""Advisory locks so that concurrent runs (two cron jobs, a prune during a
build) never corrupt an output or the cache.

flock(2) locks belong to an open file description: the kernel drops them
when the holder dies, however it dies, so there are no stale locks to clean
up. The descriptors are close-on-exec (Python's default, made explicit here)
so a maintainer script or dpkg started by the build does not keep holding the
lock after rootfs itself has exited.

Waiting is a poll with LOCK_NB rather than a blocking flock with a signal
alarm: alarms are process-wide and do not mix with the download threads.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from rootfs.model.errors import BusyError, OutputError

_POLL = 0.05


def lock_file_for(output: Path) -> Path:
    """`.NAME.lock` beside the output."""
    output = Path(output)
    return output.parent / f".{output.name}.lock"


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot create lock file {path}: {exc.strerror}") from None


def _flock(fd: int, op: int, timeout: float | None) -> bool:
    """Take the lock, polling until timeout seconds (None: forever)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(_POLL if deadline is None else max(0.0, min(_POLL, deadline - time.monotonic())))


def _holder(path: Path) -> str:
    """` (pid N)` from the lock file, when the holder wrote one."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().strip())
        return f" (pid {pid})"
    return ""


def _write_pid(fd: int) -> None:
    # Only informative (for the BusyError message): a full disk must not
    # stop the run that holds the lock.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


@contextlib.contextmanager
def output_lock(output: Path, timeout: float | None = 0.0) -> Iterator[Path]:
    """Hold the exclusive lock on building output; yields the lock file.

    A second run on the same output waits up to timeout seconds (0: not at
    all, None: forever), then raises BusyError naming the holder's pid. The
    lock file is removed on release.
    """
    output = Path(output)
    path = lock_file_for(output)
    while True:
        fd = _open(path)
        try:
            if not _flock(fd, fcntl.LOCK_EX, timeout):
                raise BusyError(f"another rootfs run is building {output}{_holder(path)}")
            # The previous holder unlinks the file on release; if it did so
            # between our open and our flock, we hold a lock on a file nobody
            # else can find: start over on the current one.
            st = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        _write_pid(fd)
        yield path
    finally:
        # Unlink while still holding the lock, so no one can take a lock on
        # this inode after it is gone.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def prune_pid_file(cache_dir: Path) -> Path:
    return Path(cache_dir) / ".prune.pid"


@contextlib.contextmanager
def cache_lock(cache_dir: Path, shared: bool = True, timeout: float | None = None) -> Iterator[None]:
    """Hold the cache lock: shared for builds (any number at once, as the
    cache is content-addressed and written by atomic rename), exclusive for
    pruning. Waits up to timeout seconds (None: forever), then BusyError.

    The lock is on the cache directory itself, not on a lock file in it: the
    cache then holds nothing but entries, and a cache on a read-only mount
    (prepared once, shared by CI jobs) can be locked too. A prune names
    itself in .prune.pid while it runs.
    """
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise OutputError(f"cannot open the cache {cache_dir}: {exc.strerror}") from None
    try:
        if not _flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, timeout):
            if shared:
                raise BusyError(f"another rootfs run is pruning the cache {cache_dir}{_holder(prune_pid_file(cache_dir))}")
            raise BusyError(f"the cache {cache_dir} is in use by another rootfs run")
        if shared:
            yield
            return
        pid_file = prune_pid_file(cache_dir)
        # Only informative, like the pid in an output's lock file.
        with contextlib.suppress(OSError):
            pid_file.write_text(f"{os.getpid()}\n")
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                pid_file.unlink()
    finally:
        os.close(fd)
