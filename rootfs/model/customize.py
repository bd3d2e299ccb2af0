"""What a recipe adds to the packages: hooks, files, accounts, time zone,
locale and commands, read from its [customize] table and from the command
line (mmdebstrap's --setup-hook, --extract-hook, --essential-hook,
--customize-hook and --hook-dir, with their meanings).

Hooks are kept as mmdebstrap keeps them: one ordered list per point, each
entry the text the user gave and the directory relative paths in it mean
(the recipe's directory for recipe hooks, the invocation's for the command
line). How an entry runs follows from its text (see `Hook.kind`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from rootfs.model.errors import UsageError

POINTS = ("setup", "extract", "essential", "customize")

# mmdebstrap's special hooks: name -> (minimum arguments, what they are)
SPECIAL = {
    "copy-in": (2, "PATH-OUTSIDE... DIR-INSIDE"),
    "copy-out": (2, "PATH-INSIDE... DIR-OUTSIDE"),
    "tar-in": (2, "TARBALL-OUTSIDE DIR-INSIDE"),
    "tar-out": (2, "PATH-INSIDE TARBALL-OUTSIDE"),
    "sync-in": (2, "DIR-OUTSIDE DIR-INSIDE"),
    "sync-out": (2, "DIR-INSIDE DIR-OUTSIDE"),
    "upload": (2, "FILE-OUTSIDE FILE-INSIDE"),
    "download": (2, "FILE-INSIDE FILE-OUTSIDE"),
}
# Which arguments of a special hook name paths outside the root that are
# read (all but the last for the -in hooks and upload).
READS_OUTSIDE = ("copy-in", "tar-in", "sync-in", "upload")

# A word that looks like a special hook's name ("copy-into", "tar-inn"):
# refused when it is not a command either, rather than run as a shell
# command that fails in a puzzling way.
_SPECIAL_LIKE = re.compile(r"^(copy|tar|sync)-[a-z]+$|^[a-z]+-(in|out)$|^(up|down)loads?$")
# mmdebstrap execs a hook directly when it has none of these characters.
_SHELL_META = re.compile(r"[^\w@%+=:,./-]", re.ASCII)


@dataclass(frozen=True)
class Hook:
    point: str  # setup, extract, essential, customize
    command: str  # as given: a special hook, an executable, or shell text
    cwd: str  # what relative paths in it are relative to

    @property
    def kind(self) -> str:
        """"special", "exec" (run with the root as its argument) or "shell"
        (`sh -c COMMAND exec ROOT`), decided as mmdebstrap decides."""
        first = self.command.split(" ", 1)[0]
        if first in SPECIAL and " " in self.command:
            return "special"
        path = self.command if os.path.isabs(self.command) else os.path.join(self.cwd, self.command)
        if (os.path.isfile(path) and os.access(path, os.X_OK)) or not _SHELL_META.search(self.command):
            return "exec"
        return "shell"

    def special_args(self) -> list[str]:
        return shlex.split(self.command)[1:]

    @property
    def label(self) -> str:
        text = self.command if len(self.command) <= 60 else self.command[:57] + "..."
        return f"{self.point} hook {text!r}"


def check_hook(hook: Hook) -> Hook:
    """Refuse what mmdebstrap would only find out half-way through."""
    if hook.point not in POINTS:
        raise UsageError(f"unknown hook point {hook.point!r} (known: {', '.join(POINTS)})")
    if not hook.command.strip():
        raise UsageError(f"an empty {hook.point} hook")
    try:
        words = shlex.split(hook.command)
    except ValueError as exc:
        raise UsageError(f"{hook.label}: {exc}") from None
    name = words[0] if words else ""
    if name in SPECIAL:
        need, usage = SPECIAL[name]
        if len(words) - 1 < need:
            raise UsageError(f"{hook.label}: {name} needs {usage}")
        if name in ("tar-in", "tar-out", "sync-in", "sync-out", "upload", "download") and len(words) != 3:
            raise UsageError(f"{hook.label}: {name} takes exactly two paths ({usage})")
        if name in READS_OUTSIDE:
            for p in words[1:-1]:
                if not os.path.lexists(os.path.join(hook.cwd, p)):
                    raise UsageError(f"{hook.label}: {p} does not exist")
        return hook
    if _SPECIAL_LIKE.match(name) and shutil.which(name) is None and not os.path.exists(os.path.join(hook.cwd, name)):
        raise UsageError(f"unknown special hook {name!r} in the {hook.point} hook "
                         f"(known: {', '.join(SPECIAL)})")
    return hook


def hook_dir(directory: str, cwd: str, warn=lambda msg: None) -> list[Hook]:
    """mmdebstrap's --hook-dir: the executable files named setup*, extract*,
    essential* and customize*, each point's in name order."""
    path = Path(cwd, directory)
    if not path.exists():
        raise UsageError(f"hook directory {directory} does not exist")
    if not path.is_dir():
        raise UsageError(f"hook directory {directory} is not a directory")
    path = path.resolve()
    hooks: list[Hook] = []
    for point in POINTS:
        for entry in sorted(p for p in os.listdir(path) if p.startswith(point)):
            script = path / entry
            if script.is_file() and os.access(script, os.X_OK):
                hooks.append(Hook(point, str(script), str(path)))
            else:
                warn(f"{script} is named like a hook but not executable")
    return hooks


