"""Credentials lookup and WWW-Authenticate parsing (no network)."""

from __future__ import annotations

import base64
import json

import pytest

from rootfs.model.errors import UsageError
from rootfs.registry.auth import find_credentials, parse_challenge, parse_creds


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def home(tmp_path, monkeypatch):
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def write(path, auths: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": auths}))


def test_challenges():
    assert parse_challenge('Basic realm="test-realm"') == ("basic", {"realm": "test-realm"})
    scheme, p = parse_challenge('Bearer realm="https://auth.invalid/token",service="reg",'
                                'scope="repository:a/b:pull,push"')
    assert scheme == "bearer"
    assert p == {"realm": "https://auth.invalid/token", "service": "reg", "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Bearer realm=http://auth.invalid/t, service="a \\"q\\" b"')[1] == {"realm": "http://auth.invalid/t", "service": 'a "q" b'}


def test_creds_option():
    c = parse_creds("user:pa:ss")
    assert (c.username, c.password) == ("user", "pa:ss")
    assert c.basic() == "Basic " + b64("user:pa:ss")
    for bad in ("nocolon", ":pw"):
        with pytest.raises(UsageError):
            parse_creds(bad)


def test_lookup_order_and_specific_keys(home, monkeypatch):
    host = "127.0.0.1:5000"
    assert find_credentials(host, "a/b") is None
    write(home / ".docker/config.json", {f"https://{host}": {"auth": b64("docker:1")}})
    assert find_credentials(host, "a/b").username == "docker"
    write(home / ".config/containers/auth.json", {host: {"auth": b64("podman:2")}})
    assert find_credentials(host, "a/b").username == "podman"
    run = home / "run"
    write(run / "containers/auth.json", {host: {"auth": b64("runtime:3")}, f"{host}/a": {"auth": b64("ns:4")}})
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    assert find_credentials(host, "a/b").username == "ns"  # host/namespace beats host
    assert find_credentials(host, "other").username == "runtime"
    explicit = home / "explicit.json"
    write(explicit, {host: {"auth": b64("explicit:5")}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(explicit))
    assert find_credentials(host, "a/b").username == "explicit"
    assert find_credentials(host, "a/b", parse_creds("cli:6")).username == "cli"
    assert find_credentials("other.example", "a/b") is None
    c = find_credentials(host, "a/b")
    assert (c.password, c.source) == ("5", str(explicit))


def test_broken_auth_files_are_usage_errors(home):
    write(home / ".docker/config.json", {"h:1": {"auth": "!!not base64!!"}})
    with pytest.raises(UsageError, match="base64"):
        find_credentials("h:1", "x")
    (home / ".docker/config.json").write_text("{broken")
    with pytest.raises(UsageError, match="auth file"):
        find_credentials("h:1", "x")
