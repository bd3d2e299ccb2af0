"""mmdebstrap's special hooks, and the file operations of [customize].

Run as its own process inside the build's session (root, or the user
namespace with fakeroot in a rootless build), so that what it writes gets
the owners it should and, without root, is recorded like everything else
the session changes:

    python -m rootfs.host.hookhelper --hook-helper ROOT MODE HOOK QEMU VERBOSITY COMMAND ARGS...
    python -m rootfs.host.hookhelper --install ROOT SRC DEST MODE|- UID GID
    python -m rootfs.host.hookhelper --symlink ROOT TARGET PATH

The first form is mmdebstrap's own `--hook-helper` command line, which hook
scripts call as "$MMDEBSTRAP_ARGV0" --hook-helper ... (file-mirror-automount
does), so hook directories written for mmdebstrap work unchanged.

As in mmdebstrap, paths inside the root are relative to the root (symlinks
in it resolve as if it were `/`), paths outside relative to the directory
the hook runs in; the directory inside must exist, the one outside is made.
Everything is written by rootfs.host.unpacker, never by `tar -x` into the
root: a symlink a package planted cannot send a copy-in outside it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from rootfs.host.policy import USER_FILES
from rootfs.host.safepath import PathEscape, parent_in_root, resolve_in_root
from rootfs.host.unpacker import Extractor
from rootfs.model.errors import InstallError, RootfsError, UsageError

# mmdebstrap's tar options for the special hooks.
TAR = ["tar", "--numeric-owner", "--xattrs", "--format=pax",
       "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime"]
ERROR_FILE_ENV = "ROOTFS_HOOK_ERROR"


def _inside(root: str, path: str, *, must_be_dir: bool = False, must_exist: bool = True) -> str:
    try:
        host = resolve_in_root(root, path)
    except PathEscape as exc:
        raise UsageError(f"{path}: {exc}") from None
    if must_exist and not os.path.lexists(host):
        raise UsageError(f"/{path.lstrip('/')} does not exist inside the root")
    if must_be_dir and not os.path.isdir(host):
        raise UsageError(f"/{path.lstrip('/')} is not a directory inside the root")
    return host


def _rel(root: str, host: str) -> str:
    return "" if host == root else os.path.relpath(host, root)


def _tar_of(directory: str, names: list[str], extra: list[str] = ()) -> subprocess.Popen:
    return subprocess.Popen([*TAR, *extra, "--directory", directory, "--create", "--file", "-", "--", *names],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _feed(proc: subprocess.Popen, ex: Extractor, prefix: str, what: str) -> None:
    try:
        ex.extract(proc.stdout, prefix=prefix, format_name="tar", what=what)
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.wait()
    if proc.returncode not in (0, 1):  # 1: a file changed while read
        raise InstallError(f"tar could not read {what}: {err.splitlines()[-1] if err else proc.returncode}")


def _extractor(root: str) -> Extractor:
    return Extractor(root, mode="root", policy=USER_FILES)


def _outside_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    if not os.path.isdir(path):
        raise UsageError(f"{path} is not a directory")
    return os.path.realpath(path)


def copy_in(root: str, sources: list[str], dest: str) -> None:
    target = _inside(root, dest, must_be_dir=True)
    with _extractor(root) as ex:
        for src in sources:
            if not os.path.lexists(src):
                raise UsageError(f"{src} does not exist")
            full = os.path.abspath(src)
            _feed(_tar_of(os.path.dirname(full) or "/", [os.path.basename(full)]), ex, _rel(root, target), src)


def sync_in(root: str, src: str, dest: str) -> None:
    if not os.path.isdir(src):
        raise UsageError(f"{src} is not a directory")
    target = _inside(root, dest, must_be_dir=True)
    with _extractor(root) as ex:
        _feed(_tar_of(src, ["."]), ex, _rel(root, target), src)


def tar_in(root: str, tarball: str, dest: str) -> None:
    if not os.path.isfile(tarball):
        raise UsageError(f"{tarball} is not a file")
    target = _inside(root, dest, must_be_dir=True)
    with _extractor(root) as ex:
        ex.extract(tarball, prefix=_rel(root, target), what=tarball)


def upload(root: str, src: str, dest: str) -> None:
    """The file's content only: an existing file keeps its mode, a new one
    is root's 0644, as `cat > FILE` inside would leave it."""
    try:
        with open(src, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {src}: {exc.strerror}") from None
    parent, name = parent_in_root(root, dest)
    if not os.path.isdir(parent):
        raise UsageError(f"the directory of {dest} does not exist inside the root")
    host = os.path.join(parent, name)
    mode = 0o644
    if os.path.isfile(host) and not os.path.islink(host):
        mode = stat.S_IMODE(os.lstat(host).st_mode)
    with _extractor(root) as ex:
        ex.write_file(_rel(root, host), data, mode)


def copy_out(root: str, sources: list[str], dest: str) -> None:
    out = _outside_dir(dest)
    with Extractor(out, mode="root", policy=USER_FILES) as ex:
        for src in sources:
            host = _inside(root, src, must_exist=True)
            if host == root:
                _feed(_tar_of(root, ["."]), ex, "", src)
            else:
                _feed(_tar_of(os.path.dirname(host), [os.path.basename(host)]), ex, "", src)


def sync_out(root: str, src: str, dest: str) -> None:
    host = _inside(root, src, must_be_dir=True)
    out = _outside_dir(dest)
    with Extractor(out, mode="root", policy=USER_FILES) as ex:
        _feed(_tar_of(host, ["."]), ex, "", src)


def tar_out(root: str, src: str, tarball: str) -> None:
    host = _inside(root, src)
    os.makedirs(os.path.dirname(os.path.abspath(tarball)), exist_ok=True)
    names = ["."] if host == root else [os.path.basename(host)]
    proc = _tar_of(root if host == root else os.path.dirname(host), names)
    with open(tarball, "wb") as f:
        shutil.copyfileobj(proc.stdout, f, 1 << 20)
    err = proc.stderr.read().decode("utf-8", "replace").strip()
    if proc.wait() not in (0, 1):
        raise InstallError(f"tar could not read {src}: {err}")


def download(root: str, src: str, dest: str) -> None:
    host = _inside(root, src)
    if not os.path.isfile(host):
        raise UsageError(f"/{src.lstrip('/')} is not a file inside the root")
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    with open(host, "rb") as f, open(dest, "wb") as out:
        shutil.copyfileobj(f, out, 1 << 20)


def special(root: str, command: str, args: list[str]) -> None:
    if command in ("copy-in", "copy-out"):
        if len(args) < 2:
            raise UsageError(f"{command} needs at least one path to copy and a directory")
        (copy_in if command == "copy-in" else copy_out)(root, args[:-1], args[-1])
        return
    ops = {"sync-in": sync_in, "sync-out": sync_out, "tar-in": tar_in, "tar-out": tar_out,
           "upload": upload, "download": download}
    if command not in ops:
        raise UsageError(f"unknown special hook {command!r} (known: copy-in, copy-out, {', '.join(ops)})")
    if len(args) != 2:
        raise UsageError(f"{command} takes exactly two paths")
    ops[command](root, *args)


def install(root: str, src: str, dest: str, mode: int | None, uid: int, gid: int) -> None:
    """[customize] files: a file (content, the mode asked for or its own)
    or a tree (the files' own modes) at dest, everything owned uid:gid;
    missing parent directories are made root's 0755."""
    with _extractor(root) as ex:
        if os.path.isdir(src) and not os.path.islink(src):
            if dest.strip("/"):
                ex.make_dir(dest.strip("/"))
            target = _inside(root, dest, must_be_dir=True)
            names = sorted(os.listdir(src))
            if names:
                _feed(_tar_of(src, names, [f"--owner={uid}", f"--group={gid}"]), ex, _rel(root, target), src)
            return
        try:
            with open(src, "rb") as f:
                data = f.read()
                own = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        except OSError as exc:
            raise UsageError(f"cannot read {src}: {exc.strerror}") from None
        parent, name = parent_in_root(root, dest)
        rel = _rel(root, os.path.join(parent, name))
        ex.write_file(rel, data, own if mode is None else mode)
        if (uid, gid) != (0, 0):
            st_mode = stat.S_IFREG | (own if mode is None else mode)
            ex.set_owner_mode(rel, st_mode, uid, gid)


def symlink(root: str, target: str, path: str) -> None:
    with _extractor(root) as ex:
        parent, name = parent_in_root(root, path)
        ex.make_symlink(_rel(root, os.path.join(parent, name)), target)


def main(argv: list[str]) -> int:
    try:
        if len(argv) >= 7 and argv[0] == "--hook-helper":
            root, _mode, _hook, _qemu, _verbosity, command, *args = argv[1:]
            special(os.path.realpath(root), command, args)
        elif len(argv) == 7 and argv[0] == "--install":
            root, src, dest, mode, uid, gid = argv[1:]
            install(os.path.realpath(root), src, dest, None if mode == "-" else int(mode, 8), int(uid), int(gid))
        elif len(argv) == 4 and argv[0] == "--symlink":
            symlink(os.path.realpath(argv[1]), argv[2], argv[3])
        else:
            raise UsageError("usage: --hook-helper ROOT MODE HOOK QEMU VERBOSITY COMMAND ARGS... | "
                             "--install ROOT SRC DEST MODE UID GID | --symlink ROOT TARGET PATH")
    except RootfsError as exc:
        print(f"rootfs: error: {exc}", file=sys.stderr)
        where = os.environ.get(ERROR_FILE_ENV)
        if where:
            Path(where).write_text(str(exc))
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
