"""resolve(recipe, opts, downloader) -> Lock for rpm-md repositories.

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

from rootfs import ui
from rootfs.backends import ResolveOptions
from rootfs.backends.rpm.keys import armored_key
from rootfs.backends.rpm.modules import ModularFilter, parse_modules
from rootfs.backends.rpm.modules import apply as modules_apply
from rootfs.backends.rpm.primary import Package, parse_primary, scan_filelists
from rootfs.backends.rpm.repomd import Repomd, fetch_data, fetch_repomd
from rootfs.backends.rpm.resolver import resolve_packages
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


def load_repos(recipe: Recipe, opts: ResolveOptions, downloader: Downloader) -> tuple[list[Repomd], list[Package]]:
    if not recipe.settings.repos:
        raise UsageError("an rpm recipe needs at least one repository (repos = [...] or --repo URL)")
    key = signing_key(recipe, opts)
    repo_key = key if recipe.settings.repo_gpgcheck else ""
    repos: list[Repomd] = []
    packages: list[Package] = []
    modular_filter, modular = ModularFilter(), set()
    for i, url in enumerate(recipe.settings.repos):
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
            packages.extend(parse_primary(stream, repo=i, where=f"{md.url} primary"))
        modules = fetch_data(downloader, md, "modules")
        if modules is not None:
            with modules:
                f, m = parse_modules(modules, f"{md.url} modules")
            modular_filter.merge(f)
            modular |= m
    if modular:
        packages = modules_apply(packages, modular_filter, modular)
    return repos, packages


def filelists_loader(repos: list[Repomd], downloader: Downloader):
    def load(wanted: set[str]) -> Iterator[tuple[str, str, str, str]]:
        for md in repos:
            stream = fetch_data(downloader, md, "filelists")
            if stream is None:
                continue
            with stream:
                yield from scan_filelists(stream, wanted, f"{md.url} filelists")

    return load


def locked(p: Package, repos: list[Repomd]) -> LockedPackage:
    if p.checksum_type != "sha256":
        raise VerifyError(
            f"{repos[p.repo].url} lists {p.nevra} with a {p.checksum_type or 'missing'} checksum; "
            "rootfs needs sha256 package checksums"
        )
    base = p.base.rstrip("/") if p.base else repos[p.repo].url
    return LockedPackage(
        name=p.name, version=p.evr_text(), architecture=p.arch,
        url=f"{base}/{p.location.lstrip('/')}", size=p.size, sha256=p.checksum,
        source=p.sourcerpm, depends=tuple(str(d) for d in p.requires),
        provides=tuple(str(d) for d in p.provides), build_time=p.buildtime,
    )


def requests_of(recipe: Recipe) -> list[str]:
    out = list(dict.fromkeys(list(recipe.settings.packages) + list(recipe.include)))
    if not out:
        raise UsageError("name at least one package to install (packages = [...] or PACKAGE arguments)")
    return out


def resolve(recipe: Recipe, opts: ResolveOptions, downloader: Downloader) -> Lock:
    repos, packages = load_repos(recipe, opts, downloader)
    chosen = resolve_packages(
        packages, recipe.architecture, requests_of(recipe), weak_deps=recipe.settings.weak_deps,
        exclude=recipe.exclude, filelists=filelists_loader(repos, downloader),
    )
    if not chosen:
        raise ResolveError("nothing to install")
    key = signing_key(recipe, opts)
    revisions = [int(md.revision) for md in repos if md.revision.isdigit()]
    epoch = max(revisions) if revisions else max(p.buildtime for p in chosen)
    return Lock(
        backend="rpm", recipe=recipe.name, distribution=recipe.distribution, suite=recipe.suite,
        architecture=recipe.architecture,
        sources=tuple(
            LockSource(url=md.url, metadata="repodata/repomd.xml", sha256=md.sha256, date=md.revision)
            for md in repos
        ),
        packages=tuple(locked(p, repos) for p in chosen),
        source_date_epoch=epoch,
        requested=tuple(requests_of(recipe)),
        # install() checks every package's signature against these.
        keys=(armored_key(key),) if key else (),
    )
