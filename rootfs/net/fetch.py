"""Downloads with retries over reused connections, and a verified,
content-addressed package cache.

Every byte that leaves this module was checked: metadata by its caller
(signature, then the Release's checksums), packages here against the lock's
size and sha256. The cache (rootfs.net.cache) is keyed by sha256, written under a
temporary name and renamed, and an entry is re-hashed before use, so a
corrupt or truncated file is never handed on; it is fetched again instead.

What counts as worth another attempt, and what does not:

- transport trouble (refused or reset connections, stalls past the timeout,
  a body shorter than its Content-Length, 5xx and 429): retried with
  exponential backoff, then NetworkError;
- a keep-alive connection the server closed while it sat idle: reconnected
  at once, without using up an attempt (every server does this sooner or
  later; it says nothing about the mirror's health);
- a complete response with the wrong size or digest: the whole file once
  more (a proxy may have served a stale or damaged copy), then VerifyError;
- 404/410: NotFound at once; other 4xx: NetworkError at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import random
import re
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rootfs.model.errors import NetworkError, OutputError, VerifyError
from rootfs.model.lock import LockedPackage
from rootfs.net.cache import Cache, default_cache_dir, sha256_file
from rootfs.net.http import (
    BadURL,
    Broken,
    CertificateRejected,
    Exchange,
    HostUnknown,
    NotTLS,
    Transport,
)

__all__ = [
    "CHUNK",
    "Cache",
    "Downloader",
    "NotFound",
    "Progress",
    "default_cache_dir",
    "default_jobs",
    "fetch_packages",
    "sha256_file",
]

CHUNK = 1 << 20
MAX_REDIRECTS = 10
MAX_BACKOFF = 30.0

# progress(nbytes) is called as bytes arrive (negative when an attempt is
# restarted); it must be thread-safe.
Progress = Callable[[int], None]


class _Retry(Exception):
    """A failure worth another attempt: reset, 5xx, short body, stall."""


class _Mismatch(Exception):
    """A complete body of the wrong size or digest."""


class NotFound(NetworkError):
    """The server answered 404/410: the file is not there (no retry).

    A NetworkError, so that one that nobody expected still ends the run
    with a clear message and exit code 5."""

    def __init__(self, url: str):
        where = "does not exist" if url.startswith("file:") else "was not found on the server (HTTP 404)"
        super().__init__(f"{url} {where}")
        self.url = url


class Downloader:
    """HTTP(S) and file:// fetching over the shared transport's keep-alive
    connections (rootfs.net.http); safe to share between threads."""

    def __init__(self, *, timeout: float = 30.0, retries: int = 5, backoff: float = 0.5):
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.http = Transport(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _open(self, url: str, headers: dict | None) -> Exchange:
        try:
            return self.http.open("GET", url, headers)
        except Broken as exc:
            raise _Retry(str(exc)) from None
        except CertificateRejected as exc:
            raise NetworkError(f"{url}: TLS certificate not accepted: {exc.reason}") from None
        except NotTLS:
            raise NetworkError(f"{url}: the server does not speak TLS") from None
        except HostUnknown as exc:
            raise NetworkError(f"cannot resolve host {exc.host}: {exc.reason}") from None
        except BadURL as exc:
            raise NetworkError(str(exc)) from None

    def _stream(
        self,
        url: str,
        sink: Callable[[bytes], None],
        *,
        offset: int = 0,
        restart: Callable[[], None] | None = None,
        size: int | None = None,
    ) -> None:
        """One attempt: send GET, follow redirects and feed the body to sink.

        With offset, ask for the bytes from there on; if the server answers
        with the whole file instead, restart() is called before sink sees
        any of it. size, when known, tells a body cut short from a complete
        one where the server does not say (no Content-Length, no chunks).
        Exceptions from sink pass through unchanged (only the
        network's failures become _Retry)."""
        headers = {"Range": f"bytes={offset}-"} if offset else None
        for _ in range(MAX_REDIRECTS + 1):
            ex = self._open(url, headers)
            try:
                location = self._body(url, ex, sink, offset, restart, size)
            except NotFound:
                ex.release()
                raise
            except BaseException:
                ex.discard()
                raise
            ex.release()
            if location is None:
                return
            url = urllib.parse.urljoin(url, location)
        raise NetworkError(f"{url}: more than {MAX_REDIRECTS} redirects")

    def _body(
        self,
        url: str,
        ex: Exchange,
        sink: Callable[[bytes], None],
        offset: int,
        restart: Callable[[], None] | None,
        size: int | None,
    ) -> str | None:
        """Handle one response; the redirect target, or None when done."""
        resp = ex.resp
        status = resp.status
        if status in (404, 410) or status in (301, 302, 303, 307, 308):
            ex.drain()
            if status in (404, 410):
                raise NotFound(url)
            location = resp.getheader("Location")
            if not location:
                raise NetworkError(f"{url}: HTTP {status} redirect without a Location")
            return location
        if status >= 500 or status == 429:
            # The caller closes the connection: an error body may be large or
            # never end, and reading it helps nobody.
            raise _Retry(f"HTTP {status} {resp.reason}".rstrip())
        if offset and restart and status == 416:
            restart()
            raise _Retry(f"HTTP 416: the server cannot send the bytes from {offset} on")
        if status != 200 and not (offset and restart and status == 206):
            raise NetworkError(f"{url}: HTTP {status} {resp.reason}".rstrip())
        if offset and restart:
            if status == 200:
                restart()  # the server ignores Range: this is the whole file
            elif (start := _range_start(resp.getheader("Content-Range"))) != offset:
                restart()
                raise _Retry(f"HTTP 206 from byte {start} on, asked for {offset}")
        expected = resp.getheader("Content-Length")
        got = 0
        try:
            for chunk in ex.chunks():
                got += len(chunk)
                sink(chunk)
        except Broken as exc:
            raise _Retry(str(exc)) from None
        # http.client stops at Content-Length and returns b"" at an early
        # EOF without complaint: a truncated body shows only here.
        if expected is not None and expected.isdigit() and got != int(expected):
            raise _Retry(f"short body: {got} of {expected} bytes")
        if expected is None and not resp.chunked and size is not None and offset + got < size:
            # Ended by closing the connection: as likely a break as the end.
            raise _Retry(f"connection closed after {offset + got} of {size} bytes")
        return None

    def _with_retries(self, url: str, attempt: Callable[[], None]) -> None:
        last = ""
        for n in range(self.retries + 1):
            try:
                attempt()
                return
            except _Retry as exc:
                last = str(exc)
            if n < self.retries:
                time.sleep(min(MAX_BACKOFF, self.backoff * (2**n)) * (0.5 + random.random()))
        raise NetworkError(f"download of {url} failed after {self.retries + 1} attempts: {last}")

    # -- public ----------------------------------------------------------

    def get_bytes(self, url: str) -> bytes:
        """The whole body; NotFound for 404; NetworkError after retries."""
        if url.startswith("file:"):
            try:
                return _file_path(url).read_bytes()
            except FileNotFoundError:
                raise NotFound(url) from None
            except OSError as exc:
                raise NetworkError(f"cannot read {url}: {exc.strerror}") from None
        buf: list[bytes] = []

        def attempt() -> None:
            buf.clear()
            self._stream(url, buf.append)

        self._with_retries(url, attempt)
        return b"".join(buf)

    def get_optional(self, url: str) -> bytes | None:
        try:
            return self.get_bytes(url)
        except NotFound:
            return None

    def download(
        self,
        url: str,
        dest: Path,
        *,
        size: int | None = None,
        sha256: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Fetch url to dest atomically, verified against size and sha256.

        dest is either absent/unchanged or complete and verified; no .part
        file is left behind. NotFound for 404, NetworkError when the
        transfer keeps failing, VerifyError when the server keeps sending
        the wrong bytes, OutputError when dest cannot be written."""
        dest = Path(dest)
        try:
            fd, tmpname = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        except OSError as exc:
            raise _output_error(dest, exc) from None
        try:
            with os.fdopen(fd, "wb") as f:
                # Held until the file has its final name: an unlocked .part
                # is one whose writer died (rootfs.net.cache.Cache.sweep_parts).
                fcntl.flock(fd, fcntl.LOCK_EX)
                for pass_no in range(2):
                    try:
                        self._fill(url, f, dest, size, sha256, progress)
                        break
                    except _Mismatch as exc:
                        if pass_no == 1:
                            raise VerifyError(str(exc)) from None
                f.flush()
                # Cache entries are read by other users' builds too.
                os.fchmod(fd, 0o644)
                # No fsync: after a crash a damaged entry fails its check on
                # lookup and is fetched again, which is cheaper than syncing
                # every package of every build.
                os.rename(tmpname, dest)
        except OSError as exc:
            raise _output_error(dest, exc) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmpname)

    def _fill(self, url: str, f, dest: Path, size: int | None, sha256: str | None, progress: Progress | None) -> None:
        """Write url's body into f, retrying transport failures; _Mismatch
        when a complete body is not the one expected."""
        digest = hashlib.sha256()
        n = 0

        def sink(chunk: bytes) -> None:
            nonlocal n
            if size is not None and n + len(chunk) > size:
                # Stop at once: this is not the file the lock names.
                raise _Mismatch(f"{url} is larger than the {size} bytes expected")
            try:
                f.write(chunk)
            except OSError as exc:
                raise _output_error(dest, exc) from None
            digest.update(chunk)
            n += len(chunk)
            if progress:
                progress(len(chunk))

        def restart() -> None:
            nonlocal digest, n
            if progress:
                progress(-n)
            f.seek(0)
            f.truncate()
            digest = hashlib.sha256()
            n = 0

        def attempt() -> None:
            if url.startswith("file:"):
                restart()
                _copy_file(url, sink)
            elif 0 < n and (size is None or n < size):
                # Go on from where the last attempt broke off, as apt does:
                # a mirror that keeps dropping a large file's connection
                # still gets it through. The bytes kept arrived intact (TCP);
                # if the file changed meanwhile, the digest check below sends
                # us round once more from byte 0.
                self._stream(url, sink, offset=n, restart=restart, size=size)
            else:
                restart()
                self._stream(url, sink, size=size)

        try:
            self._with_retries(url, attempt)
            f.flush()
        except _Mismatch:
            if progress:
                progress(-n)
            raise
        if size is not None and n != size:
            if progress:
                progress(-n)
            raise _Mismatch(f"{url}: size {n} does not match the expected {size}")
        if sha256 is not None and digest.hexdigest() != sha256:
            if progress:
                progress(-n)
            raise _Mismatch(f"{url}: sha256 {digest.hexdigest()} does not match the expected {sha256}")


def _range_start(content_range: str | None) -> int | None:
    """The first byte of `bytes FIRST-LAST/TOTAL`, or None."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*", content_range or "")
    return int(m.group(1)) if m else None


def _file_path(url: str) -> Path:
    return Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))


