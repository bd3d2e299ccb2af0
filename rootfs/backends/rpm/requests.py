"""What a request names, turned into solver jobs the way dnf 4 turns it.

A package request is tried, like dnf's Subject, as NAME-[EPOCH:]VERSION-
RELEASE.ARCH, NAME.ARCH, NAME, NAME-[EPOCH:]VERSION-RELEASE and
NAME-[EPOCH:]VERSION, the first reading that names an offered package
winning; then as a capability (`webserver`, `libfoo.so.1()(64bit)`,
`foo >= 2`, a rich `(a or b)`); then as a file path. A plain name also
offers the packages that obsolete it (dnf's obsoletes=True), so a renamed
package is found under its old name. `@x` is a module stream if a module
is called x (`@nodejs`, `@nodejs:20`, `@nodejs:20/common`), else a comps
group or environment; `@^x` is an environment only. Globs (`python3-*`)
work in names as in dnf: one request per matching name.

dnf's order is kept, because it shows: package requests are read with the
streams enabled before, then `@module` requests enable theirs (which hides
packages) and the groups are read last.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

import solv

from rootfs.backends.rpm.comps import DEFAULT_TYPES, TYPES, Comps, Group
from rootfs.backends.rpm.modules import ModuleDoc, Modules, nevra_key
from rootfs.backends.rpm.solver import Sack
from rootfs.model.errors import ResolveError, UsageError, VerifyError

_NAME = r"([^:(/=<> ]+)"
_EPOCH = r"(?:([0-9]+):)?"
_VR = r"([^-:(/=<> ]+)"
_ARCH = r"([^-:.(/=<> ]+)"
# dnf's forms, most specific first.
FORMS = (
    ("nevra", re.compile(rf"^{_NAME}-{_EPOCH}{_VR}-{_VR}\.{_ARCH}$")),
    ("na", re.compile(rf"^{_NAME}\.{_ARCH}$")),
    ("name", re.compile(rf"^{_NAME}$")),
    ("nevr", re.compile(rf"^{_NAME}-{_EPOCH}{_VR}-{_VR}$")),
    ("nev", re.compile(rf"^{_NAME}-{_EPOCH}{_VR}$")),
)
_OPS = {"=": solv.REL_EQ, "==": solv.REL_EQ, "<": solv.REL_LT, ">": solv.REL_GT,
        "<=": solv.REL_LT | solv.REL_EQ, ">=": solv.REL_GT | solv.REL_EQ}
_RELDEP = re.compile(r"^(\S+?)\s*(<=|>=|==|=|<|>)\s*(\S+)$")
INSTALL_ONE_OF = (solv.Job.SOLVER_SOLVABLE_ONE_OF | solv.Job.SOLVER_SETARCH | solv.Job.SOLVER_SETEVR
                  | solv.Job.SOLVER_INSTALL)


def is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def split_evr(evr: str) -> tuple[str, str, str]:
    epoch, _, vr = evr.rpartition(":")
    version, _, release = vr.partition("-")
    return epoch or "0", version, release


def _match(pattern: str | None, value: str) -> bool:
    if pattern is None:
        return True
    return fnmatch.fnmatchcase(value, pattern) if is_glob(pattern) else value == pattern


@dataclass
class Selector:
    """Turns request strings into jobs against one Sack."""

    sack: Sack
    modules: Modules = field(default_factory=Modules)
    comps: Comps = field(default_factory=Comps)
    enabled: dict[str, str] = field(default_factory=dict)  # module -> stream
    exclude: tuple[str, ...] = ()
    active: list[ModuleDoc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._apply_filters()

    # -- what is offered --------------------------------------------------------------

    def _apply_filters(self) -> None:
        """Hide the excluded packages and those modularity hides."""
        sack = self.sack
        pool = sack.pool
        hidden: set[int] = set()
        for pattern in self.exclude:
            names = [n for n in sack.names() if fnmatch.fnmatchcase(n, pattern)]
            if names:
                hidden.update(s.id for n in names for s in sack.named_all(n))
            else:  # a NEVRA, or a glob over NEVRAs
                hidden.update(s.id for r in sack.repos for s in r.solvables if fnmatch.fnmatchcase(str(s), pattern))
        if self.modules or self.enabled:
            self.active = self.modules.active(self.enabled)
            gone, taken_over = self.modules.hidden(self.active)
            included = {a for d in self.active for a in d.artifacts}
            ids = sack.nevra_ids()
            hidden.update(i for key in gone for i in ids.get(key, ()))
            # What has the name of an active stream's package, or provides
            # that name, and is not in the stream, is hidden (as dnf does).
            for n in taken_over:
                for s in pool.whatprovides(pool.str2id(n)):
                    if nevra_key(s.name, s.evr, s.arch) not in included:
                        hidden.add(s.id)
        sack.set_hidden(hidden)

    # -- requests -----------------------------------------------------------------------

    def jobs(self, specs: list[str]) -> list[solv.Job]:
        out: list[solv.Job] = []
        package_specs = [s for s in specs if not s.startswith("@")]
        at_specs = [s[1:] for s in specs if s.startswith("@")]
        for spec in package_specs:
            out.extend(self.package_jobs(spec))
        module_specs = [s for s in at_specs if self._is_module_spec(s)]
        if module_specs:
            out.extend(self.module_jobs(module_specs))
        for spec in at_specs:
            if spec not in module_specs:
                out.extend(self.group_jobs(spec))
        return out

    def package_jobs(self, spec: str) -> list[solv.Job]:
        found, form = self.query(spec)
        if not found:
            raise ResolveError(f"no package provides {spec} in the given repositories")
        just_name = form == "name"
        if form is not None and is_glob(spec) and not spec.startswith(("/", "*/")):
            by_name: dict[str, list[solv.XSolvable]] = {}
            for s in found:
                by_name.setdefault(s.name, []).append(s)
            return [self._one_of(pkgs + (self.obsoleters(pkgs) if just_name else []))
                    for _, pkgs in sorted(by_name.items())]
        if just_name:
            found = found + self.obsoleters(found)
        return [self._one_of(found)]

    def query(self, spec: str) -> tuple[list[solv.XSolvable], str | None]:
        """The offered packages spec names, and the NEVRA form that named
        them (None for a capability or a path)."""
        sack = self.sack
        for form, rx in FORMS:
            m = rx.match(spec)
            if not m:
                continue
            g = m.groups()
            if form == "nevra":
                name, epoch, ver, rel, arch = g
            elif form == "na":
                (name, arch), epoch, ver, rel = g, None, None, None
            elif form == "name":
                name, epoch, ver, rel, arch = g[0], None, None, None, None
            elif form == "nevr":
                (name, epoch, ver, rel), arch = g, None
            else:
                (name, epoch, ver), rel, arch = g, None, None
            names = sorted(n for n in sack.names() if fnmatch.fnmatchcase(n, name)) if is_glob(name) else [name]
            hits = []
            for n in names:
                for s in sack.named(n):
                    e, v, r = split_evr(s.evr)
                    if (_match(epoch, e) and _match(ver, v) and _match(rel, r) and _match(arch, s.arch)):
                        hits.append(s)
            if hits:
                return hits, form
        pool = sack.pool
        if is_glob(spec) and not spec.startswith(("/", "(")):
            di = pool.Dataiterator(solv.SOLVABLE_PROVIDES, spec, solv.Dataiterator.SEARCH_GLOB)
            hits = list({d.solvid: pool.solvables[d.solvid] for d in di}.values())
        else:
            hits = pool.whatprovides(self._dep(spec))
        return [s for s in hits if sack.is_visible(s)], None

    def _dep(self, spec: str) -> int:
        pool = self.sack.pool
        if spec.startswith("("):
            dep = pool.parserpmrichdep(spec)
            if not dep:
                raise UsageError(f"cannot parse the rich dependency {spec!r}")
            return dep.id
        m = _RELDEP.match(spec)
        if m:
            name, op, evr = m.groups()
            return pool.rel2id(pool.str2id(name), pool.str2id(evr), _OPS[op])
        if " " in spec.strip():
            raise UsageError(f"cannot parse the request {spec!r} (a name, NAME-VERSION, a capability "
                             "`name >= version`, a path, @group or @module:stream)")
        return pool.str2id(spec)

    def obsoleters(self, pkgs: list[solv.XSolvable]) -> list[solv.XSolvable]:
        """Offered packages whose Obsoletes match one of pkgs by name and version."""
        pool = self.sack.pool
        out: dict[int, solv.XSolvable] = {}
        for s in pkgs:
            own = pool.rel2id(s.nameid, s.evrid, solv.REL_EQ)
            for o in pool.whatmatchesdep(solv.SOLVABLE_OBSOLETES, own):
                if self.sack.is_visible(o):
                    out[o.id] = o
        return list(out.values())

    def _one_of(self, pkgs: list[solv.XSolvable]) -> solv.Job:
        pool = self.sack.pool
        ids = sorted({s.id for s in pkgs})
        return pool.Job(INSTALL_ONE_OF, pool.towhatprovides(ids))

    # -- modules ---------------------------------------------------------------------------

    def _is_module_spec(self, spec: str) -> bool:
        return bool(self.modules) and spec.split("/")[0].split(":")[0] in {d.name for d in self.modules.docs}

    def module_jobs(self, specs: list[str]) -> list[solv.Job]:
        wanted = []
        for spec in specs:
            nsv, _, profile = spec.partition("/")
            name, _, stream = nsv.partition(":")
            if ":" in stream:
                raise UsageError(f"@{spec}: rootfs takes @module, @module:stream and @module:stream/profile")
            stream = self.modules.stream_for(name, stream, self.enabled, "@" + spec)
            if self.enabled.get(name, stream) != stream:
                raise ResolveError(f"@{spec} asks for stream {stream} of module {name}, "
                                   f"but {name}:{self.enabled[name]} is enabled")
            wanted.append((spec, name, stream, profile))
        for _, name, stream, _ in wanted:
            self.enabled[name] = stream
        self._apply_filters()
        out = []
        for spec, name, stream, profile in wanted:
            docs = [d for d in self.active if d.name == name and d.stream == stream]
            latest = docs[0]  # newest version first
            if profile:
                names = [p for p in latest.profiles if fnmatch.fnmatchcase(p, profile)]
                if not names:
                    raise ResolveError(f"@{spec}: module {name}:{stream} has no profile {profile!r} "
                                       f"(profiles: {', '.join(sorted(latest.profiles)) or 'none'})")
            else:
                names = list(self.modules.default_profiles.get((name, stream), ()))
                if not names:
                    raise ResolveError(f"@{spec}: module {name}:{stream} has no default profile; name one "
                                       f"(profiles: {', '.join(sorted(latest.profiles)) or 'none'})")
                missing = [p for p in names if p not in latest.profiles]
                if missing:
                    raise ResolveError(f"@{spec}: the default profile {missing[0]} is not in module {name}:{stream}")
            artifacts = {a for d in docs for a in d.artifacts}
            packages = dict.fromkeys(p for n in names for p in latest.profiles[n])
            for pkg in sorted(packages):
                candidates = self.sack.named(pkg)
                modular = [s for s in candidates if nevra_key(s.name, s.evr, s.arch) in artifacts]
                if not (modular or candidates):
                    raise ResolveError(f"@{spec}: no package {pkg} (in profile {', '.join(names)}) is offered")
                out.append(self._one_of(modular or candidates))
        return out

    # -- comps -------------------------------------------------------------------------------

    def group_jobs(self, spec: str) -> list[solv.Job]:
        pattern, _, types_text = spec.partition("/")
        types = tuple(t.strip() for t in types_text.split(",")) if types_text else DEFAULT_TYPES
        bad = [t for t in types if t not in TYPES]
        if bad:
            raise UsageError(f"@{spec}: unknown package type {bad[0]!r} (known: {', '.join(TYPES)})")
        envs_only = pattern.startswith("^")
        pattern = pattern.removeprefix("^")
        envs = self.comps.find_environments(pattern)
        groups = [] if envs_only else self.comps.find_groups(pattern)
        if not envs and not groups:
            what = "environment" if envs_only else "module, group or environment"
            raise ResolveError(f"no {what} called {pattern!r} in the given repositories")
        chosen: dict[str, Group] = {g.id: g for g in groups}
        for env in envs:
            for gid in env.groups:
                if gid in self.comps.groups:
                    chosen.setdefault(gid, self.comps.groups[gid])
        names = {}
        for g in chosen.values():
            for p in g.packages:
                if p.type in types:
                    names.setdefault((p.name, p.requires, p.basearchonly), p)
        out = []
        pool = self.sack.pool
        for (name, requires, basearchonly), _ in sorted(names.items()):
            found = [s for s in self.sack.named(name) if not basearchonly or s.arch == self.sack.arch]
            if not found:
                continue  # dnf warns and goes on: "No match for group package"
            if requires:
                dep = pool.parserpmrichdep(f"({name} if {requires})")
                if not dep:
                    raise VerifyError(f"comps: the group package {name} has a requires= that is no dependency: "
                                      f"{requires!r}")
                out.append(pool.Job(solv.Job.SOLVER_SOLVABLE_PROVIDES | solv.Job.SOLVER_INSTALL, dep.id))
            else:
                out.append(self._one_of(found + self.obsoleters(found)))
        return out
