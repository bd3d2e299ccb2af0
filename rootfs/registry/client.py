"""One registry repository over HTTP: connections, retries, authentication.

`Session.call` sends one request and answers with a `Response`, handling the
401 challenge (basic or bearer token, tokens cached per scope) and retrying
transient failures (connection resets, timeouts, 5xx, 429) with backoff when
the request can be repeated. Upload requests are not repeated here: after a
reset the state of an upload session is unknown, so the caller restarts the
whole blob (see transfer.py).
"""

from __future__ import annotations

import http.client
import json
import re
import random
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rootfs.model.errors import NetworkError, RegistryError, UsageError, VerifyError
from rootfs.net import http
from rootfs.registry.auth import Credentials, find_credentials, parse_challenge
from rootfs.registry.ref import Reference


# A manifest is at most 4 MiB (what registries accept); tokens and error
# bodies are far smaller. Anything bigger is refused, not buffered.
RESPONSE_LIMIT = 4 << 20
ERROR_TEXT = 300
# RFC 6750 b64token: what may follow "Bearer " in a header.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*\Z")

@dataclass
class RegistryOptions:
    """How to talk to a registry; shared by push and pull."""

    creds: Credentials | None = None
    ca_cert: Path | None = None
    # containers-style certs.d directory: *.crt CAs, NAME.cert + NAME.key client
    # certificates. Default: /etc/containers/certs.d/HOST[:PORT] and
    # /etc/docker/certs.d/HOST[:PORT], when they exist.
    cert_dir: Path | None = None
    insecure: bool = False  # plain HTTP; never implied, not even for 127.0.0.1
    retries: int = 4
    backoff: float = 0.5
    timeout: float = 60.0
    jobs: int = 3
    chunk_size: int = 16 << 20  # larger blobs are uploaded in PATCH chunks of this size
    cache_dir: Path | None = None  # where the blob -> repositories memory lives
    progress: Callable[[int], None] | None = field(default=None, repr=False)


class Transient(Exception):
    """Worth another attempt: reset, timeout, 5xx, 429."""


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> dict:
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return {}
        return value if isinstance(value, dict) else {}

    def error_text(self) -> str:
        """The registry's own error codes and messages, for our message
        (cut to a readable length: the body is the server's to choose)."""
        errs = self.json().get("errors")
        if isinstance(errs, list) and errs:
            text = "; ".join(f"{_text(e.get('code', '?'))}: {_text(e.get('message', ''))}".strip()
                             for e in errs if isinstance(e, dict))
        else:
            text = self.body[:ERROR_TEXT].decode("utf-8", "replace").strip()
        text = " ".join(text.split())
        if len(text) > ERROR_TEXT:
            text = text[: ERROR_TEXT - 1] + "\u2026"
        return text or f"HTTP {self.status}"

    def error_codes(self) -> set[str]:
        errs = self.json().get("errors")
        if not isinstance(errs, list):
            return set()
        return {e["code"] for e in errs if isinstance(e, dict) and isinstance(e.get("code"), str)}


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)[:ERROR_TEXT]


