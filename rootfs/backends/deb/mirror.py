"""Which mirror to use: --mirror, the recipe, ROOTFS_MIRROR, then the host's
apt configuration for the same distribution, discovered at run time.

No mirror host name is written in rootfs: the host's apt sources already
name the mirror that this machine may reach. The sources files are read
directly (`apt-get indextargets` costs seconds), and the Origin of each
source comes from the Release file apt last downloaded for it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from rootfs.model.errors import UsageError

APT_ETC = Path("/etc/apt")
APT_LISTS = Path("/var/lib/apt/lists")


@dataclass(frozen=True)
class Source:
    uri: str
    suites: tuple[str, ...]


def _one_line_sources(text: str) -> list[Source]:
    found = []
    for line in text.splitlines():
        m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
        if m:
            found.append(Source(m.group(1), (m.group(2),)))
    return found


def _deb822_sources(text: str) -> list[Source]:
    found = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            found.append(Source(uri, tuple(fields.get("suites", "").split())))
    return found


def host_sources(etc: Path = APT_ETC) -> list[Source]:
    sources: list[Source] = []
    main = etc / "sources.list"
    parts = etc / "sources.list.d"
    files = [main] + (sorted(parts.glob("*.list")) + sorted(parts.glob("*.sources")) if parts.is_dir() else [])
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        sources += _deb822_sources(text) if f.suffix == ".sources" else _one_line_sources(text)
    return sources


def _list_name(uri: str, suite: str) -> str:
    """apt's file name in /var/lib/apt/lists for a source's Release file."""
    bare = re.sub(r"^[a-z+]+://", "", uri).rstrip("/")
    return f"{bare}/dists/{suite}/".replace("/", "_")


def _origin(uri: str, suite: str, lists: Path) -> str:
    for name in ("InRelease", "Release"):
        try:
            with open(lists / (_list_name(uri, suite) + name), errors="replace") as f:
                head = f.read(8192)
        except OSError:
            continue
        if head.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
            head = head.partition("\n\n")[2]  # past the armour headers
        for line in head.splitlines():
            if line.startswith("Origin:"):
                return line.split(":", 1)[1].strip()
            if not line.strip():
                break
    return ""


def host_mirror(distribution: str, origin: str = "", etc: Path = APT_ETC, lists: Path = APT_LISTS) -> str | None:
    """The first non-security mirror for `distribution` in the host's apt
    setup: by the Origin of its Release when apt has downloaded it, else by
    the last path component of its URI (…/debian, …/ubuntu)."""
    want = (origin or distribution).lower()
    by_path = None
    for src in host_sources(etc):
        if "security" in src.uri or any("security" in s for s in src.suites):
            continue
        origins = {_origin(src.uri, s, lists).lower() for s in src.suites} - {""}
        if want in origins:
            return src.uri
        if not origins and by_path is None and src.uri.rstrip("/").rsplit("/", 1)[-1] == distribution:
            by_path = src.uri
    return by_path


def choose_mirror(cli_mirror: str | None, recipe_mirror: str, distribution: str, origin: str = "") -> str:
    for value in (cli_mirror, recipe_mirror, os.environ.get("ROOTFS_MIRROR")):
        if value:
            return value.rstrip("/") + "/"
    found = host_mirror(distribution, origin)
    if found:
        return found.rstrip("/") + "/"
    raise UsageError(
        f"no mirror for {distribution or 'this recipe'}: pass --mirror URL, set ROOTFS_MIRROR, "
        "or configure one in apt's sources"
    )
