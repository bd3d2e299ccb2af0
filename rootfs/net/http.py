"""The one HTTP transport, under the fetcher (rootfs.net.fetch) and the
registry client (rootfs.registry.client): pooled keep-alive connections
shared by all threads, proxies from the environment, TLS, and failures
sorted into the few kinds the callers act on.

Why http.client and not urllib3. urllib3 was weighed for what this module
does: connection pools (it has them), proxies (it has ProxyManager, but it
does not read http_proxy/https_proxy/no_proxy: the caller still chooses the
proxy per URL, as requests does on top of it, so that code stays here
either way), retries (its Retry cannot express ours: resume a broken body
with Range and check the restart, reconnect at once and for free when an
idle connection was closed by the server, fetch the whole file once more
when a complete body has the wrong digest, restart a whole blob upload from
a fresh POST), TLS with a custom CA and client certificates (both take an
ssl.SSLContext), and streaming without a second hashing pass (both hand out
the body in chunks). So it would not remove our retry, proxy-choice or
error-sorting code. Nor is it faster: bench/transport.py, on 127.0.0.1
against http.server in another process (2 cores shared with other work,
load 7-8; medians of 5 to 9 alternating rounds, in three runs), found the
200-300 MB download streamed to disk through sha256 a tie (urllib3/this
transport 0.8-1.9 in wall time, 0.5-2.2 in CPU time: both are bound by
the hash and the disk), and 2000 small keep-alive GETs, as index and
registry requests are, 1.6-2.5x the wall time and 1.9-2.2x the CPU time
with urllib3. The standard library's client does the job; a dependency is
not taken to do it slower.

What a caller gets:

- `open(method, url, headers, body)` -> an `Exchange` (status, headers,
  the body in chunks); `release()` hands a finished connection back to the
  pool, `discard()` closes one whose body was not read to the end.
- A pooled connection the server closed while it sat idle is replaced at
  once, invisibly, when the request can be sent again (no body, or bytes).
- Failures are `Broken` (worth another attempt: reset, refused, timeout,
  unreachable, protocol error, TLS trouble other than the certificate),
  `CertificateRejected`, `NotTLS`, `HostUnknown` and `BadURL`: each caller
  turns them into its own sentence and exit code.
- Proxies: `http_proxy`, `https_proxy` and `no_proxy` (and the upper-case
  spellings) as curl and apt read them; https goes through a CONNECT tunnel
  with TLS end to end, http in absolute form; credentials in the proxy URL
  are sent as Basic Proxy-Authorization.
"""

from __future__ import annotations

import base64
import errno
import http.client
import select
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from rootfs import __version__

USER_AGENT = f"rootfs/{__version__}"
BLOCK = 1 << 20  # what a request body is sent in, and a body read in


class Broken(Exception):
    """A transport failure worth another attempt."""


class CertificateRejected(Exception):
    def __init__(self, netloc: str, reason: str):
        super().__init__(f"{netloc}: {reason}")
        self.netloc, self.reason = netloc, reason


class NotTLS(Exception):
    """The server answered a TLS handshake with something else (plain HTTP)."""

    def __init__(self, netloc: str):
        super().__init__(netloc)
        self.netloc = netloc


class HostUnknown(Exception):
    def __init__(self, host: str, reason: str):
        super().__init__(f"{host}: {reason}")
        self.host, self.reason = host, reason


class BadURL(Exception):
    pass


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int
    netloc: str
    target: str  # path and query, as sent to the origin

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.scheme == "https" else 80) else f"{host}:{self.port}"


def origin(url: str) -> Origin:
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https"):
        raise BadURL(f"unsupported URL scheme in {url!r}")
    try:
        port = u.port or (443 if u.scheme == "https" else 80)
    except ValueError:
        raise BadURL(f"bad port in URL {url!r}") from None
    if not u.hostname:
        raise BadURL(f"no host in URL {url!r}")
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    return Origin(u.scheme, u.hostname, port, u.netloc, target)


