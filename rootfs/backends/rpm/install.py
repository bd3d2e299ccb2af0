"""install(lock, files, root, opts) for rpm packages.

1. Every package file is checked: its NEVRA against the lock, that it is
   a binary package, every digest it carries (as `rpm -K`), and its
   OpenPGP signature against the lock's keys (unsigned packages are
   refused then). A lock without keys was made with --no-check-gpg, and
   installing it says so loudly.
2. Packages are ordered as rpm orders a transaction: what a package
   requires goes in before it, Requires(pre) first of all.
3. As root: all %pretrans, then per package %pre, unpack, %post and the
   %triggerin scripts it fires, then all %posttrans; finally the packages
   are registered in the root's rpm database (its %_dbpath).
   Without root the same runs in a user namespace (rootless); in extract
   mode unpack only. Owners/modes/xattrs go into opts.attrs then, and the
   skipped steps are said in the report.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from rootfs import ui
from rootfs.backends import InstallOptions, InstallReport
from rootfs.backends.rpm import header as H
from rootfs.backends.rpm.deps import Dep, atoms, parse_rich
from rootfs.backends.rpm.header import RpmFile, open_rpm
from rootfs.backends.rpm.payload import file_entries
from rootfs.backends.rpm.scriptlets import (
    Runner,
    ScriptletError,
    Trigger,
    scriptlet,
    triggers_in,
)
from rootfs.backends.rpm.unpack import Unpacker
from rootfs.backends.rpm.version import EQUAL, parse_evr, ranges_overlap
from rootfs.host.run import run as host_run
from rootfs.host.safepath import relative_to_root, resolve_in_root
from rootfs.host.unpacker import Extractor
from rootfs.model.attrs import AttrRecord
from rootfs.model.errors import InstallError, PrivilegeError, UsageError, VerifyError
from rootfs.model.lock import Lock, LockedPackage

PREREQ_BITS = 64 | (1 << 9) | (1 << 10)  # PREREQ, SCRIPT_PRE, SCRIPT_POST
RPMLIB = 1 << 24


# -- verification ----------------------------------------------------------------

def check_signatures(paths: list[Path], keys: tuple[str, ...]) -> None:
    """rpmkeys --checksig against a private database holding only these keys."""
    rpmkeys = shutil.which("rpmkeys")
    if rpmkeys is None:
        raise PrivilegeError("rpmkeys is not installed; it is needed to check package signatures")
    with tempfile.TemporaryDirectory(prefix="rootfs-rpmkeys.") as t:
        db = Path(t) / "db"
        env = dict(os.environ, HOME=t)
        for i, key_text in enumerate(keys):
            key = Path(t) / f"key{i}.asc"
            key.write_text(key_text)
            imp = host_run([rpmkeys, "--dbpath", str(db), "--import", str(key)], env=env, what="rpmkeys --import")
            if imp.returncode != 0:
                raise VerifyError(f"the package signing key cannot be imported: {imp.stderr.decode(errors='replace').strip()}")
        for p in paths:
            proc = host_run([rpmkeys, "--dbpath", str(db), "--define", f"_dbpath {db}", "--checksig", str(p)],
                            env=env, what=f"rpmkeys --checksig {p.name}")
            out = (proc.stdout + proc.stderr).decode(errors="replace")
            # An unsigned package passes with "digests OK" alone: refused here.
            if proc.returncode != 0 or "signatures OK" not in out:
                raise VerifyError(f"{p.name}: signature check failed ({out.strip().split(': ', 1)[-1]})")


def check_package(rpm: RpmFile, locked: LockedPackage) -> None:
    if rpm.is_source:
        raise VerifyError(f"{rpm.path.name} is a source package ({rpm.name} sources for rpmbuild), "
                          "not a binary package that can be installed")
    h = rpm.header
    epoch = h.list(H.EPOCH)
    evr = f"{epoch[0] if epoch else 0}:{h.str(H.VERSION)}-{h.str(H.RELEASE)}"
    if h.str(H.NAME) != locked.name or evr != locked.version or h.str(H.ARCH) != locked.architecture:
        raise VerifyError(f"{rpm.path.name} is {rpm.nevra}, not the locked {locked.name} {locked.version} {locked.architecture}")
    rpm.check_digests()


def check_file_conflicts(rpms: list[RpmFile]) -> None:
    """Two packages may own one path only as rpm allows: directories, or
    files identical in type, mode, owner, link target and digest (%ghost
    entries never clash). Anything else would make the tree depend on the
    install order, so it is refused as rpm's transaction check does."""
    seen: dict[str, tuple[RpmFile, tuple]] = {}
    for r in rpms:
        digests = r.header.list(H.FILEDIGESTS)
        for e in file_entries(r):
            if e.ghost or stat.S_ISDIR(e.mode):
                continue
            ident = (e.mode, e.user, e.group, e.linkto, digests[e.index] if e.index < len(digests) else "")
            prior = seen.setdefault(e.path, (r, ident))
            if prior[1] != ident:
                raise InstallError(f"file {e.path} of {r.nevra} conflicts with the file from {prior[0].nevra}")


