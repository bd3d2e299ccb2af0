"""A misbehaving mirror on 127.0.0.1, scripted per path and per attempt.

    srv = FaultyServer({"/a.deb": data})
    srv.script("/a.deb", Reset(), Status(503))   # 1st, 2nd request; then OK
    srv.always("/b.deb", Flip(10))                # every request

It speaks just enough HTTP/1.1 (keep-alive, Content-Length) for
rootfs.net.fetch, and counts connections and requests so tests can assert what
the client really did. A CountingProxy forwards plain-HTTP proxy requests.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import select
import socket
import ssl
import struct
import threading
import urllib.parse
from collections import Counter
from dataclasses import dataclass

from rootfs.model.lock import LockedPackage
from rootfs.net.cache import sha256_file
from rootfs.net.fetch import Cache, Downloader


class Fault:
    """How to answer one request; subclasses override respond()."""

    def respond(self, h: "_Handler", body: bytes) -> None:
        h.send_body(200, body)


class OK(Fault):
    pass


@dataclass
class Status(Fault):
    code: int
    body: bytes = b"error\n"

    def respond(self, h, body):
        h.send_body(self.code, self.body)


@dataclass
class Reset(Fault):
    """Read the request, then close with RST (SO_LINGER 0)."""

    def respond(self, h, body):
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.close_connection = True
        # No shutdown (that would send FIN first): closing a socket that
        # lingers 0 seconds sends RST.
        with h.server.lock:
            h.server.resets.add(h.connection)


@dataclass
class Truncate(Fault):
    """Promise the whole body, send `keep` bytes, close."""

    keep: int

    def respond(self, h, body):
        h.send_head(200, len(body))
        h.wfile.write(body[: self.keep])
        h.abort()


@dataclass
class WrongLength(Fault):
    """Content-Length off by delta; the whole body is sent either way.
    Longer: the client waits for bytes that never come, then the server
    closes. Shorter: the tail is left on the keep-alive connection."""

    delta: int

    def respond(self, h, body):
        h.send_head(200, len(body) + self.delta)
        h.wfile.write(body)
        if self.delta > 0:
            h.abort()


@dataclass
class NoLength(Fault):
    """No Content-Length: the body ends where the server closes, here after
    `keep` bytes (None: all of them)."""

    keep: int | None = None

    def respond(self, h, body):
        code = 206 if h.range_headers else 200
        h.send_response_only(code)
        for k, v in [*h.range_headers, ("Connection", "close")]:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body if self.keep is None else body[: self.keep])
        h.abort()


@dataclass
class Stall(Fault):
    """Send headers (unless not headers) and `keep` bytes, then go silent
    until the client gives up (or the server stops)."""

    keep: int = 0
    headers: bool = True

    def respond(self, h, body):
        if self.headers:
            h.send_head(200, len(body))
            h.wfile.write(body[: self.keep])
        h.wfile.flush()
        h.server.stopping.wait(30)
        h.abort()


@dataclass
class Flip(Fault):
    """The whole body with one byte inverted."""

    offset: int = 0

    def respond(self, h, body):
        b = bytearray(body)
        b[self.offset % len(b)] ^= 0xFF
        h.send_body(200, bytes(b))


@dataclass
class Redirect(Fault):
    location: str
    code: int = 302

    def respond(self, h, body):
        h.send_body(self.code, b"moved\n", [("Location", self.location)])


@dataclass
class IgnoreRange(Fault):
    """The whole file with 200, whatever Range asked for."""

    def respond(self, h, body):
        h.range_headers = []
        h.send_body(200, h.whole)


@dataclass
class WrongRange(Fault):
    """206, but from byte 0 whatever Range asked for."""

    def respond(self, h, body):
        h.range_headers = []
        h.send_body(206, h.whole, [("Content-Range", f"bytes 0-{len(h.whole) - 1}/{len(h.whole)}")])


@dataclass
class Barrier(Fault):
    """Answer only when `barrier` is reached by as many requests as it
    counts: proof that the client sends them in parallel. A broken barrier
    (no parallelism) is recorded and answered with 500."""

    barrier: threading.Barrier

    def respond(self, h, body):
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            h.server.broken_barriers += 1
            h.send_body(500, b"not in parallel\n")
            return
        h.send_body(200, body)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def setup(self):
        with self.server.lock:
            self.server.connections += 1
        if self.server.tls is not None:
            # Here rather than on the listening socket: a failed handshake
            # then costs this connection only, and is counted.
            self.request = self.connection = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, format, *args):  # noqa: A002
        pass

    def send_head(self, code: int, length: int, headers=()) -> None:
        if code == 200 and self.range_headers:
            code, headers = 206, [*headers, *self.range_headers]
        self.send_response_only(code)
        self.send_header("Content-Length", str(length))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()

    def send_body(self, code: int, body: bytes, headers=()) -> None:
        self.send_head(code, len(body), headers)
        self.wfile.write(body)
        self.wfile.flush()
        if self.server.close_idle:
            # Close without saying so (no "Connection: close"), as servers do
            # with keep-alive connections they consider idle.
            self.abort()

    def abort(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self):
        srv = self.server
        path = urllib.parse.urlsplit(self.path).path
        with srv.lock:
            n = srv.requests[path]
            srv.requests[path] += 1
            srv.log.append((path, dict(self.headers)))
            plan = srv.plans.get(path, [])
            fault = srv.forever.get(path) or (plan[n] if n < len(plan) else OK())
        body = srv.files.get(path)
        self.range_headers = []
        self.whole = body or b""
        if body is None and isinstance(fault, OK):
            self.send_body(404, b"not found\n")
            return
        # Range: bytes=N- (all rootfs asks for); every fault then works on
        # that part, and a 200 becomes a 206.
        want = self.headers.get("Range", "")
        if body and want.startswith("bytes=") and want.endswith("-") and want[6:-1].isdigit():
            start = int(want[6:-1])
            if start >= len(body):
                self.send_body(416, b"")
                return
            self.range_headers = [("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")]
            body = body[start:]
        fault.respond(self, body or b"")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tls = tls
        self.lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.plans: dict[str, list[Fault]] = {}
        self.forever: dict[str, Fault] = {}
        self.requests: Counter[str] = Counter()
        self.log: list[tuple[str, dict]] = []
        self.connections = 0
        self.close_idle = False
        self.broken_barriers = 0
        self.resets: set[socket.socket] = set()
        self.stopping = threading.Event()

    def handle_error(self, request, client_address):
        pass  # failed handshakes and clients that hang up are the point here

    def shutdown_request(self, request):
        with self.lock:
            reset = request in self.resets
            self.resets.discard(request)
        if reset:
            self.close_request(request)
        else:
            super().shutdown_request(request)


class FaultyServer:
    def __init__(self, files: dict[str, bytes] | None = None, *, cert: tuple[str, str] | None = None):
        """cert: (certificate, key) PEM files to speak HTTPS."""
        tls = None
        if cert is not None:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(*cert)
        self._srv = _Server(tls)
        self._srv.files.update(files or {})
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._srv.server_address[1]}"
        self._thread = threading.Thread(target=self._srv.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def add(self, path: str, data: bytes) -> str:
        self._srv.files[path] = data
        return self.url + path

    def script(self, path: str, *faults: Fault) -> None:
        """The first len(faults) requests for path meet these; then OK."""
        with self._srv.lock:
            self._srv.plans[path] = list(faults)

    def always(self, path: str, fault: Fault) -> None:
        with self._srv.lock:
            self._srv.forever[path] = fault

    @property
    def close_idle(self) -> bool:
        return self._srv.close_idle

    @close_idle.setter
    def close_idle(self, value: bool) -> None:
        self._srv.close_idle = value

    @property
    def connections(self) -> int:
        return self._srv.connections

    @property
    def broken_barriers(self) -> int:
        return self._srv.broken_barriers

    def ranges(self, path: str) -> list[str | None]:
        """The Range header of each request for path, in order."""
        with self._srv.lock:
            return [hdrs.get("Range") for p, hdrs in self._srv.log if p == path]

    def requests(self, path: str | None = None) -> int:
        with self._srv.lock:
            return self._srv.requests[path] if path else sum(self._srv.requests.values())

    def stop(self) -> None:
        self._srv.stopping.set()
        self._srv.shutdown()
        self._srv.server_close()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_ProxyServer"

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_CONNECT(self):
        """A tunnel for HTTPS: bytes both ways until either side closes."""
        with self.server.lock:
            self.server.seen.append(f"CONNECT {self.path}")
            self.server.auth.append(self.headers.get("Proxy-Authorization"))
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=10)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        client = self.connection
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 10)
                if not readable:
                    break
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        return
                    (upstream if src is client else client).sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()
            self.close_connection = True

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        with self.server.lock:
            self.server.seen.append(self.path)
            self.server.auth.append(self.headers.get("Proxy-Authorization"))
        if not u.scheme:
            # Not a proxy request: a client that bypassed the proxy protocol.
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        upstream = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
        try:
            upstream.request("GET", u.path or "/", headers={"Host": self.headers.get("Host", u.netloc)})
            resp = upstream.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k in ("Location",):
                if resp.getheader(k):
                    self.send_header(k, resp.getheader(k))
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Via", "1.1 counting-proxy")
            self.end_headers()
            self.wfile.write(data)
        finally:
            upstream.close()


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.lock = threading.Lock()
        self.seen: list[str] = []
        self.auth: list[str | None] = []


class CountingProxy:
    """A forwarding HTTP proxy that records the absolute URLs it was asked for."""

    def __init__(self):
        self._srv = _ProxyServer()
        self.url = f"http://127.0.0.1:{self._srv.server_address[1]}"
        threading.Thread(target=self._srv.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def seen(self) -> list[str]:
        """Absolute URLs of GETs, `CONNECT host:port` of tunnels."""
        with self._srv.lock:
            return list(self._srv.seen)

    @property
    def auth(self) -> list[str | None]:
        """The Proxy-Authorization header of each request."""
        with self._srv.lock:
            return list(self._srv.auth)

    def stop(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()


# -- helpers for the fetch and cache tests ------------------------------------


def blob(n: int, seed: int) -> bytes:
    """n bytes that differ by seed, the same on every run."""
    return (hashlib.sha256(str(seed).encode()).digest() * (n // 32 + 1))[:n]


def package(server: FaultyServer, name: str, data: bytes) -> LockedPackage:
    url = server.add(f"/pool/{name}_1_all.deb", data)
    return LockedPackage(name, "1", "all", url, len(data), hashlib.sha256(data).hexdigest())


def path_of(p: LockedPackage) -> str:
    return "/" + p.url.split("/", 3)[3]


def fast(**kw) -> Downloader:
    """A Downloader that gives up quickly: tests wait for no real backoff."""
    kw = {"timeout": 1, "backoff": 0.01, "retries": 3, **kw}
    return Downloader(**kw)


def assert_clean(cache: Cache) -> int:
    """No .part files, and every entry holds what its name says; the count."""
    n = 0
    for f in cache.root.rglob("*"):
        assert not f.name.endswith(".part"), f"leftover {f}"
        if f.is_file() and f.parent.parent == cache.objects:
            assert sha256_file(f) == f.name, f"cache entry {f} has the wrong content"
            n += 1
    return n
