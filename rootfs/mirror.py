"""Which mirror to use: --mirror, the recipe, ROOTFS_MIRROR, then the host's
apt configuration for the same distribution, discovered at run time.

No mirror host name is written in rootfs: the host's apt sources already
name the mirror that this machine may reach.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from rootfs.errors import UsageError


def _from_indextargets(origin: str) -> list[str]:
    """Repository URIs apt knows, with the Origin of their Release file."""
    if not shutil.which("apt-get"):
        return []
    try:
        out = subprocess.run(
            ["apt-get", "indextargets", "--format", "$(REPO_URI)\t$(ORIGIN)\t$(SUITE)\t$(CODENAME)"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    uris = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        uri, org = parts[0], parts[1]
        suites = " ".join(parts[2:])
        if "security" in suites or "security" in uri:
            continue
        if org.lower() == origin.lower() and uri not in uris:
            uris.append(uri)
    return uris


def _from_sources(distribution: str) -> list[str]:
    """Fallback when apt has no lists yet: URIs from sources files whose path
    names the distribution (…/debian, …/ubuntu)."""
    files = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        files += sorted(d.glob("*.list")) + sorted(d.glob("*.sources"))
    uris: list[str] = []
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^\s*(?:deb\s+(?:\[[^\]]*\]\s+)?(\S+)|URIs:\s*(.+))", text, re.M):
            for uri in (m.group(1) or m.group(2) or "").split():
                path = uri.rstrip("/").rsplit("/", 1)[-1]
                if path == distribution and uri not in uris:
                    uris.append(uri)
    return uris


def host_mirror(distribution: str, origin: str = "") -> str | None:
    """The first non-security mirror for `distribution` in the host's apt setup."""
    candidates = _from_indextargets(origin or distribution.capitalize()) or _from_sources(distribution)
    return candidates[0] if candidates else None


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
