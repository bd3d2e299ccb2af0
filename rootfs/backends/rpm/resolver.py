"""The rpm resolver: from requested names to a closed, conflict-free set.

It follows the choices dnf (libsolv) makes for ordinary requests:
requested packages are taken first, so an explicit choice among
alternatives wins; a requirement already met by the chosen set adds
nothing; otherwise the providers are ordered by whether their name is the
one required, by the version of the matching Provides (highest first), by
name, then by their own version (highest first), and the first one that
conflicts with nothing chosen so far is taken. `(a or b)` tries a before
b. A requested package that another package obsoletes is replaced by the
obsoleting one, as dnf does with `obsoletes=True`.

Every order here comes from sorted data, so the same metadata always gives
the same set.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from functools import cmp_to_key

from rootfs.backends.rpm.deps import Dep, Rich, atoms, parse_dep_string, parse_rich
from rootfs.backends.rpm.primary import Package
from rootfs.backends.rpm.version import EQUAL, evrcmp, ranges_overlap
from rootfs.model.errors import ResolveError

# (pkgid, name, arch, path) for each wanted path of every repository's filelists.
FilelistsLoader = Callable[[set[str]], Iterable[tuple[str, str, str, str]]]


def compatible_arches(arch: str) -> tuple[str, ...]:
    return (arch, "noarch")


class Pool:
    """The packages of the target arch from all repositories, indexed."""

    def __init__(self, packages: Iterable[Package], arch: str, *, exclude: Iterable[str] = (),
                 filelists: FilelistsLoader | None = None):
        arches = compatible_arches(arch)
        excluded = set(exclude)
        seen: set[tuple[str, str, str, str, str]] = set()
        self.packages: list[Package] = []
        for p in packages:
            if p.arch not in arches or p.name in excluded:
                continue
            nevra = (p.name, p.epoch, p.version, p.release, p.arch)
            if nevra in seen:
                continue  # the same package in a later repository: the first one wins
            seen.add(nevra)
            self.packages.append(p)
        self.by_name: dict[str, list[Package]] = {}
        self.provides: dict[str, list[Package]] = {}
        self.files: dict[str, list[Package]] = {}
        for p in self.packages:
            self.by_name.setdefault(p.name, []).append(p)
            for n in p.provide_names:
                lst = self.provides.setdefault(n, [])
                if not lst or lst[-1] is not p:
                    lst.append(p)
            if p.name not in p.provide_names:
                self.provides.setdefault(p.name, []).append(p)
            for f in p.files:
                self.files.setdefault(f, []).append(p)
        for versions in self.by_name.values():
            versions.sort(key=cmp_to_key(_pkg_cmp))
        self._filelists = filelists
        self._filelists_loaded = filelists is None

    def best(self, name: str) -> list[Package]:
        """All packages called name, best first."""
        return self.by_name.get(name, [])

    def _load_filelists(self, also: str) -> None:
        self._filelists_loaded = True
        wanted = {also}
        for p in self.packages:
            for name in p.file_requires():
                if name.startswith("/"):
                    wanted.add(name)
                else:
                    wanted.update(a.name for a in atoms(parse_rich(name)) if a.name.startswith("/"))
        by_id: dict[str, list[Package]] = {}
        for p in self.packages:
            by_id.setdefault(p.pkgid, []).append(p)
        assert self._filelists is not None
        for pkgid, name, arch, path in self._filelists(wanted):
            for p in by_id.get(pkgid, ()):
                if p.name == name and p.arch == arch and p not in self.files.get(path, ()):
                    self.files.setdefault(path, []).append(p)

    def whatprovides(self, dep: Dep) -> list[Package]:
        out: list[Package] = [p for p in self.provides.get(dep.name, ()) if self.matching_provide(p, dep) is not None]
        if dep.name.startswith("/") and not dep.flags:
            owners = self.files.get(dep.name)
            if not owners and not out and not self._filelists_loaded:
                self._load_filelists(dep.name)
                owners = self.files.get(dep.name)
            out.extend(owners or ())
        return list(dict.fromkeys(out))

    @staticmethod
    def matching_provide(p: Package, dep: Dep) -> Dep | None:
        """The Provides entry of p that meets dep (rpm's implicit
        `name = evr` included), or None."""
        if dep.name not in p.provide_names:
            if dep.name == p.name:
                own = Dep(p.name, EQUAL, p.evr)
                return own if ranges_overlap(dep.flags, dep.evr, own.flags, own.evr) else None
            return None
        for prov in p.provides:
            if prov.name == dep.name and ranges_overlap(dep.flags, dep.evr, prov.flags, prov.evr):
                return prov
        return None


def _pkg_cmp(a: Package, b: Package) -> int:
    """Best first: higher EVR, then the earlier repository."""
    rc = evrcmp(b.evr, a.evr)
    return rc if rc else a.repo - b.repo


def _rich_cache(text: str, cache: dict[str, Rich] = {}) -> Rich:  # noqa: B006 - a deliberate memo
    node = cache.get(text)
    if node is None:
        node = cache[text] = parse_rich(text)
    return node


class Resolver:
    def __init__(self, pool: Pool, *, weak_deps: bool = False):
        self.pool = pool
        self.weak_deps = weak_deps
        self.selected: dict[str, Package] = {}
        self.why: dict[str, tuple[str, str]] = {}  # name -> (parent name or "", dependency text)
        self.queue: deque[Package] = deque()
        self.conflicts_of_selected: dict[str, list[tuple[Package, Dep]]] = {}
        self.obsoletes_of_selected: dict[str, list[tuple[Package, Dep]]] = {}

    # -- the chosen set ------------------------------------------------------

    def is_selected(self, p: Package) -> bool:
        return self.selected.get(p.name) is p

    def satisfied(self, dep: Dep) -> bool:
        if dep.is_rpmlib:
            return True
        if dep.is_rich:
            return self.eval(_rich_cache(dep.name))
        return any(self.is_selected(p) for p in self.pool.whatprovides(dep))

    def eval(self, node: Rich) -> bool:
        op = node[0]
        if op == "atom":
            return self.satisfied(node[1])
        if op == "and":
            return all(self.eval(c) for c in node[1])
        if op == "or":
            return any(self.eval(c) for c in node[1])
        if op == "if":
            return self.eval(node[1]) if self.eval(node[2]) else (node[3] is None or self.eval(node[3]))
        if op == "unless":
            return self.eval(node[1]) if not self.eval(node[2]) else (node[3] is None or self.eval(node[3]))
        if op in ("with", "without"):
            return any(self.is_selected(p) for p in self._with(node))
        raise AssertionError(op)

    def _with(self, node: Rich) -> list[Package]:
        left = [p for d in atoms(node[1]) for p in self.pool.whatprovides(d)]
        right = {id(p) for d in atoms(node[2]) for p in self.pool.whatprovides(d)}
        if node[0] == "with":
            return [p for p in left if id(p) in right]
        return [p for p in left if id(p) not in right]

    def conflict(self, p: Package) -> str | None:
        """Why p cannot join the chosen set, or None."""
        other = self.selected.get(p.name)
        if other is not None and other is not p:
            return f"{p.nevra} and {other.nevra} are two versions of one package"
        for c in p.conflicts:
            if c.is_rich:
                if self.eval(_rich_cache(c.name)):
                    return f"{p.nevra} conflicts with {c}"
                continue
            for q in self.pool.whatprovides(c):
                if q is not p and self.is_selected(q):
                    return f"{p.nevra} conflicts with {c}, which {q.nevra} provides"
        for ob in p.obsoletes:
            q = self.selected.get(ob.name)
            if q is not None and q is not p and ranges_overlap(ob.flags, ob.evr, EQUAL, q.evr):
                return f"{p.nevra} obsoletes {q.nevra}"
        for prov in p.provides:
            for q, c in self.conflicts_of_selected.get(prov.name, ()):
                if q is not p and ranges_overlap(c.flags, c.evr, prov.flags, prov.evr):
                    return f"{q.nevra} conflicts with {c}, which {p.nevra} provides"
        for q, ob in self.obsoletes_of_selected.get(p.name, ()):
            if q is not p and ranges_overlap(ob.flags, ob.evr, EQUAL, p.evr):
                return f"{q.nevra} obsoletes {p.nevra}"
        return None

    def select(self, p: Package, parent: str, because: str) -> None:
        self.selected[p.name] = p
        self.why[p.name] = (parent, because)
        for c in p.conflicts:
            if not c.is_rich:
                self.conflicts_of_selected.setdefault(c.name, []).append((p, c))
        for ob in p.obsoletes:
            self.obsoletes_of_selected.setdefault(ob.name, []).append((p, ob))
        self.queue.append(p)

    def _snapshot(self):
        return (dict(self.selected), dict(self.why), deque(self.queue),
                {k: list(v) for k, v in self.conflicts_of_selected.items()},
                {k: list(v) for k, v in self.obsoletes_of_selected.items()})

    def _restore(self, snap) -> None:
        (self.selected, self.why, self.queue, self.conflicts_of_selected, self.obsoletes_of_selected) = snap

    # -- explaining ------------------------------------------------------------

    def chain(self, name: str) -> str:
        links = []
        seen = set()
        while name and name not in seen:
            seen.add(name)
            parent, because = self.why.get(name, ("", ""))
            p = self.selected.get(name)
            label = p.nevra if p else name
            links.append(f"{label} (requested)" if not parent else label)
            name = parent
        return " <- ".join(links)

    # -- choosing --------------------------------------------------------------

    def candidates(self, dep: Dep) -> list[Package]:
        provs = self.pool.whatprovides(dep)

        def cmp(a: Package, b: Package) -> int:
            am, bm = a.name == dep.name, b.name == dep.name
            if am != bm:
                return -1 if am else 1
            if a.name != b.name:
                pa, pb = self.pool.matching_provide(a, dep), self.pool.matching_provide(b, dep)
                if pa is not None and pb is not None and pa.evr is not None and pb.evr is not None:
                    rc = evrcmp(pb.evr, pa.evr)
                    if rc:
                        return rc
                return -1 if a.name < b.name else 1
            return _pkg_cmp(a, b)

        return sorted(provs, key=cmp_to_key(cmp))

    def require(self, dep: Dep, parent: str) -> None:
        """Make dep true, adding packages; ResolveError when it cannot be."""
        if self.satisfied(dep):
            return
        if dep.is_rich:
            self.satisfy(_rich_cache(dep.name), dep, parent)
            return
        self.choose_among(self.candidates(dep), dep, parent)

    def choose_among(self, candidates, dep, parent: str) -> None:
        """Choose one of the candidates that conflicts with nothing chosen;
        fail with every conflict as the reason when none is left."""
        viable, reasons = [], []
        for cand in candidates:
            why = self.conflict(cand)
            if why is None:
                viable.append(cand)
            else:
                reasons.append(why)
        if not viable:
            self.fail(dep, parent, reasons)
        self.choose(viable, parent, str(dep))

    def choose(self, viable: list[Package], parent: str, because: str) -> None:
        """Select the first of viable whose own requirements can be met.
        With one candidate there is nothing to choose; with several, each
        is tried with its whole closure and undone if that fails, so a
        broken provider does not hide a working one."""
        if len(viable) == 1:
            self.select(viable[0], parent, because)
            return
        first_error: ResolveError | None = None
        for cand in viable:
            snap = self._snapshot()
            try:
                self.select(cand, parent, because)
                self.drain()
                return
            except ResolveError as exc:
                self._restore(snap)
                first_error = first_error or exc
        assert first_error is not None
        raise first_error

    def fail(self, dep: Dep | str, parent: str, reasons: list[str]) -> None:
        where = f"needed by {self.chain(parent)}" if parent else "requested"
        if reasons:
            raise ResolveError(f"cannot install a provider of {dep} ({where}): {reasons[0]}")
        raise ResolveError(f"nothing provides {dep} ({where})")

    def satisfy(self, node: Rich, dep: Dep, parent: str) -> None:
        if self.eval(node):
            return
        op = node[0]
        if op == "atom":
            self.require(node[1], parent)
        elif op == "and":
            for c in node[1]:
                self.satisfy(c, dep, parent)
        elif op == "or":
            first_error: ResolveError | None = None
            for c in node[1]:
                snap = self._snapshot()
                try:
                    self.satisfy(c, dep, parent)
                    self.drain()
                    return
                except ResolveError as exc:
                    self._restore(snap)
                    first_error = first_error or exc
            if first_error is not None:
                raise first_error
            self.fail(dep, parent, [])
        elif op in ("if", "unless"):
            cond = self.eval(node[2])
            if (op == "if") == cond:
                self.satisfy(node[1], dep, parent)
            elif node[3] is not None:
                self.satisfy(node[3], dep, parent)
        elif op in ("with", "without"):
            self.choose_among(sorted(self._with(node), key=cmp_to_key(_pkg_cmp)), dep, parent)

    def drain(self) -> None:
        while self.queue:
            p = self.queue.popleft()
            for dep in p.requires:
                self.require(dep, p.name)

    # -- requests ----------------------------------------------------------------

    def request(self, spec: str) -> Package:
        """The package a user's `name`, `name >= v`, capability or path means."""
        dep = parse_dep_string(spec)
        if not dep.is_rich:
            named = [p for p in self.pool.best(dep.name)
                     if ranges_overlap(dep.flags, dep.evr, EQUAL, p.evr)]
            if named:
                best = named[0]
                return self.obsoleter(best) or best
        cands = self.candidates(dep) if not dep.is_rich else []
        if not cands:
            raise ResolveError(f"no package provides {spec} in the given repositories")
        return cands[0]

    def obsoleter(self, p: Package) -> Package | None:
        found = [
            q for q in self.pool.packages
            if q.name != p.name and any(ob.name == p.name and ranges_overlap(ob.flags, ob.evr, EQUAL, p.evr)
                                        for ob in q.obsoletes)
        ]
        if not found:
            return None
        found.sort(key=cmp_to_key(lambda a, b: (-1 if a.name < b.name else 1) if a.name != b.name else _pkg_cmp(a, b)))
        return found[0]

    def resolve(self, requests: Iterable[str]) -> list[Package]:
        for spec in requests:
            p = self.request(spec)
            if self.is_selected(p):
                continue
            why = self.conflict(p)
            if why is not None:
                raise ResolveError(f"the requested packages cannot be installed together: {why}")
            self.select(p, "", spec)
        self.drain()
        for _ in range(100):
            changed = self._recheck()
            if self.weak_deps:
                changed = self._weak() or changed
            if not changed:
                break
        return sorted(self.selected.values(), key=lambda p: (p.name, p.arch))

    def _recheck(self) -> bool:
        """Conditional (if/unless) requirements can turn false as packages are
        added; meet them again until nothing changes."""
        before = len(self.selected)
        for p in sorted(self.selected.values(), key=lambda p: p.name):
            for dep in p.requires:
                if dep.is_rich and not self.satisfied(dep):
                    self.require(dep, p.name)
        self.drain()
        return len(self.selected) != before

    def _try_add(self, p: Package, parent: str, because: str) -> bool:
        if self.is_selected(p) or self.conflict(p) is not None:
            return False
        snap = self._snapshot()
        try:
            self.select(p, parent, because)
            self.drain()
            return True
        except ResolveError:
            self._restore(snap)
            return False

    def _weak(self) -> bool:
        changed = False
        for p in sorted(self.selected.values(), key=lambda p: p.name):
            for dep in p.recommends:
                if dep.is_rpmlib or self.satisfied(dep):
                    continue
                if dep.is_rich:
                    snap = self._snapshot()
                    try:
                        self.satisfy(_rich_cache(dep.name), dep, p.name)
                        self.drain()
                        changed = True
                    except ResolveError:
                        self._restore(snap)
                    continue
                for cand in self.candidates(dep):
                    if self._try_add(cand, p.name, f"{dep} (recommended)"):
                        changed = True
                        break
        for name in sorted(self.pool.by_name):
            if name in self.selected:
                continue
            best = self.pool.by_name[name][0]
            for dep in best.supplements:
                if self.satisfied(dep) and self._try_add(best, "", f"supplements {dep}"):
                    changed = True
                    break
        return changed


def resolve_packages(packages: Iterable[Package], arch: str, requests: Iterable[str], *,
                     weak_deps: bool = False, exclude: Iterable[str] = (),
                     filelists: FilelistsLoader | None = None) -> list[Package]:
    pool = Pool(packages, arch, exclude=exclude, filelists=filelists)
    return Resolver(pool, weak_deps=weak_deps).resolve(requests)
