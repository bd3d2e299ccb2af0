"""Modular repositories: what dnf hides when no module is enabled by hand.

A repository with `modules` metadata (modules.yaml: modulemd documents
listing each stream's packages, modulemd-defaults naming default streams)
carries packages that belong to module streams. dnf only offers those of
enabled streams, which without user action are the default streams, and a
package of an enabled stream hides the non-modular packages of the same
name. CentOS Stream 9's AppStream, for one, ships nodejs 20 and php 8.2
only as non-default streams, so `nodejs` there means the non-modular one.

Stream dependencies and contexts are not followed: a default stream's
packages are offered whatever it requires.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from rootfs.model.errors import VerifyError


@dataclass
class ModularFilter:
    hidden: set[str] = field(default_factory=set)  # NEVRAs of streams that are not enabled
    masked: set[str] = field(default_factory=set)  # names that enabled streams take over

    def merge(self, other: "ModularFilter") -> None:
        self.hidden |= other.hidden
        self.masked |= other.masked

    def keeps(self, nevra: str, name: str, modular: set[str]) -> bool:
        if nevra in self.hidden:
            return False
        return nevra in modular or name not in self.masked


def _name_of(nevra: str) -> str:
    # name-epoch:version-release.arch: the name ends before the last two dashes.
    return nevra.rsplit("-", 2)[0]


def parse_modules(stream: IO[bytes], where: str) -> tuple[ModularFilter, set[str]]:
    """(the filter, every modular NEVRA) of one modules.yaml."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        docs = [d for d in yaml.load_all(stream, Loader=loader) if isinstance(d, dict)]
    except yaml.YAMLError as exc:
        raise VerifyError(f"{where} is not valid YAML: {exc}") from None
    defaults: dict[str, str] = {}
    streams: list[tuple[str, str, list[str]]] = []
    for doc in docs:
        data = doc.get("data") or {}
        if not isinstance(data, dict):
            raise VerifyError(f"{where} has a {doc.get('document')!s:.40} document whose data is not a mapping")
        if doc.get("document") == "modulemd-defaults" and data.get("stream") is not None:
            defaults[str(data.get("module"))] = str(data["stream"])
        elif doc.get("document") == "modulemd":
            artifacts = data.get("artifacts") or {}
            rpms = (artifacts.get("rpms") or []) if isinstance(artifacts, dict) else []
            if not isinstance(rpms, list):
                raise VerifyError(f"{where} has a module whose artifacts are not a list")
            streams.append((str(data.get("name")), str(data.get("stream")), [str(r) for r in rpms]))
    out = ModularFilter()
    modular: set[str] = set()
    for name, stream_name, rpms in streams:
        modular.update(rpms)
        if defaults.get(name) == stream_name:
            out.masked.update(_name_of(r) for r in rpms if not r.endswith((".src", ".nosrc")))
        else:
            out.hidden.update(rpms)
    # A package listed by both a default and another stream stays offered.
    for name, stream_name, rpms in streams:
        if defaults.get(name) == stream_name:
            out.hidden.difference_update(rpms)
    return out, modular


def nevra_key(name: str, epoch: str, version: str, release: str, arch: str) -> str:
    """The NEVRA as modulemd artifacts spell it (the epoch always given)."""
    return f"{name}-{epoch or '0'}:{version}-{release}.{arch}"


def apply(packages: Iterable, filt: ModularFilter, modular: set[str]) -> list:
    return [p for p in packages
            if filt.keeps(nevra_key(p.name, p.epoch, p.version, p.release, p.arch), p.name, modular)]
