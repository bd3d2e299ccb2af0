"""apt's choice among several sources: pin priorities and candidates.

The rules are apt's (apt_preferences(5); apt-pkg/policy.cc and
depcache.cc), for a root where nothing is installed yet:

- Each source has a priority: the one its entry gives, else 500, or 1 for
  a Release that says "NotAutomatic: yes" (experimental), or 100 for one
  that says "ButAutomaticUpgrades: yes" (backports say both).
- A version's priority is the highest among the sources that offer it.
- The candidate of a name is, among its versions of priority 1 or more,
  the one with the highest priority; between equal priorities, the
  higher version. So a package only experimental has is still its
  candidate, and a source at priority 0 or below never gives one.
- `pkg=version` makes that version the candidate. `pkg/suite` makes the
  suite's highest version the candidate and, where a Depends or
  Pre-Depends of it is not met by the current candidates, switches the
  dependency's candidate to the same suite's version when that one meets
  it, recursively ("Selected version ... because of ...").
- The resolver installs candidates only: a dependency its candidate does
  not satisfy is an error, as it is for apt.
"""

from __future__ import annotations

from dataclasses import dataclass

from rootfs.backends.deb.index import _FIELDS, Index, Package, field_matches
from rootfs.backends.deb.relations import Alt, parse_provides, parse_relations
from rootfs.backends.deb.version import compare, satisfies
from rootfs.model.errors import ResolveError

DEFAULT_PRIORITY = 500
NOT_AUTOMATIC = 1
BUT_AUTOMATIC_UPGRADES = 100


def default_priority(not_automatic: bool, but_automatic_upgrades: bool) -> int:
    # apt's InitDefaults looks at ButAutomaticUpgrades first, with or
    # without NotAutomatic.
    if but_automatic_upgrades:
        return BUT_AUTOMATIC_UPGRADES
    return NOT_AUTOMATIC if not_automatic else DEFAULT_PRIORITY


@dataclass
class PoolSource:
    """One source's index in the pool, with its priority and the names
    `pkg/suite` may call it by (the suite asked for, the Release's Suite
    and Codename)."""

    index: Index
    priority: int = DEFAULT_PRIORITY
    names: tuple[str, ...] = ()
    label: str = ""  # for messages: "URI SUITE"

    @property
    def id(self) -> str:
        return self.index.repository


@dataclass(frozen=True)
class Selection:
    """A candidate chosen on request rather than by priority."""

    package: Package
    suite: str = ""  # pkg/suite
    because_of: str = ""  # the package whose dependency made the switch


