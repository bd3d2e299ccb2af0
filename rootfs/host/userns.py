"""Running the configure stage without root: a user namespace plus fakeroot.

An ordinary user can have a user namespace in which its own uid is root
(`unshare --map-root-user`), and there mount /proc, bind /dev and /sys and
chroot. What it cannot do there is hand files to other users: with a single
mapped id (no /etc/subuid ranges, as on many CI hosts) `chown root:shadow`
fails. So, as fakeroot does for package builds, ownership changes are
recorded instead of applied: libfakeroot is preloaded into every process in
the target and keeps owners, modes, device nodes and xattrs in the faked
daemon, seeded with what stage 1 recorded. At the end the target's own tar,
run inside the same faked session, lists every path as the scripts left it,
and that listing becomes the attrs record the packer writes into the image.

The host's fakeroot is used (the `fakeroot` Debian package); its library is
copied into the target for the session and removed afterwards. It needs a
target glibc at least as new as the one it was built against.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rootfs.host.chroot import Chroot
from rootfs.host.run import popen, watch
from rootfs.host.run import run as host_run
from rootfs.model.attrs import Attr, AttrRecord, relpath
from rootfs.model.errors import InstallError, PrivilegeError

TOOLS_DIR = ".rootfs-fakeroot"  # inside the root, for the session only
LIB_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libfakeroot/libfakeroot-sysv.so",
    "/usr/lib/aarch64-linux-gnu/libfakeroot/libfakeroot-sysv.so",
    "/usr/lib/libfakeroot/libfakeroot-sysv.so",
)
FAKED = "faked-sysv"

# Inside the namespace: mount what scripts need, then chroot. /dev is the
# host's, bound: in a user namespace no device node can be made, and an
# unprivileged user's processes cannot open the host's disks anyway.
_ENTER = r"""
set -e
root=$1; shift
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
exec "$@"
"""


def _host_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PrivilegeError(f"building without root needs {name} (Debian package fakeroot)")
    return path


def _host_lib() -> str:
    for p in LIB_CANDIDATES:
        if os.path.exists(p):
            return p
    raise PrivilegeError("building without root needs libfakeroot (Debian package libfakeroot)")


def check_user_namespaces() -> None:
    """Fail with what the host lacks when a user namespace cannot be had."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise PrivilegeError("building without root needs unshare (util-linux)")
    p = host_run([unshare, "--user", "--map-root-user", "--mount", "true"], text=True, seconds=60)
    if p.returncode != 0:
        why = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "unknown reason"
        raise PrivilegeError(
            f"building without root needs unprivileged user namespaces, which this host refuses ({why}); "
            "enable kernel.unprivileged_userns_clone or build as root"
        )


def _state_line(st: os.stat_result, attr: Attr) -> str:
    return (f"dev={st.st_dev:x},ino={st.st_ino},mode={attr.mode:o},uid={attr.uid},gid={attr.gid},"
            f"nlink={st.st_nlink},rdev={attr.rdev}\n")


def seed_state(root: str, attrs: AttrRecord) -> str:
    """faked's --load format for every recorded path whose owner or type the
    disk does not hold (other owners, devices, fifos made as placeholders)."""
    lines = []
    for path, attr in attrs.items():
        host = os.path.join(root, path) if path != "." else root
        try:
            st = os.lstat(host)
        except OSError:
            continue
        if attr.uid or attr.gid or stat.S_IFMT(attr.mode) != stat.S_IFMT(st.st_mode) \
                or stat.S_IMODE(attr.mode) != stat.S_IMODE(st.st_mode):
            lines.append(_state_line(st, attr))
    return "".join(lines)