# -- ordering ---------------------------------------------------------------------

def _deps(rpm: RpmFile) -> list[tuple[Dep, bool]]:
    h = rpm.header
    names, flags, versions = h.list(H.REQUIRENAME), h.list(H.REQUIREFLAGS), h.list(H.REQUIREVERSION)
    out = []
    for i, name in enumerate(names):
        fl = flags[i] if i < len(flags) else 0
        if fl & RPMLIB or name.startswith("rpmlib("):
            continue
        ver = versions[i] if i < len(versions) else ""
        pre = bool(fl & PREREQ_BITS)
        if name.startswith("("):
            out.extend((a, pre) for a in atoms(parse_rich(name)))
        else:
            out.append((Dep(name, fl & 14, parse_evr(ver) if ver else None), pre))
    return out


def install_order(rpms: list[RpmFile]) -> list[RpmFile]:
    """Dependencies first; Requires(pre) edges are the last to be broken
    when a cycle has to be cut. Ties go by name, so the order is stable."""
    provides: dict[str, list[tuple[int, int, object]]] = {}
    for i, r in enumerate(rpms):
        h = r.header
        pn, pf, pv = h.list(H.PROVIDENAME), h.list(H.PROVIDEFLAGS), h.list(H.PROVIDEVERSION)
        for k, name in enumerate(pn):
            ver = pv[k] if k < len(pv) else ""
            provides.setdefault(name, []).append((i, pf[k] & 14 if k < len(pf) else 0, parse_evr(ver) if ver else None))
        provides.setdefault(r.name, []).append((i, EQUAL, None))
        for e in file_entries(r):
            provides.setdefault(e.path, []).append((i, 0, None))
    needs: list[dict[int, bool]] = [{} for _ in rpms]  # i -> {provider index: is a pre edge}
    for i, r in enumerate(rpms):
        for dep, pre in _deps(r):
            for j, fl, evr in provides.get(dep.name, ()):
                if j != i and ranges_overlap(dep.flags, dep.evr, fl, evr):
                    needs[i][j] = needs[i].get(j, False) or pre
    users: list[list[int]] = [[] for _ in rpms]
    for i, n in enumerate(needs):
        for j in n:
            users[j].append(i)
    remaining = {i: dict(n) for i, n in enumerate(needs)}
    ready = [(rpms[i].name, i) for i, n in remaining.items() if not n]
    heapq.heapify(ready)
    order: list[int] = []
    done: set[int] = set()
    while len(order) < len(rpms):
        if not ready:
            # A cycle: take the package with the fewest unmet pre-requirements.
            i = min((i for i in remaining if i not in done),
                    key=lambda i: (sum(remaining[i].values()), len(remaining[i]), rpms[i].name))
            remaining[i] = {}
            heapq.heappush(ready, (rpms[i].name, i))
        _, i = heapq.heappop(ready)
        if i in done:
            continue
        done.add(i)
        order.append(i)
        for u in users[i]:
            if u in done:
                continue
            remaining[u].pop(i, None)
            if not remaining[u]:
                heapq.heappush(ready, (rpms[u].name, u))
    return [rpms[i] for i in order]


