"""resolve(recipe, opts, downloader) -> Lock for rpm-md repositories.

Each repository's repomd.xml is fetched; every file it names is checked
against repomd's checksum (sha256 or stronger) before anything parses it;
then libsolv (solver.py) gets primary.xml, and filelists.xml only for the
paths it must know.

Trust follows dnf's defaults: every package must be signed by one of the
recipe's keys (gpgcheck, checked when the packages are installed, from the
keys the lock carries), and repomd.xml's own signature is checked only
when the recipe asks for it with `repo_gpgcheck` (most distributions,
Fedora's and CentOS's among them, do not sign repomd.xml). A recipe
without a key is refused unless --no-check-gpg is given, which then says
loudly what is not checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import solv

from rootfs import ui
from rootfs.backends import ResolveOptions
from rootfs.backends.rpm.comps import Comps, parse_comps
from rootfs.backends.rpm.filelists import scan_filelists
from rootfs.backends.rpm.keys import armored_key
from rootfs.backends.rpm.modules import Modules, parse_modules
from rootfs.backends.rpm.repomd import Repomd, fetch_data, fetch_repomd
from rootfs.backends.rpm.requests import Selector
from rootfs.backends.rpm.solver import Sack, SolveOptions
from rootfs.host.safepath import repository_path
from rootfs.model.errors import ResolveError, UsageError, VerifyError
from rootfs.model.lock import Lock, LockedPackage, LockSource
from rootfs.model.recipe import Recipe
from rootfs.net.fetch import Downloader


def signing_key(recipe: Recipe, opts: ResolveOptions) -> str:
    """The key file packages (and, with repo_gpgcheck, repomd.xml) are
    checked with; "" with --no-check-gpg. No key is a usage error."""
    if not opts.check_gpg:
        return ""
    key = opts.keyring or recipe.settings.gpgkey
    if not key:
        raise UsageError(f"recipe {recipe.name} names no gpgkey, so its packages' signatures cannot be checked; "
                         "pass --gpgkey FILE (or --no-check-gpg to install unsigned packages)")
    return key


@dataclass
class Loaded:
    """Every repository's verified metadata, read."""

    repos: list[Repomd]
    sack: Sack
    modules: Modules
    comps: Comps


def load(recipe: Recipe, opts: ResolveOptions, downloader: Downloader, specs: list[str] = ()) -> Loaded:
    """The recipe's repositories, read for the request specs (their paths
    may need filelists.xml, their groups comps.xml)."""
    settings = recipe.settings
    if not settings.repos:
        raise UsageError("an rpm recipe needs at least one repository (repos = [...] or --repo URL)")
    key = signing_key(recipe, opts)  # no key at all is refused before anything is fetched
    repo_key = key if settings.repo_gpgcheck else ""
    repos: list[Repomd] = []
    sack = Sack(recipe.architecture, filelists=_filelists_loader(repos, downloader))
    modules, comps = Modules(), Comps()
    wants_comps = any(s.startswith("@") for s in specs)
    for url in settings.repos:
        md = fetch_repomd(downloader, url, repo_key or None)
        if not opts.check_gpg:
            ui.warn(f"NOT checking the signatures of {md.url}/repodata/repomd.xml or of its packages "
                    "(--no-check-gpg): anyone between you and the repository can choose what gets installed")
        elif not repo_key:
            ui.detail(f"{md.url}/repodata/repomd.xml: its signature is not checked (repo_gpgcheck is off, "
                      "as in dnf); every package's is")
        repos.append(md)
        stream = fetch_data(downloader, md, "primary")
        assert stream is not None  # parse_repomd insists on primary
        with stream:
            sack.add_primary(stream, f"{md.url} primary")
        found = fetch_data(downloader, md, "modules")
        if found is not None:
            with found:
                modules.merge(parse_modules(found, f"{md.url} modules"))
        if wants_comps:
            kind = "group_gz" if "group_gz" in md.data else "group"
            found = fetch_data(downloader, md, kind)
            if found is not None:
                with found:
                    comps.merge(parse_comps(found, f"{md.url} comps"))
    sack.prepare(s for s in specs if s.startswith("/"))
    return Loaded(repos, sack, modules, comps)


