"""Install a locked deb package set into a root, in two stages.

Stage 1 (any user) extracts every package's data.tar exactly once, in
parallel, through rootfs.host.unpacker, and registers it in the target's dpkg
database the way `dpkg --unpack` leaves a package: info/PKG.list, .md5sums,
.conffiles, the maintainer scripts and other control files, trigger
interests, and a status entry "install ok unpacked" whose Conffiles field
carries the hashes of the shipped conffiles.

Stage 2 (root) runs the target's own dpkg chrooted (never `dpkg --root`, see
DESIGN.md). First the essential set and everything it depends on, as
mmdebstrap does with `dpkg --install --force-depends`: all their preinsts
(base-passwd's writes /etc/passwd before any postinst needs it), then one
dpkg run configures them in dependency order. Then the rest, the way dpkg
and apt treat a package: its preinst runs once what it pre-depends on is
configured, and `dpkg --configure --pending` finishes. debootstrap and
mmdebstrap unpack every package a second time in this stage (`dpkg
--install`/`--unpack`); not doing so is where the time goes. Compared with
mmdebstrap's bookworm minbase the finished tree has the same files, dpkg
database and debconf database.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rootfs.backends import InstallOptions, InstallReport, Mode
from rootfs.backends.deb import profile
from rootfs.backends.deb.debfile import ControlInfo, DebFile
from rootfs.backends.deb.relations import parse_relations
from rootfs.backends.deb.settings import DebSettings
from rootfs.host.chroot import sigterm_raises
from rootfs.host.unpacker import Extractor
from rootfs.model.attrs import AttrRecord
from rootfs.model.customize import Customize
from rootfs.model.errors import InstallError, UsageError
from rootfs.model.lock import Lock, LockedPackage
from rootfs.pipeline.hooks import HookContext, HookRunner

ADMIN = "var/lib/dpkg"

# debootstrap's setup_merged_usr: the lib directories each architecture has.
MERGED_USR_EXTRA = {
    "amd64": ("lib32", "lib64", "libx32"),
    "i386": ("lib64", "libx32"),
    "mips": ("lib32", "lib64"),
    "mipsel": ("lib32", "lib64"),
    "mips64el": ("lib32", "lib64", "libo32"),
    "loong64": ("lib32", "lib64"),
    "powerpc": ("lib64",),
    "ppc64": ("lib32", "lib64"),
    "ppc64el": ("lib64",),
    "s390x": ("lib32",),
    "sparc": ("lib64",),
    "sparc64": ("lib32", "lib64"),
    "x32": ("lib32", "lib64", "libx32"),
}

# Status fields in the order dpkg writes them (lib/dpkg/parse.c fieldinfos);
# any other control field follows in the package's own order.
STATUS_ORDER = (
    "Package", "Essential", "Protected", "Status", "Priority", "Section", "Installed-Size", "Origin",
    "Maintainer", "Bugs", "Architecture", "Multi-Arch", "Source", "Version", "Config-Version",
    "Replaces", "Provides", "Depends", "Pre-Depends", "Recommends", "Suggests", "Breaks",
    "Conflicts", "Enhances", "Conffiles", "Description", "Triggers-Pending", "Triggers-Awaited",
)
NOT_IN_STATUS = {"Filename", "Size", "MD5sum", "MSDOS-Filename", "SHA1", "SHA256", "Status"}

# What makes two builds of the same lock differ, removed as mmdebstrap does
# (its cleanup/reproducible step).
UNREPRODUCIBLE = (
    "var/log/dpkg.log", "var/log/apt/history.log", "var/log/apt/term.log",
    "var/log/alternatives.log", "var/cache/ldconfig/aux-cache", "var/log/apt/eipp.log.xz",
    "var/lib/dbus/machine-id",
)

MAINT_SCRIPTS = ("preinst", "postinst", "prerm", "postrm", "config")
SCRIPT_NAMES = {
    "pre-installation": "preinst", "post-installation": "postinst",
    "pre-removal": "prerm", "post-removal": "postrm",
}


@dataclass
class Unpacked:
    """One package after stage 1."""

    pkg: LockedPackage
    control: ControlInfo
    paths: list[str]
    md5sums: dict[str, str]
    claims: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    dir_mtimes: list[tuple[str, int]] = field(default_factory=list)
    conffile_hashes: list[tuple[str, str]] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)  # listed path -> file type, as the archive says

    @property
    def name(self) -> str:
        return self.pkg.name

    @property
    def info_name(self) -> str:
        """dpkg's info file stem: PKG, or PKG:ARCH for Multi-Arch: same."""
        if self.control.fields.get("Multi-Arch", "") == "same":
            return f"{self.pkg.name}:{self.control.fields.get('Architecture', self.pkg.architecture)}"
        return self.pkg.name

    @property
    def has_preinst(self) -> bool:
        return "preinst" in self.control.files


