"""Which mirrors to use: --mirror, the recipe, ROOTFS_MIRROR, then the host's
apt configuration for the same distribution, discovered at run time; the
same for the security mirror (--security-mirror, ROOTFS_SECURITY_MIRROR).

No mirror host name is written in rootfs: the host's apt sources already
name the mirror that this machine may reach. The sources files are read
directly (`apt-get indextargets` costs seconds), and the Origin and Label
of each source come from the Release file apt last downloaded for it.
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


def _release_fields(uri: str, suite: str, lists: Path) -> dict[str, str]:
    """Origin and Label of the Release apt last downloaded for uri/suite."""
    for name in ("InRelease", "Release"):
        try:
            with open(lists / (_list_name(uri, suite) + name), errors="replace") as f:
                head = f.read(8192)
        except OSError:
            continue
        if head.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
            head = head.partition("\n\n")[2]  # past the armour headers
        found = {}
        for line in head.splitlines():
            if not line.strip():
                break
            key, sep, value = line.partition(":")
            if sep and key in ("Origin", "Label"):
                found[key] = value.strip()
        return found
    return {}


def _is_security(label: str) -> bool:
    # Debian's security archive is labelled "Debian-Security"; a
    # derivative's own security archive follows the same pattern.
    return label.lower().endswith("-security")


def host_mirror(distribution: str, origin: str = "", etc: Path = APT_ETC, lists: Path = APT_LISTS,
                *, security: bool = False) -> str | None:
    """The first mirror for `distribution` in the host's apt setup: by the
    Origin (and, for the security mirror, the "-Security" Label) of its
    Release when apt has downloaded it, else by the last path component of
    its URI (…/debian, …/debian-security)."""
    want = (origin or distribution).lower()
    path_name = f"{distribution}-security" if security else distribution
    by_path = None
    for src in host_sources(etc):
        releases = [_release_fields(src.uri, s, lists) for s in src.suites]
        releases = [r for r in releases if r]
        if releases:
            if any(r.get("Origin", "").lower() == want and _is_security(r.get("Label", "")) == security
                   for r in releases):
                return src.uri
            continue
        if security != ("security" in src.uri or any("security" in s for s in src.suites)):
            continue
        if by_path is None and src.uri.rstrip("/").rsplit("/", 1)[-1] == path_name:
            by_path = src.uri
    return by_path


def _first(*values: str | None) -> str:
    for value in values:
        if value:
            return value.rstrip("/") + "/"
    return ""


def choose_mirror(cli_mirror: str | None, recipe_mirror: str, distribution: str, origin: str = "") -> str:
    found = _first(cli_mirror, recipe_mirror, os.environ.get("ROOTFS_MIRROR"))
    if found:
        return found
    found = _first(host_mirror(distribution, origin))
    if found:
        return found
    raise UsageError(
        f"no mirror for {distribution or 'this recipe'}: pass --mirror URL, set ROOTFS_MIRROR, "
        "or configure one in apt's sources"
    )


def choose_security_mirror(recipe_mirror: str, distribution: str, origin: str = "") -> tuple[str, str]:
    """(URL, "") or ("", why there is none): the recipe's (or
    --security-mirror), ROOTFS_SECURITY_MIRROR, then the host's apt."""
    found = _first(recipe_mirror, os.environ.get("ROOTFS_SECURITY_MIRROR"),
                   host_mirror(distribution, origin, security=True))
    if found:
        return found, ""
    return "", (f"no security mirror for {distribution or 'this recipe'}: pass --security-mirror URL, "
                "set ROOTFS_SECURITY_MIRROR, configure one in apt's sources, or build without the "
                "update suites (--no-updates)")
