"""Credentials and authentication challenges.

Credentials come from, in order: `--creds USER:PASS`; the containers auth
file (`REGISTRY_AUTH_FILE`, else `${XDG_RUNTIME_DIR}/containers/auth.json`,
else `~/.config/containers/auth.json`); docker's `config.json`
(`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`). Within a file the
most specific key wins: `host/ns/name`, `host/ns`, then `host` (also written
`https://<host>` or `https://<host>/v1/` by older docker logins). Credential
helpers (`credHelpers`, `credsStore`) are not run: rootfs never executes
programs named in a config file.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path

from rootfs.model.errors import UsageError


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    source: str  # for messages: "--creds" or the file it came from

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def parse_creds(text: str) -> Credentials:
    user, colon, password = text.partition(":")
    if not colon or not user:
        raise UsageError("--creds must be USER:PASSWORD")
    return Credentials(user, password, "--creds")


def auth_files() -> list[Path]:
    files: list[Path] = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    else:
        if os.environ.get("XDG_RUNTIME_DIR"):
            files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
        config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        files.append(Path(config) / "containers" / "auth.json")
    docker = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    files.append(Path(docker) / "config.json")
    return files


def _keys(host: str, name: str) -> list[str]:
    parts = name.split("/")
    keys = [f"{host}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)]
    return keys + [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]


def _decode(entry: dict, where: Path) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("auth"):
        try:
            raw = base64.b64decode(entry["auth"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise UsageError(f"{where}: an \"auth\" entry is not valid base64 of USER:PASSWORD") from None
        user, colon, password = raw.partition(":")
        if not colon:
            raise UsageError(f"{where}: an \"auth\" entry is not USER:PASSWORD")
        return user, password
    if entry.get("username"):
        return entry["username"], entry.get("password", "")
    return None


def find_credentials(host: str, name: str, explicit: Credentials | None = None) -> Credentials | None:
    if explicit is not None:
        return explicit
    for path in auth_files():
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the registry auth file {path}: {exc}") from None
        auths = data.get("auths") if isinstance(data, dict) else None
        if not isinstance(auths, dict):
            continue
        for key in _keys(host, name):
            found = _decode(auths.get(key), path)
            if found:
                return Credentials(found[0], found[1], str(path))
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://auth.invalid/token",service="reg",scope="x:y:pull,push"`
    -> ("bearer", {...}); quoted values may hold commas."""
    header = header.strip()
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq == -1:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            i += 1
            value = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(rest[i])
                i += 1
            i += 1
            params[key] = "".join(value)
        else:
            end = rest.find(",", i)
            end = n if end == -1 else end
            params[key] = rest[i:end].strip()
            i = end
    return scheme.lower(), params