# What mmdebstrap's setup step makes before its setup hooks run; made here
# only when there are setup hooks (they may copy into these).
SETUP_DIRS = ("etc/apt/apt.conf.d", "etc/apt/sources.list.d", "etc/apt/preferences.d", "var/cache/apt",
              "var/lib/apt/lists/partial", "tmp", "var/lib/dpkg", "etc/dpkg/dpkg.cfg.d", "var/log/apt",
              "var/lib/dpkg/triggers", "var/lib/dpkg/info", "var/lib/dpkg/alternatives", "var/lib/dpkg/updates")


def check_points(c: Customize, mode: Mode) -> None:
    """Without stage 2 there is no essential or customize point."""
    if mode.configures:
        return
    late = [h for h in c.hooks if h.point in ("essential", "customize")]
    if late:
        raise UsageError(f"--mode extract runs no {late[0].point} hooks (they need a configured root)")
    if c.changes_root:
        raise UsageError("--mode extract cannot apply [customize] (it needs a configured root)")


def install(lock: Lock, files: dict[str, Path], root: Path, opts: InstallOptions) -> InstallReport:
    missing = [p.key for p in lock.packages if p.key not in files]
    if missing:
        raise InstallError(f"no package file for {', '.join(sorted(missing))}")
    if opts.mode != "root" and opts.attrs is None:
        opts.attrs = AttrRecord()
    settings = opts.settings if isinstance(opts.settings, DebSettings) else DebSettings()
    c = opts.customize
    check_points(c, opts.mode)
    report = InstallReport(packages=len(lock.packages), payloads_checked=True)
    root = Path(root)
    stage2 = opts.mode.configures
    ctx = HookContext(mode=opts.mode.value, include=lock.requested, verbosity=opts.verbosity,
                      source_date_epoch=lock.source_date_epoch)
    # SIGTERM unwinds like Ctrl-C, so the caller's cleanup of a half-built
    # root runs (and stage 2's mounts are undone).
    with sigterm_raises(), Extractor(root, mode=opts.mode, attrs=opts.attrs, warn=opts.log,
                                     policy=opts.policy) as ex, \
            HookRunner(c.hooks, ctx, opts.log) as hooks:
        made = setup_root(lock, ex, settings, hooks)
        if hooks.at("setup"):
            with _session(ex, opts, setup=True) as ch:
                hooks.run("setup", ex.root, ch)
        unpacked = stage_one(lock, files, ex, opts, register_all=not stage2, skip=profile.path_filter(settings),
                             made=made)
        if stage2:
            stage_two(lock, unpacked, ex, opts, hooks)
            report.configured = True
        else:
            if hooks.at("extract"):
                with _session(ex, opts) as ch:
                    hooks.run("extract", ex.root, ch)
            report.skipped.append("stage 2 (maintainer scripts) not run")
        write_fstab(ex)
        write_sources(lock, ex)
        finish_profile(lock, unpacked, ex, settings)
        if stage2 and (c.changes_root or hooks.at("customize")):
            from rootfs.pipeline.customize import customize_root

            with _session(ex, opts) as ch:
                customize_root(ex.root, c, ch, hooks, "deb", opts.log)
        if stage2:
            for path in UNREPRODUCIBLE:
                ex.remove(path)
    return report


def _session(ex: Extractor, opts: InstallOptions, setup: bool = False):
    from rootfs.pipeline.hooks import session_for

    return session_for(ex.root, opts.mode.value, opts.attrs, opts.log, setup=setup)


def setup_root(lock: Lock, ex: Extractor, settings: DebSettings, hooks: HookRunner) -> list[str]:
    """What exists before the first package: merged /usr, mmdebstrap's
    setup directories when setup hooks will look, and the --aptopt and
    --dpkgopt files. Returns the directories made for the hooks."""
    if lock.merged_usr:
        setup_merged_usr(ex, lock.architecture)
    made = []
    if hooks.at("setup"):
        for d in SETUP_DIRS:
            if not os.path.isdir(os.path.join(ex.root, d)):
                parts = d.split("/")
                for i in range(1, len(parts) + 1):
                    sub = "/".join(parts[:i])
                    if not os.path.lexists(os.path.join(ex.root, sub)):
                        ex.make_dir(sub, 0o1777 if sub == "tmp" else 0o755)
                        made.append(sub)
    if settings.aptopt:
        _make_dirs(ex, "etc/apt/apt.conf.d")
        ex.write_file("etc/apt/apt.conf.d/99mmdebstrap", "".join(settings.aptopt).encode())
    if settings.dpkgopt:
        _make_dirs(ex, "etc/dpkg/dpkg.cfg.d")
        ex.write_file("etc/dpkg/dpkg.cfg.d/99mmdebstrap", "".join(settings.dpkgopt).encode())
    return made


