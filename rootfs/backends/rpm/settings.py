"""The [rpm] section of a recipe: rpm-md repositories and the request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rootfs.model.arch import host_architecture
from rootfs.model.errors import UsageError
from rootfs.model.recipe import Recipe


@dataclass(frozen=True)
class RpmSettings:
    repos: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    gpgkey: str = ""
    weak_deps: bool = False  # dnf's install_weak_deps (dnf's default is on; images want it off)
    modules: tuple[str, ...] = ()  # module streams to enable, "name:stream"
    best: bool = False  # dnf's best: the newest version of each request, or fail
    nodeps: bool = False  # exactly the requested packages, no dependencies
    repo_gpgcheck: bool = False  # dnf's name and default: repomd.xml's signature is checked too


SECTION_KEYS = {
    "repos": list,
    "packages": list,
    "gpgkey": str,
    "weak_deps": bool,
    "modules": list,
    "best": bool,
    "nodeps": bool,
    "repo_gpgcheck": bool,
}


def check_modules(streams: Iterable[str], where: str) -> tuple[str, ...]:
    out = []
    for s in streams:
        name, _, stream = str(s).partition(":")
        if not name or not stream or ":" in stream or "/" in s:
            raise UsageError(f"{where}: modules entries are name:stream (as in \"nodejs:20\"), not {s!r}")
        out.append(f"{name}:{stream}")
    names = [s.partition(":")[0] for s in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise UsageError(f"{where}: modules names two streams of {dup}; a module has one enabled stream")
    return tuple(out)


def parse(table: dict, where: str, recipe) -> RpmSettings:
    return RpmSettings(
        repos=tuple(table.get("repos", [])),
        packages=tuple(table.get("packages", [])),
        gpgkey=table.get("gpgkey", ""),
        weak_deps=table.get("weak_deps", False),
        modules=check_modules(table.get("modules", []), f"{where} [rpm]"),
        best=table.get("best", False),
        nodeps=table.get("nodeps", False),
        repo_gpgcheck=table.get("repo_gpgcheck", False),
    )


def adhoc_recipe(name: str, arch: str | None, repos: Iterable[str], packages: Iterable[str], **settings) -> Recipe:
    """A recipe made from the command line: `--repo URL PACKAGE...`."""
    return Recipe(name=name, backend="rpm", distribution="", suite="",
                  architecture=arch or host_architecture("rpm"),
                  settings=RpmSettings(repos=tuple(repos), packages=tuple(packages), **settings))