class Transport:
    """Registry requests over the one HTTP transport (rootfs.net.http), with
    the TLS trust the options name; failures as the registry client's own
    sentences, and Transient for those worth another attempt."""

    def __init__(self, opts: RegistryOptions):
        self.opts = opts
        self._ssl: dict[str, ssl.SSLContext] = {}
        self._ssl_lock = threading.Lock()
        self.http = http.Transport(timeout=opts.timeout, tls=self._context)

    def _context(self, netloc: str) -> ssl.SSLContext:
        with self._ssl_lock:
            ctx = self._ssl.get(netloc)
            if ctx is None:
                ctx = self._ssl[netloc] = self._load_context(netloc)
            return ctx

    def _load_context(self, netloc: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        try:
            if self.opts.ca_cert is not None:
                ctx.load_verify_locations(cafile=str(self.opts.ca_cert))
            for d in cert_dirs(self.opts.cert_dir, netloc):
                for crt in sorted(d.glob("*.crt")):
                    ctx.load_verify_locations(cafile=str(crt))
                for cert in sorted(d.glob("*.cert")):
                    key = cert.with_suffix(".key")
                    if not key.is_file():
                        raise UsageError(f"client certificate {cert} has no {key.name} beside it")
                    ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load the TLS certificates for {netloc}: {exc}") from None
        return ctx

    def close(self) -> None:
        self.http.close()

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | BinaryIO | None = None,
             *, sink: Callable[[bytes], None] | None = None) -> Response:
        """One request; the body goes to sink (streamed) when given and the
        answer is 200. Raises Transient for failures worth repeating."""
        try:
            ex = self.http.open(method, url, headers, body)
        except http.CertificateRejected as exc:
            raise VerifyError(f"the TLS certificate of {exc.netloc} is not trusted ({exc.reason}); "
                              "pass --ca-cert FILE with the CA that signed it") from None
        except http.NotTLS as exc:
            raise RegistryError(f"{exc.netloc} does not speak TLS; if it is a plain-HTTP registry, pass --insecure") from None
        except http.HostUnknown as exc:
            raise NetworkError(f"cannot resolve the registry host {exc.host}: {exc.reason}") from None
        except http.BadURL as exc:
            raise RegistryError(str(exc)) from None
        except http.Broken as exc:
            raise Transient(str(exc)) from None
        try:
            if sink is not None and ex.status == 200:
                for chunk in ex.chunks():
                    sink(chunk)
                data = b""
            else:
                # Manifests, tokens and error bodies: small, and read whole.
                parts, got = [], 0
                for chunk in ex.chunks():
                    got += len(chunk)
                    if got > RESPONSE_LIMIT:
                        ex.discard()
                        raise RegistryError(f"{urllib.parse.urlsplit(url).netloc} answered {method} with more "
                                            f"than {RESPONSE_LIMIT} bytes; a manifest, token or error is never "
                                            "that big")
                    parts.append(chunk)
                data = b"".join(parts)
        except http.Broken as exc:
            ex.discard()
            raise Transient(str(exc)) from None
        except BaseException:
            ex.discard()  # a sink refused the body half-way: the connection is mid-response
            raise
        ex.release()
        return Response(ex.status, ex.headers, data, url)


def cert_dirs(explicit: Path | None, netloc: str) -> list[Path]:
    if explicit is not None:
        return [explicit]
    found = []
    for base in ("/etc/containers/certs.d", "/etc/docker/certs.d"):
        d = Path(base) / netloc
        if d.is_dir():
            found.append(d)
    return found


