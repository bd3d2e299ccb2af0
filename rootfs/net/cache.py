"""The package cache: files by sha256, verified on every use (package files,
and the uncompressed Packages indices their Releases list).

Layout: CACHE/sha256/ab/abcdef... and nothing else under sha256/ except
`.NAME.*.part` files of downloads in progress, each flock-ed by its writer.
Entries are written under a temporary name and renamed into place
(rootfs.net.fetch.Downloader.download), so concurrent runs sharing a cache never
see half a file, and two writers of the same entry write the same bytes.
Pruning takes the cache's exclusive lock (rootfs.host.locks.cache_lock, an flock
on CACHE itself); builds hold it shared.

Why an entry is re-hashed on every lookup instead of trusting a sidecar of
(size, mtime_ns, inode) from an earlier check: sha256 is fast next to
everything else a build does (bench/bootstrap.py's warm-cache runs include
it), and lookups run in the download thread pool where hashlib releases the
GIL. A sidecar would save that but
trusts metadata that a restore from backup, a copy with preserved times or bit
rot all leave intact; the design promises every byte is checked.

The last use of an entry is its atime, set explicitly on every verified
lookup: mounts with noatime or relatime would otherwise not keep it, and
mtime stays the time of download.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rootfs.model.errors import OutputError, UsageError

CHUNK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rootfs"


@dataclass(frozen=True)
class Entry:
    path: Path
    sha256: str
    size: int
    last_used: float  # seconds since the epoch (the entry's atime)


class Cache:
    """Package files by sha256: CACHE/sha256/ab/abcdef...; nothing else."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def objects(self) -> Path:
        return self.root / "sha256"

    def path(self, sha256: str) -> Path:
        return self.objects / sha256[:2] / sha256

    def lookup(self, sha256: str, size: int) -> Path | None:
        """The verified entry, or None. A corrupt entry is removed."""
        p = self.path(sha256)
        try:
            f = open(p, "rb")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OutputError(f"cannot read cache entry {p}: {exc.strerror}") from None
        with f:
            st = os.fstat(f.fileno())
            good = st.st_size == size and _hash_open(f) == sha256
        if good:
            touch(p)
            return p
        # Remove only the file that was checked: another run may have renamed
        # a good copy into place meanwhile.
        with contextlib.suppress(OSError):
            now = os.stat(p)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(p)
        return None

    def ensure_dir(self, sha256: str) -> Path:
        d = self.path(sha256).parent
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create cache directory {d}: {exc.strerror}") from None
        return d

    def store(self, sha256: str, data: bytes) -> Path:
        """Put data in as the entry sha256 (checked), atomically: written
        under a flock-ed .part name and renamed into place."""
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ValueError("cache entry does not match its name")
        d = self.ensure_dir(sha256)
        import tempfile

        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{sha256}.", suffix=".part", dir=d)
        except OSError as exc:
            raise OutputError(f"cannot write in the cache {d}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), 0o644)
                os.rename(tmp, self.path(sha256))
        except OSError as exc:
            raise OutputError(f"cannot write in the cache {d}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return self.path(sha256)

    def entries(self) -> Iterator[Entry]:
        """Every entry by its name; contents are not checked here."""
        for d, name in self._walk():
            if _HEX64.fullmatch(name) and name.startswith(d.name):
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(d / name)
                    yield Entry(d / name, name, st.st_size, st.st_atime)

    def parts(self) -> Iterator[Path]:
        """Temporary files of downloads, finished or not."""
        for d, name in self._walk():
            if name.endswith(".part"):
                yield d / name

    def sweep_parts(self, min_age: float = 60.0) -> tuple[int, int]:
        """Remove the .part files whose writer is gone; how many, and their
        bytes.

        A writer holds an flock on its .part until it has renamed it
        (rootfs.net.fetch.Downloader.download), so an unlocked one is debris.
        min_age covers the instant between the file's creation and its
        lock."""
        removed = freed = 0
        now = time.time()
        for p in self.parts():
            try:
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if now - st.st_mtime < min_age:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live download
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)
                    removed += 1
                    freed += st.st_size
            finally:
                os.close(fd)
        return removed, freed

    def _walk(self) -> Iterator[tuple[Path, str]]:
        try:
            dirs = sorted(os.scandir(self.objects), key=lambda e: e.name)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OutputError(f"cannot read cache directory {self.objects}: {exc.strerror}") from None
        for d in dirs:
            if d.is_dir(follow_symlinks=False):
                for name in sorted(os.listdir(d.path)):
                    yield Path(d.path), name


def _hash_open(f) -> str:
    h = hashlib.sha256()
    while chunk := f.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


def touch(path: Path) -> None:
    """Record a use of an entry: atime now, mtime unchanged."""
    with contextlib.suppress(OSError):
        st = os.stat(path)
        os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))


@dataclass(frozen=True)
class CacheInfo:
    root: Path
    entries: int
    bytes: int
    parts: int
    part_bytes: int


def cache_info(cache: Cache) -> CacheInfo:
    entries = list(cache.entries())
    part_sizes = []
    for p in cache.parts():
        with contextlib.suppress(FileNotFoundError):
            part_sizes.append(p.stat().st_size)
    return CacheInfo(cache.root, len(entries), sum(e.size for e in entries), len(part_sizes), sum(part_sizes))


@dataclass(frozen=True)
class PruneReport:
    removed: int
    freed: int  # bytes, entries and stray .part files together
    kept: int
    parts: int


def prune(
    cache: Cache,
    *,
    max_age_days: float | None = None,
    keep: Iterable[str] | None = None,
    everything: bool = False,
    wait: float | None = 0.0,
    now: float | None = None,
) -> PruneReport:
    """Remove entries not used for max_age_days, or not in keep (sha256s,
    None = no such criterion), or all of them; and every stray .part file.

    With both max_age_days and keep, an entry goes when it is old AND not
    kept. Holds the cache's exclusive lock, so no run is fetching or reading
    entries meanwhile; BusyError if that takes longer than wait seconds.
    """
    from rootfs.host.locks import cache_lock

    if not everything and max_age_days is None and keep is None:
        raise UsageError("say what to prune: --max-age DAYS, --keep-lock FILE or --all")
    keep_set = None if keep is None else frozenset(keep)
    now = time.time() if now is None else now
    cutoff = None if max_age_days is None else now - max_age_days * 86400
    removed = freed = kept = 0
    if not cache.objects.is_dir():
        return PruneReport(0, 0, 0, 0)
    with cache_lock(cache.root, shared=False, timeout=wait):
        for e in cache.entries():
            old = cutoff is None or e.last_used < cutoff
            unreferenced = keep_set is None or e.sha256 not in keep_set
            doomed = everything or (old and unreferenced)
            if doomed and _remove(e.path):
                removed += 1
                freed += e.size
            else:
                kept += 1
        # No build holds the shared lock now, but a caller of
        # Downloader.download outside fetch_packages might still be writing:
        # its .part is locked and stays.
        parts, part_bytes = cache.sweep_parts(min_age=0)
        freed += part_bytes
        for d in list(cache.objects.iterdir()):
            with contextlib.suppress(OSError):
                d.rmdir()  # only succeeds when empty
    return PruneReport(removed, freed, kept, parts)


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot remove {path}: {exc.strerror}") from None
    return True