def proxy_for(scheme: str, host: str) -> str | None:
    """The proxy URL for scheme://host from the environment, or None when
    there is none or no_proxy names the host."""
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy if "://" in proxy else "http://" + proxy


def _proxy_auth(p: urllib.parse.SplitResult) -> dict[str, str]:
    if p.username is None:
        return {}
    cred = f"{urllib.parse.unquote(p.username)}:{urllib.parse.unquote(p.password or '')}"
    return {"Proxy-Authorization": "Basic " + base64.b64encode(cred.encode()).decode()}


class _NoDelay:
    """TCP_NODELAY once connected: a request whose body is sent after its
    headers (a blob upload from a file) must not wait out Nagle's algorithm
    against the server's delayed ACK."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]


class _HTTPConnection(_NoDelay, http.client.HTTPConnection):
    absolute_form: dict[str, str] | None = None  # through a plain-HTTP proxy: its headers


class _HTTPSConnection(_NoDelay, http.client.HTTPSConnection):
    absolute_form: dict[str, str] | None = None


def _idle_closed(conn: http.client.HTTPConnection) -> bool:
    """An idle connection with something to read was closed by the server
    (EOF) or holds the tail of a body longer than its Content-Length: either
    way it cannot carry another request."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


# A reused connection that fails with one of these before any response
# arrived was closed by the server while idle.
_IDLE_CLOSED = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


