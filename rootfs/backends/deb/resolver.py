"""Choosing the package set: debootstrap's variants and closure, done right.

debootstrap follows only the first alternative of each dependency, ignores
versions and drops virtual names. This resolver keeps its answers for the
archive's own base sets but also honours version relations, Provides
(versioned too), Multi-Arch qualifiers and excluded packages:

- Hard (single-alternative) relations are followed first, breadth-first;
  relations with alternatives are deferred until no hard work is left, so
  "a | b" can be satisfied by something the hard closure already chose
  instead of pulling in a, as apt would.
- Otherwise the first alternative that can be satisfied wins; for a name,
  its candidate (rootfs.backends.deb.policy: apt's choice among the
  sources by pin priority, then version), which must meet the relation,
  as apt requires; for a virtual name, the provider whose candidate
  provides it, with the best Priority, then by name.
- One version per package name. Everything is processed in a fixed order,
  so the same indices give the same set.
- Conflicts and Breaks inside the chosen set are a ResolveError listing
  them (debootstrap ignores them and leaves dpkg to fail half-way through
  stage 2); a package conflicting with a virtual name it provides itself is
  the "one provider at a time" idiom and is not a clash.

On bookworm this gives exactly debootstrap's sets for minbase, buildd and
the default variant (tests/test_deb_mirror_resolve.py).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from rootfs.backends.deb.index import Index, Package
from rootfs.backends.deb.policy import Pool
from rootfs.backends.deb.relations import Alt, Relation, parse_provides, parse_relations
from rootfs.backends.deb.settings import VARIANTS
from rootfs.backends.deb.version import satisfies
from rootfs.model.errors import ResolveError, UsageError

_PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}
REQUESTED = "(requested)"


@dataclass(frozen=True)
class Request:
    roots: tuple[str, ...]
    exclude: frozenset[str] = frozenset()
    # Names never pulled in as dependencies, though they may be roots
    # (debootstrap's EXCLUDE_DEPENDENCY, e.g. usrmerge on bookworm).
    never_pull: frozenset[str] = frozenset()


@dataclass
class Resolution:
    packages: list[Package]
    warnings: list[str] = field(default_factory=list)
    parents: dict[str, str] = field(default_factory=dict)  # why each package is in


def _pool(source: Pool | Index) -> Pool:
    return source if isinstance(source, Pool) else Pool.of(source)


@dataclass(frozen=True)
class Wanted:
    """One --include item: `pkg`, `pkg=version` or `pkg/suite` (apt's forms)."""

    name: str
    version: str = ""
    suite: str = ""

    def __str__(self) -> str:
        return self.name + (f"={self.version}" if self.version else "") + (f"/{self.suite}" if self.suite else "")


def parse_wanted(spec: str) -> Wanted:
    name, eq, version = spec.partition("=")
    suite = ""
    if not eq:
        name, _, suite = spec.partition("/")
    if not name or (eq and not version) or ("/" in version) or ("/" in spec and not suite and not eq):
        raise UsageError(f"cannot read the package request {spec!r} (pkg, pkg=version or pkg/suite)")
    return Wanted(name, version, suite)


def parse_requests(include=(), exclude=()) -> dict[str, Wanted]:
    """The include items by name; contradictions are refused."""
    wanted: dict[str, Wanted] = {}
    for spec in include:
        w = parse_wanted(spec)
        prev = wanted.get(w.name)
        if prev is not None and prev != w:
            raise UsageError(f"{w.name} is asked for twice, as {prev} and as {w}")
        wanted[w.name] = w
    both = sorted(set(wanted) & set(exclude))
    if both:
        raise UsageError(f"{', '.join(both)} is both included and excluded")
    return wanted


def choose_requested(source: Pool | Index, include=(), exclude=()) -> tuple[str, ...]:
    """Apply the include items' version and suite choices to the pool's
    candidates; the names asked for."""
    pool = _pool(source)
    wanted = parse_requests(include, exclude)
    # Versions first, then suites: a suite's dependency walk sees every
    # version the user fixed.
    for w in wanted.values():
        if w.version:
            pool.choose_version(w.name, w.version)
    for w in wanted.values():
        if w.suite:
            pool.choose_suite(w.name, w.suite)
    return tuple(wanted)


def variant_request(source: Pool | Index, variant: str, include=(), exclude=(), https: bool = False) -> Request:
    """The roots debootstrap starts from for a variant, plus the recipe's
    include, minus its exclude. `https`: the mirror is an https:// URL.
    Include items may be `pkg=version` or `pkg/suite` (see choose_requested)."""
    pool = _pool(source)
    include = choose_requested(pool, include, exclude)
    if variant == "essential":
        roots = pool.with_field("Essential", "yes")
    elif variant in ("minbase", "buildd"):
        roots = pool.with_field("Priority", "required") + ["apt"]
        if variant == "buildd":
            roots.append("build-essential")
    elif variant == "default":
        roots = pool.with_field("Priority", "required") + pool.with_field("Priority", "important")
    else:
        raise UsageError(f"unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
    if https and variant != "essential":
        # As debootstrap does: the image's apt must be able to talk to the
        # https mirror it was built from; an apt older than 1.5 (one that
        # does not provide apt-transport-https itself) needs the transport.
        roots.append("ca-certificates")
        apt = pool.candidate("apt")
        if apt is not None and "apt-transport-https" not in apt.provides and pool.candidate("apt-transport-https"):
            roots.append("apt-transport-https")
    # The root is set up merged-/usr (or flagged as deliberately unmerged)
    # at install time, so the live-migration package usrmerge, which drags in
    # perl, is never wanted as a dependency (debootstrap's
    # EXCLUDE_DEPENDENCY). bookworm's "usrmerge | usr-is-merged" then falls
    # through to usr-is-merged, which debootstrap has to add by name because
    # it only ever looks at first alternatives.
    never = {"usrmerge"}
    ex = frozenset(exclude)
    wanted = sorted((set(roots) | set(include)) - ex)
    return Request(tuple(wanted), ex, frozenset(never))


class _State:
    def __init__(self, pool: Pool, request: Request):
        self.pool = pool
        self.arch = pool.architecture
        self.request = request
        self.chosen: dict[str, Package] = {}
        self.parent: dict[str, str] = {}
        self.provided: dict[str, list[tuple[Package, str]]] = {}
        self.queue: deque[str] = deque()
        self.deferred: deque[tuple[str, Relation]] = deque()
        self.warnings: list[str] = []

    # -- matching -----------------------------------------------------------

    def _arch_ok(self, p: Package, alt: Alt) -> bool:
        q = alt.archqual
        if not q:
            return True
        if q == "any":
            return p.multi_arch == "allowed"
        return q in (self.arch, "native") and p.architecture in (self.arch, "all")

    def _real_ok(self, p: Package, alt: Alt) -> bool:
        return self._arch_ok(p, alt) and (not alt.op or satisfies(p.version, alt.op, alt.version))

    def _provided_ok(self, p: Package, version: str, alt: Alt) -> bool:
        if alt.archqual and alt.archqual not in (self.arch, "native", "any"):
            return False
        if alt.archqual == "any" and p.multi_arch != "allowed":
            return False
        if not alt.op:
            return True
        # Only a versioned Provides can satisfy a versioned relation.
        return bool(version) and satisfies(version, alt.op, alt.version)

    def satisfied(self, alt: Alt) -> bool:
        p = self.chosen.get(alt.name)
        if p is not None and self._real_ok(p, alt):
            return True
        return any(self._provided_ok(q, v, alt) for q, v in self.provided.get(alt.name, ()))

    def pick(self, alt: Alt, excluded_hits: list[str], unmet: list[str] | None = None) -> Package | None:
        """The package to add for alt, or None. Names already chosen are not
        candidates (they did not satisfy alt, and a name has one version).
        A name's candidate that does not meet alt goes into `unmet`."""
        skip = self.request.exclude | self.request.never_pull
        if alt.name not in self.chosen:
            if alt.name in skip:
                if self.pool.has(alt.name):
                    excluded_hits.append(alt.name)
            else:
                cand = self.pool.candidate(alt.name)
                if cand is not None:
                    if self._real_ok(cand, alt):
                        return cand
                    if unmet is not None:
                        unmet.append(f"the candidate is {self.pool.describe(cand)}")
        providers = []
        for p, version in self.pool.providers(alt.name):
            if p.name in self.chosen or not self._provided_ok(p, version, alt):
                continue
            if p.name in skip:
                excluded_hits.append(p.name)
                continue
            providers.append(p)
        if providers:
            providers.sort(key=lambda p: (_PRIORITY_RANK.get(p.priority, 5), p.name))
            return providers[0]
        return None

    # -- the closure --------------------------------------------------------

    def add(self, p: Package, parent: str) -> None:
        self.chosen[p.name] = p
        self.parent[p.name] = parent
        for vname, version in parse_provides(p.provides):
            self.provided.setdefault(vname, []).append((p, version))
        self.queue.append(p.name)

    def chain(self, name: str) -> str:
        links = [name]
        seen = {name}
        while True:
            parent = self.parent.get(links[-1], REQUESTED)
            links.append(parent)
            if parent == REQUESTED or parent in seen:
                break
            seen.add(parent)
        return " <- ".join(links)

    def relations(self, p: Package) -> list[Relation]:
        rels = p._relations.get(self.arch)
        if rels is None:
            where = f"{p.name} {p.version}"
            rels = parse_relations(p.pre_depends, self.arch, where) + parse_relations(p.depends, self.arch, where)
            p._relations[self.arch] = rels
        return rels

    def handle(self, owner: str, rel: Relation, may_defer: bool) -> None:
        if any(self.satisfied(alt) for alt in rel):
            return
        if may_defer and len(rel) > 1:
            self.deferred.append((owner, rel))
            return
        excluded_hits: list[str] = []
        unmet: list[str] = []
        for alt in rel:
            p = self.pick(alt, excluded_hits, unmet)
            if p is not None:
                self.add(p, owner)
                return
        text = " | ".join(str(a) for a in rel)
        if excluded_hits:
            self.warnings.append(
                f'"{text}" needed by {owner} is left unsatisfied because '
                f"{', '.join(sorted(set(excluded_hits)))} is excluded"
            )
            return
        clash = [f"{a.name} {self.chosen[a.name].version} is chosen" for a in rel if a.name in self.chosen]
        why = (f" ({'; '.join(clash)})" if clash else "") + (f": {'; '.join(unmet)}" if unmet else "")
        raise ResolveError(f'cannot satisfy "{text}" needed by {self.chain(owner)}{why}')

    def run(self) -> None:
        for name in sorted(self.request.roots):
            if name in self.chosen:
                continue
            hits: list[str] = []
            p = self.pick(Alt(name), hits)
            if p is None:
                if self.pool.has(name):
                    raise ResolveError(f'cannot satisfy "{name}" needed by {REQUESTED}: no source offers it '
                                       "at a priority above 0")
                raise ResolveError(f'cannot satisfy "{name}" needed by {REQUESTED}: no such package in the sources')
            if p.name != name:
                self.warnings.append(f"{name} is a virtual package; using {p.name} for it")
            self.add(p, REQUESTED)
        while self.queue or self.deferred:
            while self.queue:
                owner = self.queue.popleft()
                for rel in self.relations(self.chosen[owner]):
                    self.handle(owner, rel, may_defer=True)
            if self.deferred:
                owner, rel = self.deferred.popleft()
                self.handle(owner, rel, may_defer=False)


def conflicts(packages: list[Package], arch: str) -> list[str]:
    """Conflicts and Breaks among a chosen set, as sentences."""
    by_name = {p.name: p for p in packages}
    provided: dict[str, list[tuple[Package, str]]] = {}
    for p in packages:
        for vname, version in parse_provides(p.provides):
            provided.setdefault(vname, []).append((p, version))
    found = []
    for p in packages:
        for kind, text in (("conflicts with", p.conflicts), ("breaks", p.breaks)):
            for rel in parse_relations(text, arch, p.name):
                for alt in rel:
                    q = by_name.get(alt.name)
                    if q is not None and q is not p and (not alt.op or satisfies(q.version, alt.op, alt.version)):
                        found.append(f"{p.name} {p.version} {kind} {q.name} {q.version} ({alt})")
                    for r, version in provided.get(alt.name, ()):
                        # A package that provides and conflicts with the same
                        # virtual name means "only one provider at a time".
                        if r is p or r is q:
                            continue
                        if not alt.op or (version and satisfies(version, alt.op, alt.version)):
                            found.append(f"{p.name} {p.version} {kind} {r.name} {r.version}, which provides {alt}")
    return sorted(set(found))


def resolve_set(source: Pool | Index, request: Request) -> Resolution:
    """The closure of request over the pool's candidates; ResolveError when
    a relation cannot be satisfied or the result breaks or conflicts with
    itself."""
    pool = _pool(source)
    state = _State(pool, request)
    state.run()
    packages = sorted(state.chosen.values(), key=lambda p: p.name)
    clashes = conflicts(packages, pool.architecture)
    if clashes:
        raise ResolveError("the resolved set conflicts with itself: " + "; ".join(clashes))
    return Resolution(packages, state.warnings, dict(state.parent))
