"""The rpm solver: libsolv, set up the way dnf sets it up.

Why libsolv and not a resolver of our own. dnf and zypper resolve with
libsolv, so its answers are dnf's answers by construction, and matching dnf
is the point. rootfs had a hand-written resolver (a greedy depth-first
walk with undo). On real-shaped metadata it differed from dnf in three
known ways (Suggests did not steer the choice between providers, so every
image got glibc-all-langpacks where dnf picks glibc-minimal-langpack;
Supplements were read from the newest version of a package only; `(a or
b)` was tried left to right) and in unknown others. Measured on this kind
of machine (2 cores), with tests/test_rpm_dnf.py's generated repository of
5,600 packages and 67 requests, weak dependencies on and off (134 answers
compared with dnf 4.14's):

    answers identical to dnf's: hand-written resolver 51 of 134, libsolv 134 of 134

and with bench/rpm_resolve.py (an 18,000-package primary.xml.gz; parse,
then resolve a request of 140 packages):

    hand-written resolver: parse 1.21 s + resolve 0.36 s
    libsolv:               parse 0.62 s + resolve 0.05 s
    dnf 4.14 (same files, --assumeno, warm cache):     1.9 s

so the hand-written resolver is gone: it was neither right nor faster.

Trust does not change: libsolv reads only bytes that repomd.xml's checksum
(and its signature, when a key is given) vouched for; rootfs decompresses
and checks them first, then hands them over (see resolve.py).

What dnf does, and so this module does (libdnf's Goal and dnf.Base):
every job gets SETARCH|SETEVR, the solver allows vendor changes and
downgrades, keeps orphans, obeys policy for `best`, and reads obsoletes as
yum did; installonly packages are multiversion; `best` adds FORCEBEST;
without weak dependencies the solver ignores Recommends/Supplements.
File dependencies are read from filelists.xml only for the paths some
package needs that primary.xml cannot list (createrepo_c puts only
/etc/..., .../bin/... and /usr/lib/sendmail there), so most requests on
small repositories never download it; on a distribution's repositories
that is every request, as with dnf.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO

import solv

from rootfs.model.errors import ResolveError, VerifyError

# dnf's default installonlypkgs: these may be installed in several versions.
INSTALLONLY = ("kernel", "kernel-PAE", "installonlypkg(kernel)", "installonlypkg(kernel-module)",
               "installonlypkg(vm)", "multiversion(kernel)")
SOURCE_ARCHES = ("src", "nosrc")

# (repository index, pkgid, name, arch, path) for each wanted path of every
# repository's filelists.xml.
FilelistsLoader = Callable[[set[str]], Iterable[tuple[int, str, str, str, str]]]

CHUNK = 1 << 20


def in_primary(path: str) -> bool:
    """Whether createrepo_c lists path in primary.xml (when a package has it)."""
    return path.startswith("/etc/") or "bin/" in path or path == "/usr/lib/sendmail"


@dataclass(frozen=True)
class SolveOptions:
    weak_deps: bool = False  # install Recommends and Supplements (dnf's install_weak_deps)
    best: bool = False  # the newest version of each request or fail (dnf's best; its default is off)
    nodeps: bool = False  # exactly the requested packages, no dependencies


class Sack:
    """Every repository's packages in one libsolv pool, indexed for requests."""

    def __init__(self, arch: str, filelists: FilelistsLoader | None = None):
        self.pool = solv.Pool()
        self.pool.setdisttype(solv.Pool.DISTTYPE_RPM)
        self.pool.setarch(arch)
        # As dnf's sack: packages of another arch color (i686 beside
        # x86_64) can be installed beside each other, and hidden packages
        # stay visible to queries (the solver still never picks them).
        self.pool.set_flag(solv.Pool.POOL_FLAG_IMPLICITOBSOLETEUSESCOLORS, 1)
        self.pool.set_flag(solv.Pool.POOL_FLAG_WHATPROVIDESWITHDISABLED, 1)
        self.arch = arch
        self.repos: list[solv.Repo] = []
        self._filelists = filelists
        self._file_paths_done: set[str] = set()
        self._shadowed: set[int] = set()  # a later repository's copies of an earlier one's NEVRAs
        self._excluded: set[int] = set()

    # -- loading ---------------------------------------------------------------------

    def add_primary(self, stream: IO[bytes], where: str) -> solv.Repo:
        """Add one repository's (checked, decompressed) primary.xml."""
        repo = self.pool.add_repo(str(len(self.repos)))
        fd = os.memfd_create("primary.xml")
        try:
            try:
                while chunk := stream.read(CHUNK):
                    os.write(fd, chunk)
            except (OSError, EOFError, ValueError) as exc:
                raise VerifyError(f"{where} cannot be read: {exc}") from None
            except Exception as exc:  # zstandard has error types of its own
                if type(exc).__module__.startswith("zstandard"):
                    raise VerifyError(f"{where} cannot be read: {exc}") from None
                raise
            if os.lseek(fd, 0, os.SEEK_CUR) == 0:
                raise VerifyError(f"{where} is empty")
            os.lseek(fd, 0, os.SEEK_SET)
            fp = solv.xfopen_fd(None, fd)  # dups fd
            ok = repo.add_rpmmd(fp, None, 0)
            fp.close()
        finally:
            os.close(fd)
        if not ok:
            why = self.pool.errstr.replace("repo_rpmmd: ", "").replace("\n", "")
            raise VerifyError(f"{where} is not valid primary metadata: {why}")
        seen = {self._nevra_key(s) for r in self.repos for s in r.solvables}
        self._shadowed.update(s.id for s in repo.solvables if self._nevra_key(s) in seen)
        self.repos.append(repo)
        return repo

    @staticmethod
    def _nevra_key(s: solv.XSolvable) -> tuple[int, int, int]:
        return (s.nameid, s.evrid, s.archid)

    def prepare(self, request_paths: Iterable[str] = ()) -> None:
        """Index provides, reading filelists.xml for the file dependencies
        (and requested paths) primary.xml cannot answer."""
        pool = self.pool
        file_deps = [pool.id2str(i) for i in pool.addfileprovides_queue()]
        pool.createwhatprovides()
        wanted = {p for p in file_deps if not in_primary(p) or not pool.whatprovides(pool.str2id(p))}
        paths = [p for p in request_paths if p.startswith("/")]
        # A requested path no package depends on has no file provides yet:
        # give its owners in primary.xml one.
        for path in paths:
            di = pool.Dataiterator(solv.SOLVABLE_FILELIST, path,
                                   solv.Dataiterator.SEARCH_STRING | solv.Dataiterator.SEARCH_FILES)
            for sid in {d.solvid for d in di}:
                pool.solvables[sid].add_provides(pool.str2id(path), 1)
        if paths:
            pool.createwhatprovides()
        wanted.update(paths)
        wanted -= self._file_paths_done
        if wanted and self._filelists is not None:
            self._file_paths_done |= wanted
            by_id: dict[tuple[int, str], list[solv.XSolvable]] = {}
            for i, repo in enumerate(self.repos):
                for s in repo.solvables:
                    ck = s.lookup_checksum(solv.SOLVABLE_CHECKSUM)
                    if ck is not None:
                        by_id.setdefault((i, ck.hex()), []).append(s)
            added = False
            for repo_index, pkgid, name, arch, path in self._filelists(wanted):
                for s in by_id.get((repo_index, pkgid), ()):
                    if s.name == name and s.arch == arch:
                        s.add_provides(pool.str2id(path), 1)
                        added = True
            if added:
                pool.createwhatprovides()

    # -- what is offered -----------------------------------------------------------------

    def set_hidden(self, hidden: set[int]) -> None:
        """Hide packages (excludes, modular filtering) from requests and the solver."""
        self._excluded = set(hidden)
        visible = [s.id for r in self.repos for s in r.solvables
                   if s.id not in self._excluded and s.id not in self._shadowed]
        self.pool.set_considered_list(visible)
        self._visible = None

    def visible(self) -> list[solv.XSolvable]:
        """The offered binary packages, in repository order."""
        if getattr(self, "_visible", None) is None:
            self._visible = [s for r in self.repos for s in r.solvables
                             if s.id not in self._excluded and s.id not in self._shadowed
                             and s.arch not in SOURCE_ARCHES]
        return self._visible

    def by_name(self) -> dict[str, list[solv.XSolvable]]:
        if getattr(self, "_by_name", None) is None or self._by_name[0] is not self.visible():
            index: dict[str, list[solv.XSolvable]] = {}
            for s in self.visible():
                index.setdefault(s.name, []).append(s)
            self._by_name = (self.visible(), index)
        return self._by_name[1]

    def is_visible(self, s: solv.XSolvable) -> bool:
        return s.id not in self._excluded and s.id not in self._shadowed and s.arch not in SOURCE_ARCHES

    def repo_index(self, s: solv.XSolvable) -> int:
        return int(s.repo.name)

    # -- solving -------------------------------------------------------------------------------

    def solve(self, jobs: list[solv.Job], opts: SolveOptions, what: str) -> list[solv.XSolvable]:
        """The packages to install for jobs, as dnf's goal would pick them."""
        pool = self.pool
        if opts.nodeps:
            return self._without_dependencies(jobs)
        if opts.best:
            jobs = [pool.Job(j.how | solv.Job.SOLVER_FORCEBEST, j.what) for j in jobs]
        jobs = jobs + [pool.Job(solv.Job.SOLVER_MULTIVERSION | solv.Job.SOLVER_SOLVABLE_PROVIDES, pool.str2id(n))
                       for n in INSTALLONLY]
        solver = pool.Solver()
        for flag in (solv.Solver.SOLVER_FLAG_ALLOW_VENDORCHANGE, solv.Solver.SOLVER_FLAG_DUP_ALLOW_VENDORCHANGE,
                     solv.Solver.SOLVER_FLAG_KEEP_ORPHANS, solv.Solver.SOLVER_FLAG_BEST_OBEY_POLICY,
                     solv.Solver.SOLVER_FLAG_YUM_OBSOLETES, solv.Solver.SOLVER_FLAG_ALLOW_DOWNGRADE):
            solver.set_flag(flag, 1)
        if not opts.weak_deps:
            solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED, 1)
        problems = solver.solve(jobs)
        if problems:
            raise ResolveError(f"cannot install {what}: {describe(problems)}")
        return sorted(solver.transaction().newsolvables(), key=lambda s: (s.name, s.arch, s.evr))

    def _without_dependencies(self, jobs: list[solv.Job]) -> list[solv.XSolvable]:
        """For each job the package the solver would start from: the best
        installable one, whatever it needs or conflicts with."""
        chosen: dict[int, solv.XSolvable] = {}
        for job in jobs:
            candidates = [s for s in job.solvables() if s.installable()]
            if candidates:
                best = self.pool.best_solvables(candidates)[0]
                chosen[best.id] = best
        return sorted(chosen.values(), key=lambda s: (s.name, s.arch, s.evr))


def describe(problems: list[solv.Problem]) -> str:
    """libsolv's own account of why, one clause per rule, without repeats."""
    lines: list[str] = []
    for problem in problems:
        for rule in problem.findallproblemrules():
            for info in rule.allinfos():
                text = info.problemstr()
                if text not in lines:
                    lines.append(text)
    return "; ".join(lines)
