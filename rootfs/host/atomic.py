"""Write-then-rename: output is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rootfs.model.errors import OutputError


def _output_error(path: Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"no space left on the device holding {path}")
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


def default_dir_mode() -> int:
    """0777 less the umask: what mkdir would have given the output."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


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
            os.chmod(tmp, default_dir_mode())  # mkdtemp's 0700 must not reach the output
        else:
            fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:
        raise _output_error(dest, exc) from None
    try:
        yield tmp
        replace_dir(tmp, dest) if directory else os.rename(tmp, dest)
        _fsync_dir(parent)
    except OSError as exc:
        _remove(tmp)
        raise _output_error(dest, exc) from None
    except BaseException:
        _remove(tmp)
        raise


AT_FDCWD = -100
RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (renameat2 RENAME_EXCHANGE); False where
    the kernel or filesystem cannot."""
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(src: Path, dest: Path) -> None:
    """Put directory src at dest. rename() cannot replace a non-empty
    directory, and moving the old one aside first leaves a moment with no
    dest at all, which a kill can make permanent; so the two are exchanged
    atomically and the old one, now at src, is removed afterwards."""
    if dest.is_dir() and not dest.is_symlink():
        if _exchange(src, dest):
            shutil.rmtree(src, ignore_errors=True)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.rename(dest, old / "x")
        os.rename(src, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        os.rename(src, dest)


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
