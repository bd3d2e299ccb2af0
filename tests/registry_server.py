"""Debian's docker-registry on 127.0.0.1, in four set-ups, for the tests.

    start_registry(tmp, "plain")  plain HTTP, anonymous
    start_registry(tmp, "basic")  plain HTTP, basic auth (bcrypt htpasswd)
    start_registry(tmp, "tls")    HTTPS with a throwaway CA, and basic auth
    start_registry(tmp, "token")  plain HTTP, bearer tokens from a small token
                                  service of our own (TokenServer: checks the
                                  user's password, signs RS256 JWTs with openssl)

And `Proxy`: an HTTP/1.1 forwarder in front of a registry that logs every
request (evidence from the wire, not from the client under test) and can
reset the connection under the first N blob uploads.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import socket
import socketserver
import struct
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

USER, PASSWORD = "testuser", "testpass"


@dataclass
class Registry:
    mode: str
    host: str  # 127.0.0.1:PORT
    root: Path
    proc: subprocess.Popen
    ca_cert: Path | None = None
    cert_dir: Path | None = None  # for skopeo --cert-dir
    creds: str | None = None
    token_server: TokenServer | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.mode == "tls" else "http"

    def skopeo_flags(self, prefix: str = "") -> list[str]:
        """--tls-verify/--cert-dir/--creds for skopeo (prefix "src-"/"dest-" for copy)."""
        flags = [f"--{prefix}cert-dir={self.cert_dir}"] if self.cert_dir else [f"--{prefix}tls-verify=false"]
        if self.creds:
            flags.append(f"--{prefix}creds={self.creds}")
        return flags

    def stop(self) -> None:
        if self.token_server is not None:
            self.token_server.stop()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_registry(base: Path, mode: str = "plain") -> Registry:
    assert mode in ("plain", "basic", "tls", "token")
    base.mkdir(parents=True, exist_ok=True)
    config = [
        "version: 0.1",
        "log:",
        "  level: info",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {base / 'data'}",
        "  delete:",
        "    enabled: true",
        "http:",
        "  addr: 127.0.0.1:0",
        "  secret: rootfs-test-secret",
    ]
    ca = cert_dir = creds = None
    if mode == "tls":
        ca = base / "registry.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(base / "registry.key"), "-out", str(ca)],
            check=True, capture_output=True)
        cert_dir = base / "certs.d"
        cert_dir.mkdir()
        (cert_dir / "ca.crt").write_bytes(ca.read_bytes())
        config += ["  tls:", f"    certificate: {ca}", f"    key: {base / 'registry.key'}"]
    if mode in ("basic", "tls"):
        htpasswd = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True).stdout
        (base / "htpasswd").write_bytes(htpasswd)
        config += ["auth:", "  htpasswd:", "    realm: test-realm", f"    path: {base / 'htpasswd'}"]
        creds = f"{USER}:{PASSWORD}"
    token_server = None
    if mode == "token":
        token_server = TokenServer(base / "token").start()
        config += ["auth:", "  token:", f"    realm: {token_server.url}/token", f"    service: {TokenServer.SERVICE}",
                   f"    issuer: {TokenServer.ISSUER}", f"    rootcertbundle: {token_server.cert}"]
        creds = f"{USER}:{PASSWORD}"
    (base / "config.yml").write_text("\n".join(config) + "\n")
    log = open(base / "log", "wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(base / "config.yml")], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + 30
    port = None
    while port is None:
        text = (base / "log").read_text(errors="replace")
        for line in text.splitlines():
            if "listening on 127.0.0.1:" in line:
                port = int(line.split("listening on 127.0.0.1:")[1].split()[0].rstrip(",\""))
        if port is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                if token_server is not None:
                    token_server.stop()
                raise RuntimeError(f"docker-registry did not start:\n{text}")
            time.sleep(0.05)
    return Registry(mode, f"127.0.0.1:{port}", base, proc, ca, cert_dir, creds, token_server)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """The token half of the registry's bearer auth: GET /token?service=&scope=
    with the user's basic credentials -> a JWT granting the scopes asked for."""

    SERVICE = "rootfs-test-registry"
    ISSUER = "rootfs-test-issuer"

    def __init__(self, base: Path):
        base.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = base / "token.key", base / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=rootfs test token signer", "-keyout", str(self.key), "-out", str(self.cert)],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[tuple[str | None, list[str]]] = []  # (user or None, scopes)
        self.url = ""

    def token(self, user: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.ISSUER, "sub": user, "aud": self.SERVICE, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": f"{now}-{len(self.requests)}", "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                             check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def start(self) -> TokenServer:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002
                pass

            def do_GET(self) -> None:
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if (user, password) != (USER, PASSWORD):
                        user = "!"
                scopes = q.get("scope", [])
                server.requests.append((user, scopes))
                if u.path != "/token" or q.get("service") != [server.SERVICE] or user in (None, "!"):
                    body, status = b'{"details":"unauthorized"}', 401
                else:
                    t = server.token(user, scopes)
                    body, status = json.dumps({"token": t, "access_token": t, "expires_in": 300}).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# -- a logging, misbehaving forwarder -----------------------------------------------


@dataclass
class Logged:
    method: str
    path: str
    status: int | None  # None: we reset the connection instead of forwarding
    length: int = 0  # request body bytes


@dataclass
class Proxy:
    """Plain-HTTP forwarder to a plain-HTTP registry; Host is passed on, so
    the registry's Location headers point back at the proxy."""

    upstream: str  # 127.0.0.1:PORT
    reset_uploads: int = 0  # reset this many blob-upload requests (PUT/PATCH with a body)
    reset_downloads: int = 0  # reset this many blob GETs half-way through the body
    unavailable: int = 0  # answer this many requests (any) with 503 instead of forwarding
    no_mounts: bool = False  # pass cross-repository mounts on as plain upload starts
    log: list[Logged] = field(default_factory=list)
    host: str = ""

    def start(self) -> Proxy:
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                up_host, up_port = proxy.upstream.split(":")
                upstream = http.client.HTTPConnection(up_host, int(up_port), timeout=60)
                try:
                    while proxy._one(self, upstream):
                        pass
                except (OSError, http.client.HTTPException):
                    pass
                finally:
                    upstream.close()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _one(self, h: socketserver.StreamRequestHandler, upstream: http.client.HTTPConnection) -> bool:
        line = h.rfile.readline(65537)
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: list[tuple[str, str]] = []
        while True:
            hl = h.rfile.readline(65537)
            if hl in (b"\r\n", b"\n", b""):
                break
            k, _, v = hl.decode("latin-1").partition(":")
            headers.append((k.strip(), v.strip()))
        length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
        is_upload = method in ("PUT", "PATCH") and "/blobs/uploads/" in target and length > 0
        if is_upload and self.reset_uploads > 0:
            self.reset_uploads -= 1
            h.rfile.read(min(length, 4096))  # take a little, then drop the line
            self.log.append(Logged(method, target, None, length))
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            return False
        body = h.rfile.read(length) if length else None
        if self.unavailable > 0:
            self.unavailable -= 1
            self.log.append(Logged(method, target, 503, length))
            h.wfile.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            h.wfile.flush()
            return True
        if self.no_mounts and method == "POST" and "mount=" in target:
            target = target.split("?", 1)[0]  # what a registry that will not mount does: a fresh upload
        upstream.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            upstream.putheader(k, v)
        upstream.endheaders(body)
        resp = upstream.getresponse()
        data = resp.read()
        self.log.append(Logged(method, target, resp.status, length))
        out = [f"HTTP/1.1 {resp.status} {resp.reason}\r\n".encode("latin-1")]
        for k, v in resp.getheaders():
            if k.lower() in ("transfer-encoding", "connection", "content-length"):
                continue
            out.append(f"{k}: {v}\r\n".encode("latin-1"))
        if method != "HEAD" or data:
            out.append(f"Content-Length: {len(data)}\r\n".encode())
        else:
            cl = resp.getheader("Content-Length")
            if cl is not None:
                out.append(f"Content-Length: {cl}\r\n".encode())
        out.append(b"\r\n")
        if method == "GET" and "/blobs/sha256:" in target and resp.status == 200 and self.reset_downloads > 0:
            self.reset_downloads -= 1
            self.log[-1].status = None
            h.wfile.write(b"".join(out) + data[: len(data) // 2])
            h.wfile.flush()
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            return False
        h.wfile.write(b"".join(out) + (data if method != "HEAD" else b""))
        h.wfile.flush()
        return True

    def uploads(self) -> list[Logged]:
        """Requests that carried blob bytes (monolithic PUT or PATCH chunk)."""
        return [e for e in self.log if e.method in ("PATCH", "PUT") and "/blobs/uploads/" in e.path and e.length > 0]

    def clear(self) -> None:
        self.log.clear()


def stop_all(*things) -> None:
    for t in things:
        t.stop()


def port_of(host: str) -> int:
    return int(host.rsplit(":", 1)[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

