"""recipe -> Lock for apt repositories: fill in the sources, fetch and
verify each one's metadata with its own keyring, load the indices, choose
as apt does, resolve the variant, describe the result as a Lock.

The sources are fetched and their indices decompressed in threads (the
network, gpgv, zlib and xz all run without the GIL); the main thread
splits each index as soon as its bytes are there, in the sources' order,
so the result never depends on which download finished first.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from rootfs import ui
from rootfs.backends import ResolveOptions
from rootfs.backends.deb.index import Index, Package, decompress_index
from rootfs.backends.deb.mirror import choose_mirror, choose_security_mirror
from rootfs.backends.deb.policy import Pool, PoolSource, default_priority
from rootfs.backends.deb.release import (
    FetchedRelease,
    IndexFile,
    check_release,
    fetch_index,
    fetch_release,
    parse_date,
)
from rootfs.backends.deb.resolver import resolve_set, variant_request
from rootfs.backends.deb.settings import active_sources
from rootfs.backends.deb.sources import MIRROR, SECURITY_MIRROR, Mirrors, Repository, repositories, uses
from rootfs.host.run import run as host_run
from rootfs.model.errors import CommandTimeout, OutputError, RootfsError, UsageError, VerifyError
from rootfs.model.lock import Lock, LockedPackage, LockSource
from rootfs.model.recipe import Recipe
from rootfs.net.cache import Cache
from rootfs.net.fetch import Downloader
from rootfs.net.openpgp import check_keyring


def apt_checks_valid_until() -> bool:
    """apt's own Acquire::Check-Valid-Until on this host (default true)."""
    if not shutil.which("apt-config"):
        return True
    try:
        out = host_run(["apt-config", "dump", "Acquire::Check-Valid-Until"], text=True, seconds=30).stdout
    except (OSError, CommandTimeout):
        return True
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key == "Acquire::Check-Valid-Until":
            return value.strip().strip(";").strip('"').lower() not in ("false", "no", "0", "off")
    return True


def plan(recipe: Recipe, opts: ResolveOptions) -> list[Repository]:
    """The recipe's sources with the mirrors of this run filled in: what
    resolving would fetch, in order. Nothing is fetched."""
    s = recipe.settings
    specs = active_sources(s)
    if not specs:
        raise UsageError(f"recipe {recipe.name} has no sources left (all are update suites and updates are off)")
    mirror = choose_mirror(None, s.mirror, recipe.distribution, s.origin) if uses(specs, MIRROR) else ""
    security, why = ("", "")
    if uses(specs, SECURITY_MIRROR):
        security, why = choose_security_mirror(s.security_mirror, recipe.distribution, s.origin)
    mirrors = Mirrors(mirror, security, s.image_mirror, s.image_security_mirror, why)
    repos = repositories(specs, mirrors, default_components=tuple(s.components),
                         default_keyring=opts.keyring or s.keyring, architecture=recipe.architecture)
    if not repos:
        raise UsageError(f"recipe {recipe.name}: no source applies to architecture {recipe.architecture}")
    if opts.check_gpg:
        checked: set[str] = set()
        for repo in repos:
            if not repo.keyring:
                raise UsageError(f"recipe {recipe.name} names no keyring for {repo.id}; "
                                 "pass --keyring FILE (or --no-check-gpg)")
            if repo.keyring not in checked:
                check_keyring(repo.keyring)
                checked.add(repo.keyring)
    return repos


def _host_chosen(recipe: Recipe, repo: Repository) -> bool:
    """Whether repo's URL is the host apt's own (so apt's Valid-Until
    setting applies to it too)."""
    s = recipe.settings
    if repo.role == "mirror":
        return not s.mirror and not os.environ.get("ROOTFS_MIRROR")
    if repo.role == "security-mirror":
        return not s.security_mirror and not os.environ.get("ROOTFS_SECURITY_MIRROR")
    return False


@dataclass
class Loaded:
    """One source after its metadata was verified and its indices read."""

    repo: Repository
    fetched: FetchedRelease
    index: Index
    priority: int


def _verified_release(downloader: Downloader, recipe: Recipe, repo: Repository, opts: ResolveOptions,
                      apt_lenient: bool) -> FetchedRelease:
    fetched, _ = fetch_release(downloader, repo.url, repo.suite, repo.keyring, check_gpg=opts.check_gpg)
    check_valid_until = opts.check_valid_until
    rel = fetched.release
    if check_valid_until and apt_lenient and _host_chosen(recipe, repo):
        # The mirror is the one this host's apt uses, and the host's apt was
        # told not to check Valid-Until (typical for snapshot or cached
        # mirrors, as on build farms): judging the same Release more strictly
        # than apt would only make a host that can run apt fail to bootstrap.
        # An explicitly named mirror keeps the strict check.
        check_valid_until = False
        if rel.valid_until:
            ui.detail(f"apt's Acquire::Check-Valid-Until is false here; not checking Valid-Until of {repo.id}")
    check_release(rel, repo.suite, check_valid_until=check_valid_until)
    return fetched