class Pool:
    """The packages of every source, seen as apt sees them: one candidate
    per name."""

    def __init__(self, sources: list[PoolSource], architecture: str):
        self.sources = sources
        self.architecture = architecture
        self._by_id = {s.id: s for s in sources}
        self._versions: dict[str, list[tuple[Package, int]]] = {}
        self._candidates: dict[str, Package | None] = {}
        self._chosen: dict[str, Package] = {}  # pkg=version, pkg/suite
        self.selections: list[Selection] = []

    @classmethod
    def of(cls, index: Index) -> Pool:
        """A pool of one index at the default priority."""
        return cls([PoolSource(index, DEFAULT_PRIORITY, (), index.repository)], index.architecture)

    # -- versions and candidates ----------------------------------------------

    def versions(self, name: str) -> list[tuple[Package, int]]:
        """Every installable version of name, highest first, each once, with
        its priority (the highest of the sources offering it; the package
        kept is the one from that source, the first on equal priority)."""
        got = self._versions.get(name)
        if got is not None:
            return got
        best: dict[str, tuple[Package, int]] = {}
        order: list[str] = []
        for src in self.sources:
            for p in src.index.packages(name):
                seen = best.get(p.version)
                if seen is None:
                    best[p.version] = (p, src.priority)
                    order.append(p.version)
                elif src.priority > seen[1]:
                    best[p.version] = (p, src.priority)
        from functools import cmp_to_key

        order.sort(key=cmp_to_key(compare), reverse=True)
        got = self._versions[name] = [best[v] for v in order]
        return got

    def has(self, name: str) -> bool:
        """Whether any source has a real package of this name."""
        return bool(self.versions(name))

    def candidate(self, name: str) -> Package | None:
        chosen = self._chosen.get(name)
        if chosen is not None:
            return chosen
        if name in self._candidates:
            return self._candidates[name]
        cand, cand_prio = None, 0
        for p, prio in self.versions(name):
            if prio > cand_prio:
                cand, cand_prio = p, prio
        self._candidates[name] = cand
        return cand

    def priority_of(self, p: Package) -> int:
        for q, prio in self.versions(p.name):
            if q.version == p.version:
                return prio
        return 0

    def source_of(self, p: Package) -> PoolSource | None:
        return self._by_id.get(p.repository)

    def describe(self, p: Package) -> str:
        """`name version (from SOURCE, priority N)` for messages."""
        src = self.source_of(p)
        if src is None or not src.label:
            return f"{p.name} {p.version}"
        return f"{p.name} {p.version} (from {src.label}, priority {self.priority_of(p)})"

    # -- lookups the resolver makes ---------------------------------------------

    def providers(self, name: str) -> list[tuple[Package, str]]:
        """(candidate, provided version) of every name whose candidate
        provides name."""
        names: set[str] = set()
        for src in self.sources:
            names.update(src.index.provider_names(name))
        out = []
        for pname in sorted(names):
            cand = self.candidate(pname)
            if cand is None:
                continue
            for vname, version in parse_provides(cand.provides):
                if vname == name:
                    out.append((cand, version))
        return out

    def with_field(self, field_name: str, value: str) -> list[str]:
        """Names whose candidate says `field_name: value` (Priority:
        required, Essential: yes): the candidate's own fields decide."""
        attr = _FIELDS[field_name]
        names: set[str] = set()
        for src in self.sources:
            names.update(src.index.names_mentioning(field_name, value))
        return sorted(n for n in names if (c := self.candidate(n)) is not None and field_matches(c, attr, value))

    def stanzas(self) -> int:
        return sum(s.index.stanzas for s in self.sources)

    # -- requests: pkg=version and pkg/suite ------------------------------------

    def _from_suite(self, name: str, suite: str) -> Package | None:
        """The highest version of name in the sources called suite."""
        best = None
        for src in self.sources:
            if suite in src.names:
                pkgs = src.index.packages(name)
                if pkgs and (best is None or compare(pkgs[0].version, best.version) > 0):
                    best = pkgs[0]
        return best

    def knows_suite(self, suite: str) -> bool:
        return any(suite in s.names for s in self.sources)

    def choose_version(self, name: str, version: str) -> Package:
        for p, _ in self.versions(name):
            if p.version == version:
                self._chosen[name] = p
                self.selections.append(Selection(p))
                return p
        if not self.has(name):
            raise ResolveError(f'cannot satisfy "{name}={version}": no such package in the sources')
        have = ", ".join(p.version for p, _ in self.versions(name))
        raise ResolveError(f"version {version} of {name} was not found (the sources have {have})")

    def choose_suite(self, name: str, suite: str) -> Package:
        if not self.knows_suite(suite):
            known = ", ".join(sorted({n for s in self.sources for n in s.names}))
            raise ResolveError(f'release {suite!r} for {name} was not found (the sources are {known})')
        p = self._from_suite(name, suite)
        if p is None:
            raise ResolveError(f"{name} is not in {suite}")
        self._select_release(p, suite, [], because_of="")
        return p

    def _installable(self, p: Package) -> bool:
        """Every Pre-Depends and Depends of p met by some current candidate
        (apt's DepCandMin: one level deep)."""
        for rel in _relations(p, self.architecture):
            if not any(self._met_by_candidate(alt) for alt in rel):
                return False
        return True

    def _met_by_candidate(self, alt: Alt) -> bool:
        cand = self.candidate(alt.name)
        if cand is not None and (not alt.op or satisfies(cand.version, alt.op, alt.version)):
            return True
        for q, version in self.providers(alt.name):
            if not alt.op or (version and satisfies(version, alt.op, alt.version)):
                return True
        return False

    def _select_release(self, ver: Package, suite: str, changed: list[str], because_of: str) -> bool:
        """apt's pkgDepCache::SetCandidateRelease: make ver the candidate and
        switch the candidates of its unmet dependencies to suite's versions."""
        previous = self._chosen.get(ver.name)
        self._chosen[ver.name] = ver
        mark = len(changed)
        self.selections.append(Selection(ver, suite, because_of))
        undo_sel = len(self.selections) - 1
        for rel in _relations(ver, self.architecture):
            fine = False
            for alt in rel:
                if not self.has(alt.name) and not self.providers(alt.name):
                    continue
                cand = self.candidate(alt.name)
                if not alt.op:
                    if cand is not None and self._installable(cand):
                        fine = True
                        break
                    if cand is None and any(self._installable(q) for q, _ in self.providers(alt.name)):
                        fine = True
                        break
                    continue
                if cand is not None and satisfies(cand.version, alt.op, alt.version) and self._installable(cand):
                    fine = True
                    break
            if fine:
                continue
            for alt in rel:
                if not alt.op:
                    continue
                v = self._from_suite(alt.name, suite)
                if v is None or not satisfies(v.version, alt.op, alt.version):
                    continue
                cand = self.candidate(alt.name)
                if cand is not None and cand.version == v.version and alt.name in changed:
                    fine = True
                    break
                changed.append(alt.name)
                old = self._chosen.get(alt.name)
                if not self._select_release(v, suite, changed, because_of=ver.name):
                    changed.pop()
                    self._restore(alt.name, old)
                    continue
                fine = True
                break
            if not fine:
                # Undo what this call switched; apt then leaves the broken
                # dependency to the resolver, which reports it.
                for name in changed[mark:]:
                    self._chosen.pop(name, None)
                del changed[mark:]
                del self.selections[undo_sel + 1:]
                if because_of:
                    self._restore(ver.name, previous)
                    del self.selections[undo_sel:]
                return False
        return True

    def _restore(self, name: str, previous: Package | None) -> None:
        if previous is None:
            self._chosen.pop(name, None)
        else:
            self._chosen[name] = previous


def _relations(p: Package, arch: str):
    rels = p._relations.get(arch)
    if rels is None:
        where = f"{p.name} {p.version}"
        rels = parse_relations(p.pre_depends, arch, where) + parse_relations(p.depends, arch, where)
        p._relations[arch] = rels
    return rels
