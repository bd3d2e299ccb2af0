"""Downloads with retries over reused connections, and a verified,
content-addressed package cache.

Every byte that leaves this module was checked: metadata by its caller
(signature, then the Release's checksums), packages here against the lock's
size and sha256. The cache is keyed by sha256, written under a temporary name
and renamed, and an entry is re-hashed before use, so a corrupt or truncated
file is never handed on; it is fetched again instead.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import random
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rootfs.errors import NetworkError, OutputError, VerifyError
from rootfs.lock import LockedPackage

CHUNK = 1 << 20
USER_AGENT = "rootfs/0.1"

# progress(nbytes) is called as bytes arrive; it must be thread-safe.
Progress = Callable[[int], None]


class _Retry(Exception):
    """A failure worth another attempt: reset, 5xx, short body, stall."""


class NotFound(Exception):
    """The server answered 404/410: the file is not there (no retry)."""


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str


def _proxy_for(scheme: str, host: str) -> str | None:
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy


class Downloader:
    """HTTP(S) and file:// fetching with a small pool of keep-alive
    connections per host; safe to share between threads."""

    def __init__(self, *, timeout: float = 30.0, retries: int = 5, backoff: float = 0.5):
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._local = threading.local()
        self._addr_cache: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()

    # -- connections -----------------------------------------------------

    def _resolve(self, host: str, port: int) -> str:
        # Resolve each host once: several parallel look-ups here sometimes stall
        # for the resolver's 5 s timeout.
        with self._lock:
            addr = self._addr_cache.get((host, port))
        if addr is None:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise NetworkError(f"cannot resolve host {host}: {exc.strerror}") from None
            addr = infos[0][4][0]
            with self._lock:
                self._addr_cache[(host, port)] = addr
        return addr

    def _connection(self, t: _Target) -> http.client.HTTPConnection:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        key = (t.scheme, t.host, t.port)
        conn = conns.get(key)
        if conn is None:
            proxy = _proxy_for(t.scheme, t.host)
            if proxy:
                p = urllib.parse.urlsplit(proxy)
                if t.scheme == "https":
                    conn = http.client.HTTPSConnection(
                        p.hostname, p.port or 80, timeout=self.timeout, context=ssl.create_default_context()
                    )
                    conn.set_tunnel(t.host, t.port)
                else:
                    conn = http.client.HTTPConnection(p.hostname, p.port or 80, timeout=self.timeout)
                conn._rootfs_proxy = t.scheme == "http"  # type: ignore[attr-defined]
            elif t.scheme == "https":
                conn = http.client.HTTPSConnection(t.host, t.port, timeout=self.timeout, context=ssl.create_default_context())
            else:
                conn = http.client.HTTPConnection(self._resolve(t.host, t.port), t.port, timeout=self.timeout)
            conns[key] = conn
        return conn

    def _drop(self, t: _Target) -> None:
        conns = getattr(self._local, "conns", {})
        conn = conns.pop((t.scheme, t.host, t.port), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in getattr(self._local, "conns", {}).values():
            conn.close()
        self._local.conns = {}

    # -- one request -----------------------------------------------------

    @staticmethod
    def _target(url: str) -> _Target:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https"):
            raise NetworkError(f"unsupported URL scheme in {url!r}")
        if not u.hostname:
            raise NetworkError(f"no host in URL {url!r}")
        port = u.port or (443 if u.scheme == "https" else 80)
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        return _Target(u.scheme, u.hostname, port, path)

    def _stream(self, url: str, sink: Callable[[bytes], None], headers: dict | None = None) -> None:
        """One attempt: send GET and feed the body to sink."""
        t = self._target(url)
        conn = self._connection(t)
        path = url if getattr(conn, "_rootfs_proxy", False) else t.path
        hdrs = {"User-Agent": USER_AGENT, "Host": t.host if t.port in (80, 443) else f"{t.host}:{t.port}"}
        hdrs.update(headers or {})
        try:
            conn.request("GET", path, headers=hdrs)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._drop(t)
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        try:
            if resp.status in (404, 410):
                resp.read()
                raise NotFound(url)
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location")
                resp.read()
                if not location:
                    raise NetworkError(f"{url}: redirect without a Location")
                return self._stream(urllib.parse.urljoin(url, location), sink, headers)
            if resp.status >= 500 or resp.status == 429:
                resp.read()
                raise _Retry(f"HTTP {resp.status}")
            if resp.status != 200:
                resp.read()
                raise NetworkError(f"{url}: HTTP {resp.status} {resp.reason}")
            expected = resp.getheader("Content-Length")
            got = 0
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                got += len(chunk)
                sink(chunk)
            if expected is not None and got != int(expected):
                raise _Retry(f"short body: {got} of {expected} bytes")
            if resp.will_close:
                self._drop(t)
        except (OSError, http.client.HTTPException) as exc:
            self._drop(t)
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            self._drop(t)
            raise

    def _with_retries(self, url: str, attempt: Callable[[], None]) -> None:
        last = ""
        for n in range(self.retries + 1):
            try:
                attempt()
                return
            except _Retry as exc:
                last = str(exc)
            if n < self.retries:
                time.sleep(self.backoff * (2**n) * (0.5 + random.random()))
        raise NetworkError(f"download of {url} failed after {self.retries + 1} attempts: {last}")

    # -- public ----------------------------------------------------------

    def get_bytes(self, url: str) -> bytes:
        """The whole body; NotFound for 404; NetworkError after retries."""
        if url.startswith("file:"):
            path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
            try:
                return Path(path).read_bytes()
            except FileNotFoundError:
                raise NotFound(url) from None
            except OSError as exc:
                raise NetworkError(f"cannot read {path}: {exc.strerror}") from None
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

        A body whose digest differs is fetched once more (a proxy may have
        served a stale or damaged copy), then refused."""
        dest = Path(dest)
        for attempt_no in range(2):
            fd, tmpname = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    digest = hashlib.sha256()
                    state = {"n": 0}

                    def sink(chunk: bytes) -> None:
                        f.write(chunk)
                        digest.update(chunk)
                        state["n"] += len(chunk)
                        if progress:
                            progress(len(chunk))
                        if size is not None and state["n"] > size:
                            raise VerifyError(f"{url} is larger than the {size} bytes the index promises")

                    def attempt() -> None:
                        if progress and state["n"]:
                            progress(-state["n"])
                        f.seek(0)
                        f.truncate()
                        digest.__init__()  # type: ignore[misc]
                        state["n"] = 0
                        if url.startswith("file:"):
                            sink(self.get_bytes(url))
                        else:
                            self._stream(url, sink)

                    self._with_retries(url, attempt)
                    f.flush()
                if size is not None and state["n"] != size:
                    raise VerifyError(f"{url}: size {state['n']} does not match the expected {size}")
                if sha256 is not None and digest.hexdigest() != sha256:
                    if attempt_no == 0:
                        continue
                    raise VerifyError(
                        f"{url}: sha256 {digest.hexdigest()} does not match the expected {sha256}"
                    )
                os.rename(tmpname, dest)
                return
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise OutputError(f"no space left on the device holding {dest.parent}") from None
                raise OutputError(f"cannot write {dest}: {exc.strerror}") from None
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmpname)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rootfs"