class Session:
    """Requests to one repository of one registry, authenticated."""

    def __init__(self, ref: Reference, opts: RegistryOptions, transport: Transport | None = None):
        if ref.scheme == "http" and not opts.insecure:
            raise UsageError(f"refusing plain HTTP to {ref.host} without --insecure")
        if ref.scheme == "https" and opts.insecure:
            raise UsageError(f"{ref} asks for https but --insecure asks for plain HTTP; drop one of them")
        self.ref = ref
        self.opts = opts
        self.scheme = "http" if opts.insecure else "https"
        self.base = f"{self.scheme}://{ref.host}"
        self.transport = transport or Transport(opts)
        self.creds = find_credentials(ref.host, ref.name, opts.creds)
        self._auth: dict[str, str] = {}  # scope key -> Authorization header value
        self._basic_challenge = False
        self._lock = threading.Lock()
        self._token_lock = threading.Lock()

    def url(self, path: str) -> str:
        return urllib.parse.urljoin(self.base + "/", path)

    # -- authentication --------------------------------------------------

    def _scope(self, extra_pull: tuple[str, ...], push: bool) -> tuple[str, ...]:
        scopes = [f"repository:{self.ref.name}:{'pull,push' if push else 'pull'}"]
        scopes += [f"repository:{name}:pull" for name in extra_pull]
        return tuple(scopes)

    def _authorization(self, scopes: tuple[str, ...]) -> str | None:
        with self._lock:
            if self._basic_challenge and self.creds:
                return self.creds.basic()
            return self._auth.get(" ".join(scopes))

    def _authenticate(self, resp: Response, scopes: tuple[str, ...], used: str | None) -> None:
        # One token fetch at a time: parallel blob requests that met the same
        # challenge take the token the first of them fetched.
        with self._token_lock:
            if self._authorization(scopes) not in (None, used):
                return
            self._challenge(resp, scopes)

    def _challenge(self, resp: Response, scopes: tuple[str, ...]) -> None:
        header = resp.header("WWW-Authenticate") or ""
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if self.creds is None:
                raise RegistryError(f"authentication to {self.ref.host} failed: it needs credentials "
                                    "(--creds USER:PASS or a login in an auth file)")
            with self._lock:
                self._basic_challenge = True
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"authentication to {self.ref.host} failed: unsupported challenge {header!r}")
        realm = params["realm"]
        try:
            realm_u = urllib.parse.urlsplit(realm)
            realm_u.port  # noqa: B018 - a port that is not a number raises here
        except ValueError:
            raise RegistryError(f"authentication to {self.ref.host} failed: bad token realm {realm[:200]!r}") from None
        if realm_u.scheme == "http" and not self.opts.insecure:
            raise RegistryError(f"authentication to {self.ref.host} failed: its token service {realm} is "
                                "plain HTTP (pass --insecure to allow it)")
        if realm_u.scheme not in ("http", "https"):
            raise RegistryError(f"authentication to {self.ref.host} failed: bad token realm {realm!r}")
        query = [("service", params["service"])] if params.get("service") else []
        query += [("scope", s) for s in scopes]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if self.creds:
            headers["Authorization"] = self.creds.basic()
        r = self._with_retries(lambda: self.transport.send("GET", url, headers))
        if r.status in (401, 403):
            raise RegistryError(f"authentication to {self.ref.host} failed: the token service refused "
                                f"the credentials{' from ' + self.creds.source if self.creds else ''}")
        token = r.json().get("token") or r.json().get("access_token")
        if r.status == 200 and token and (not isinstance(token, str) or not _TOKEN.match(token)):
            raise RegistryError(f"authentication to {self.ref.host} failed: the token service answered "
                                "with a token that is not a bearer token")
        if r.status != 200 or not token:
            raise RegistryError(f"authentication to {self.ref.host} failed: the token service answered "
                                f"HTTP {r.status} without a token")
        with self._lock:
            self._auth[" ".join(scopes)] = f"Bearer {token}"

    # -- requests --------------------------------------------------------

    def _with_retries(self, attempt: Callable[[], Response], retries: int | None = None) -> Response:
        retries = self.opts.retries if retries is None else retries
        last = ""
        for n in range(max(retries, 0) + 1):
            try:
                r = attempt()
                if r.status >= 500 or r.status == 429:
                    raise Transient(f"HTTP {r.status} ({r.error_text()})")
                return r
            except Transient as exc:
                if retries < 0:
                    raise  # the caller restarts at a higher level
                last = str(exc)
            if n < retries:
                time.sleep(self.opts.backoff * (2**n) * (0.5 + random.random()))
        raise NetworkError(f"cannot reach the registry {self.ref.host}: {last} "
                           f"(after {retries + 1} attempt{'s' if retries else ''})")

    def call(self, method: str, path_or_url: str, *, headers: dict[str, str] | None = None,
             body: Callable[[], bytes | BinaryIO] | None = None, push: bool = False,
             mount_from: tuple[str, ...] = (), repeat: bool = True,
             sink: Callable[[bytes], None] | None = None) -> Response:
        """Send with authentication; body is a factory so that the request
        can be sent again after a challenge or a transient failure. With
        repeat=False a transient failure is raised as Transient for the
        caller to restart a larger unit (a blob upload)."""
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        scopes = self._scope(mount_from, push)

        used: list[str | None] = [None]

        def attempt() -> Response:
            hdrs = dict(headers or {})
            auth = used[0] = self._authorization(scopes)
            if auth and _same_origin(url, self.base):
                hdrs["Authorization"] = auth
            return self.transport.send(method, url, hdrs, body() if body else None, sink=sink)

        for challenge in range(2):
            r = self._with_retries(attempt, None if repeat else -1)
            if r.status == 401 and challenge == 0:
                self._authenticate(r, scopes, used[0])
                continue
            break
        if r.status in (401, 403):
            who = f" with the credentials from {self.creds.source}" if self.creds else " (no credentials given)"
            raise RegistryError(f"authentication to {self.ref.host} failed{who}: {r.error_text()}")
        if r.status == 400 and b"HTTP request to an HTTPS server" in r.body:
            raise RegistryError(f"{self.ref.host} speaks only TLS; drop --insecure")
        return r

    def ping(self, push: bool = False) -> None:
        """The API version check (`GET /v2/`): tells a registry from other
        servers, and TLS from plain HTTP, before any real request; and it
        fetches the token for the scope the transfer will need."""
        r = self.call("GET", "/v2/", push=push)
        if r.status == 400 and self.scheme == "http":
            raise RegistryError(f"{self.ref.host} does not answer plain HTTP (HTTP 400); if it speaks TLS, drop --insecure")
        if r.status != 200:
            raise RegistryError(f"{self.ref.host} is not an OCI registry (GET /v2/ answered HTTP {r.status})")


def _same_origin(a: str, b: str) -> bool:
    ua, ub = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)
    return (ua.scheme, ua.netloc) == (ub.scheme, ub.netloc)