def _copy_file(url: str, sink: Callable[[bytes], None]) -> None:
    path = _file_path(url)
    try:
        src = open(path, "rb")
    except FileNotFoundError:
        raise NotFound(url) from None
    except OSError as exc:
        raise NetworkError(f"cannot read {path}: {exc.strerror}") from None
    with src:
        while True:
            try:
                chunk = src.read(CHUNK)
            except OSError as exc:
                raise NetworkError(f"cannot read {path}: {exc.strerror}") from None
            if not chunk:
                return
            sink(chunk)


def _output_error(path: Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"no space left on the device holding {path.parent}")
    return OutputError(f"cannot write {path}: {exc.strerror}")


def default_jobs() -> int:
    return 4


class _Cancelled(Exception):
    """Another download of the same batch failed: stop this one."""


def fetch_packages(
    packages: Sequence[LockedPackage],
    cache: Cache,
    downloader: Downloader,
    *,
    jobs: int = 4,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Make sure every package is in the cache, verified; return key -> path.

    Holds the cache's shared lock meanwhile, so a prune waits; a build that
    goes on to read the files should hold it itself until it is done."""
    from rootfs.host.locks import cache_lock

    failed = threading.Event()

    def advance(nbytes: int) -> None:
        if failed.is_set():
            raise _Cancelled()
        if progress:
            progress(nbytes)

    def one(p: LockedPackage) -> Path:
        if failed.is_set():
            raise _Cancelled()
        # Lookups run here too: hashing releases the GIL, so verifying a
        # warm cache uses every core.
        hit = cache.lookup(p.sha256, p.size)
        if hit is not None:
            advance(p.size)
            return hit
        dest = cache.path(p.sha256)
        cache.ensure_dir(p.sha256)
        try:
            downloader.download(p.url, dest, size=p.size, sha256=p.sha256, progress=advance)
        except NotFound:
            failed.set()
            raise NetworkError(
                f"{p.url} is no longer on the mirror (HTTP 404): the lock is older than the mirror's index; resolve again"
            ) from None
        except BaseException:
            failed.set()
            raise
        return dest

    # One download per file, largest first: that keeps every connection busy
    # until the end.
    unique = sorted({p.sha256: p for p in packages}.values(), key=lambda p: -p.size)
    paths: dict[str, Path] = {}
    if unique:
        with cache_lock(cache.root, shared=True):
            # Runs killed mid-download (cron timeouts, OOM) would otherwise
            # leave their .part files until the next prune.
            cache.sweep_parts()
            with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(unique)))) as pool:
                futures = [(p, pool.submit(one, p)) for p in unique]
                error: BaseException | None = None
                for p, fut in futures:
                    try:
                        paths[p.sha256] = fut.result()
                    except _Cancelled:
                        pass
                    except BaseException as exc:  # the first real failure wins
                        failed.set()
                        if error is None:
                            error = exc
                if error is not None:
                    raise error
    return {p.key: paths[p.sha256] for p in packages}