def _make_dirs(ex: Extractor, path: str) -> None:
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        ex.make_dir("/".join(parts[:i]))


def finish_profile(lock: Lock, unpacked: list[Unpacked], ex: Extractor, settings: DebSettings) -> None:
    """The container profile's and the slim variant's files (see
    rootfs.backends.deb.profile), once the packages are configured."""
    versions = {p.name: p.version for p in lock.packages}
    if settings.slim:
        profile.remove_slim_leftovers(ex)
        shipped = {p.lstrip("/") for u in unpacked for p in u.paths}
        for d in profile.MAN_SECTIONS:
            if d in shipped:
                ex.make_dir("usr/share/man")
                ex.make_dir(d)
        _make_dirs(ex, "etc/dpkg/dpkg.cfg.d")
        ex.write_file("etc/dpkg/dpkg.cfg.d/docker", profile.slim_config().encode())
    if not settings.container:
        return
    for path, (text, mode) in profile.profile_files(versions.get("apt", ""), versions.get("dpkg", "")).items():
        _make_dirs(ex, path.rsplit("/", 1)[0])
        ex.write_file(path, text.encode(), mode)
    if "apt" in versions:
        manual = profile.requested_names(lock.requested, lock.packages)
        states = profile.extended_states([(p.name, p.architecture) for p in lock.packages], manual,
                                         lock.architecture)
        ex.make_dir("var/lib/apt")
        ex.write_file("var/lib/apt/extended_states", states.encode())
    machine_id = ex.read_file("etc/machine-id")
    if machine_id:
        ex.write_file("etc/machine-id", b"", 0o644)


# -- stage 1 -----------------------------------------------------------------


def _progress(opts: InstallOptions, stage: str, done: int, total: int) -> None:
    if opts.progress is not None:
        opts.progress(stage, done, total)


def setup_merged_usr(ex: Extractor, arch: str) -> None:
    for d in ("bin", "sbin", "lib") + MERGED_USR_EXTRA.get(arch, ()):
        ex.make_dir("usr")
        ex.make_dir(f"usr/{d}")
        ex.make_symlink(d, f"usr/{d}")


def _extract_one(pkg: LockedPackage, path: Path, ex: Extractor, skip=None) -> Unpacked:
    what = pkg.filename or str(path)
    with DebFile(path, what) as deb:
        control = deb.control()
        if control.package != pkg.name:
            raise InstallError(f"{what} contains package {control.package}, not {pkg.name} as the lock says")
        shipped = control.md5sums
        computed: dict[str, str] | None = {} if shipped is None else None
        claims: dict[str, tuple[int, int, int]] = {}
        dir_mtimes: list[tuple[str, int]] = []
        kinds: dict[str, int] = {}
        paths = ex.extract(deb.data_stream(), md5sums=computed, claims=claims, what=what, format_name="tar",
                           dir_mtimes=dir_mtimes, skip=skip.skips if skip else None, kinds=kinds)
    return Unpacked(pkg, control, paths, shipped if shipped is not None else computed or {}, claims, dir_mtimes,
                    kinds=kinds)