class Cache:
    """Package files by sha256: CACHE/sha256/ab/abcdef...; nothing else."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    def lookup(self, sha256: str, size: int) -> Path | None:
        """The verified entry, or None. A corrupt entry is removed."""
        p = self.path(sha256)
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        if st.st_size == size and sha256_file(p) == sha256:
            return p
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
        return None

    def ensure_dir(self, sha256: str) -> Path:
        d = self.path(sha256).parent
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create cache directory {d}: {exc.strerror}") from None
        return d


def default_jobs() -> int:
    return 4


def fetch_packages(
    packages: Sequence[LockedPackage],
    cache: Cache,
    downloader: Downloader,
    *,
    jobs: int = 4,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Make sure every package is in the cache, verified; return key -> path."""
    result: dict[str, Path] = {}
    missing: list[LockedPackage] = []
    for p in packages:
        hit = cache.lookup(p.sha256, p.size)
        if hit is not None:
            result[p.key] = hit
            if progress:
                progress(p.size)
        else:
            missing.append(p)

    def one(p: LockedPackage) -> tuple[str, Path]:
        dest = cache.path(p.sha256)
        cache.ensure_dir(p.sha256)
        downloader.download(p.url, dest, size=p.size, sha256=p.sha256, progress=progress)
        return p.key, dest

    if missing:
        # Largest first keeps all connections busy until the end.
        missing.sort(key=lambda p: -p.size)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            try:
                for key, path in pool.map(one, missing):
                    result[key] = path
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    return result
