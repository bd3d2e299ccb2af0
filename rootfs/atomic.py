"""Write-then-rename: output is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rootfs.errors import OutputError


def _output_error(path: Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"no space left on the device holding {path}")
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of dest; on success rename it over dest.

    On any failure the temporary is removed and dest is left as it was. A
    directory dest that exists is replaced by renaming the old one aside first
    (rename cannot replace a non-empty directory).
    """
    dest = Path(dest)
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:
        raise _output_error(dest, exc) from None
    try:
        yield tmp
        if directory and dest.exists() and not dest.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=parent))
            os.rename(dest, old / "x")
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dest)
        _fsync_dir(parent)
    except OSError as exc:
        _remove(tmp)
        raise _output_error(dest, exc) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def atomic_write_bytes(dest: Path, data: bytes, mode: int = 0o644) -> None:
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)


def atomic_write_text(dest: Path, text: str, mode: int = 0o644) -> None:
    atomic_write_bytes(dest, text.encode(), mode)
