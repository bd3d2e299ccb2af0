"""The [rpm] section of a recipe: rpm-md repositories and the request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rootfs.model.arch import host_architecture
from rootfs.model.recipe import Recipe


@dataclass(frozen=True)
class RpmSettings:
    repos: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    gpgkey: str = ""
    weak_deps: bool = False
    repo_gpgcheck: bool = False  # dnf's name and default: repomd.xml's signature is checked too


SECTION_KEYS = {
    "repos": list,
    "packages": list,
    "gpgkey": str,
    "weak_deps": bool,
    "repo_gpgcheck": bool,
}


def parse(table: dict, where: str, recipe) -> RpmSettings:
    return RpmSettings(
        repos=tuple(table.get("repos", [])),
        packages=tuple(table.get("packages", [])),
        gpgkey=table.get("gpgkey", ""),
        weak_deps=table.get("weak_deps", False),
        repo_gpgcheck=table.get("repo_gpgcheck", False),
    )


def adhoc_recipe(name: str, arch: str | None, repos: Iterable[str], packages: Iterable[str], **settings) -> Recipe:
    """A recipe made from the command line: `--repo URL PACKAGE...`."""
    return Recipe(name=name, backend="rpm", distribution="", suite="",
                  architecture=arch or host_architecture("rpm"),
                  settings=RpmSettings(repos=tuple(repos), packages=tuple(packages), **settings))