# -- the rpm database -------------------------------------------------------------

DEFAULT_DBPATH = "/var/lib/rpm"
_SIMPLE_MACROS = {"_usr": "/usr", "_prefix": "/usr", "_var": "/var", "_localstatedir": "/var",
                  "_sharedstatedir": "/var/lib"}


def target_macro(root: Path, name: str) -> str | None:
    """The root's own definition of an rpm macro (the last one read wins,
    as rpm reads them), with the few path macros it is built from
    expanded; None when the root does not define it plainly."""
    files = [resolve_in_root(root, "usr/lib/rpm/macros")]
    for d in ("usr/lib/rpm/macros.d", "etc/rpm"):
        host = resolve_in_root(root, d)
        if os.path.isdir(host):
            files += sorted(os.path.join(host, f) for f in os.listdir(host) if f.startswith("macros"))
    value = None
    pattern = re.compile(rf"^%{re.escape(name)}\s+(.+?)\s*$", re.M)
    for f in files:
        try:
            with open(f, encoding="utf-8", errors="replace") as fh:
                for m in pattern.finditer(fh.read()):
                    value = m.group(1)
        except OSError:
            continue
    if value is None:
        return None
    for k, v in _SIMPLE_MACROS.items():
        value = value.replace(f"%{{{k}}}", v)
    return None if "%" in value else value


def register(root: Path, paths: list[Path], source_date_epoch: int = 0, wrap: list[str] | None = None) -> str | None:
    """Record the packages in the root's rpm database with the host's rpm;
    the reason when that is not possible.

    The database goes where the root's own rpm looks (its %_dbpath:
    /var/lib/rpm, or /usr/lib/sysimage/rpm on newer Fedora), in sqlite,
    which is what rpm >= 4.16 targets use; a root configured for another
    backend is left without a database and told so.

    rpm stamps each header with the install time and transaction id; from
    4.18 on it takes both from SOURCE_DATE_EPOCH when that is set, which
    makes the database the same bytes on every build of one lock."""
    rpm = shutil.which("rpm")
    if rpm is None:
        return "registering the packages in the rpm database (rpm is not installed on the host)"
    backend = target_macro(root, "_db_backend")
    if backend not in (None, "sqlite"):
        return f"registering the packages in the rpm database (the root's rpm uses the {backend} backend)"
    dbpath = target_macro(root, "_dbpath") or DEFAULT_DBPATH
    if not dbpath.startswith("/"):
        dbpath = DEFAULT_DBPATH
    with Extractor(root, mode="extract") as ex:
        # The host's rpm opens ROOT + --dbpath before it chroots, so the
        # kernel would follow a link a package planted on the way: it gets
        # the path with every link resolved inside the root instead.
        ex.make_dir(dbpath.lstrip("/"))
        real = "/" + relative_to_root(ex.root, resolve_in_root(ex.root, dbpath))
        with tempfile.TemporaryDirectory(prefix="rootfs-rpmdb.") as home:
            proc = host_run(
                [*(wrap or []), rpm, "--root", ex.root, "--dbpath", real, "--define", "_db_backend sqlite",
                 "-i", "--justdb", "--nodeps", "--noscripts",
                 "--notriggers", "--nosignature", "--nodigest", "--ignorearch", "--ignoreos", "--ignoresize",
                 "--replacefiles", "--replacepkgs", *map(str, paths)],
                env=_register_env(home, source_date_epoch), what="rpm registering the packages",
            )
        if proc.returncode != 0:
            raise InstallError(f"rpm could not register the packages: {proc.stderr.decode(errors='replace').strip()}")
        remove_db_leftovers(ex, real.lstrip("/"))
    return None