def _index_arches(fetched: FetchedRelease, arch: str) -> list[str]:
    rel = fetched.release
    arches = [arch]
    # binary-all carries the Architecture: all packages only when the archive
    # does not also put them into every binary-ARCH index.
    if "all" in rel.architectures and not rel.no_arch_all_packages and arch != "all":
        arches.append("all")
    return arches


def _index_bytes(downloader: Downloader, fetched: FetchedRelease, component: str, arch: str,
                 cache: Cache | None) -> tuple[bytes, IndexFile | None]:
    """The uncompressed index, and its Release entry when it should be
    kept in the cache. The Release lists the uncompressed file's SHA256
    too, so the package cache can keep it by that name: a stable suite's
    main index changes at point releases only, and a nightly resolve then
    skips the download and the decompression (the entry is checked on
    every use, as package files are)."""
    plain = fetched.release.files.get(f"{component}/binary-{arch}/Packages")
    if cache is not None and plain is not None:
        try:
            hit = cache.lookup(plain.sha256, plain.size)
        except OutputError:
            hit = None  # a cache this user cannot read: fetch as without one
        if hit is not None:
            ui.detail(f"{fetched.url}{plain.path} from the cache (verified)")
            return hit.read_bytes(), None
    data, ext = fetch_index(downloader, fetched, component, arch)
    what = f"{fetched.url}{component}/binary-{arch}/Packages{ext}"
    raw = decompress_index(data, ext, what, plain.size if plain is not None else 0)
    return raw, plain if cache is not None else None


def _keep(cache: Cache, entry: IndexFile, raw: bytes, what: str) -> None:
    """Store a decompressed index in the cache (in a thread: hashing and
    writing run without the GIL while the main thread splits)."""
    try:
        cache.store(entry.sha256, raw)
    except ValueError:
        raise VerifyError(f"{what} decompresses to other content than its Release lists") from None
    except OutputError as exc:
        ui.detail(f"not keeping {what} in the cache: {exc}")


def verified_releases(recipe: Recipe, opts: ResolveOptions, downloader: Downloader,
                      repos: list[Repository]) -> list[FetchedRelease]:
    """Every source's InRelease (or Release) fetched and checked: signature,
    suite, Valid-Until. In threads: the network and gpgv run without the GIL."""
    apt_lenient = opts.check_valid_until and any(_host_chosen(recipe, r) for r in repos) and not apt_checks_valid_until()
    with ThreadPoolExecutor(max_workers=min(8, len(repos)), thread_name_prefix="releases") as pool:
        futures = [pool.submit(_verified_release, downloader, recipe, r, opts, apt_lenient) for r in repos]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def load_sources(recipe: Recipe, opts: ResolveOptions, downloader: Downloader,
                 repos: list[Repository], releases: list[FetchedRelease] | None = None) -> list[Loaded]:
    """Every source verified (with its own keyring) and its indices loaded;
    `releases`: the sources' metadata already verified in this run."""
    arch = recipe.architecture
    cache = Cache(opts.cache_dir) if opts.cache_dir is not None else None
    # Asked once, and only when some source is the host's own.
    apt_lenient = releases is None and opts.check_valid_until and any(_host_chosen(recipe, r) for r in repos) \
        and not apt_checks_valid_until()
    loaded: list[Loaded] = []
    with ThreadPoolExecutor(max_workers=min(8, 2 * len(repos) + 1), thread_name_prefix="sources") as pool:
        if releases is None:
            pending = [pool.submit(_verified_release, downloader, recipe, r, opts, apt_lenient) for r in repos]
        else:
            pending = []
            for fetched in releases:
                done: Future = Future()
                done.set_result(fetched)
                pending.append(done)
        jobs: list[list[tuple[str, Future]]] = []
        try:
            for repo, fut in zip(repos, pending):
                fetched = fut.result()
                jobs.append([(f"{component}/binary-{a}",
                              pool.submit(_index_bytes, downloader, fetched, component, a, cache))
                             for component in repo.components for a in _index_arches(fetched, arch)])
                rel = fetched.release
                priority = repo.priority if repo.priority is not None else default_priority(
                    rel.not_automatic, rel.but_automatic_upgrades)
                loaded.append(Loaded(repo, fetched, Index(arch, repo.url, repo.id), priority))
            keeping = []
            for entry, parts in zip(loaded, jobs):
                for name, fut in parts:
                    raw, plain = fut.result()
                    if plain is not None and cache is not None:
                        keeping.append(pool.submit(_keep, cache, plain, raw, f"{entry.repo.url}dists/"
                                                   f"{entry.repo.suite}/{name}/Packages"))
                    entry.index.add([raw])
            for fut in keeping:
                fut.result()
        except BaseException:
            for f in pending + [f for parts in jobs for _, f in parts]:
                f.cancel()
            raise
    for entry in loaded:
        ui.detail(f"{entry.index.stanzas} stanzas in {entry.repo.id} {' '.join(entry.repo.components)} "
                  f"(priority {entry.priority})")
    return loaded