@dataclass
class UserChroot(Chroot):
    """Chroot's interface (enter, run(), exit) for an unprivileged user.

    `attrs` holds stage 1's record on entry and the complete record of the
    tree as the scripts left it on exit."""

    attrs: AttrRecord = field(default_factory=AttrRecord)
    _faked: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _key: str = field(default="", init=False, repr=False)
    _state: str = field(default="", init=False, repr=False)
    _mount_points: dict = field(default_factory=dict, init=False, repr=False)

    def __enter__(self) -> "UserChroot":
        check_user_namespaces()
        self._stack = contextlib.ExitStack()
        try:
            self._setup()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(self, exc_type, *exc) -> None:
        listing = None
        known: set[tuple[int, int]] = set()
        try:
            if exc_type is None:
                listing = self.listing()
                self._stop_faked()  # it writes the inodes it tracked to its save file
                known = _tracked_inodes(self._state)
        finally:
            self._teardown()
        if listing is not None:
            self.attrs.replace_with(self._merge(listing, known))

    def _merge(self, listing: AttrRecord, known: set[tuple[int, int]]) -> AttrRecord:
        """The record of the finished tree. For an inode faked tracked (a
        script chowned, chmodded or made it, or stage 1 seeded it) the
        session's view is the truth. Any other path the record already knew
        keeps that entry: it was unpacked while faked ran (rpm unpacks
        between scriptlets) and faked never saw its owner. What is left was
        made by the scripts as (fake) root. The session's own helpers
        (policy-rc.d, resolv.conf) are gone again and dropped."""
        merged = AttrRecord()
        for key, seen in listing.items():
            host = self.root if key == "." else os.path.join(self.root, key)
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                continue
            prior = self.attrs.get(key)
            tracked = (st.st_dev, st.st_ino) in known
            if prior is None or tracked or stat.S_IFMT(prior.mode) != stat.S_IFMT(seen.mode):
                merged.set(key, seen)
            else:
                merged.set(key, prior)
            node = merged.get(key)
            if _is_node(node.mode) and (key in self.attrs.scripted or prior is None
                                        or stat.S_IFMT(prior.mode) != stat.S_IFMT(node.mode)):
                # Not what stage 1 unpacked: a script made it.
                merged.scripted.add(key)
        for d, attr in self._mount_points.items():
            if d in merged:
                merged.set(d, attr)
        return merged

    def _setup(self) -> None:
        tools = os.path.join(self.root, TOOLS_DIR)
        os.mkdir(tools, 0o755)
        self._undo.append(lambda: shutil.rmtree(tools, ignore_errors=True))
        shutil.copy(_host_lib(), os.path.join(tools, "libfakeroot-sysv.so"))
        for d in ("proc", "sys", "dev"):
            p = os.path.join(self.root, d)
            if not os.path.isdir(p):
                os.makedirs(p, 0o755)
                self._undo.append(lambda p=p: os.rmdir(p))
            # The listing sees the filesystems mounted there, not these
            # directories: remember what they are.
            st = os.lstat(p)
            rec = self.attrs.get(d)
            self._mount_points[d] = rec if rec is not None else Attr(st.st_mode)
        fd, self._state = tempfile.mkstemp(prefix="rootfs-faked.", suffix=".state")
        os.close(fd)
        self._undo.append(lambda: _unlink_quiet(self._state))
        faked = popen([_host_tool(FAKED), "--foreground", "--load", "--save-file", self._state],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._faked = faked
        self._undo.append(self._stop_faked)
        with watch(faked, "fakeroot's faked (starting)"):
            faked.stdin.write(seed_state(self.root, self.attrs))
            faked.stdin.close()
            line = faked.stdout.readline().strip()
        if ":" not in line:
            raise InstallError("fakeroot's faked did not start")
        self._key = line.split(":", 1)[0]
        self._prepare_files()

    def _stop_faked(self) -> None:
        if self._faked is not None and self._faked.poll() is None:
            self._faked.send_signal(signal.SIGTERM)
            try:
                self._faked.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._faked.kill()
                self._faked.wait()
        self._faked = None

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = super().environment(extra)
        env.update({
            "FAKEROOTKEY": self._key,
            # The host's env and chroot start the command and load the
            # library too: the second directory is where the host has it.
            "LD_LIBRARY_PATH": f"/{TOOLS_DIR}:{os.path.dirname(_host_lib())}",
            "LD_PRELOAD": "libfakeroot-sysv.so",
            # In a user namespace chown to an unmapped id fails with EINVAL,
            # which libfakeroot would pass on; it must not try at all.
            "FAKEROOTDONTTRYCHOWN": "1",
            "FAKED_MODE": "unknown-is-root",
        })
        return env

    def _argv(self, cmd: Sequence[str], env: Mapping[str, str] | None) -> list[str]:
        envv = [f"{k}={v}" for k, v in sorted(self.environment(env).items())]
        return ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "--kill-child",
                "sh", "-c", _ENTER, "sh", str(self.root), "env", "-i", *envv, "chroot", str(self.root), *cmd]

    def fakeroot_environment(self) -> dict[str, str]:
        return {k: v for k, v in self.environment().items()
                if k in ("FAKEROOTKEY", "LD_LIBRARY_PATH", "LD_PRELOAD", "FAKEROOTDONTTRYCHOWN", "FAKED_MODE")}

    def outside_argv(self, cmd: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """cmd in the session's user namespace (root there, /proc, /sys and
        /dev mounted in the root) and under its fakeroot, but not chrooted:
        `chroot "$1" useradd` works and what it changes is recorded."""
        full = {**env, **self.fakeroot_environment()}
        envv = [f"{k}={v}" for k, v in sorted(full.items())]
        argv = ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "--kill-child",
                "sh", "-c", _ENTER, "sh", str(self.root), "env", "-i", *envv, *cmd]
        return argv, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    def run(self, cmd: Sequence[str], env: Mapping[str, str] | None = None, *, check: bool = False,
            input: bytes | None = None, pass_fds: Sequence[int] = ()) -> subprocess.CompletedProcess:
        proc = host_run(self._argv(cmd, env), what=f"{' '.join(cmd)[:200]} (inside the root)", input=input,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=pass_fds,
                        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                        preexec_fn=self._preexec if self.no_syncs else None)
        if check and proc.returncode != 0:
            out = proc.stdout.decode("utf-8", "replace").strip().splitlines()
            tail = out[-1] if out else "no output"
            raise InstallError(f"{' '.join(cmd)} failed inside the root (exit status {proc.returncode}): {tail}")
        return proc

    def listing(self) -> AttrRecord:
        """Every path of the tree as the faked session sees it (owners,
        modes, devices, xattrs). faked keys its records by inode, so the
        host's own tar, preloaded with the host's libfakeroot and attached
        to the same daemon, reads the session's view without entering the
        root: the target needs no tar of its own."""
        tar = shutil.which("tar")
        if tar is None:
            raise PrivilegeError("building without root needs GNU tar on the host")
        argv = [tar, "--create", "--file=-", f"--directory={self.root}", "--numeric-owner", "--xattrs",
                "--xattrs-include=*", f"--exclude=./{TOOLS_DIR}", "--exclude=./proc/*", "--exclude=./sys/*",
                "--exclude=./dev/*", "."]
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "FAKEROOTKEY": self._key, "LD_PRELOAD": _host_lib(),
               "FAKEROOTDONTTRYCHOWN": "1", "FAKED_MODE": "unknown-is-root"}
        proc = popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        record = AttrRecord()
        err = ""
        with watch(proc, "tar listing the tree in the faked session"):
            try:
                with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
                    for m in tf:
                        record.set(relpath(m.name), _attr_of(m))
            except tarfile.TarError as exc:
                proc.kill()
                raise InstallError(f"cannot read the tree's attributes back from the faked session: {exc}") from None
            finally:
                err = proc.stderr.read().decode("utf-8", "replace")
                proc.wait()
        # GNU tar exits 1 for "file changed as we read it": harmless here.
        if proc.returncode not in (0, 1) or len(record) == 0:
            raise InstallError(f"listing the tree inside the root failed: {err.strip()[-300:]}")
        return record