def remove_db_leftovers(ex: Extractor, db: str) -> None:
    """rpm has closed the database: sqlite's shared-memory index, an empty
    write-ahead log and rpm's lock file are leftovers of this run, not
    data (a write-ahead log with content is data and stays)."""
    ex.remove(f"{db}/rpmdb.sqlite-shm")
    ex.remove(f"{db}/.rpm.lock")
    if ex.read_file(f"{db}/rpmdb.sqlite-wal") == b"":
        ex.remove(f"{db}/rpmdb.sqlite-wal")


def _register_env(home: str, source_date_epoch: int) -> dict[str, str]:
    env = dict(os.environ, HOME=home)
    if not env.get("SOURCE_DATE_EPOCH") and source_date_epoch:
        env["SOURCE_DATE_EPOCH"] = str(source_date_epoch)
    return env


# -- install ------------------------------------------------------------------------

def install(lock: Lock, files: dict[str, Path], root: Path, opts: InstallOptions) -> InstallReport:
    root = Path(root)
    as_root = opts.mode == "root"
    # Every payload goes through the Extractor and its policy.
    report = InstallReport(payloads_checked=True)
    rpms: list[RpmFile] = []
    for p in lock.packages:
        path = files.get(p.key)
        if path is None:
            raise InstallError(f"no package file for {p.name} {p.version} {p.architecture}")
        rpm = open_rpm(path)
        check_package(rpm, p)
        if rpm.v3:
            ui.warn(f"RPM v3 packages are deprecated: {rpm.nevra} (read as rpm 4.18 reads it)")
        rpms.append(rpm)
    if lock.keys:
        check_signatures([r.path for r in rpms], lock.keys)
    else:
        ui.warn("NOT checking the signatures of the packages (the lock names no key: it was made with "
                "--no-check-gpg): anyone who could change them or the repository chose what gets installed")
    check_file_conflicts(rpms)
    if not as_root and opts.attrs is None:
        opts.attrs = AttrRecord()
    hooks = _hooks(lock, opts)
    with hooks, contextlib.ExitStack() as stack:
        ex = stack.enter_context(Extractor(root, mode=opts.mode, attrs=None if as_root else opts.attrs,
                                           warn=opts.log, policy=opts.policy))
        runner: Runner | None = None
        session = None
        if as_root:
            runner = Runner(ex, opts.log)
        elif opts.mode == "rootless":
            from rootfs.host.userns import UserChroot

            # rpm has no policy-rc.d and copies no resolv.conf: neither is made.
            session = stack.enter_context(UserChroot(ex.root, log=opts.log, attrs=opts.attrs,
                                                     resolv_conf=False, fake_services=False))
            runner = Runner(ex, opts.log, session)
        if hooks.at("setup"):
            with contextlib.ExitStack() as own:
                ch = session if session is not None else own.enter_context(_hook_session(root, opts, setup=True))
                hooks.run("setup", root, ch)
        report = _transaction(lock, rpms, root, opts, Unpacker(ex, opts.log), runner, report, hooks, session)
        stack.close()  # the transaction's session ends before the customize point's
        c = opts.customize
        if runner is not None and (c.changes_root or hooks.at("customize")):
            from rootfs.pipeline.customize import customize_root

            with _hook_session(root, opts) as ch:
                customize_root(str(root), c, ch, hooks, "rpm", opts.log)
        return report