@dataclass(frozen=True)
class FileEntry:
    """A file or a tree copied into the root. A tree keeps its files'
    modes; `owner` applies to everything copied."""

    src: str  # absolute, on the host
    dest: str  # absolute, inside the root
    mode: int | None = None  # files only; default: the source's permission bits
    owner: str = "0:0"  # USER[:GROUP], names looked up in the image


@dataclass(frozen=True)
class Group:
    name: str
    gid: int | None = None


@dataclass(frozen=True)
class User:
    name: str
    uid: int | None = None
    gid: int | None = None  # primary group; a group NAME with this gid is made when none has it
    home: str = ""  # default /home/NAME; always created
    shell: str = ""  # default: useradd's
    groups: tuple[str, ...] = ()  # supplementary groups, which must exist


@dataclass(frozen=True)
class Customize:
    """Everything a build does to a root besides installing packages, in the
    order it happens at the customize point: groups, users, files, time
    zone, locale, commands; hooks run at their own points."""

    files: tuple[FileEntry, ...] = ()
    groups: tuple[Group, ...] = ()
    users: tuple[User, ...] = ()
    timezone: str = ""
    locale: str = ""
    commands: tuple[str, ...] = ()
    hooks: tuple[Hook, ...] = ()

    def hooks_at(self, point: str) -> list[Hook]:
        return [h for h in self.hooks if h.point == point]

    @property
    def changes_root(self) -> bool:
        """Anything to do at the customize point besides hooks."""
        return bool(self.files or self.groups or self.users or self.timezone or self.locale or self.commands)

    def with_hooks(self, hooks) -> Customize:
        return Customize(self.files, self.groups, self.users, self.timezone, self.locale, self.commands,
                         self.hooks + tuple(hooks))


SECTION_KEYS = {
    "files": list,
    "groups": list,
    "users": list,
    "timezone": str,
    "locale": str,
    "commands": list,
    "hooks": dict,
    "hook_dirs": list,
}
_FILE_KEYS = {"src": str, "dest": str, "mode": (str, int), "owner": str}
_GROUP_KEYS = {"name": str, "gid": int}
_USER_KEYS = {"name": str, "uid": int, "gid": int, "home": str, "shell": str, "groups": list}
_NAME = re.compile(r"^[a-z_][a-z0-9_.-]*\$?$")
_TZ = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
_LOCALE = re.compile(r"^[A-Za-z0-9_.@-]+$")


def _entries(value, where: str, schema: dict, required: tuple[str, ...]) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise UsageError(f"{where} must be a list of tables")
    for i, entry in enumerate(value):
        at = f"{where}[{i}]"
        for key, v in entry.items():
            if key not in schema:
                raise UsageError(f"{at}: unknown key {key!r} (known: {', '.join(sorted(schema))})")
            if not isinstance(v, schema[key]) or (schema[key] is int and isinstance(v, bool)):
                raise UsageError(f"{at}: key {key!r} has the wrong type ({type(v).__name__})")
        for key in required:
            if key not in entry:
                raise UsageError(f"{at}: {key!r} is required")
    return value


def parse_mode(value, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"0?[0-7]{3,4}", value):
        mode = int(value, 8)
    else:
        raise UsageError(f"{where}: mode must be octal like \"0644\", not {value!r}")
    if mode > 0o7777:
        raise UsageError(f"{where}: mode {value!r} is out of range")
    return mode


def _id(value, what: str, where: str) -> int:
    if not 0 <= value < 2**31 - 1:
        raise UsageError(f"{where}: {what} {value} is out of range")
    return value


def _name(value: str, where: str) -> str:
    if not _NAME.match(value) or len(value) > 32:
        raise UsageError(f"{where}: {value!r} is not a valid user or group name")
    return value


def _inside(path: str, where: str) -> str:
    if not path.startswith("/") or ".." in path.split("/"):
        raise UsageError(f"{where}: {path!r} must be an absolute path inside the image, without '..'")
    return path