def extract_all(lock: Lock, files: dict[str, Path], ex: Extractor, opts: InstallOptions,
                skip=None, made: list[str] = ()) -> list[Unpacked]:
    """Extract every package, two at a time: xz decoding runs in libarchive
    without the GIL, so two cores both work.

    The result is the tree a one-by-one extraction in lock order leaves,
    whatever the timing: packages that ship the same non-directory path
    are extracted again one by one in that order, so the last one's copy
    wins; a path one package ships as a directory and another as something
    else (or any failure while extracting in parallel, which may be an
    artefact of the interleaving) makes the whole stage start again one by
    one from the tree as it was before it."""
    # By name, as a lock file lists them: a freshly resolved lock and the
    # same lock read back must settle overlaps the same way.
    pkgs = sorted(lock.packages, key=lambda p: (p.name, p.architecture))
    total = len(pkgs)
    jobs = max(1, min(2, os.cpu_count() or 1))
    before = _Before(ex, opts.attrs)
    results: list[Unpacked] = []
    failed = False
    with ThreadPoolExecutor(jobs, thread_name_prefix="extract") as pool:
        futures = [pool.submit(_extract_one, p, Path(files[p.key]), ex, skip) for p in pkgs]
        try:
            for i, fut in enumerate(futures):
                try:
                    results.append(fut.result())
                except Exception as exc:
                    if jobs == 1:
                        raise
                    opts.log(f"extracting two at a time failed ({exc})")
                    failed = True
                    for f in futures:
                        f.cancel()
                    break
                _progress(opts, "extracting", i + 1, total)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    overlaps = [] if failed else _overlaps(results)
    if failed or any(mixed for _, mixed, _ in overlaps):
        opts.log("packages ship the same paths as different kinds of file: extracting one by one")
        before.restore(ex, opts.attrs)
        results = []
        for i, p in enumerate(pkgs):
            results.append(_extract_one(p, Path(files[p.key]), ex, skip))
            _progress(opts, "extracting", i + 1, total)
        overlaps = []
    settle_overlaps(results, ex, files, opts, overlaps, skip, made)
    return results


def _overlaps(results: list[Unpacked]) -> list[tuple[str, bool, list[int]]]:
    """(path, kinds differ, indices of the packages shipping it) for every
    path that several packages ship, unless all ship a directory. Listed
    names and the real paths they landed on both count: the first are what
    the archives say, the second catch names that meet through a symlink."""
    by_path: dict[str, list[tuple[int, int]]] = {}
    for i, u in enumerate(results):
        for listed, kind in u.kinds.items():
            by_path.setdefault(listed, []).append((i, kind))
        for key, meta in u.claims.items():
            if "/" + key not in u.kinds:
                by_path.setdefault("/" + key, []).append((i, stat.S_IFMT(meta[0])))
    out = []
    for path, owners in sorted(by_path.items()):
        who = sorted({i for i, _ in owners})
        kinds = {k for _, k in owners}
        if len(who) < 2 or kinds == {stat.S_IFDIR}:
            continue
        out.append((path, len(kinds) > 1, who))
    return out


class _Before:
    """What the root held before stage 1 (merged-usr links, what a setup
    hook put there), so that a parallel attempt can be undone."""

    def __init__(self, ex: Extractor, attrs: AttrRecord | None):
        self.paths = _tree_paths(ex.root)
        self.attrs = AttrRecord()
        if attrs is not None:
            self.attrs.replace_with(attrs)

    def restore(self, ex: Extractor, attrs: AttrRecord | None) -> None:
        """Remove everything stage 1 added. Never follows a link: the
        walk is by lstat, removal by name in its directory."""
        for rel in sorted(_tree_paths(ex.root) - self.paths, key=lambda r: (-r.count("/"), r)):
            full = os.path.join(ex.root, rel)
            try:
                if stat.S_ISDIR(os.lstat(full).st_mode):
                    shutil.rmtree(full)
                else:
                    os.unlink(full)
            except FileNotFoundError:
                pass
        if attrs is not None:
            attrs.replace_with(self.attrs)


def _tree_paths(root: str) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for n in dirnames + filenames:
            out.add(n if rel == "." else f"{rel}/{n}")
    return out


def settle_overlaps(results: list[Unpacked], ex: Extractor, files: dict[str, Path], opts: InstallOptions,
                    overlaps: list[tuple[str, bool, list[int]]] = (), skip=None, made: list[str] = ()) -> None:
    """Directories shipped by several packages get the metadata of the first
    (dpkg keeps an existing directory). Packages shipping the same
    non-directory are extracted again, one by one in lock order, so that
    the last one's copy wins as it would have one by one."""
    owners: dict[str, list[tuple[int, tuple[int, int, int]]]] = {}
    for i, u in enumerate(results):
        for key, meta in u.claims.items():
            owners.setdefault(key, []).append((i, meta))
    for key in made:
        # Made for the setup hooks: the first package shipping it gives it
        # its owner and mode, as tar -x over mmdebstrap's directory does.
        claims = owners.get(key)
        if claims and stat.S_ISDIR(claims[0][1][0]):
            ex.set_owner_mode(key, *claims[0][1])
    for key, claims in owners.items():
        if len(claims) > 1 and {stat.S_IFMT(m[0]) for _, m in claims} == {stat.S_IFDIR}:
            first = claims[0][1]
            if any(m != first for _, m in claims):
                ex.set_owner_mode(key, *first)
    again: set[int] = set()
    for path, _, who in overlaps:
        names = ", ".join(results[i].name for i in who)
        opts.log(f"{path} is shipped by several packages ({names}); the last one wins")
        again.update(who)
    for i in sorted(again):
        u = results[i]
        with DebFile(files[u.pkg.key], u.pkg.filename) as deb:
            ex.extract(deb.data_stream(), what=u.pkg.filename, format_name="tar",
                       skip=skip.skips if skip else None)
    # Two extractions in parallel race on the mtime of a directory they both
    # write into; give every directory what a one-by-one extraction in lock
    # order leaves (each package's directories stamped at its end).
    ex.set_dir_mtimes((key, mtime) for u in results for key, mtime in reversed(u.dir_mtimes))