def _hooks(lock: Lock, opts: InstallOptions):
    """rpm has the setup point (an empty root), extract (every payload
    unpacked, before %posttrans) and customize (after the transaction);
    no essential point."""
    from rootfs.pipeline.hooks import HookContext, HookRunner

    c = opts.customize
    if any(h.point == "essential" for h in c.hooks):
        raise UsageError("rpm installs have no essential point; use a setup, extract or customize hook")
    if not opts.mode.configures and (c.changes_root or any(h.point == "customize" for h in c.hooks)):
        raise UsageError("--mode extract runs no customize hooks or [customize] entries (they need a configured root)")
    ctx = HookContext(mode=opts.mode.value, include=lock.requested, verbosity=opts.verbosity,
                      source_date_epoch=lock.source_date_epoch)
    return HookRunner(c.hooks, ctx, opts.log)


def _hook_session(root, opts: InstallOptions, setup: bool = False):
    from rootfs.pipeline.hooks import session_for

    return session_for(str(root), opts.mode.value, opts.attrs, opts.log, setup=setup)


def _transaction(lock, rpms, root, opts, unpacker, runner, report, hooks=None, session=None) -> InstallReport:
    as_root = opts.mode == "root"
    ordered = install_order(rpms)
    total = len(ordered)
    progress = opts.progress or (lambda stage, done, n: None)
    failed: list[str] = []
    skipped_scripts: list[str] = []

    def run(s, args: list[str], fatal: bool) -> None:
        if s is None:
            return
        if runner is None:
            skipped_scripts.append(s.label)
            return
        why = runner.can_run(s)
        if why:
            skipped_scripts.append(f"{s.label} ({why})")
            return
        opts.log(f"running {s.label}")
        try:
            runner.run(s, args)
        except ScriptletError as exc:
            if fatal:
                raise InstallError(str(exc)) from None
            failed.append(str(exc))

    for r in ordered:
        run(scriptlet(r, "pretrans"), [], True)
    installed: list[RpmFile] = []
    triggers: list[Trigger] = []
    fired: set[tuple[str, str]] = set()
    for n, r in enumerate(ordered):
        progress("installing", n, total)
        opts.log(f"installing {r.nevra}")
        run(scriptlet(r, "pre"), ["1"], True)
        unpacker.unpack(r)
        run(scriptlet(r, "post"), ["1"], False)
        installed.append(r)
        triggers.extend(triggers_in(r))
        for t in triggers:
            for target in installed:
                if target.name != t.name or (t.owner, t.name) in fired:
                    continue
                if t.version and not ranges_overlap(t.flags & 14, parse_evr(t.version), EQUAL,
                                                    parse_evr(_evr(target))):
                    continue
                fired.add((t.owner, t.name))
                run(t.script, ["1", "1"], False)
    unpacker.finish()
    if hooks is not None and hooks.at("extract"):
        with contextlib.ExitStack() as own:
            ch = session if session is not None else own.enter_context(_hook_session(root, opts))
            hooks.run("extract", root, ch)
    for r in ordered:
        run(scriptlet(r, "posttrans"), [], False)
    progress("installing", total, total)
    report.packages = total
    report.configured = runner is not None
    if runner is not None:
        # Without root, rpm gets root's powers (chroot) in a user namespace.
        wrap = [] if as_root else ["unshare", "--user", "--map-root-user"]
        why = register(root, [r.path for r in ordered], lock.source_date_epoch, wrap)
        if why:
            report.skipped.append(why)
    else:
        report.skipped.append("registering the packages in the rpm database (needs --mode root or rootless)")
    if skipped_scripts:
        report.skipped.append("scriptlets: " + "; ".join(skipped_scripts))
    report.skipped.extend(failed)
    if unpacker.accounts.unknown:
        report.skipped.append("owners not in the root's passwd/group, root used instead and set-id bits dropped as rpm does: "
                              + ", ".join(sorted(unpacker.accounts.unknown)))
    return report


def _evr(r: RpmFile) -> str:
    h = r.header
    e = h.list(H.EPOCH)
    return f"{e[0] if e else 0}:{h.str(H.VERSION)}-{h.str(H.RELEASE)}"