def _is_node(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)


def _tracked_inodes(state_file: str) -> set[tuple[int, int]]:
    """(dev, ino) of every entry in a faked save file."""
    found = set()
    try:
        with open(state_file) as f:
            for line in f:
                fields = dict(part.split("=", 1) for part in line.strip().split(",") if "=" in part)
                if "dev" in fields and "ino" in fields:
                    found.add((int(fields["dev"], 16), int(fields["ino"])))
    except OSError:
        pass
    return found


def _unlink_quiet(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


_TYPES = {
    tarfile.REGTYPE: stat.S_IFREG, tarfile.AREGTYPE: stat.S_IFREG, tarfile.LNKTYPE: stat.S_IFREG,
    tarfile.SYMTYPE: stat.S_IFLNK, tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK,
    tarfile.DIRTYPE: stat.S_IFDIR, tarfile.FIFOTYPE: stat.S_IFIFO, tarfile.CONTTYPE: stat.S_IFREG,
}


def _attr_of(m: tarfile.TarInfo) -> Attr:
    kind = _TYPES.get(m.type, stat.S_IFREG)
    rdev = os.makedev(m.devmajor, m.devminor) if kind in (stat.S_IFCHR, stat.S_IFBLK) else 0
    xattrs = tuple(sorted(
        (k[len("SCHILY.xattr."):], v.encode("utf-8", "surrogateescape"))
        for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")
    ))
    return Attr(mode=kind | stat.S_IMODE(m.mode), uid=m.uid, gid=m.gid, rdev=rdev, xattrs=xattrs)