def _conffile_hashes(u: Unpacked, ex: Extractor) -> list[tuple[str, str]]:
    out = []
    for path in u.control.conffiles:  # normalised: never climbs out
        rel = path.lstrip("/")
        digest = u.md5sums.get(rel)
        if digest is None:
            data = ex.read_file(rel)
            digest = hashlib.md5(data).hexdigest() if data is not None else "newconffile"
        out.append((path, digest))
    return out


def status_paragraph(u: Unpacked, state: str = "install ok unpacked") -> str:
    fields = {k: v for k, v in u.control.fields.items() if k not in NOT_IN_STATUS}
    if fields.get("Essential", "").lower() == "no":
        del fields["Essential"]
    fields["Status"] = state
    if u.conffile_hashes:
        fields["Conffiles"] = "".join(f"\n {p} {h}" for p, h in u.conffile_hashes)
    lines = []
    for name in STATUS_ORDER:
        if name in fields:
            lines.append(_field(name, fields.pop(name)))
    lines.extend(_field(k, v) for k, v in fields.items())
    return "\n".join(lines) + "\n"


def _field(name: str, value: str) -> str:
    return f"{name}:{value}" if value.startswith("\n") else f"{name}: {value}"


def _triggers(u: Unpacked) -> Iterable[tuple[str, str]]:
    """(trigger name, "pkg" or "pkg/noawait") for each interest the package
    declares, as dpkg records them in triggers/File and triggers/NAME."""
    pkgname = u.info_name
    for directive, name in u.control.triggers:
        if not directive.startswith("interest"):
            continue
        suffix = "/noawait" if directive == "interest-noawait" else ""
        yield name, pkgname + suffix


def write_database(lock: Lock, unpacked: list[Unpacked], ex: Extractor, register: Iterable[Unpacked]) -> None:
    for d in ("var", "var/lib", ADMIN, f"{ADMIN}/info", f"{ADMIN}/updates", f"{ADMIN}/triggers",
              f"{ADMIN}/alternatives", f"{ADMIN}/parts"):
        ex.make_dir(d)
    ex.write_file(f"{ADMIN}/info/format", b"1\n")
    file_triggers: list[str] = []
    named: dict[str, list[str]] = {}
    info_files: list[tuple[str, bytes, int]] = []  # written in one go: info/ is opened once
    for u in unpacked:
        info = u.info_name
        info_files.append((f"{info}.list", "".join(p + "\n" for p in u.paths).encode("utf-8", "surrogateescape"),
                           0o644))
        if "md5sums" not in u.control.files:  # dpkg generates them too
            info_files.append((f"{info}.md5sums", "".join(f"{h}  {p}\n" for p, h in sorted(u.md5sums.items()))
                               .encode("utf-8", "surrogateescape"), 0o644))
        canonical = u.control.canonical
        for name, data in sorted(u.control.files.items()):
            if name == "control" or "/" in name or name.startswith("."):
                continue
            info_files.append((f"{info}.{name}", canonical.get(name, data),
                               0o755 if name in MAINT_SCRIPTS else 0o644))
        for trigger, who in _triggers(u):
            if trigger.startswith("/"):
                file_triggers.append(f"{trigger} {who}\n")
            else:
                named.setdefault(trigger, []).append(who + "\n")
    ex.write_files(f"{ADMIN}/info", info_files)
    ex.write_file(f"{ADMIN}/triggers/File", "".join(file_triggers).encode())
    ex.write_file(f"{ADMIN}/triggers/Unincorp", b"")
    for trigger, who in sorted(named.items()):
        ex.write_file(f"{ADMIN}/triggers/{trigger}", "".join(who).encode())
    arches = [lock.architecture] + sorted({p.architecture for p in lock.packages} - {lock.architecture, "all"})
    ex.write_file(f"{ADMIN}/arch", "".join(a + "\n" for a in arches).encode())
    ex.write_file(f"{ADMIN}/available", b"")
    ex.write_file(f"{ADMIN}/diversions", b"")
    ex.write_file(f"{ADMIN}/status", "\n".join(status_paragraph(u) for u in register).encode("utf-8", "surrogateescape"))


