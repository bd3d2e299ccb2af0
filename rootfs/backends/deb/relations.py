"""Relation fields (Depends, Pre-Depends, Provides, Conflicts, Breaks).

A focused parser rather than python-debian's PkgRelation: the resolver parses
the fields of every package it visits and every Provides in the archive, and
binary indices never carry the build-profile syntax PkgRelation exists for.
Architecture restrictions ("[amd64]") are still understood, for robustness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rootfs.model.errors import ResolveError

_REL = re.compile(
    r"""^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9+.\-_]*)
        (?::(?P<archqual>[A-Za-z0-9\-]+))?
        \s*(?:\(\s*(?P<op><<|<=|>=|>>|=|<|>)\s*(?P<version>[^)\s]+)\s*\))?
        \s*(?:\[(?P<arches>[^\]]*)\])?
        \s*(?:<[^>]*>\s*)*$""",
    re.X,
)


@dataclass(frozen=True)
class Alt:
    """One alternative of a relation: name[:archqual] [(op version)]."""

    name: str
    archqual: str = ""
    op: str = ""
    version: str = ""

    def __str__(self) -> str:
        s = self.name + (f":{self.archqual}" if self.archqual else "")
        return s + (f" ({self.op} {self.version})" if self.op else "")


Relation = tuple[Alt, ...]  # alternatives, "a | b"


def _arch_ok(arches: str | None, arch: str) -> bool:
    if not arches:
        return True
    items = arches.split()
    negated = [a[1:] for a in items if a.startswith("!")]
    if negated:
        return arch not in negated
    return arch in items


def parse_relations(text: str, arch: str = "", where: str = "") -> list[Relation]:
    """`a (>= 1) | b, c:any` -> [(Alt a >= 1, Alt b), (Alt c any)].

    Alternatives restricted away from `arch` are dropped; a relation left
    with none is dropped too, as dpkg does."""
    out: list[Relation] = []
    if not text or not text.strip():
        return out
    for group in text.split(","):
        if not group.strip():
            continue
        alts = []
        for alt in group.split("|"):
            m = _REL.match(alt)
            if m is None:
                raise ResolveError(f"cannot parse the relation {alt.strip()!r}{' in ' + where if where else ''}")
            if not _arch_ok(m["arches"], arch):
                continue
            alts.append(Alt(m["name"], m["archqual"] or "", m["op"] or "", m["version"] or ""))
        if alts:
            out.append(tuple(alts))
    return out


def parse_provides(text: str) -> list[tuple[str, str]]:
    """Provides entries as (name, version or ""); only "=" is allowed there."""
    out = []
    if not text:
        return out
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, rest = item.partition("(")
        name = name.strip().split(":", 1)[0]
        version = ""
        if rest:
            version = rest.rstrip(") ").lstrip("= ").strip()
        out.append((name, version))
    return out