# The repository of package files given by path, and its pin priority.
LOCAL = "local"
LOCAL_PRIORITY = 1001


def build_pool(loaded: list[Loaded], architecture: str, local: Index | None = None) -> Pool:
    sources = []
    for entry in loaded:
        rel = entry.fetched.release
        names = tuple(dict.fromkeys(n for n in (entry.repo.suite, rel.suite, rel.codename) if n))
        sources.append(PoolSource(entry.index, entry.priority, names, entry.repo.id))
    if local is not None:
        sources.append(PoolSource(local, LOCAL_PRIORITY, (), LOCAL))
    return Pool(sources, architecture)


def _locked(p: Package) -> LockedPackage:
    depends = []
    if p.pre_depends:
        depends.append(f"Pre-Depends: {p.pre_depends}")
    if p.depends:
        depends.append(f"Depends: {p.depends}")
    return LockedPackage(
        name=p.name,
        version=p.version,
        architecture=p.architecture,
        url=p.url,
        size=p.size,
        sha256=p.sha256,
        source=p.source_name,
        essential=p.essential,
        priority=p.priority,
        depends=tuple(depends),
        provides=tuple(x.strip() for x in p.provides.split(",") if x.strip()),
        repository=p.repository,
    )


def _lock_source(repo: Repository, fetched: FetchedRelease) -> LockSource:
    rel = fetched.release
    return LockSource(
        url=repo.url, suite=repo.suite, metadata=fetched.metadata, sha256=fetched.sha256,
        date=rel.date, components=tuple(repo.components), keyring=repo.keyring, priority=repo.priority or 0,
        role=repo.role, image_url=repo.image_url if repo.image_url != repo.url else "",
        origin=rel.origin, label=rel.label, codename=rel.codename,
    )


def _source_date_epoch(loaded: list[Loaded]) -> int:
    """The newest Release Date among the sources: a lock made after a
    security update gets that day, not the point release's."""
    newest = 0
    for entry in loaded:
        rel = entry.fetched.release
        if rel.date:
            newest = max(newest, int(parse_date(rel.date, f"the Release of {entry.repo.id}").timestamp()))
    return newest