def stage_one(lock: Lock, files: dict[str, Path], ex: Extractor, opts: InstallOptions, *, register_all: bool,
              skip=None, made: list[str] = ()) -> list[Unpacked]:
    """Extract and register every package; `skip` is the dpkg path filter
    (the slim variant, --dpkgopt path-exclude): what it excludes is listed
    in the package's .list, as dpkg lists it, but not written."""
    started = time.monotonic()
    unpacked = extract_all(lock, files, ex, opts, skip, made)
    for u in unpacked:
        u.conffile_hashes = _conffile_hashes(u, ex)
    # Without stage 2 every package is registered now; with it, a package
    # with a preinst is registered only after its preinst ran.
    register = [u for u in unpacked if register_all or not u.has_preinst]
    write_database(lock, unpacked, ex, register)
    opts.log(f"stage 1: {len(unpacked)} packages extracted and registered in {time.monotonic() - started:.1f}s")
    return unpacked


def write_fstab(ex: Extractor) -> None:
    """As debootstrap and mmdebstrap do, when no package shipped one."""
    if ex.read_file("etc/fstab") is None:
        ex.make_dir("etc")
        ex.write_file("etc/fstab", b"# UNCONFIGURED FSTAB FOR BASE SYSTEM\n")


def _holds_file(ex: Extractor, path: str) -> bool:
    """Whether the root has a regular file at path, following links as the
    root's own apt would (trixie's keyring .gpg is a link to its .pgp)."""
    from rootfs.host.safepath import PathEscape, resolve_in_root

    try:
        return os.path.isfile(resolve_in_root(ex.root, path))
    except (PathEscape, OSError):
        return False


def write_sources(lock: Lock, ex: Extractor) -> None:
    """The image's own apt sources (rootfs.backends.deb.apt_sources)."""
    from rootfs.backends.deb import apt_sources

    if not lock.sources:
        return
    path = apt_sources.sources_path(lock)
    parent = ""
    for part in path.split("/")[:-1]:
        parent = f"{parent}/{part}" if parent else part
        ex.make_dir(parent)
    ex.write_file(path, apt_sources.render(lock, lambda p: _holds_file(ex, p)).encode())
    pins = apt_sources.preferences(lock)
    if pins:
        ex.make_dir("etc/apt/preferences.d")
        ex.write_file(apt_sources.PREFERENCES, pins.encode())


# -- stage 2 -----------------------------------------------------------------


def _names(relation: str) -> list[str]:
    """Package names a relation field mentions (every alternative), without
    versions or architecture qualifiers."""
    return [alt.name for rel in parse_relations(relation or "") for alt in rel]


class _Graph:
    def __init__(self, unpacked: list[Unpacked]):
        self.by_name = {u.name: u for u in unpacked}
        self.providers: dict[str, list[str]] = {}
        for u in unpacked:
            for v in _names(u.control.fields.get("Provides", "")):
                self.providers.setdefault(v, []).append(u.name)

    def targets(self, names: Iterable[str]) -> list[str]:
        out = []
        for n in names:
            if n in self.by_name:
                out.append(n)
            out.extend(p for p in self.providers.get(n, ()) if p != n)
        return out

    def deps(self, u: Unpacked, fields=("Pre-Depends", "Depends")) -> list[str]:
        return self.targets(n for f in fields for n in _names(u.control.fields.get(f, "")))

    def closure(self, start: Iterable[str]) -> list[str]:
        seen: set[str] = set()
        todo = [n for n in start if n in self.by_name]
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            todo.extend(d for d in self.deps(self.by_name[n]) if d not in seen)
        return sorted(seen)

    def predepends_order(self, names: list[str]) -> list[str]:
        """names ordered so that what a package pre-depends on comes first;
        cycles are broken by name."""
        pending = set(names)
        out: list[str] = []
        while pending:
            ready = sorted(n for n in pending
                           if not (set(self.deps(self.by_name[n], ("Pre-Depends",))) & (pending - {n})))
            if not ready:
                ready = [min(pending)]
            for n in ready:
                pending.discard(n)
                out.append(n)
        return out


