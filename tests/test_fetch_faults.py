"""The downloader against a misbehaving mirror (tests/faulty_server.py).

Every case ends either with the right bytes in the cache, reached through
retries, or with a NetworkError/VerifyError; never with a wrong byte in the
cache or a .part file left behind.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import threading

import pytest
from conftest import needs_tool
from faulty_server import (
    OK,
    Barrier,
    CountingProxy,
    FaultyServer,
    Flip,
    IgnoreRange,
    NoLength,
    Redirect,
    Reset,
    Stall,
    Status,
    Truncate,
    WrongLength,
    WrongRange,
    assert_clean,
    blob,
    fast,
    package,
    path_of,
)

from rootfs.model.errors import NetworkError, VerifyError
from rootfs.model.lock import LockedPackage
from rootfs.net.fetch import Cache, Downloader, NotFound, fetch_packages


@pytest.fixture
def server():
    s = FaultyServer()
    yield s
    s.stop()


# -- faults that retries get through ----------------------------------------

TRANSIENT = {
    "reset": [Reset()],
    "500": [Status(500)],
    "503 twice": [Status(503), Status(503)],
    "truncated": [Truncate(1000)],
    "content-length too long": [WrongLength(+100)],
    "content-length too short": [WrongLength(-100)],
    "stall past the timeout": [Stall(keep=100)],
    "silent before the headers": [Stall(headers=False)],
    "flipped byte": [Flip(12345)],
    "reset then flipped": [Reset(), Flip(7)],
}


@pytest.mark.parametrize("faults", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient_faults_are_retried(server, tmp_path, faults):
    # The faulty file is the larger one, so it is fetched first; the second
    # must not pay for what the first left on the connection.
    bad = package(server, "bad", blob(300_000, 1))
    good = package(server, "good", blob(50_000, 2))
    server.script(path_of(bad), *faults)
    cache = Cache(tmp_path / "cache")
    files = fetch_packages([bad, good], cache, fast(), jobs=1)
    assert files[bad.key].read_bytes() == blob(300_000, 1)
    assert files[good.key].read_bytes() == blob(50_000, 2)
    assert server.requests(path_of(bad)) == len(faults) + 1
    assert server.requests(path_of(good)) == 1
    assert assert_clean(cache) == 2


# -- resuming a broken transfer ---------------------------------------------------

RESUME = {
    "resumed": ([Truncate(100_000)], [None, "bytes=100000-"]),
    "resumed after a stall": ([Stall(keep=5000)], [None, "bytes=5000-"]),
    "closed early, no length": ([NoLength(70_000)], [None, "bytes=70000-"]),
    "no length, complete": ([NoLength()], [None]),
    "resumed twice": ([Truncate(1000), Truncate(1000)], [None, "bytes=1000-", "bytes=2000-"]),
    "range ignored": ([Truncate(1000), IgnoreRange()], [None, "bytes=1000-"]),
    "wrong range": ([Truncate(1000), WrongRange()], [None, "bytes=1000-", None]),
    "damaged tail": ([Truncate(1000), Flip(5)], [None, "bytes=1000-", None]),
}


@pytest.mark.parametrize("faults, ranges", RESUME.values(), ids=RESUME.keys())
def test_broken_transfers_resume_where_they_stopped(server, tmp_path, faults, ranges):
    p = package(server, "p", blob(300_000, 8))
    server.script(path_of(p), *faults)
    seen = []
    lock = threading.Lock()

    def progress(n):
        with lock:
            seen.append(n)

    fast().download(p.url, tmp_path / "p.deb", size=p.size, sha256=p.sha256, progress=progress)
    assert (tmp_path / "p.deb").read_bytes() == blob(300_000, 8)
    assert server.ranges(path_of(p)) == ranges
    # Restarts take back what they had counted.
    assert sum(seen) == p.size
    assert os.listdir(tmp_path) == ["p.deb"]


# -- faults that do not go away ---------------------------------------------

PERSISTENT = {
    "reset": (Reset(), NetworkError, "failed after 4 attempts"),
    "503": (Status(503), NetworkError, "HTTP 503"),
    "truncated": (Truncate(1000), NetworkError, "short body"),
    "content-length too long": (WrongLength(+100), NetworkError, "short body"),
    "content-length too short": (WrongLength(-100), VerifyError, "does not match the expected"),
    "flipped byte": (Flip(3), VerifyError, "sha256"),
    "403": (Status(403), NetworkError, "HTTP 403"),
    "closed early, no length": (NoLength(1000), NetworkError, "connection closed after 4000 of 200000 bytes"),
}


@pytest.mark.parametrize("fault, error, words", PERSISTENT.values(), ids=PERSISTENT.keys())
def test_persistent_faults_fail_cleanly(server, tmp_path, fault, error, words):
    bad = package(server, "bad", blob(200_000, 3))
    server.always(path_of(bad), fault)
    cache = Cache(tmp_path / "cache")
    with pytest.raises(error, match=words):
        fetch_packages([bad], cache, fast(), jobs=2)
    assert assert_clean(cache) == 0
    assert not cache.path(bad.sha256).exists()


def test_retries_back_off_exponentially(server, monkeypatch):
    import rootfs.net.fetch

    slept = []
    monkeypatch.setattr(rootfs.net.fetch.time, "sleep", slept.append)
    url = server.add("/x", b"x")
    server.script("/x", Status(503), Reset(), Truncate(0), Status(500))
    assert Downloader(backoff=0.2, retries=4).get_bytes(url) == b"x"
    # backoff * 2**n, with +-50% jitter so that parallel clients spread out.
    assert len(slept) == 4
    for n, s in enumerate(slept):
        assert 0.1 * 2**n <= s <= 0.3 * 2**n, slept


def test_flipped_byte_is_fetched_once_more_then_refused(server, tmp_path):
    p = package(server, "p", blob(100_000, 4))
    server.always(path_of(p), Flip(99))
    dest = tmp_path / "p.deb"
    with pytest.raises(VerifyError, match="sha256 .* does not match the expected " + p.sha256):
        fast().download(p.url, dest, size=p.size, sha256=p.sha256)
    # One fresh fetch of the whole file (a proxy may have served a damaged
    # copy), not the full retry budget: the transfer itself was fine.
    assert server.requests(path_of(p)) == 2
    assert os.listdir(tmp_path) == []


def test_stall_on_every_attempt_is_a_network_error(server, tmp_path):
    p = package(server, "p", blob(10_000, 5))
    server.always(path_of(p), Stall(keep=10))
    with pytest.raises(NetworkError, match="failed after 2 attempts: .*timed out"):
        fast(retries=1).download(p.url, tmp_path / "p.deb", size=p.size, sha256=p.sha256)
    assert os.listdir(tmp_path) == []


def test_body_larger_than_the_lock_says_is_refused(server, tmp_path):
    data = blob(50_000, 6)
    url = server.add("/big.deb", data)
    with pytest.raises(VerifyError, match="larger than the 1000 bytes"):
        fast().download(url, tmp_path / "big.deb", size=1000, sha256=hashlib.sha256(data[:1000]).hexdigest())
    assert os.listdir(tmp_path) == []


def test_404_is_not_retried(server, tmp_path):
    d = fast()
    with pytest.raises(NotFound):
        d.download(server.url + "/pool/gone.deb", tmp_path / "gone.deb", size=1, sha256="0" * 64)
    assert d.get_optional(server.url + "/dists/x/InRelease") is None
    assert server.requests("/pool/gone.deb") == 1
    assert server.requests("/dists/x/InRelease") == 1
    assert server.connections == 1  # a 404 leaves the connection usable
    assert os.listdir(tmp_path) == []


def test_endless_404_body_is_not_read_to_the_end(server):
    server.always("/huge404", Status(404, b"x" * (4 << 20)))
    server.add("/after", b"next")
    d = fast()
    assert d.get_optional(server.url + "/huge404") is None
    assert d.get_bytes(server.url + "/after") == b"next"
    # The connection with megabytes left unread was not reused.
    assert server.connections == 2


def test_404_in_a_lock_says_to_resolve_again(server, tmp_path):
    p = LockedPackage("gone", "1", "all", server.url + "/pool/gone.deb", 10, "0" * 64)
    with pytest.raises(NetworkError, match="no longer on the mirror .*resolve again"):
        fetch_packages([p], Cache(tmp_path / "cache"), fast())


def test_one_failure_stops_the_batch_without_debris(server, tmp_path):
    good = [package(server, f"g{i}", blob(20_000 + i, 10 + i)) for i in range(6)]
    bad = package(server, "bad", blob(400_000, 9))
    server.always(path_of(bad), Flip(1))
    cache = Cache(tmp_path / "cache")
    with pytest.raises(VerifyError):
        fetch_packages([*good, bad], cache, fast(), jobs=2)
    assert_clean(cache)


# -- redirects ----------------------------------------------------------------


def test_redirects_are_followed(server, tmp_path):
    data = blob(30_000, 20)
    server.add("/real/p.deb", data)
    server.always("/pool/p.deb", Redirect("/real/p.deb", 301))
    server.always("/short/p.deb", Redirect(server.url + "/pool/p.deb", 307))
    fast().download(server.url + "/short/p.deb", tmp_path / "p.deb", size=len(data), sha256=hashlib.sha256(data).hexdigest())
    assert (tmp_path / "p.deb").read_bytes() == data
    assert server.requests() == 3


def test_redirect_to_another_server(server, tmp_path):
    other = FaultyServer()
    try:
        p = package(other, "p", blob(20_000, 21))
        server.always("/pool/p.deb", Redirect(p.url))
        fast().download(server.url + "/pool/p.deb", tmp_path / "p.deb", size=p.size, sha256=p.sha256)
        assert (tmp_path / "p.deb").read_bytes() == blob(20_000, 21)
        assert (server.requests(), other.requests()) == (1, 1)
    finally:
        other.stop()


def test_redirect_to_a_local_file_is_refused(server, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"host file")
    server.always("/InRelease", Redirect(secret.as_uri()))
    with pytest.raises(NetworkError, match="unsupported URL scheme"):
        fast().get_bytes(server.url + "/InRelease")


def test_redirect_loop_is_a_network_error(server):
    server.always("/a", Redirect("/b"))
    server.always("/b", Redirect("/a"))
    with pytest.raises(NetworkError, match="more than 10 redirects"):
        fast().get_bytes(server.url + "/a")
    assert server.requests() == 11


# -- connections ----------------------------------------------------------------


def test_connections_are_reused(server, tmp_path):
    pkgs = [package(server, f"p{i}", blob(10_000 + i, 30 + i)) for i in range(10)]
    d = fast()
    fetch_packages(pkgs, Cache(tmp_path / "cache"), d, jobs=2)
    for i in range(5):
        server.add(f"/meta/{i}", b"x" * i)
        assert d.get_bytes(f"{server.url}/meta/{i}") == b"x" * i
    assert server.requests() == 15
    assert server.connections <= 2


def test_server_closing_idle_connections_costs_no_attempt(server):
    server.close_idle = True
    paths = [server.add(f"/meta/{i}", blob(5000, 40 + i)) for i in range(6)]
    d = fast(retries=0)  # any retry would fail the download
    for i, url in enumerate(paths):
        assert d.get_bytes(url) == blob(5000, 40 + i)
    assert server.requests() == 6
    assert server.connections == 6


def test_downloads_run_in_parallel(server, tmp_path):
    barrier = threading.Barrier(3, timeout=10)
    pkgs = [package(server, f"p{i}", blob(40_000, 50 + i)) for i in range(3)]
    for p in pkgs:
        server.script(path_of(p), Barrier(barrier))
    files = fetch_packages(pkgs, Cache(tmp_path / "cache"), fast(), jobs=3)
    assert server.broken_barriers == 0
    assert all(files[p.key].read_bytes() == blob(40_000, 50 + i) for i, p in enumerate(pkgs))


def test_duplicate_files_are_fetched_once(server, tmp_path):
    p = package(server, "p", blob(1000, 60))
    twin = LockedPackage("p", "1", "i386", p.url, p.size, p.sha256)
    files = fetch_packages([p, twin], Cache(tmp_path / "cache"), fast(), jobs=2)
    assert files[p.key] == files[twin.key]
    assert server.requests() == 1


# -- proxies --------------------------------------------------------------------


@pytest.fixture
def proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    p = CountingProxy()
    monkeypatch.setenv("http_proxy", p.url)
    yield p
    p.stop()


def test_http_proxy_is_used(server, proxy, tmp_path):
    pkgs = [package(server, f"p{i}", blob(8000, 70 + i)) for i in range(3)]
    files = fetch_packages(pkgs, Cache(tmp_path / "cache"), fast(), jobs=2)
    assert sorted(proxy.seen) == sorted(p.url for p in pkgs)
    assert server.requests() == 3
    assert all(files[p.key].read_bytes() == blob(8000, 70 + i) for i, p in enumerate(pkgs))


def test_proxy_credentials_are_sent(server, proxy, monkeypatch):
    monkeypatch.setenv("http_proxy", proxy.url.replace("://", "://cron%40ci:s3cret@"))
    url = server.add("/x", b"via proxy")
    assert fast().get_bytes(url) == b"via proxy"
    assert proxy.auth == ["Basic " + base64.b64encode(b"cron@ci:s3cret").decode()]


def test_no_proxy_bypasses_the_proxy(server, proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    url = server.add("/x", b"direct")
    assert fast().get_bytes(url) == b"direct"
    assert proxy.seen == []


# -- file:// ----------------------------------------------------------------------


def test_file_urls(tmp_path):
    src = tmp_path / "src.deb"
    src.write_bytes(blob(3 * (1 << 20) + 5, 80))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    d = Downloader()
    d.download(src.as_uri(), tmp_path / "dest.deb", size=src.stat().st_size, sha256=digest)
    assert (tmp_path / "dest.deb").read_bytes() == src.read_bytes()
    with pytest.raises(VerifyError):
        d.download(src.as_uri(), tmp_path / "bad.deb", size=src.stat().st_size, sha256="0" * 64)
    with pytest.raises(NotFound):
        d.download((tmp_path / "none").as_uri(), tmp_path / "none.deb")
    assert sorted(os.listdir(tmp_path)) == ["dest.deb", "src.deb"]


def test_unreachable_server_is_a_network_error(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(NetworkError, match="failed after 2 attempts: connection refused"):
        fast(retries=1).get_bytes(f"http://127.0.0.1:{port}/x")


def test_ok_is_the_default_answer(server):
    # The fault script runs out: the plain file again.
    url = server.add("/f", b"fine")
    server.script("/f", OK(), Status(500))
    d = fast()
    assert [d.get_bytes(url) for _ in range(2)] == [b"fine", b"fine"]
    assert server.requests("/f") == 3


# -- TLS --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True,
    )
    return str(d / "cert.pem"), str(d / "key.pem")


@pytest.fixture
def tls_server(certificate):
    s = FaultyServer(cert=certificate)
    yield s
    s.stop()


@needs_tool("openssl")
def test_https_with_a_trusted_certificate(tls_server, certificate, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    pkgs = [package(tls_server, f"p{i}", blob(200_000, 90 + i)) for i in range(4)]
    tls_server.script(path_of(pkgs[0]), Truncate(50_000))
    files = fetch_packages(pkgs, Cache(tmp_path / "cache"), fast(), jobs=2)
    assert all(files[p.key].read_bytes() == blob(200_000, 90 + i) for i, p in enumerate(pkgs))
    assert tls_server.ranges(path_of(pkgs[0])) == [None, "bytes=50000-"]
    assert tls_server.connections < tls_server.requests()


@needs_tool("openssl")
def test_https_with_an_unknown_certificate_is_not_retried(tls_server, tmp_path, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    url = tls_server.add("/InRelease", b"signed")
    with pytest.raises(NetworkError, match="TLS certificate not accepted: self.signed certificate"):
        fast().get_bytes(url)
    assert tls_server.connections == 1
    assert tls_server.requests() == 0


@needs_tool("openssl")
def test_https_through_a_proxy_tunnel(tls_server, certificate, proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    monkeypatch.setenv("https_proxy", proxy.url.replace("://", "://u:p@"))
    pkgs = [package(tls_server, f"p{i}", blob(30_000, 95 + i)) for i in range(3)]
    files = fetch_packages(pkgs, Cache(tmp_path / "cache"), fast(), jobs=1)
    assert all(files[p.key].read_bytes() == blob(30_000, 95 + i) for i, p in enumerate(pkgs))
    port = tls_server.url.rsplit(":", 1)[1]
    # One tunnel, kept alive for all three.
    assert proxy.seen == [f"CONNECT 127.0.0.1:{port}"]
    assert proxy.auth == ["Basic " + base64.b64encode(b"u:p").decode()]
    assert tls_server.requests() == 3
