"""The rpm solver: libsolv, set up the way dnf sets it up.

Why libsolv and not a resolver of our own. dnf and zypper resolve with
libsolv, so its answers are dnf's answers by construction, and matching dnf
is the point. rootfs had a hand-written resolver (a greedy depth-first
walk with undo). On real-shaped metadata it differed from dnf in three
known ways (Suggests did not steer the choice between providers, so every
image got glibc-all-langpacks where dnf picks glibc-minimal-langpack;
Supplements were read from the newest version of a package only; `(a or
b)` was tried left to right) and in unknown others. Measured on this kind
of machine (2 cores) with tests/test_rpm_dnf.py's generated distribution
(5,826 packages, 80 requests, weak dependencies on and off: 160 answers
compared with dnf 4.14's own):

    answers identical to dnf's:  hand-written resolver 18 of 160
                                 (4 of the 72 for plain package names:
                                 the langpack choice is in every closure)
                                 libsolv 160 of 160

and with bench/rpm_resolve.py's 18,072-package repository (primary.xml.gz
7.8 MB; a request of six applications, 137 packages; the quietest run):

    hand-written resolver: parse 0.40 s + resolve 0.23 s, and it refuses
                           the request, which dnf resolves
    libsolv:               read 0.52 s (primary.xml, and filelists.xml for
                           the file dependencies) + solve 0.05 s
    dnf install --assumeno: 2.24 s with a cold cache, 0.32 s warm

So the hand-written resolver is gone: it did not give dnf's answers, and
was no faster.

Trust does not change: libsolv reads only bytes that repomd.xml's checksum
(and its signature, when a key is given) vouched for; rootfs decompresses
and checks them first, then hands them over (see resolve.py).

The bindings are PyPI's `solv` wheels (libsolv 0.7.39, x86_64 and
aarch64), a dependency like any other; Debian's python3-solv (0.7.23)
would serve only the system interpreter.

What dnf does, and so this module does (libdnf's sack and Goal, dnf.Base):
packages of another arch color (i686 beside x86_64) install side by side;
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

import codecs
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO

import solv

from rootfs.backends.rpm.modules import nevra_key
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


_DECLARATION = re.compile(rb"""\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")


def _check_declaration(head: bytes, where: str) -> None:
    m = _DECLARATION.match(head)
    if m and m.group(1).decode("ascii", "replace").lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise VerifyError(f"{where} declares the encoding {m.group(1)[:40].decode('ascii', 'replace')!r}; "
                          "rpm-md metadata is UTF-8")


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
        self._hidden: set[int] = set()
        self._ids: list[int] = []
        self._names: set[str] | None = None
        self._nevras: dict[str, list[int]] | None = None

    # -- loading ---------------------------------------------------------------------

    def add_primary(self, stream: IO[bytes], where: str) -> solv.Repo:
        """Add one repository's (checked, decompressed) primary.xml."""
        repo = self.pool.add_repo(str(len(self.repos)))
        fd = os.memfd_create("primary.xml")
        try:
            # libsolv's XML reader crashes the process on some inputs in
            # encodings other than the UTF-8 rpm-md is written in, and on
            # NUL bytes: only UTF-8 without NUL, checked as it is copied,
            # reaches it.
            utf8 = codecs.getincrementaldecoder("utf-8")()
            first = True
            try:
                while chunk := stream.read(CHUNK):
                    if first:
                        _check_declaration(chunk, where)
                        first = False
                    utf8.decode(chunk)
                    if b"\0" in chunk:  # XML has no NUL, and libsolv's reader dies on one
                        raise VerifyError(f"{where} holds a NUL byte, which XML does not allow")
                    os.write(fd, chunk)
                utf8.decode(b"", final=True)
            except UnicodeDecodeError:
                raise VerifyError(f"{where} is not UTF-8 text") from None
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
        self.repos.append(repo)
        return repo

    def prepare(self, request_paths: Iterable[str] = ()) -> None:
        """Index provides, reading filelists.xml for the file dependencies
        (and requested paths) primary.xml cannot answer."""
        pool = self.pool
        self._ids = [s.id for r in self.repos for s in r.solvables]
        if len(self.repos) > 1:
            seen: set[tuple[int, int, int]] = set()
            for r in self.repos:
                keys = [(s.id, (s.nameid, s.evrid, s.archid)) for s in r.solvables]
                self._shadowed.update(i for i, k in keys if k in seen)
                seen.update(k for _, k in keys)
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
            owners: dict[tuple[int, str, str, str], list[solv.XSolvable]] = {}
            added = False
            for repo_index, pkgid, name, arch, path in self._filelists(wanted):
                key = (repo_index, pkgid, name, arch)
                if key not in owners:
                    owners[key] = [s for s in self.named_all(name) if s.arch == arch
                                   and self.repo_index(s) == repo_index
                                   and (ck := s.lookup_checksum(solv.SOLVABLE_CHECKSUM)) is not None
                                   and ck.hex() == pkgid]
                for s in owners[key]:
                    s.add_provides(pool.str2id(path), 1)
                    added = True
            if added:
                pool.createwhatprovides()
        self.set_hidden(set())

    # -- what is offered -----------------------------------------------------------------

    def set_hidden(self, hidden: set[int]) -> None:
        """Hide packages (excludes, modular filtering) from requests and the solver."""
        self._hidden = set(hidden) | self._shadowed
        self.pool.set_considered_list([i for i in self._ids if i not in self._hidden])

    def is_visible(self, s: solv.XSolvable) -> bool:
        """Offered: not hidden, not a source package."""
        return s.id not in self._hidden and s.arch not in SOURCE_ARCHES

    def named_all(self, name: str) -> list[solv.XSolvable]:
        """Every package called name, hidden or not, in repository order."""
        pool = self.pool
        nid = pool.str2id(name, False)
        return [s for s in pool.whatprovides(nid) if s.nameid == nid] if nid else []

    def named(self, name: str) -> list[solv.XSolvable]:
        """The offered packages called name."""
        return [s for s in self.named_all(name) if self.is_visible(s)]

    def names(self) -> set[str]:
        """Every package name (for globs)."""
        if self._names is None:
            self._names = {s.name for r in self.repos for s in r.solvables}
        return self._names

    def nevra_ids(self) -> dict[str, list[int]]:
        """Solvable ids by NEVRA as modulemd writes it (name-epoch:version-release.arch)."""
        if self._nevras is None:
            self._nevras = {}
            for r in self.repos:
                for s in r.solvables:
                    self._nevras.setdefault(nevra_key(s.name, s.evr, s.arch), []).append(s.id)
        return self._nevras

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