def _filelists_loader(repos: list[Repomd], downloader: Downloader):
    def load(wanted: set[str]) -> Iterator[tuple[int, str, str, str, str]]:
        for i, md in enumerate(repos):
            stream = fetch_data(downloader, md, "filelists")
            if stream is None:
                continue
            with stream:
                for pkgid, name, arch, path in scan_filelists(stream, wanted, f"{md.url} filelists"):
                    yield i, pkgid, name, arch, path

    return load


def solve(loaded: Loaded, specs: list[str], *, modules: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
          options: SolveOptions = SolveOptions()) -> list[solv.XSolvable]:
    """The packages dnf would install for specs into an empty root."""
    enabled = dict(s.split(":", 1) for s in modules)
    selector = Selector(loaded.sack, loaded.modules, loaded.comps, enabled, tuple(exclude))
    jobs = selector.jobs(list(specs))
    return loaded.sack.solve(jobs, options, " ".join(specs))


def locked(s: solv.XSolvable, loaded: Loaded) -> LockedPackage:
    md = loaded.repos[loaded.sack.repo_index(s)]
    ck = s.lookup_checksum(solv.SOLVABLE_CHECKSUM)
    if ck is None or ck.type != solv.REPOKEY_TYPE_SHA256:
        raise VerifyError(f"{md.url} lists {s} with a {'missing' if ck is None else ck.typestr()} checksum; "
                          "rootfs needs sha256 package checksums")
    base = s.lookup_str(solv.SOLVABLE_MEDIABASE)
    href = s.lookup_location()[0]
    evr = s.evr if ":" in s.evr else "0:" + s.evr
    deps = [str(d) for d in s.lookup_deparray(solv.SOLVABLE_REQUIRES, 0)]
    return LockedPackage(
        name=s.name, version=evr, architecture=s.arch,
        url=f"{base.rstrip('/') if base else md.url}/{repository_path(href, f'{md.url} lists {s} at')}",
        size=s.lookup_num(solv.SOLVABLE_DOWNLOADSIZE), sha256=ck.hex(),
        source=s.lookup_sourcepkg() or "",
        depends=tuple(d for d in deps if d != "solvable:prereqmarker"),
        provides=tuple(str(d) for d in s.lookup_deparray(solv.SOLVABLE_PROVIDES)),
        build_time=s.lookup_num(solv.SOLVABLE_BUILDTIME),
    )


def requests_of(recipe: Recipe) -> list[str]:
    out = list(dict.fromkeys(list(recipe.settings.packages) + list(recipe.include)))
    if not out:
        raise UsageError("name at least one package to install (packages = [...] or PACKAGE arguments)")
    return out


def resolve(recipe: Recipe, opts: ResolveOptions, downloader: Downloader) -> Lock:
    specs = requests_of(recipe)
    settings = recipe.settings
    loaded = load(recipe, opts, downloader, specs)
    chosen = solve(loaded, specs, modules=settings.modules, exclude=recipe.exclude,
                   options=SolveOptions(weak_deps=settings.weak_deps, best=settings.best, nodeps=settings.nodeps))
    if not chosen:
        raise ResolveError("nothing to install")
    packages = tuple(locked(s, loaded) for s in chosen)
    key = signing_key(recipe, opts)
    revisions = [int(md.revision) for md in loaded.repos if md.revision.isdigit()]
    epoch = max(revisions) if revisions else max(p.build_time for p in packages)
    return Lock(
        backend="rpm", recipe=recipe.name, distribution=recipe.distribution, suite=recipe.suite,
        architecture=recipe.architecture,
        sources=tuple(
            LockSource(url=md.url, metadata="repodata/repomd.xml", sha256=md.sha256, date=md.revision)
            for md in loaded.repos
        ),
        packages=packages,
        source_date_epoch=epoch,
        requested=tuple(specs),
        # install() checks every package's signature against these.
        keys=(armored_key(key),) if key else (),
    )