@dataclass
class Exchange:
    """One request's answer on a checked-out connection."""

    transport: Transport
    origin: Origin
    conn: http.client.HTTPConnection
    resp: http.client.HTTPResponse

    @property
    def status(self) -> int:
        return self.resp.status

    @property
    def reason(self) -> str:
        return self.resp.reason

    @property
    def headers(self) -> http.client.HTTPMessage:
        return self.resp.headers

    def header(self, name: str) -> str | None:
        return self.resp.getheader(name)

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives. read1, not read: read(n) waits for all n
        bytes and loses what it had when the connection stalls or breaks,
        and those bytes are what a resumed download goes on from."""
        while True:
            try:
                chunk = self.resp.read1(BLOCK)
                if not chunk:
                    # Marks the response complete (read1 does not), so the
                    # connection can go back to the pool.
                    self.resp.read()
            except (OSError, http.client.HTTPException) as exc:
                raise Broken(f"{type(exc).__name__}: {exc}") from None
            if not chunk:
                return
            yield chunk

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def drain(self, limit: int = 1 << 16) -> None:
        """Read a small body (a redirect, a 404) so the connection can be
        reused; a large or broken one is left, and release() then closes
        the connection instead."""
        try:
            while limit > 0:
                chunk = self.resp.read1(min(limit, BLOCK))
                if not chunk:
                    self.resp.read()
                    return
                limit -= len(chunk)
        except (OSError, http.client.HTTPException):
            pass

    def release(self) -> None:
        """Back to the pool when the response is complete and keeps the
        connection alive; closed otherwise."""
        if self.resp.will_close or not self.resp.isclosed():
            self.conn.close()
        else:
            self.transport._checkin(self.origin, self.conn)

    def discard(self) -> None:
        self.conn.close()


class Transport:
    """Keep-alive connections per (scheme, host, port), shared by all
    threads; safe to share between threads."""

    def __init__(self, *, timeout: float = 30.0, tls: Callable[[str], ssl.SSLContext] | None = None):
        self.timeout = timeout
        # netloc -> the context to verify it with; by default the system's
        # CAs (and SSL_CERT_FILE), loaded once per transport
        self.tls = tls or self._default_tls
        self._default_context: ssl.SSLContext | None = None
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._addr_cache: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()
        self._lookup_lock = threading.Lock()

    # -- connections -----------------------------------------------------

    def _default_tls(self, netloc: str) -> ssl.SSLContext:
        with self._lock:
            if self._default_context is None:
                self._default_context = ssl.create_default_context()
            return self._default_context

    def _address(self, host: str, port: int) -> str:
        # Each host once, one look-up at a time: several parallel look-ups
        # sometimes stall for the resolver's 5 s timeout, and threads starting
        # together (the sources of one resolve) would each look up.
        with self._lookup_lock:
            with self._lock:
                addr = self._addr_cache.get((host, port))
            if addr is None:
                try:
                    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                except socket.gaierror as exc:
                    raise HostUnknown(host, exc.strerror) from None
                addr = infos[0][4][0]
                with self._lock:
                    self._addr_cache[(host, port)] = addr
        return addr

    def _connect(self, o: Origin) -> http.client.HTTPConnection:
        proxy = proxy_for(o.scheme, o.host)
        conn: http.client.HTTPConnection
        if proxy:
            p = urllib.parse.urlsplit(proxy)
            if not p.hostname:
                raise BadURL(f"cannot use the proxy {proxy!r}: no host in it")
            if o.scheme == "https":
                conn = _HTTPSConnection(p.hostname, p.port or 80, timeout=self.timeout, context=self.tls(o.netloc),
                                        blocksize=BLOCK)
                conn.set_tunnel(o.host, o.port, headers=_proxy_auth(p))
            else:
                conn = _HTTPConnection(p.hostname, p.port or 80, timeout=self.timeout, blocksize=BLOCK)
                conn.absolute_form = _proxy_auth(p)
        elif o.scheme == "https":
            conn = _HTTPSConnection(o.host, o.port, timeout=self.timeout, context=self.tls(o.netloc), blocksize=BLOCK)
        else:
            conn = _HTTPConnection(self._address(o.host, o.port), o.port, timeout=self.timeout, blocksize=BLOCK)
        return conn

    def _checkout(self, o: Origin) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection that still looks usable (reused=True), or a new one."""
        while True:
            with self._lock:
                idle = self._idle.get(o.key)
                conn = idle.pop() if idle else None
            if conn is None:
                return self._connect(o), False
            if not _idle_closed(conn):
                return conn, True
            conn.close()

    def _checkin(self, o: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(o.key, []).append(conn)

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()

    # -- requests --------------------------------------------------------

    def open(self, method: str, url: str, headers: dict[str, str] | None = None,
             body: bytes | BinaryIO | None = None) -> Exchange:
        """Send one request and read the answer's headers."""
        o = origin(url)
        while True:
            conn, reused = self._checkout(o)
            hdrs = {"User-Agent": USER_AGENT, "Host": o.host_header}
            absolute = getattr(conn, "absolute_form", None)
            if absolute is not None:
                hdrs.update(absolute)
            hdrs.update(headers or {})
            try:
                conn.request(method, url if absolute is not None else o.target, body=body, headers=hdrs)
                return Exchange(self, o, conn, conn.getresponse())
            except _IDLE_CLOSED as exc:
                conn.close()
                if not reused or not (body is None or isinstance(body, bytes)):
                    raise Broken(f"{type(exc).__name__}: {exc}") from None
                # The server closed it between our check and our request.
            except BaseException as exc:
                conn.close()
                raise _sorted(exc, o) from None


def _sorted(exc: BaseException, o: Origin) -> BaseException:
    """A failure of connecting or of one request, as one of this module's kinds."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateRejected(o.netloc, exc.verify_message or str(exc))
    if isinstance(exc, ssl.SSLError):
        if "WRONG_VERSION_NUMBER" in str(exc) or "record layer failure" in str(exc):
            return NotTLS(o.netloc)
        return Broken(f"TLS error: {exc}")
    if isinstance(exc, socket.gaierror):
        return HostUnknown(o.host, exc.strerror)
    if isinstance(exc, ConnectionRefusedError):
        return Broken("connection refused")
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return Broken(f"{o.host} is unreachable")
    if isinstance(exc, (OSError, http.client.HTTPException)):
        return Broken(f"{type(exc).__name__}: {exc}")
    return exc