class _Stage2:
    def __init__(self, lock: Lock, unpacked: list[Unpacked], ex: Extractor, opts: InstallOptions, chroot,
                 hooks: HookRunner | None = None):
        self.lock, self.unpacked, self.ex, self.opts, self.ch = lock, unpacked, ex, opts, chroot
        self.hooks = hooks
        self.graph = _Graph(unpacked)
        self.registered = {u.name for u in unpacked if not u.has_preinst}
        self.configured: set[str] = set()
        self.busy: set[str] = set()
        self.env = {}
        epoch = os.environ.get("SOURCE_DATE_EPOCH") or (str(lock.source_date_epoch) if lock.source_date_epoch else "")
        if epoch:
            self.env["SOURCE_DATE_EPOCH"] = epoch
        self.steps = 0
        self.total = len(unpacked) + sum(1 for u in unpacked if u.has_preinst)

    def tick(self, n: int = 1) -> None:
        self.steps += n
        _progress(self.opts, "configuring", min(self.steps, self.total), self.total)

    def log_output(self, out: bytes) -> None:
        for line in out.decode("utf-8", "replace").splitlines():
            if line.strip():
                self.opts.log("  " + line)

    def preinst(self, u: Unpacked, configure_predeps: bool = True) -> None:
        """Run `preinst install` as dpkg would before unpacking: once what
        the package pre-depends on is configured. Then register the package
        as unpacked."""
        if u.name in self.registered:
            return
        need = [d for d in self.graph.deps(u, ("Pre-Depends",)) if d not in self.configured and d != u.name]
        if need and configure_predeps and u.name not in self.busy:
            self.busy.add(u.name)
            try:
                # What the pre-dependencies need configured with them; a
                # cycle back to this package is broken as dpkg would, by force.
                closure = [n for n in self.graph.closure(need) if n != u.name]
                self.configure(closure, force_depends=True)
            finally:
                self.busy.discard(u.name)
        env = dict(self.env)
        env.update({
            "DPKG_MAINTSCRIPT_PACKAGE": u.name,
            "DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT": "1",
            "DPKG_MAINTSCRIPT_ARCH": u.control.fields.get("Architecture", u.pkg.architecture),
            "DPKG_MAINTSCRIPT_NAME": "preinst",
            "DPKG_ADMINDIR": "/var/lib/dpkg",
            "DPKG_ROOT": "",
            "PERL_DL_NONLAZY": "1",
        })
        # dpkg runs a preinst from tmp.ci/, the unpacked control archive;
        # debconf's confmodule reads the package name from tmp.ci/control.
        tmp = f"{ADMIN}/tmp.ci"
        self.ex.make_dir(tmp)
        for name, data in u.control.files.items():
            self.ex.write_file(f"{tmp}/{name}", data, 0o755 if name in MAINT_SCRIPTS else 0o644)
        self.opts.log(f"running {u.name} preinst")
        try:
            proc = self.ch.run([f"/{tmp}/preinst", "install"], env)
        finally:
            for name in u.control.files:
                self.ex.remove(f"{tmp}/{name}")
            self.ex.remove_dir(tmp)
        self.log_output(proc.stdout)
        if proc.returncode != 0:
            raise InstallError(f"the preinst script of package {u.name} failed (exit status {proc.returncode})"
                               + _last_line(proc.stdout))
        self.ex.append_file(f"{ADMIN}/status", ("\n" + status_paragraph(u)).encode("utf-8", "surrogateescape"))
        self.registered.add(u.name)
        self.tick()

    def dpkg(self, *args: str) -> None:
        cmd = ["dpkg", "--force-unsafe-io", *args]
        self.opts.log("running " + " ".join(cmd))
        proc = self.ch.run(cmd, self.env)
        self.log_output(proc.stdout)
        if proc.returncode != 0:
            raise InstallError(_dpkg_failure(proc.stdout, proc.returncode, args))

    def configure(self, names: list[str], force_depends: bool) -> None:
        names = [n for n in names if n not in self.configured]
        if not names:
            return
        for n in self.graph.predepends_order(names):
            self.preinst(self.graph.by_name[n])
        names = [n for n in names if n not in self.configured]  # some went in with a pre-dependency
        if not names:
            return
        # Triggers wait for the last run, as apt leaves them (DPkg::NoTriggers):
        # ldconfig's runs once, not after every dpkg run.
        self.dpkg("--configure", "--no-triggers", *(["--force-depends"] if force_depends else []), *names)
        self.configured.update(names)
        self.tick(len(names))

    def _early(self, first: list[str]) -> list[str]:
        """What the packages after the first run pre-depend on, configured
        in the first run rather than in a dpkg run of their own each time:
        only closures none of whose members has a preinst (libraries, as
        e2fsprogs's), so that no preinst runs before what it pre-depends on
        is configured."""
        by_name = self.graph.by_name
        have = set(first)
        early: list[str] = []
        for n in sorted(by_name):
            if n in have:
                continue
            need = [d for d in self.graph.deps(by_name[n], ("Pre-Depends",)) if d not in have and d != n]
            if not need:
                continue
            closure = [c for c in self.graph.closure(need) if c not in have]
            if n in closure or any("preinst" in by_name[c].control.files for c in closure):
                continue
            early += sorted(closure)
            have.update(closure)
        return early

    def run(self) -> None:
        by_name = self.graph.by_name
        if "dpkg" not in by_name:
            raise InstallError("stage 2 needs dpkg in the package set (add it, or use --mode extract)")
        for ldconfig in ("usr/sbin/ldconfig", "sbin/ldconfig"):
            if self.ex.read_file(ldconfig) is not None:
                self.ch.run(["/" + ldconfig], self.env)
                break
        # The essential set and everything it depends on, at once, as
        # mmdebstrap does (`dpkg --install --force-depends`): every preinst
        # first (base-passwd's makes /etc/passwd before any postinst needs
        # it), then one dpkg run configures them in dependency order.
        essential = self.graph.closure(
            u.name for u in self.unpacked if u.control.fields.get("Essential", "").lower() == "yes")
        if self.hooks is None or not self.hooks.at("essential"):
            # (essential hooks see the essential set configured and nothing more, as mmdebstrap's)
            essential += self._early(essential)
        for n in self.graph.predepends_order(essential):
            self.preinst(by_name[n], configure_predeps=False)
        self.dpkg("--configure", "--no-triggers", "--force-depends", *essential)
        self.configured.update(essential)
        self.tick(len(essential))
        if self.hooks is not None:
            self.hooks.run("essential", self.ex.root, self.ch)
        rest = sorted(n for n in by_name if n not in self.configured)
        for n in self.graph.predepends_order(rest):
            self.preinst(by_name[n])
        self.dpkg("--configure", "--pending")
        self.configured.update(rest)
        self.tick(len(rest))
        proc = self.ch.run(["dpkg", "--audit"], self.env)
        if proc.returncode != 0 or proc.stdout.strip():
            said = " ".join(proc.stdout.decode("utf-8", "replace").split())
            raise InstallError(f"dpkg --audit reports problems after configuring: {said[:300]}")


