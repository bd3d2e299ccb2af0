"""The customize point: a recipe's [customize] entries, then the hooks.

In this order, inside the build's session (so that without root, too, the
owners end up in the image): groups, users, files and trees, time zone,
locale, commands, then the customize hooks. Accounts are made with the
image's own groupadd/useradd; the collisions they would report are caught
first and said in one sentence. After everything, `[image] user` must
name an account the image has.
"""

from __future__ import annotations

import os
import re

from rootfs.host.safepath import PathEscape, resolve_in_root
from rootfs.model.customize import Customize, parse_owner, read_accounts
from rootfs.model.errors import InstallError, UsageError
from rootfs.pipeline.hooks import HookRunner

C_LOCALES = ("C", "POSIX", "C.UTF-8", "C.utf8")


def _read(root: str, path: str) -> str | None:
    try:
        host = resolve_in_root(root, path)
        with open(host, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except (OSError, PathEscape):
        return None


def _exists(root: str, path: str) -> bool:
    try:
        return os.path.exists(resolve_in_root(root, path))
    except PathEscape:
        return False


def accounts(root: str):
    return read_accounts(_read(root, "etc/passwd"), _read(root, "etc/group"))


def _run(session, argv: list[str], what: str, log) -> None:
    """argv chrooted in the session; its output logged, a failure said
    with its last line."""
    proc = session.run(argv)
    lines = [x for x in proc.stdout.decode("utf-8", "replace").splitlines() if x.strip()]
    for line in lines:
        log("  " + line)
    if proc.returncode != 0:
        tail = f": {lines[-1].strip()}" if lines else ""
        raise InstallError(f"{what} failed (exit status {proc.returncode}){tail}")


def make_groups(root: str, c: Customize, session, log) -> None:
    for g in c.groups:
        _, groups = accounts(root)
        if g.name in groups:
            raise UsageError(f"[customize] groups: group {g.name} already exists in the image")
        if g.gid is not None:
            taken = [n for n, gid in groups.items() if gid == g.gid]
            if taken:
                raise UsageError(f"[customize] groups: gid {g.gid} of group {g.name} is already taken by group "
                                 f"{taken[0]} in the image")
        _run(session, ["groupadd", *(["-g", str(g.gid)] if g.gid is not None else []), g.name],
             f"groupadd {g.name}", log)


def make_users(root: str, c: Customize, session, log) -> None:
    for u in c.users:
        users, groups = accounts(root)
        if u.name in users:
            raise UsageError(f"[customize] users: user {u.name} already exists in the image")
        if u.uid is not None:
            taken = [n for n, (uid, _) in users.items() if uid == u.uid]
            if taken:
                raise UsageError(f"[customize] users: uid {u.uid} of user {u.name} is already taken by user "
                                 f"{taken[0]} in the image")
        missing = [g for g in u.groups if g not in groups]
        if missing:
            raise UsageError(f"[customize] users: user {u.name}: there is no group {missing[0]} in the image")
        argv = ["useradd", "--no-log-init", "--create-home"]
        if u.uid is not None:
            argv += ["--uid", str(u.uid)]
        if u.gid is not None:
            if u.gid not in groups.values():
                if u.name in groups:
                    raise UsageError(f"[customize] users: user {u.name}: group {u.name} exists with another gid")
                _run(session, ["groupadd", "-g", str(u.gid), u.name], f"groupadd {u.name}", log)
            argv += ["--gid", str(u.gid)]
        elif u.name in groups:
            argv += ["--gid", u.name]
        if u.home:
            argv += ["--home-dir", u.home]
        if u.shell:
            argv += ["--shell", u.shell]
        if u.groups:
            argv += ["--groups", ",".join(u.groups)]
        _run(session, [*argv, u.name], f"useradd {u.name}", log)


def copy_files(root: str, c: Customize, session, runner: HookRunner) -> None:
    for f in c.files:
        users, groups = accounts(root)
        owner = parse_owner(f.owner, users, groups, f"[customize] files {f.dest}")
        runner.helper(session, "--install", root, f.src, f.dest, "-" if f.mode is None else f"{f.mode:o}",
                      str(owner.uid), str(owner.gid))


def _install_text(root: str, runner: HookRunner, session, dest: str, text: str, mode: int = 0o644) -> None:
    src = os.path.join(runner.scratch, "content")
    with open(src, "w") as f:
        f.write(text)
    os.chmod(src, 0o644)
    runner.helper(session, "--install", root, src, dest, f"{mode:o}", "0", "0")
    os.unlink(src)


def set_timezone(root: str, c: Customize, session, runner: HookRunner, backend: str) -> None:
    zone = f"usr/share/zoneinfo/{c.timezone}"
    if not _exists(root, zone):
        raise UsageError(f"[customize] timezone {c.timezone}: /{zone} is not in the image"
                         + (" (include tzdata)" if backend == "deb" else ""))
    runner.helper(session, "--symlink", root, f"/{zone}", "/etc/localtime")
    if backend == "deb":
        _install_text(root, runner, session, "/etc/timezone", c.timezone + "\n")


def set_locale(root: str, c: Customize, session, runner: HookRunner, backend: str, log) -> None:
    name = c.locale
    if backend != "deb":
        _install_text(root, runner, session, "/etc/locale.conf", f"LANG={name}\n")
        return
    if name not in C_LOCALES:
        gen = _read(root, "etc/locale.gen")
        if gen is None or not _exists(root, "usr/sbin/locale-gen"):
            raise UsageError(f"[customize] locale {name}: the image has no locale-gen (include locales)")
        supported = _read(root, "usr/share/i18n/SUPPORTED") or ""
        entry = next((line.strip() for line in supported.splitlines() if line.split(" ", 1)[0] == name), "")
        if not entry:
            raise UsageError(f"[customize] locale {name}: not a locale the image's glibc supports "
                             "(see /usr/share/i18n/SUPPORTED)")
        pattern = re.compile(rf"^#\s*{re.escape(entry)}\s*$")
        lines = gen.splitlines()
        if entry not in (x.strip() for x in lines):
            hit = [i for i, x in enumerate(lines) if pattern.match(x)]
            if hit:
                lines[hit[0]] = entry
            else:
                lines.append(entry)
            _install_text(root, runner, session, "/etc/locale.gen", "\n".join(lines) + "\n")
        _run(session, ["locale-gen"], "locale-gen", log)
    _install_text(root, runner, session, "/etc/default/locale", f"LANG={name}\n")


def run_commands(c: Customize, session, log) -> None:
    for cmd in c.commands:
        log(f"running {cmd!r} inside the root")
        _run(session, ["/bin/sh", "-c", cmd], f"the customize command {cmd!r}", log)


def customize_root(root: str, c: Customize, session, runner: HookRunner, backend: str, log) -> None:
    """Everything of the customize point, inside an entered session."""
    root = os.path.realpath(root)
    make_groups(root, c, session, log)
    make_users(root, c, session, log)
    copy_files(root, c, session, runner)
    if c.timezone:
        set_timezone(root, c, session, runner, backend)
    if c.locale:
        set_locale(root, c, session, runner, backend, log)
    run_commands(c, session, log)
    runner.run("customize", root, session)


def check_image_user(root: str, user: str) -> None:
    """[image] user names an account of the image (a number may be any)."""
    if not user:
        return
    name, _, group = user.partition(":")
    users, groups = accounts(os.path.realpath(root))
    if not name.isdigit() and name not in users:
        raise UsageError(f"[image] user {name} does not exist in the image "
                         "(add it with [customize] users or a customize hook)")
    if group and not group.isdigit() and group not in groups:
        raise UsageError(f"[image] user {user}: group {group} does not exist in the image")