def parse(table: dict, where: str, base: Path) -> Customize:
    """The [customize] table; relative paths are relative to `base` (the
    recipe's directory)."""
    from rootfs.model.recipe import check_table

    tables = ("files", "groups", "users")  # lists of tables, checked entry by entry below
    check_table({k: v for k, v in table.items() if k not in tables},
                {k: v for k, v in SECTION_KEYS.items() if k not in tables}, where)
    files = []
    for i, e in enumerate(_entries(table.get("files", []), f"{where} files", _FILE_KEYS, ("src", "dest"))):
        at = f"{where} files[{i}]"
        files.append(FileEntry(
            src=str((base / e["src"]).absolute()) if not os.path.isabs(e["src"]) else e["src"],
            dest=_inside(e["dest"], at),
            mode=parse_mode(e["mode"], at) if "mode" in e else None,
            owner=e.get("owner", "0:0"),
        ))
    groups = [Group(_name(e["name"], f"{where} groups[{i}]"),
                    _id(e["gid"], "gid", f"{where} groups[{i}]") if "gid" in e else None)
              for i, e in enumerate(_entries(table.get("groups", []), f"{where} groups", _GROUP_KEYS, ("name",)))]
    users = []
    for i, e in enumerate(_entries(table.get("users", []), f"{where} users", _USER_KEYS, ("name",))):
        at = f"{where} users[{i}]"
        if not all(isinstance(g, str) for g in e.get("groups", [])):
            raise UsageError(f"{at}: groups must be a list of group names")
        users.append(User(
            name=_name(e["name"], at),
            uid=_id(e["uid"], "uid", at) if "uid" in e else None,
            gid=_id(e["gid"], "gid", at) if "gid" in e else None,
            home=_inside(e["home"], at) if "home" in e else "",
            shell=_inside(e["shell"], at) if "shell" in e else "",
            groups=tuple(_name(g, at) for g in e.get("groups", [])),
        ))
    for kind, names in (("group", [g.name for g in groups]), ("user", [u.name for u in users])):
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UsageError(f"{where}: {kind} {twice[0]} is listed twice")
    tz = table.get("timezone", "")
    if tz and not _TZ.match(tz):
        raise UsageError(f"{where}: {tz!r} is not a time zone name like Europe/Berlin")
    loc = table.get("locale", "")
    if loc and not _LOCALE.match(loc):
        raise UsageError(f"{where}: {loc!r} is not a locale name like en_US.UTF-8")
    hooks: list[Hook] = []
    for d in table.get("hook_dirs", []):
        hooks.extend(hook_dir(d, str(base)))
    point_table = table.get("hooks", {})
    for point, commands in point_table.items():
        if point not in POINTS:
            raise UsageError(f"{where} hooks: unknown point {point!r} (known: {', '.join(POINTS)})")
        if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
            raise UsageError(f"{where} hooks: {point} must be a list of strings")
        hooks.extend(check_hook(Hook(point, c, str(base))) for c in commands)
    return Customize(
        files=tuple(files), groups=tuple(groups), users=tuple(users), timezone=tz, locale=loc,
        commands=tuple(table.get("commands", [])), hooks=tuple(hooks),
    )


def check_sources(c: Customize) -> None:
    """Every host file the customization reads exists: checked before any
    download, so a typo costs nothing."""
    for f in c.files:
        if not os.path.lexists(f.src):
            raise UsageError(f"[customize] files: {f.src} does not exist")
        if os.path.isdir(f.src) and f.mode is not None:
            raise UsageError(f"[customize] files: {f.src} is a directory; mode applies to files "
                             "(a tree keeps its files' modes)")
    for h in c.hooks:
        check_hook(h)


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


def parse_owner(text: str, passwd: dict[str, tuple[int, int]], groups: dict[str, int], where: str) -> Owner:
    """USER[:GROUP] with names from the image's passwd and group (numbers
    taken as they are); a user alone brings its primary group."""
    user, _, group = text.partition(":")
    if user.isdigit():
        uid, primary = int(user), 0
    elif user in passwd:
        uid, primary = passwd[user]
    else:
        raise UsageError(f"{where}: owner {text!r}: there is no user {user} in the image")
    if not group:
        return Owner(uid, primary)
    if group.isdigit():
        return Owner(uid, int(group))
    if group not in groups:
        raise UsageError(f"{where}: owner {text!r}: there is no group {group} in the image")
    return Owner(uid, groups[group])


def read_accounts(passwd_text: str | None, group_text: str | None):
    """({user: (uid, gid)}, {group: gid}) from passwd(5) and group(5) text."""
    users: dict[str, tuple[int, int]] = {}
    for line in (passwd_text or "").splitlines():
        f = line.split(":")
        if len(f) >= 4 and f[2].isdigit() and f[3].isdigit():
            users.setdefault(f[0], (int(f[2]), int(f[3])))
    groups: dict[str, int] = {}
    for line in (group_text or "").splitlines():
        f = line.split(":")
        if len(f) >= 3 and f[2].isdigit():
            groups.setdefault(f[0], int(f[2]))
    return users, groups