def stage_two(lock: Lock, unpacked: list[Unpacked], ex: Extractor, opts: InstallOptions,
              hooks: HookRunner | None = None) -> None:
    from rootfs.host.chroot import Chroot
    from rootfs.host.userns import UserChroot

    started = time.monotonic()
    if opts.mode == "rootless":
        # Ownership changes the scripts make are recorded into opts.attrs.
        session = UserChroot(ex.root, log=opts.log, attrs=opts.attrs, no_syncs=True)
    else:
        session = Chroot(ex.root, log=opts.log, no_syncs=True)
    with session as ch:
        if hooks is not None:
            hooks.run("extract", ex.root, ch)
        _Stage2(lock, unpacked, ex, opts, ch, hooks).run()
    opts.log(f"stage 2: configured in {time.monotonic() - started:.1f}s")


def _last_line(out: bytes) -> str:
    lines = [line for line in out.decode("utf-8", "replace").splitlines() if line.strip()]
    return f": {lines[-1].strip()}" if lines else ""


def _dpkg_failure(out: bytes, code: int, args: tuple[str, ...]) -> str:
    text = out.decode("utf-8", "replace")
    m = re.search(r"installed (\S+) package (\S+) script subprocess returned error exit status (\d+)", text)
    if m:
        pkg, script = m.group(1), SCRIPT_NAMES.get(m.group(2), m.group(2))
        # The script's own last words come just before dpkg's report.
        said = [line.strip() for line in text[: text.find("dpkg: error processing")].splitlines()
                if line.strip() and not line.startswith(("dpkg:", "Setting up "))]
        detail = f": {said[-1]}" if said else ""
        return f"the {script} script of package {pkg} failed (exit status {m.group(3)}){detail}"
    m = re.search(r"error processing package (\S+)", text)
    if m:
        return f"dpkg failed to configure package {m.group(1)}" + _last_line(out)
    return f"dpkg {' '.join(args)} failed (exit status {code})" + _last_line(out)
