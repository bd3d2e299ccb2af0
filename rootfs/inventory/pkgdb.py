"""The installed package database of a root or of an image's layers.

Graphs and SBOMs describe what is installed, and the only honest witness
of that is the package manager's own database: dpkg's status file (plus the
machine-readable copyright files for licenses) or rpm's database, queried
with the host's rpm. A root is read through rootfs.host.safepath so a hostile
tree cannot point us outside itself; an image is read layer by layer as a
stream, applying whiteouts, without unpacking it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard
from debian.deb822 import Deb822

from rootfs.backends.deb.relations import parse_provides
from rootfs.host.run import run as host_run
from rootfs.host.safepath import PathEscape, lexical, resolve_in_root, shown
from rootfs.model.errors import OutputError, PrivilegeError, UsageError, VerifyError

DPKG_STATUS = "var/lib/dpkg/status"
# Distroless images keep one status paragraph per file here instead.
DPKG_STATUS_D = "var/lib/dpkg/status.d"
# rpm keeps its database in one of these (Fedora moved it under /usr; older
# releases and SUSE use /var/lib/rpm, often as a symlink to the other).
RPM_DBPATHS = ("usr/lib/sysimage/rpm", "var/lib/rpm")
RPM_DB_FILES = ("rpmdb.sqlite", "Packages.db", "Packages")
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")

# dpkg states in which a package's files are on disk. `config-files` and
# `not-installed` entries are remnants of removed packages.
_PRESENT_STATES = {"installed", "half-configured", "unpacked", "half-installed",
                   "triggers-awaited", "triggers-pending"}


@dataclass(frozen=True)
class Package:
    """One installed package, as its package manager records it."""

    format: str  # "deb" or "rpm"
    name: str
    version: str  # deb: the Debian version; rpm: [epoch:]version-release
    architecture: str
    source: str = ""  # deb: source package name; rpm: source rpm file name
    source_version: str = ""  # deb only, when it differs from version
    maintainer: str = ""  # deb Maintainer / rpm Packager
    vendor: str = ""  # rpm Vendor
    homepage: str = ""
    essential: bool = False
    # deb: "Pre-Depends: a, b | c (>= 1)" and "Depends: ..." lines;
    # rpm: one Requires entry each ("glibc >= 2.34", "/bin/sh").
    depends: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    license: str = ""  # rpm: the License tag, verbatim
    # deb: the License short names of the copyright file's paragraphs
    # (DEP-5 only), and the texts of its stand-alone License paragraphs.
    licenses: tuple[str, ...] = ()
    license_texts: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}:{self.architecture}"


@dataclass(frozen=True)
class PackageDB:
    format: str  # "deb" or "rpm"
    packages: tuple[Package, ...]
    os_release: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- dpkg


def parse_dpkg_status(text: str) -> list[dict[str, str]]:
    """The paragraphs of a dpkg status file whose package is on disk."""
    out = []
    for para in Deb822.iter_paragraphs(text.splitlines(keepends=True)):
        if "Package" not in para:
            continue
        state = para.get("Status", "").split()
        if len(state) == 3 and state[2] not in _PRESENT_STATES:
            continue
        out.append(dict(para))
    return out


def parse_copyright(text: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """License short names and stand-alone license texts of a DEP-5
    (machine-readable) copyright file; nothing for free-form files, whose
    license cannot be told without guessing."""
    paras = list(Deb822.iter_paragraphs(text.splitlines(keepends=True)))
    if not paras or "copyright-format" not in paras[0].get("Format", paras[0].get("Format-Specification", "")):
        return (), ()
    names: list[str] = []
    texts: dict[str, str] = {}
    for i, para in enumerate(paras):
        lic = para.get("License")
        if lic is None:
            continue
        first, _, body = lic.partition("\n")
        first = " ".join(first.split())
        if "Files" in para or i == 0:
            if first and first not in names:
                names.append(first)
        elif first and body.strip():
            # A stand-alone paragraph: the text of a license named above.
            texts.setdefault(first, "\n".join(line.strip() if line.strip() != "." else ""
                                              for line in body.splitlines()).strip())
    return tuple(names), tuple(sorted(texts.items()))


def _deb_package(para: dict[str, str], copyright_text: str | None) -> Package:
    source, source_version = para.get("Source", ""), ""
    if "(" in source:
        source, _, rest = source.partition("(")
        source, source_version = source.strip(), rest.rstrip(")").strip()
    depends = tuple(f"{f}: {' '.join(para[f].split())}" for f in ("Pre-Depends", "Depends") if para.get(f))
    provides = tuple(f"{n} (= {v})" if v else n for n, v in parse_provides(para.get("Provides", "")))
    names, texts = parse_copyright(copyright_text) if copyright_text else ((), ())
    return Package(
        format="deb",
        name=para["Package"],
        version=para.get("Version", ""),
        architecture=para.get("Architecture", ""),
        source=source or para["Package"],
        source_version=source_version,
        maintainer=" ".join(para.get("Maintainer", "").split()),
        homepage=para.get("Homepage", ""),
        essential=para.get("Essential", "").lower() == "yes",
        depends=depends,
        provides=provides,
        licenses=names,
        license_texts=texts,
    )


def dpkg_packages(status_text: str, read_copyright) -> list[Package]:
    """Packages of a status file; read_copyright(name) -> text or None."""
    pkgs = [_deb_package(p, read_copyright(p["Package"])) for p in parse_dpkg_status(status_text)]
    return sorted(pkgs, key=lambda p: (p.name, p.architecture))


# ---------------------------------------------------------------- rpm

_RPM_FIELDS = ("NAME", "EPOCHNUM", "VERSION", "RELEASE", "ARCH", "LICENSE", "VENDOR",
               "PACKAGER", "SOURCERPM", "URL")
_FS, _LS, _RS = "\x1f", "\x1d", "\x1e"
_RPM_QF = _FS.join(f"%{{{f}}}" for f in _RPM_FIELDS) + _FS + f"[%{{REQUIRENEVRS}}{_LS}]" + _FS \
    + f"[%{{PROVIDENEVRS}}{_LS}]" + _FS + f"[%{{FILENAMES}}{_LS}]" + _RS


def _none(value: str) -> str:
    return "" if value == "(none)" else value


def rpm_evr(epoch: str, version: str, release: str) -> str:
    evr = f"{version}-{release}" if release else version
    return f"{epoch}:{evr}" if epoch not in ("", "0") else evr


def rpm_query(dbpath: Path) -> list[Package]:
    """Every package in the rpm database directory dbpath (a host path)."""
    if shutil.which("rpm") is None:
        raise PrivilegeError("reading an rpm database needs the rpm tool; install rpm")
    try:
        proc = host_run(["rpm", "--dbpath", str(dbpath), "-qa", "--qf", _RPM_QF], what="rpm reading the package database")
    except OSError as exc:
        raise OutputError(f"cannot run rpm on the database in {dbpath}: {exc}") from None
    if proc.returncode != 0:
        first = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[0]
        raise OutputError(f"rpm cannot read the database in {dbpath}: {first}")
    pkgs: list[Package] = []
    files: list[list[str]] = []
    # File names need not be UTF-8: kept as bytes (surrogateescape) here.
    for rec in proc.stdout.decode("utf-8", "surrogateescape").split(_RS):
        if not rec.strip():
            continue
        values = rec.split(_FS)
        if len(values) != len(_RPM_FIELDS) + 3:
            raise OutputError(f"unexpected output from rpm reading {dbpath}")
        f = dict(zip(_RPM_FIELDS, map(_none, values)))
        if f["NAME"] == "gpg-pubkey":
            continue  # imported signing keys, not software
        requires = tuple(r for r in values[-3].split(_LS) if r)
        provides = tuple(p for p in values[-2].split(_LS) if p)
        files.append(values[-1].split(_LS))
        pkgs.append(Package(
            format="rpm",
            name=f["NAME"],
            version=rpm_evr(f["EPOCHNUM"], f["VERSION"], f["RELEASE"]),
            architecture=f["ARCH"] or "noarch",
            source=f["SOURCERPM"],
            maintainer=f["PACKAGER"],
            vendor=f["VENDOR"],
            homepage=f["URL"],
            depends=requires,
            provides=provides,
            license=f["LICENSE"],
        ))
    # A file path in Requires (`/bin/sh`) is satisfied by the package that
    # owns the file: rpm's database says so through the file list, which we
    # keep only for the paths something requires.
    wanted = {r.split(" ", 1)[0] for p in pkgs for r in p.depends if r.startswith("/")}
    if wanted:
        pkgs = [dataclasses.replace(p, provides=p.provides + tuple(sorted(wanted.intersection(f))))
                for p, f in zip(pkgs, files)]
    return sorted(pkgs, key=lambda p: (p.name, p.architecture, p.version))


# ---------------------------------------------------------------- os-release


def parse_os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


# ---------------------------------------------------------------- a root


def _read_in_root(root: Path, rel: str) -> str | None:
    try:
        path = resolve_in_root(root, rel)
    except (PathEscape, OSError):
        return None
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def _list_in_root(root: Path, rel: str) -> list[str]:
    try:
        path = Path(resolve_in_root(root, rel))
        return sorted(p.name for p in path.iterdir() if p.is_file() and not p.is_symlink())
    except (PathEscape, OSError):
        return []


def _status_d(names: list[str], read) -> str | None:
    """status.d/* joined into one status text (their .md5sums skipped)."""
    paras = [t for t in (read(n) for n in sorted(names) if not n.endswith(".md5sums")) if t and t.strip()]
    return "\n\n".join(p.strip("\n") for p in paras) + "\n" if paras else None


def _rpm_dbpath_in_root(root: Path) -> Path | None:
    for rel in RPM_DBPATHS:
        try:
            path = Path(resolve_in_root(root, rel))
        except (PathEscape, OSError):
            continue
        if any((path / f).is_file() for f in RPM_DB_FILES):
            return path
    return None


def read_root(root: Path) -> PackageDB:
    """The package database of an installed root directory."""
    root = Path(root)
    if not root.is_dir():
        raise OutputError(f"root {root} does not exist or is not a directory")
    os_release = parse_os_release(next((t for t in (_read_in_root(root, p) for p in OS_RELEASE) if t), ""))
    status = _read_in_root(root, DPKG_STATUS)
    if status is None:
        status = _status_d(_list_in_root(root, DPKG_STATUS_D), lambda name: _read_in_root(root, f"{DPKG_STATUS_D}/{name}"))
    if status is not None:
        pkgs = dpkg_packages(status, lambda name: _read_in_root(root, f"usr/share/doc/{name}/copyright"))
        return PackageDB("deb", tuple(pkgs), os_release)
    dbpath = _rpm_dbpath_in_root(root)
    if dbpath is not None:
        # Queried in a copy: rpm leaves a lock file and sqlite its shared
        # memory and log beside any database it opens, and the root is
        # about to be packed.
        with tempfile.TemporaryDirectory(prefix="rootfs-rpmdb.") as tmp:
            for f in os.listdir(dbpath):
                src = dbpath / f
                if src.is_file() and not src.is_symlink():
                    shutil.copyfile(src, Path(tmp) / f)
            return PackageDB("rpm", tuple(rpm_query(Path(tmp))), os_release)
    raise UsageError(f"{root} has no package database (neither {DPKG_STATUS} nor an rpm database)")


# ---------------------------------------------------------------- image layers


def _wanted(path: str) -> bool:
    """The members of a layer that describe its packages."""
    if path == DPKG_STATUS or path in OS_RELEASE:
        return True
    if path.startswith(DPKG_STATUS_D + "/") and path.count("/") == DPKG_STATUS_D.count("/") + 1:
        return True
    parts = path.split("/")
    if len(parts) == 5 and parts[:3] == ["usr", "share", "doc"] and parts[4] == "copyright":
        return True
    if len(parts) == 4 and parts[:3] == ["usr", "share", "doc"]:
        return True  # doc directories that are symlinks to another package's
    return any(path == d or path.startswith(d + "/") for d in RPM_DBPATHS)


def _norm(name: str) -> str:
    """A layer member's path with chroot semantics: `..` stops at the top,
    so no name read from an image can point above it."""
    return "/".join(lexical(name))


# The largest package-database file read from a layer (Fedora's
# rpmdb.sqlite is tens of MiB); a bigger one is refused, not read.
MEMBER_LIMIT = 512 << 20


@dataclass
class _Entry:
    data: bytes | None = None  # regular file content
    link: str | None = None  # symlink target


def merge_layers(layers: Iterable[tarfile.TarFile]) -> dict[str, _Entry]:
    """The interesting files of the image's merged view: later layers win,
    whiteouts (`.wh.NAME`, `.wh..wh..opq`) delete what is below them."""
    files: dict[str, _Entry] = {}
    for tar in layers:
        try:
            added = _members(tar, files)
        except (tarfile.TarError, EOFError, OSError, zlib.error, zstandard.ZstdError) as exc:
            # A layer's bytes are read as its members are: a broken one
            # shows here, not where the layer was opened.
            raise VerifyError(f"a layer of the image is not a readable tar ({exc})") from None
        files.update(added)
    return files


def _members(tar: tarfile.TarFile, files: dict[str, _Entry]) -> dict[str, _Entry]:
    """One layer's wanted members; its whiteouts applied to files."""
    added: dict[str, _Entry] = {}
    for member in tar:
        path = _norm(member.name)
        base = path.rsplit("/", 1)[-1]
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if base == ".wh..wh..opq":
            prefix = parent + "/" if parent else ""
            for k in [k for k in files if k.startswith(prefix)]:
                del files[k]
            continue
        if base.startswith(".wh."):
            gone = (parent + "/" if parent else "") + base[4:]
            for k in [k for k in files if k == gone or k.startswith(gone + "/")]:
                del files[k]
            continue
        if not _wanted(path):
            continue
        if member.issym():
            added[path] = _Entry(link=member.linkname)
        elif member.isfile():
            if member.size > MEMBER_LIMIT:
                raise UsageError(f"the image's {shown(path)} is {member.size} bytes, more than the "
                                 f"{MEMBER_LIMIT} rootfs reads")
            f = tar.extractfile(member)
            added[path] = _Entry(data=f.read() if f else b"")
        elif member.islnk():
            target = _norm(member.linkname)
            src = added.get(target) or files.get(target)
            if src is not None:
                added[path] = src
    return added


def _lookup(files: dict[str, _Entry], path: str) -> bytes | None:
    """A file of the merged view, following symlinks we kept."""
    for _ in range(8):
        entry = files.get(path)
        if entry is None:
            # A symlinked parent directory (usr/share/doc/NAME -> OTHER).
            head, _, tail = path.rpartition("/")
            parent = files.get(head)
            if parent is None or parent.link is None:
                return None
            target = parent.link
            base = "" if target.startswith("/") else head.rpartition("/")[0]
            path = _norm(f"{base}/{target}/{tail}")
            continue
        if entry.link is None:
            return entry.data
        base = "" if entry.link.startswith("/") else path.rpartition("/")[0]
        path = _norm(f"{base}/{entry.link}")
    return None


def read_layers(layers: Iterable[tarfile.TarFile]) -> PackageDB:
    """The package database of an image, from its layers (bottom first)."""
    files = merge_layers(layers)

    def text(path: str) -> str | None:
        data = _lookup(files, path)
        return None if data is None else data.decode("utf-8", "replace")

    os_release = parse_os_release(next((t for t in (text(p) for p in OS_RELEASE) if t), ""))
    status = text(DPKG_STATUS)
    if status is None:
        prefix = DPKG_STATUS_D + "/"
        names = [k[len(prefix):] for k, v in files.items() if k.startswith(prefix) and v.data is not None]
        status = _status_d(names, lambda name: text(prefix + name))
    if status is not None:
        pkgs = dpkg_packages(status, lambda name: text(f"usr/share/doc/{name}/copyright"))
        return PackageDB("deb", tuple(pkgs), os_release)
    for dbdir in RPM_DBPATHS:
        members = {k: v for k, v in files.items() if k.startswith(dbdir + "/") and v.data is not None}
        if not any(k.rsplit("/", 1)[-1] in RPM_DB_FILES for k in members):
            continue
        with tempfile.TemporaryDirectory(prefix="rootfs-rpmdb.") as tmp:
            for k, v in sorted(members.items()):
                # k is normalised (no `..`), and only files and the
                # directories made here exist below tmp: nothing to follow.
                dest = Path(tmp) / k[len(dbdir) + 1:]
                try:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                except OSError:
                    continue  # a name that is also a directory of another member
                with os.fdopen(fd, "wb") as out:
                    out.write(v.data or b"")
            return PackageDB("rpm", tuple(rpm_query(Path(tmp))), os_release)
    raise UsageError("the image has no package database (neither a dpkg status file nor an rpm database)")


def read_image(img) -> PackageDB:
    """The package database of an opened rootfs.image.reader.Image."""

    def tars():
        for layer in img.layers:
            with img.layer_tar(layer) as tar:
                yield tar

    return read_layers(tars())


def has_package_db(root: Path) -> bool:
    """Whether root looks like a root with a package database (for telling a
    root directory from other inputs on the command line)."""
    return (os.path.lexists(Path(root) / DPKG_STATUS) or bool(_list_in_root(Path(root), DPKG_STATUS_D))
            or _rpm_dbpath_in_root(Path(root)) is not None)
