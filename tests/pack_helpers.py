"""Trees to pack and readers that turn every output back into one model.

A model maps each root-relative path (bytes, b"" for the root) to what an
image must preserve of it: type, permission bits, owner, size, content
digest, link target, device numbers and xattrs. Hard links are compared as
groups of names sharing one inode. Every reader here uses a tool other than
the packer (tarfile, libarchive, debugfs, sqfs2tar, lstat), so a test that
compares two models checks the packer against independent code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from rootfs.host.policy import Policy

SDE = 1_700_000_000
OLD = 1_600_000_000  # mtimes in the fixture tree: older than SDE, so kept

# A valid VFS_CAP_REVISION_2 blob: cap_net_raw (13) permitted+effective,
# what iputils-ping carries in Debian.
CAP_NET_RAW = bytes.fromhex("01000002" "00200000" "00000000" "00000000" "00000000")

NON_UTF8 = b"caf\xe9 latin1"


@dataclass
class Node:
    type: str  # f d l c b p
    mode: int
    uid: int
    gid: int
    size: int = 0
    sha: str = ""
    target: bytes = b""
    rdev: tuple[int, int] = (0, 0)
    xattrs: dict = field(default_factory=dict)
    mtime: int | None = None


@dataclass
class Model:
    nodes: dict[bytes, Node]
    links: set[frozenset[bytes]]  # names that share an inode (files only, 2+ names)

    def without_mtimes(self) -> "Model":
        return Model({k: Node(**{**v.__dict__, "mtime": None}) for k, v in self.nodes.items()}, self.links)

    def without_xattrs(self) -> "Model":
        return Model({k: Node(**{**v.__dict__, "xattrs": {}}) for k, v in self.nodes.items()}, self.links)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# The tree below holds device nodes and a FIFO outside /dev: what maintainer
# scripts may make, and what `rootfs pack` of an arbitrary tree refuses
# unless those rules are waived (rootfs.host.policy). Pack it with this.
NODES_ALLOWED = Policy(frozenset({"device", "fifo"}))


def build_every_entry_tree(root: Path) -> None:
    """A root with every kind of entry the packer must carry (run as root)."""
    r = os.fsencode(root)
    os.makedirs(root, exist_ok=True)

    def p(rel: str | bytes) -> bytes:
        return r + b"/" + (rel.encode() if isinstance(rel, str) else rel)

    for d in ("bin", "etc", "usr/lib", "var/log/apt", "var/lib/apt/lists/partial", "var/lib/dbus",
              "var/cache/ldconfig", "proc", "sys", "dev", "tmp", "run/lock", "devs", "odd",
              "links/a", "links/b", "names"):
        os.makedirs(p(d), exist_ok=True)
    Path(root, "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n")
    Path(root, "etc/group").write_text("root:x:0:\nstaff:x:50:\nalice:x:1000:\n")
    Path(root, "etc/shadow").write_text("root:*:19999:0:99999:7:::\nalice:!:18000:0:99999:7:::\n")
    os.chmod(p("etc/shadow"), 0o640)
    Path(root, "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    Path(root, "etc/hostname").write_text("builder\n")
    Path(root, "usr/lib/big.bin").write_bytes(os.urandom(3 << 20) + b"tail")  # spans chunks
    Path(root, "usr/lib/empty").write_bytes(b"")
    Path(root, "bin/ping").write_bytes(b"\x7fELF not really ping\n")
    os.chmod(p("bin/ping"), 0o755)
    os.setxattr(p("bin/ping"), "security.capability", CAP_NET_RAW)
    Path(root, "bin/su").write_bytes(b"setuid\n")
    os.chmod(p("bin/su"), 0o4755)
    Path(root, "bin/wall").write_bytes(b"setgid\n")
    os.chown(p("bin/wall"), 0, 50)
    os.chmod(p("bin/wall"), 0o2755)
    os.chmod(p("odd"), 0o1777)
    os.makedirs(p("odd/private"), exist_ok=True)
    os.chmod(p("odd/private"), 0o700)
    os.makedirs(p("odd/setgid"), exist_ok=True)
    os.chmod(p("odd/setgid"), 0o2775)
    os.chown(p("odd/setgid"), 1000, 50)
    Path(root, "odd/owned").write_text("alice's\n")
    os.chown(p("odd/owned"), 1000, 1000)
    os.chmod(p("odd/owned"), 0o600)
    os.setxattr(p("odd/owned"), "user.comment", b"kept \x00 binary \xff")
    os.setxattr(p("odd"), "user.dir", b"on a directory")
    Path(root, "odd/nobody").write_text("big ids\n")
    os.chown(p("odd/nobody"), 65534, 3_000_000)  # beyond ustar's 7 octal digits
    os.symlink("/etc/passwd", p("links/abs"))
    os.symlink("../etc/passwd", p("links/rel"))
    os.symlink("/does/not/exist", p("links/dangling"))
    Path(root, "links/a/file").write_text("shared by three names\n")
    os.link(p("links/a/file"), p("links/b/file"))
    os.link(p("links/a/file"), p("links/hard"))
    os.mknod(p("devs/null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(p("devs/loop0"), stat.S_IFBLK | 0o660, os.makedev(7, 0))
    os.chown(p("devs/loop0"), 0, 6)
    os.mkfifo(p("devs/fifo"), 0o600)
    Path(root, "names/with space").write_text("space\n")
    Path(root, 'names/q"uote\'s and back\\slash').write_text("quotes\n")  # debugfs quoting
    Path(root, "names/ünïcödé").write_text("utf-8\n")
    Path(os.fsdecode(p(b"names/" + NON_UTF8))).write_text("not utf-8\n")
    long_dir = "names/" + "d" * 90
    os.makedirs(p(long_dir), exist_ok=True)
    Path(root, long_dir, "f" * 120).write_text("long path\n")
    os.symlink("t" * 150, p("names/longlink"))
    # Run-specific files the packer leaves out or replaces.
    Path(root, "var/log/dpkg.log").write_text("2026-01-01 install\n")
    Path(root, "var/log/apt/history.log").write_text("history\n")
    Path(root, "var/lib/apt/lists/deb_dists_bookworm_InRelease").write_text("index\n")
    Path(root, "var/lib/apt/lists/lock").write_bytes(b"")
    Path(root, "var/lib/dbus/machine-id").write_text("0123\n")
    Path(root, "var/cache/ldconfig/aux-cache").write_bytes(b"\x01\x02")
    Path(root, "tmp/leftover").write_text("x\n")
    Path(root, "run/pid").write_text("1\n")
    Path(root, "proc/not-packed").write_text("x\n")
    os.mknod(p("dev/null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(os.fsdecode(p("odd/socket")))
    s.close()
    set_mtimes(root, OLD)
    os.utime(p("etc/hostname"), (2_000_000_000, 2_000_000_000))  # in the future: clamped


def set_mtimes(root: Path, when: int) -> None:
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root), topdown=False):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), (when, when), follow_symlinks=False)
    os.utime(root, (when, when))


# What the default cleanup leaves out of the fixture tree, and what it changes.
CLEANED = {
    b"var/log/dpkg.log", b"var/log/apt/history.log", b"var/lib/apt/lists/deb_dists_bookworm_InRelease",
    b"var/lib/dbus/machine-id", b"var/cache/ldconfig/aux-cache", b"tmp/leftover", b"run/pid",
    b"proc/not-packed", b"dev/null", b"odd/socket",
}


def expected_model(root: Path, sde: int | None = SDE) -> Model:
    """The model of the tree as the image must hold it."""
    m = tree_model(root)
    for k in CLEANED:
        m.nodes.pop(k, None)
    m.links = {g - CLEANED for g in m.links if len(g - CLEANED) > 1}
    mid = m.nodes[b"etc/machine-id"]
    mid.size, mid.sha = 0, _sha(b"")
    if sde is not None:
        for n in m.nodes.values():
            if n.mtime is not None and n.mtime > sde:
                n.mtime = sde
        shadow = m.nodes[b"etc/shadow"]
        text = (b"root:*:19999:0:99999:7:::\nalice:!:18000:0:99999:7:::\n").replace(b"19999", str(min(19999, sde // 86400)).encode())
        shadow.size, shadow.sha = len(text), _sha(text)
    return m


def tree_model(root: Path) -> Model:
    r = os.fsencode(root)
    nodes: dict[bytes, Node] = {}
    inodes: dict[tuple[int, int], set[bytes]] = {}

    def add(rel: bytes, full: bytes) -> None:
        st = os.lstat(full)
        mode = st.st_mode
        t = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c",
             stat.S_IFBLK: "b", stat.S_IFIFO: "p"}.get(stat.S_IFMT(mode))
        if t is None:
            return
        n = Node(t, stat.S_IMODE(mode), st.st_uid, st.st_gid, mtime=int(st.st_mtime))
        if t == "f":
            data = open(full, "rb").read()
            n.size, n.sha = len(data), _sha(data)
            if st.st_nlink > 1:
                inodes.setdefault((st.st_dev, st.st_ino), set()).add(rel)
        elif t == "l":
            n.target = os.readlink(full)
            n.mode = 0o777
        elif t in "cb":
            n.rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
        try:
            names = os.listxattr(full, follow_symlinks=False)
        except OSError:
            names = []
        n.xattrs = {x: os.getxattr(full, x, follow_symlinks=False) for x in names}
        nodes[rel] = n

    add(b"", r)
    for dirpath, dirnames, filenames in os.walk(r):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            add(os.path.relpath(full, r), full)
    return Model(nodes, {frozenset(g) for g in inodes.values() if len(g) > 1})


def _norm(name: str | bytes) -> bytes:
    b = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
    while b.startswith(b"./"):
        b = b[2:]
    b = b.rstrip(b"/")
    return b"" if b in (b".", b"") else b


def tar_model(data: bytes | io.BufferedIOBase) -> Model:
    """Read with Python's tarfile."""
    f = io.BytesIO(data) if isinstance(data, bytes) else data
    nodes: dict[bytes, Node] = {}
    groups: dict[bytes, set[bytes]] = {}
    with tarfile.open(fileobj=f, mode="r:") as t:
        for m in t:
            name = _norm(m.name)
            xattrs = {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape")
                      for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            if m.islnk():
                target = _norm(m.linkname)
                src = nodes[target]
                nodes[name] = Node(**{**src.__dict__})
                groups.setdefault(target, {target}).add(name)
                continue
            t_ = "f" if m.isreg() else "d" if m.isdir() else "l" if m.issym() else "c" if m.ischr() else \
                "b" if m.isblk() else "p" if m.isfifo() else "?"
            n = Node(t_, m.mode, m.uid, m.gid, mtime=int(m.mtime), xattrs=xattrs)
            if m.isreg():
                content = t.extractfile(m).read()
                n.size, n.sha = len(content), _sha(content)
            elif m.issym():
                n.target, n.mode = m.linkname.encode("utf-8", "surrogateescape"), 0o777
            elif m.ischr() or m.isblk():
                n.rdev = (m.devmajor, m.devminor)
            nodes[name] = n
    return Model(nodes, {frozenset(g) for g in groups.values()})


def tar_names(data: bytes) -> dict[bytes, tuple[str, str]]:
    """name -> (uname, gname) as recorded in the headers."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        for m in t:
            out[_norm(m.name)] = (m.uname, m.gname)
    return out


def libarchive_model(path: Path) -> Model:
    """Read with libarchive (what bsdtar, podman's c/storage peers and most
    tools other than GNU tar use); xattrs are not exposed by libarchive-c."""
    import libarchive

    nodes: dict[bytes, Node] = {}
    groups: dict[bytes, set[bytes]] = {}
    with libarchive.file_reader(str(path)) as archive:
        for e in archive:
            name = _norm(e.get_pathname() if hasattr(e, "get_pathname") else os.fsencode(e.pathname))
            if e.islnk:
                target = _norm(os.fsencode(e.linkpath))
                nodes[name] = Node(**{**nodes[target].__dict__})
                groups.setdefault(target, {target}).add(name)
                continue
            t_ = "f" if e.isreg else "d" if e.isdir else "l" if e.issym else "c" if e.ischr else \
                "b" if e.isblk else "p" if e.isfifo else "?"
            n = Node(t_, stat.S_IMODE(e.mode), e.uid, e.gid, mtime=int(e.mtime))
            if e.isreg:
                content = b"".join(e.get_blocks())
                n.size, n.sha = len(content), _sha(content)
            elif e.issym:
                n.target, n.mode = os.fsencode(e.linkpath), 0o777
            elif e.ischr or e.isblk:
                n.rdev = (e.rdevmajor, e.rdevminor)
            nodes[name] = n
    return Model(nodes, {frozenset(g) for g in groups.values()})


def decompress(path: Path) -> bytes:
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        import gzip

        return gzip.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    if data[:6] == b"\xfd7zXZ\x00":
        import lzma

        return lzma.decompress(data)
    return data


def oci_layer(layout: Path) -> tuple[dict, dict, bytes]:
    """(manifest, config, uncompressed layer) of the only image in a layout."""
    index = json.loads((layout / "index.json").read_text())
    (desc,) = index["manifests"]
    blob = lambda d: layout / "blobs" / "sha256" / d.split(":", 1)[1]  # noqa: E731
    manifest = json.loads(blob(desc["digest"]).read_text())
    config = json.loads(blob(manifest["config"]["digest"]).read_text())
    (layer,) = manifest["layers"]
    return manifest, config, decompress(blob(layer["digest"]))


def docker_layer(archive: Path) -> tuple[list, dict, bytes]:
    with tarfile.open(archive) as t:
        manifest = json.load(t.extractfile("manifest.json"))
        config = json.load(t.extractfile(manifest[0]["Config"]))
        layer = t.extractfile(manifest[0]["Layers"][0]).read()
    return manifest, config, layer


def squashfs_model(image: Path) -> Model:
    out = subprocess.run(["sqfs2tar", str(image)], check=True, capture_output=True).stdout
    return tar_model(out)


def ext_model(image: Path, scratch: Path) -> Model:
    """Read an ext2/ext4 image with debugfs alone (no mount, no root)."""

    def q(path: bytes) -> bytes:
        return b'"/' + path.replace(b'"', b'""') + b'"'

    def run(cmds: list[bytes]) -> list[bytes]:
        script = scratch / "debugfs.cmds"
        script.write_bytes(b"\n".join(cmds) + b"\n")
        out = subprocess.run(["debugfs", "-f", str(script), str(image)], check=True, capture_output=True).stdout
        parts = out.split(b"debugfs: ")
        return parts[1:]

    nodes: dict[bytes, Node] = {}
    inos: dict[int, set[bytes]] = {}
    pending = [b""]
    files: list[bytes] = []
    while pending:
        outs = run([b"ls -p " + q(d) for d in pending])
        nxt = []
        for d, out in zip(pending, outs):
            for line in out.split(b"\n")[1:]:
                if not line.startswith(b"/"):
                    continue
                # /ino/mode/uid/gid/name/size/ ; names may hold "/": cut from both ends
                head = line[1:].split(b"/", 4)
                ino, mode, uid, gid = int(head[0]), int(head[1], 8), int(head[2]), int(head[3])
                if ino == 0:
                    continue  # an empty directory slot (lost+found is preallocated)
                name, size = head[4][:-1].rsplit(b"/", 1)
                if name in (b".", b"..") and d:
                    continue
                rel = d if name in (b".", b"..") else (d + b"/" + name if d else name)
                if name == b".." or rel in nodes:
                    continue
                t_ = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c",
                      stat.S_IFBLK: "b", stat.S_IFIFO: "p"}[stat.S_IFMT(mode)]
                n = Node(t_, stat.S_IMODE(mode), uid, gid)
                nodes[rel] = n
                if t_ == "d" and name != b".":
                    nxt.append(rel)
                if t_ == "f":
                    n.size = int(size or 0)
                    files.append(rel)
                    inos.setdefault(ino, set()).add(rel)
                if t_ == "l":
                    n.mode = 0o777
        pending = nxt
    nodes.pop(b"lost+found", None)
    paths = sorted(nodes)
    dumps = {}
    cmds = []
    for i, rel in enumerate(paths):
        cmds.append(b"stat " + q(rel) if rel else b'stat "/"')
        cmds.append(b"ea_list " + q(rel) if rel else b'ea_list "/"')
        if nodes[rel].type == "f":
            dumps[rel] = scratch / f"dump{i}"
            cmds.append(b"dump " + q(rel) + b" " + str(dumps[rel]).encode())
    outs = run(cmds)
    it = iter(outs)
    for rel in paths:
        st_out, ea_out = next(it), next(it)
        if rel in dumps:
            next(it)
        n = nodes[rel]
        for line in st_out.split(b"\n"):
            if line.startswith(b" mtime:"):
                n.mtime = int(line.split()[1].split(b":")[0], 16)
            if line.startswith(b"Fast link dest:"):
                n.target = line.split(b": ", 1)[1].strip()[1:-1]
            if b"Device major/minor number:" in line:
                mm = line.split(b":", 1)[1].split()[0].split(b":")
                n.rdev = (int(mm[0]), int(mm[1]))
        for line in ea_out.split(b"\n")[2:]:
            line = line.strip()
            if not line or b" = " not in line:
                continue
            key, val = line.split(b" = ", 1)
            key = key.rsplit(b" (", 1)[0].decode()
            if val.startswith(b'"'):
                value = val[1:-1]
            else:
                value = bytes(int(x, 16) for x in val.split())
            n.xattrs[key] = value
        if n.type == "l" and not n.target:
            # slow symlink (> 60 bytes): its block holds the target
            dumps_path = scratch / "slowlink"
            run([b"dump " + q(rel) + b" " + str(dumps_path).encode()])
            n.target = dumps_path.read_bytes()
            dumps_path.unlink()
    for rel, p in dumps.items():
        data = p.read_bytes()
        nodes[rel].sha = _sha(data)
        p.unlink()
    return Model(nodes, {frozenset(g) for g in inos.values() if len(g) > 1})


def host_shell_tree(root: Path) -> None:
    """A runnable root from the host's own dash and its libraries (no mirror)."""
    sh = os.path.realpath("/bin/sh")
    libs = subprocess.run(["ldd", sh], check=True, capture_output=True, text=True).stdout
    paths = [sh]
    for line in libs.splitlines():
        parts = line.split()
        for p in parts:
            if p.startswith("/"):
                paths.append(p)
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(sh, root / "bin/sh")
    for p in paths[1:]:
        dest = root / p.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(p), dest)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "bin/ping").write_bytes(b"#!/bin/sh\necho pong\n")
    os.chmod(root / "bin/ping", 0o755)
    os.setxattr(root / "bin/ping", "security.capability", CAP_NET_RAW)
    set_mtimes(root, OLD)
