"""comps.xml: package groups (`@core`) and environments (`@^minimal-environment`).

A repository names its comps file in repomd.xml as `group` (or compressed,
`group_gz`); it has been checked against that checksum before it is parsed
here. Groups and environments of several repositories with the same id are
merged, as libcomps merges them for dnf.
"""

from __future__ import annotations

import fnmatch
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import IO

from rootfs.model.errors import VerifyError

# What `@group` installs without `/types`: dnf's group_package_types.
DEFAULT_TYPES = ("mandatory", "default", "conditional")
TYPES = ("mandatory", "default", "optional", "conditional")


@dataclass(frozen=True)
class GroupPackage:
    name: str
    type: str  # mandatory, default, optional or conditional
    requires: str = ""  # conditional: installed only with this package
    basearchonly: bool = False


@dataclass
class Group:
    id: str
    name: str
    packages: list[GroupPackage] = field(default_factory=list)


@dataclass
class Environment:
    id: str
    name: str
    groups: list[str] = field(default_factory=list)  # installed with the environment
    optional: list[str] = field(default_factory=list)  # offered, not installed


@dataclass
class Comps:
    groups: dict[str, Group] = field(default_factory=dict)
    environments: dict[str, Environment] = field(default_factory=dict)

    def merge(self, other: Comps) -> None:
        for gid, g in other.groups.items():
            mine = self.groups.setdefault(gid, Group(gid, g.name))
            mine.packages.extend(p for p in g.packages if p not in mine.packages)
        for eid, e in other.environments.items():
            env = self.environments.setdefault(eid, Environment(eid, e.name))
            env.groups.extend(x for x in e.groups if x not in env.groups)
            env.optional.extend(x for x in e.optional if x not in env.optional)

    def find_groups(self, pattern: str) -> list[Group]:
        return _by_pattern(pattern, self.groups)

    def find_environments(self, pattern: str) -> list[Environment]:
        return _by_pattern(pattern, self.environments)


def _by_pattern(pattern: str, items: dict) -> list:
    """dnf's matching: an exact id or name, else a case-insensitive glob on
    either."""
    exact = [x for x in items.values() if pattern in (x.id, x.name)]
    if exact:
        return exact
    match = re.compile(fnmatch.translate(pattern), re.I).match
    return [x for x in items.values() if match(x.id) or (x.name and match(x.name))]


def _untranslated(el: ET.Element, tag: str) -> str:
    for child in el.findall(tag):
        if not child.get("{http://www.w3.org/XML/1998/namespace}lang"):
            return (child.text or "").strip()
    return ""


def parse_comps(stream: IO[bytes], where: str) -> Comps:
    try:
        root = ET.parse(stream).getroot()
    except (ET.ParseError, ValueError, LookupError) as exc:  # also: an encoding expat cannot read
        raise VerifyError(f"{where} is not valid XML: {exc}") from None
    out = Comps()
    for g in root.iter("group"):
        gid = (g.findtext("id") or "").strip()
        if not gid:
            continue
        group = Group(gid, _untranslated(g, "name"))
        for req in g.iter("packagereq"):
            kind = req.get("type", "mandatory")
            name = (req.text or "").strip()
            if name and kind in TYPES:
                group.packages.append(GroupPackage(name, kind, req.get("requires", ""),
                                                   req.get("basearchonly", "false").lower() == "true"))
        out.merge(Comps(groups={gid: group}))
    for e in root.iter("environment"):
        eid = (e.findtext("id") or "").strip()
        if not eid:
            continue
        env = Environment(eid, _untranslated(e, "name"))
        for lst, dest in (("grouplist", env.groups), ("optionlist", env.optional)):
            for node in e.findall(lst):
                dest.extend((x.text or "").strip() for x in node.findall("groupid") if (x.text or "").strip())
        out.merge(Comps(environments={eid: env}))
    return out