def local_package(path: str, architecture: str) -> str:
    """The Packages stanza of a package file named in --include, with its
    file:// URL, size and sha256 (which the lock records)."""
    import hashlib

    from rootfs.backends.deb.debfile import DebFile
    from rootfs.model.errors import UsageError

    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise UsageError(f"--include: package file {path} does not exist")
    with DebFile(full, path) as deb:
        fields = deb.control().fields
    arch = fields.get("Architecture", "")
    if not fields.get("Package") or not fields.get("Version"):
        raise UsageError(f"--include: {path} has no Package or Version in its control file")
    if arch not in (architecture, "all"):
        raise UsageError(f"--include: {path} is for {arch}, not {architecture}")
    h = hashlib.sha256()
    with open(full, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    lines = [f"{k}: {v}" for k, v in fields.items() if k not in ("Filename", "Size", "SHA256", "MD5sum")]
    lines += [f"Filename: file://{full}", f"Size: {os.path.getsize(full)}", f"SHA256: {h.hexdigest()}"]
    return "\n".join(lines) + "\n"


def _may_keep(recipe: Recipe, previous: Lock) -> bool:
    """Whether the previous lock can stand for this recipe when its
    sources' metadata is unchanged: it was resolved from the same
    selection (the caller compared the recipes), and no package file named
    by path is in it (its content is not in any Release)."""
    from rootfs.model.recipe import is_local_package

    s = recipe.settings
    return (previous.backend == "deb" and previous.recipe == recipe.name and previous.suite == recipe.suite
            and previous.architecture == recipe.architecture and previous.variant == s.variant
            and previous.components == tuple(s.components) and previous.merged_usr == s.merged_usr
            and previous.sources_format == s.sources_format and previous.requested == tuple(recipe.include)
            and not any(is_local_package(e) for e in recipe.include))


def resolve(recipe: Recipe, opts: ResolveOptions, downloader: Downloader) -> Lock:
    from rootfs.backends.deb.index import parse_stanza
    from rootfs.model.recipe import is_local_package

    repos = plan(recipe, opts)
    releases = None
    if opts.previous is not None and _may_keep(recipe, opts.previous):
        releases = verified_releases(recipe, opts, downloader, repos)
        if opts.previous.sources == tuple(_lock_source(r, f) for r, f in zip(repos, releases)):
            ui.detail("every source's signed metadata is the previous lock's: its choice stands")
            return opts.previous
    loaded = load_sources(recipe, opts, downloader, repos, releases)
    # Package files named in --include: apt installs exactly those files,
    # so they outrank every source (a priority above 1000 even downgrades).
    local = Index(recipe.architecture, "", LOCAL)
    names = []
    for entry in recipe.include:
        if is_local_package(entry):
            stanza = local_package(entry, recipe.architecture)
            local.override(stanza)
            names.append(parse_stanza(stanza.encode()).name)
        else:
            names.append(entry)
    pool = build_pool(loaded, recipe.architecture, local if local.stanzas else None)
    # The image's apt talks to what its sources name.
    https = any((r.image_url or r.url).startswith("https://") for r in repos)
    request = variant_request(pool, recipe.settings.variant, names, recipe.exclude, https=https)
    for sel in pool.selections:
        if sel.because_of:
            ui.info(f"Selected version {sel.package.version} ({sel.suite}) for {sel.package.name} "
                    f"because of {sel.because_of}")
        elif sel.suite:
            ui.info(f"Selected version {sel.package.version} ({sel.suite}) for {sel.package.name}")
    result = resolve_set(pool, request)
    for w in result.warnings:
        ui.warn(w)
    return Lock(
        backend="deb",
        recipe=recipe.name,
        distribution=recipe.distribution,
        suite=recipe.suite,
        architecture=recipe.architecture,
        variant=recipe.settings.variant,
        components=tuple(recipe.settings.components),
        sources=tuple(_lock_source(e.repo, e.fetched) for e in loaded),
        packages=tuple(_locked(p) for p in result.packages),
        merged_usr=recipe.settings.merged_usr,
        source_date_epoch=_source_date_epoch(loaded),
        requested=tuple(os.path.abspath(e) if is_local_package(e) else e for e in recipe.include),
        sources_format=recipe.settings.sources_format,
    )


def locked(lock: Lock, recipe: Recipe, sources_given: bool, opts: ResolveOptions) -> tuple[Lock, dict[str, str]]:
    """A lock read from a file, for this run: the image's own sources as
    --image-mirror and --image-security-mirror now say, and, when the user
    named sources (--mirror, --security-mirror, --source), the URL each
    package is fetched from now: the new source of the same suite (a
    snapshot or a local mirror can serve an old lock; every file is still
    checked against the lock's sha256)."""
    s = recipe.settings
    sources = list(lock.sources)
    changed = False
    for i, src in enumerate(sources):
        image = s.image_mirror if src.role == "mirror" else s.image_security_mirror if src.role == "security-mirror" else ""
        if image:
            image = image.rstrip("/") + "/"
            sources[i] = replace(src, image_url="" if image == src.url else image)
            changed = True
    if changed:
        lock = replace(lock, sources=tuple(sources))
    urls: dict[str, str] = {}
    if not sources_given:
        return lock, urls
    try:
        now = plan(recipe, replace(opts, check_gpg=False))
    except RootfsError as exc:
        raise UsageError(f"cannot use the sources given with --locked: {exc}") from None
    by_suite: dict[str, str] = {}
    for repo in now:
        by_suite.setdefault(repo.suite, repo.url)
    bases = {}
    for src in lock.sources:
        new = by_suite.get(src.suite)
        if new and new != src.url:
            bases[f"{src.url} {src.suite}"] = (src.url, new)
    if not bases:
        return lock, urls
    for p in lock.packages:
        key = p.repository or (f"{lock.sources[0].url} {lock.sources[0].suite}" if lock.sources else "")
        base = bases.get(key)
        if base and p.url.startswith(base[0]):
            urls[p.key] = base[1] + p.url[len(base[0]):]
    moved = sorted({new for _, new in bases.values()})
    ui.info(f"fetching the locked packages from {', '.join(moved)}")
    return lock, urls
