"""Resolve paths inside a root as if the root were `/`.

Package payloads are hostile until proven otherwise: a member `../../x`, a
symlink `etc -> /etc` followed by a member `etc/passwd`, or a hard link to
`/etc/shadow` must all land inside the target. Every writer in rootfs finds
where to write through this module and never lets the kernel follow a
symlink it has not checked.
"""

from __future__ import annotations

import errno
import os

from rootfs.model.errors import InstallError

MAX_SYMLINKS = 40  # as the kernel's ELOOP limit
PATH_MAX = 4096  # bytes, as Linux's: no honest package name is longer
NAME_MAX = 255  # bytes per component
SHOWN = 200  # characters of a hostile name that a message repeats


class PathEscape(Exception):
    """A path cannot be resolved inside the root (too many links, not a dir)."""


class UnsafeName(InstallError):
    """A path a package or an image names that cannot be honoured inside a
    root: a NUL or a newline (dpkg's databases hold one path per line), a
    component longer than NAME_MAX or a whole longer than PATH_MAX."""


def shown(name: str | bytes, limit: int = SHOWN) -> str:
    """A name as a message repeats it: quoted, escapes visible, cut to
    `limit` characters with an ellipsis, so that a hostile name of
    megabytes never floods a terminal or a log."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "surrogateescape")
    text = repr(name)
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "\u2026"


def normalise(path: str, what: str = "a path") -> str:
    """`path` with chroot semantics, as "/a/b" ("/" for the root): empty and
    `.` components dropped, `..` taken lexically and stopped at the root, so
    the result never climbs out whatever the input. What cannot be a path
    in a root is refused with UnsafeName, naming `what` (who said it)."""
    if "\0" in path or "\n" in path:
        raise UnsafeName(f"{what} names a path with a NUL or a newline: {shown(path)}")
    raw = path.encode("utf-8", "surrogateescape")
    if len(raw) > PATH_MAX:
        raise UnsafeName(f"{what} names a path of {len(raw)} bytes, longer than {PATH_MAX}: {shown(path)}")
    done = lexical(path)
    if any(len(comp.encode("utf-8", "surrogateescape")) > NAME_MAX for comp in done):
        raise UnsafeName(f"{what} names a path with a component longer than {NAME_MAX} bytes: {shown(path)}")
    return "/" + "/".join(done)


def lexical(path: str) -> list[str]:
    """The components of path with chroot semantics, without looking at
    any filesystem: "" and "." dropped, ".." stopped at the top."""
    done: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if done:
                done.pop()
            continue
        done.append(comp)
    return done


def _split(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


def repository_path(location: str, what: str) -> str:
    """A path an index gives for a package file (deb `Filename:`, rpm
    `location href`), checked to stay inside the repository it came from:
    not absolute, no URL scheme, no `..` that climbs above the top, no NUL,
    newline, `?` or `#` (which would change the URL). Returns it
    normalised; refuses with VerifyError naming `what` before anything is
    fetched."""
    from rootfs.model.errors import VerifyError

    def refuse(why: str):
        return VerifyError(f"{what} {shown(location)}, which {why}; refused")

    if not location:
        raise refuse("is empty")
    if any(c in location for c in "\0\n\r?#\\"):
        raise refuse("holds a character no repository path has")
    if location.startswith("/"):
        raise refuse("is absolute")
    head = location.split("/", 1)[0]
    if ":" in head:
        raise refuse("carries a URL scheme")
    done: list[str] = []
    for comp in location.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not done:
                raise refuse("climbs out of the repository")
            done.pop()
            continue
        done.append(comp)
    if not done:
        raise refuse("names no file")
    return "/".join(done)


def resolve_in_root(root: str | os.PathLike, path: str, *, follow_last: bool = True) -> str:
    """The real host path of `path` inside `root`, following symlinks that
    exist under root as if root were `/`. `..` stops at the root, absolute
    link targets restart at the root. The last component is followed only
    when follow_last is true. Missing components are allowed: the result is
    where the path would be created."""
    root = os.fspath(root).rstrip("/") or "/"
    done: list[str] = []
    pending = list(reversed(_split(path)))
    hops = 0
    while pending:
        comp = pending.pop()
        if comp == "..":
            if done:
                done.pop()
            continue
        here = root + "/" + "/".join(done + [comp])
        is_last = not pending
        if is_last and not follow_last:
            done.append(comp)
            break
        try:
            target = os.readlink(here)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                done.append(comp)  # not a symlink (or not there yet)
                continue
            raise
        hops += 1
        if hops > MAX_SYMLINKS:
            raise PathEscape(f"too many levels of symbolic links resolving {path}")
        if target.startswith("/"):
            done = []
        pending.extend(reversed(_split(target)))
    return root + ("/" + "/".join(done) if done else "")


def parent_in_root(root: str | os.PathLike, path: str) -> tuple[str, str]:
    """(host path of the resolved parent directory, final name) for a member
    that is about to be created. The final name itself is never followed, so
    a symlink planted there is replaced, not written through."""
    comps = _split(path)
    while comps and comps[-1] == "..":
        # "a/.." as a member name means the directory "" -- treat as its parent
        comps = comps[:-2] if len(comps) >= 2 else []
    if not comps:
        return os.fspath(root).rstrip("/") or "/", ""
    parent = resolve_in_root(root, "/".join(comps[:-1]), follow_last=True)
    return parent, comps[-1]


def relative_to_root(root: str | os.PathLike, host_path: str) -> str:
    """The root-relative key ("etc/passwd") of a host path under root."""
    root = os.fspath(root).rstrip("/")
    rel = host_path[len(root):].lstrip("/") if host_path.startswith(root) else host_path
    return rel or "."
