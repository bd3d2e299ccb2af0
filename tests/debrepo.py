"""A hermetic apt repository builder for tests.

Builds real .deb files with dpkg-deb, writes `Packages` indices, a `Release`
with the checksums of every index, and signs it with a throwaway key from
tests.conftest. Serve the result with the `http_serve` fixture and point
rootfs at it with `--mirror`.

Stable API (other tests use it; extend, do not break). pytest puts tests/ on
sys.path (no __init__.py there), so import it as `debrepo`:

    from debrepo import Pkg, File, Symlink, Dir, build_repo, build_trusty_repo, write_recipe

    repo = build_repo(
        tmp_path / "repo",
        [
            Pkg("base-files", priority="required", essential=True,
                files={"etc/debian_version": b"12\\n",
                       "usr/bin/hello": File(b"#!/bin/sh\\necho hi\\n", 0o755),
                       "bin": Symlink("usr/bin"),
                       "var/tmp": Dir(0o1777)},
                scripts={"postinst": "#!/bin/sh\\nset -e\\n"},
                conffiles=["/etc/debian_version"]),
            Pkg("libfoo", version="2.0-1", depends="libc6 (>= 2.36)", multi_arch="same"),
            Pkg("foo-doc", architecture="all", component="contrib"),
        ],
        key=gpg_key,                 # a tests.conftest.GpgKey, or None for unsigned
        suite="stable", codename="testcode",
    )
    server = http_serve(repo.path)   # mirror URL: server.url + "/"
    recipe = write_recipe(tmp_path, repo, variant="minbase")  # a recipe .toml path

Pkg fields map to control fields: name, version, architecture, priority,
essential, pre_depends, depends, provides, conflicts, breaks, replaces,
multi_arch, section, source, maintainer, description, plus `extra` for any
other field (e.g. {"Recommends": "bar"}). `files` maps a path inside the
package (no leading slash needed) to bytes (mode 0644), File(data, mode),
Symlink(target) or Dir(mode). `scripts` maps maintainer script names
(preinst, postinst, prerm, postrm, config) to their text. `conffiles` lists
absolute paths. `compression` is the dpkg-deb -Z value: "xz", "gzip",
"zstd" or "none". `component` puts the package into that component; a
package with architecture "all" goes into every architecture's index (as
Debian does) and, when `arch_all_index` is set, into binary-all too.

build_repo options:
  suite, codename        Release Suite/Codename (codename defaults to suite);
                         the repository lives under dists/<suite>/ and
                         dists/<codename> is a symlink when they differ.
  architectures          architectures with indices (default ("amd64",)).
  components             default: the components the packages use, sorted,
                         always including "main".
  index_compressions     which Packages files are written, from "" (plain),
                         ".xz", ".gz", ".bz2", ".zst"; default ("", ".xz").
  list_unshipped_plain   list the uncompressed Packages in Release without
                         writing it (what Debian's archive does).
  arch_all_index         write binary-all/Packages and list "all" in
                         Architectures; `no_support_arch_all` adds the
                         "No-Support-for-Architecture-all: Packages" field;
                         arch_all_in_arch_indices=False keeps architecture
                         "all" packages out of the binary-ARCH indices.
  date, valid_until      datetimes (UTC) for Date / Valid-Until; valid_until
                         None leaves the field out.
  acquire_by_hash        "Acquire-By-Hash: yes" plus by-hash/SHA256/<hash>
                         copies of every index; `by_hash_only` removes the
                         plain-named compressed files so only by-hash works.
  key, sign              key: GpgKey or None; sign: "inrelease",
                         "release.gpg" or "both" (default "both").
  origin, label          Release Origin/Label.
  release_fields         more Release fields, e.g. {"NotAutomatic": "yes",
                         "ButAutomaticUpgrades": "yes"} for a backports suite.

build_trusty_repo(root, packages, key) builds the old shape: Release +
Release.gpg only (no InRelease), Packages.gz and Packages.bz2 only, .debs
with gzip members, no SHA256 by-hash, no Valid-Until.

Every function returns / the Repo has: path (serve this), suite, codename,
keyring (the key's binary keyring Path, or None), components,
architectures, debs ({name: Path of the .deb}), packages ({name: Pkg}).
Repo.packages_file(component, arch) -> Path of the written plain or
first compressed index; Repo.release -> Path of dists/<suite>/Release.
"""

from __future__ import annotations

import bz2
import dataclasses
import datetime as dt
import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

EPOCH = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755


@dataclass
class Pkg:
    name: str
    version: str = "1.0"
    architecture: str = "amd64"
    priority: str = "optional"
    essential: bool = False
    pre_depends: str = ""
    depends: str = ""
    provides: str = ""
    conflicts: str = ""
    breaks: str = ""
    replaces: str = ""
    multi_arch: str = ""
    section: str = "misc"
    source: str = ""
    maintainer: str = "rootfs tests <test@rootfs.invalid>"
    description: str = ""
    files: dict = field(default_factory=dict)
    scripts: dict = field(default_factory=dict)
    conffiles: list = field(default_factory=list)
    compression: str = "xz"
    component: str = "main"
    extra: dict = field(default_factory=dict)

    def control_fields(self) -> list[tuple[str, str]]:
        fields = [
            ("Package", self.name),
            ("Source", self.source),
            ("Version", self.version),
            ("Architecture", self.architecture),
            ("Essential", "yes" if self.essential else ""),
            ("Priority", self.priority),
            ("Section", self.section),
            ("Maintainer", self.maintainer),
            ("Multi-Arch", self.multi_arch),
            ("Provides", self.provides),
            ("Pre-Depends", self.pre_depends),
            ("Depends", self.depends),
            ("Conflicts", self.conflicts),
            ("Breaks", self.breaks),
            ("Replaces", self.replaces),
        ]
        fields += list(self.extra.items())
        fields.append(("Description", self.description or f"{self.name} test package\n built by tests/debrepo.py"))
        return [(k, v) for k, v in fields if v]

    @property
    def deb_name(self) -> str:
        version = self.version.split(":", 1)[-1]
        return f"{self.name}_{version}_{self.architecture}.deb"

    @property
    def pool_dir(self) -> str:
        src = (self.source or self.name).split()[0]
        prefix = src[:4] if src.startswith("lib") else src[:1]
        return f"pool/{self.component}/{prefix}/{src}"


@dataclass
class Repo:
    path: Path
    suite: str
    codename: str
    keyring: Path | None
    components: tuple[str, ...]
    architectures: tuple[str, ...]
    debs: dict[str, Path] = field(default_factory=dict)
    packages: dict[str, Pkg] = field(default_factory=dict)

    @property
    def dists(self) -> Path:
        return self.path / "dists" / self.suite

    @property
    def release(self) -> Path:
        return self.dists / "Release"

    def packages_file(self, component: str = "main", arch: str = "amd64") -> Path:
        d = self.dists / component / f"binary-{arch}"
        for ext in ("", ".xz", ".gz", ".bz2", ".zst"):
            if (d / f"Packages{ext}").is_file():
                return d / f"Packages{ext}"
        raise FileNotFoundError(d / "Packages")


def _control_text(fields: list[tuple[str, str]]) -> str:
    lines = []
    for key, value in fields:
        first, *rest = value.split("\n")
        lines.append(f"{key}: {first}")
        lines.extend(r if r.startswith(" ") else " " + (r or ".") for r in rest)
    return "\n".join(lines) + "\n"


_deb_cache: dict[str, bytes] = {}


def build_deb(pkg: Pkg, dest_dir: Path) -> Path:
    """One .deb built with dpkg-deb from pkg; returns its path. Identical
    packages are built once per test session (dpkg-deb dominates the cost
    of a repository) and copied: the bytes are the same either way."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(repr(dataclasses.astuple(pkg)).encode()).hexdigest()
    cached = _deb_cache.get(key)
    if cached is not None:
        out = dest_dir / pkg.deb_name
        out.write_bytes(cached)
        return out
    with tempfile.TemporaryDirectory(prefix="debrepo.") as tmp:
        stage = Path(tmp) / "stage"
        debian = stage / "DEBIAN"
        debian.mkdir(parents=True)
        dirs: list[tuple[Path, int]] = []
        for rel, item in sorted(pkg.files.items()):
            target = stage / rel.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(item, Symlink):
                target.symlink_to(item.target)
            elif isinstance(item, Dir):
                target.mkdir(exist_ok=True)
                dirs.append((target, item.mode))
            else:
                data, mode = (item.data, item.mode) if isinstance(item, File) else (item, 0o644)
                target.write_bytes(data)
                target.chmod(mode)
        # Modes of directories last: a read-only one must not stop us filling it.
        for d, mode in dirs:
            d.chmod(mode)
        (debian / "control").write_text(_control_text(pkg.control_fields()))
        for name, text in pkg.scripts.items():
            script = debian / name
            script.write_text(text)
            script.chmod(0o755)
        if pkg.conffiles:
            (debian / "conffiles").write_text("".join(c + "\n" for c in pkg.conffiles))
        out = dest_dir / pkg.deb_name
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(int(EPOCH.timestamp())))
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", f"-Z{pkg.compression}", "--build", str(stage), str(out)],
            check=True, capture_output=True, env=env,
        )
    _deb_cache[key] = out.read_bytes()
    return out


_COMPRESSORS = {
    "": lambda b: b,
    ".xz": lambda b: lzma.compress(b, preset=1),
    ".gz": lambda b: gzip.compress(b, mtime=0),
    ".bz2": bz2.compress,
    ".zst": lambda b: zstandard.ZstdCompressor().compress(b),
}


def _stanza(pkg: Pkg, filename: str, data: bytes) -> str:
    fields = pkg.control_fields()
    desc = fields.pop()  # Description last, as in the archive
    fields += [
        ("Filename", filename),
        ("Size", str(len(data))),
        ("MD5sum", hashlib.md5(data).hexdigest()),
        ("SHA256", hashlib.sha256(data).hexdigest()),
        desc,
    ]
    return _control_text(fields)


def _rfc2822(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S UTC")


def build_repo(
    root: Path,
    packages: list[Pkg],
    *,
    key=None,
    sign: str = "both",
    suite: str = "stable",
    codename: str | None = None,
    architectures: tuple[str, ...] = ("amd64",),
    components: tuple[str, ...] | None = None,
    index_compressions: tuple[str, ...] = ("", ".xz"),
    list_unshipped_plain: bool = False,
    arch_all_index: bool = False,
    no_support_arch_all: bool = False,
    arch_all_in_arch_indices: bool = True,
    date: dt.datetime = EPOCH,
    valid_until: dt.datetime | None = None,
    acquire_by_hash: bool = False,
    by_hash_only: bool = False,
    origin: str = "Rootfs Test",
    label: str = "Rootfs Test",
    md5: bool = True,
    release_fields: dict | None = None,
) -> Repo:
    root = Path(root)
    codename = codename or suite
    if components is None:
        components = tuple(sorted({"main"} | {p.component for p in packages}))
    repo = Repo(root, suite, codename, Path(key.keyring) if key else None, components, architectures)
    dists = root / "dists" / suite
    dists.mkdir(parents=True, exist_ok=True)
    if codename != suite:
        (root / "dists" / codename).symlink_to(suite)

    stanzas: dict[tuple[str, str], list[str]] = {}
    for pkg in packages:
        deb = build_deb(pkg, root / pkg.pool_dir)
        data = deb.read_bytes()
        repo.debs[pkg.name] = deb
        repo.packages[pkg.name] = pkg
        text = _stanza(pkg, f"{pkg.pool_dir}/{pkg.deb_name}", data)
        if pkg.architecture == "all":
            arches = (list(architectures) if arch_all_in_arch_indices else []) + (["all"] if arch_all_index else [])
        else:
            arches = [pkg.architecture]
        for arch in arches:
            stanzas.setdefault((pkg.component, arch), []).append(text)

    index_arches = list(architectures) + (["all"] if arch_all_index else [])
    entries: list[tuple[str, bytes]] = []  # (path relative to dists/suite, content)
    for comp in components:
        for arch in index_arches:
            rel = f"{comp}/binary-{arch}"
            d = dists / rel
            d.mkdir(parents=True, exist_ok=True)
            plain = "\n".join(stanzas.get((comp, arch), [])).encode()
            if list_unshipped_plain and "" not in index_compressions:
                entries.append((f"{rel}/Packages", plain))
            for ext in index_compressions:
                blob = _COMPRESSORS[ext](plain)
                entries.append((f"{rel}/Packages{ext}", blob))
                (d / f"Packages{ext}").write_bytes(blob)
                if acquire_by_hash:
                    bh = d / "by-hash" / "SHA256"
                    bh.mkdir(parents=True, exist_ok=True)
                    (bh / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
                    if by_hash_only and ext:
                        (d / f"Packages{ext}").unlink()
            release_stub = f"Archive: {suite}\nComponent: {comp}\nArchitecture: {arch}\n".encode()
            (d / "Release").write_bytes(release_stub)
            entries.append((f"{rel}/Release", release_stub))

    header = [
        ("Origin", origin),
        ("Label", label),
        ("Suite", suite),
        ("Codename", codename),
        ("Date", _rfc2822(date)),
    ]
    if valid_until is not None:
        header.append(("Valid-Until", _rfc2822(valid_until)))
    if acquire_by_hash:
        header.append(("Acquire-By-Hash", "yes"))
    header += list((release_fields or {}).items())
    header.append(("Architectures", " ".join(index_arches)))
    header.append(("Components", " ".join(components)))
    if no_support_arch_all:
        header.append(("No-Support-for-Architecture-all", "Packages"))
    header.append(("Description", f"rootfs test repository {suite}"))
    text = "".join(f"{k}: {v}\n" for k, v in header)
    entries.sort()
    if md5:
        text += "MD5Sum:\n" + "".join(
            f" {hashlib.md5(b).hexdigest()} {len(b):>16} {p}\n" for p, b in entries
        )
    text += "SHA256:\n" + "".join(
        f" {hashlib.sha256(b).hexdigest()} {len(b):>16} {p}\n" for p, b in entries
    )
    release = dists / "Release"
    release.write_text(text)
    if key is not None:
        if sign in ("inrelease", "both"):
            key.clearsign(release, dists / "InRelease")
        if sign in ("release.gpg", "both"):
            key.detach_sign(release, dists / "Release.gpg", armor=True)
    return repo


def build_trusty_repo(root: Path, packages: list[Pkg], key=None, **kwargs) -> Repo:
    """The shape of old Ubuntu/Debian archives: Release + Release.gpg only,
    Packages.gz and Packages.bz2, gzip members in every .deb."""
    for p in packages:
        p.compression = "gzip"
    kwargs.setdefault("suite", "trusty")
    return build_repo(
        root, packages, key=key, sign="release.gpg", index_compressions=(".gz", ".bz2"), **kwargs
    )


def write_recipe(
    directory: Path,
    repo: Repo,
    *,
    name: str = "testrepo",
    variant: str = "minbase",
    components: tuple[str, ...] | None = None,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    keyring: Path | str | None = None,
    architecture: str | None = None,
    mirror: str = "",
    merged_usr: bool = True,
    distribution: str = "debian",
    extra: str = "",
) -> Path:
    """A deb recipe .toml for repo in directory; returns its path.

    keyring defaults to the repo's keyring ("" when unsigned); the mirror is
    normally given on the command line (--mirror server.url)."""
    if keyring is None:
        keyring = repo.keyring or ""
    lines = [
        'backend = "deb"',
        f'distribution = "{distribution}"',
        f'suite = "{repo.suite}"',
        f'architecture = "{architecture or repo.architectures[0]}"',
        f"include = {list(include)!r}".replace("'", '"'),
        f"exclude = {list(exclude)!r}".replace("'", '"'),
        "[deb]",
        f"components = {list(components or repo.components)!r}".replace("'", '"'),
        f'variant = "{variant}"',
        f'keyring = "{keyring}"',
        f"merged_usr = {'true' if merged_usr else 'false'}",
    ]
    if mirror:
        lines.append(f'mirror = "{mirror}"')
    path = Path(directory) / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def copy_repo(repo: Repo, dest: Path) -> Repo:
    """A copy to tamper with, leaving a session-scoped original intact."""
    shutil.copytree(repo.path, dest, symlinks=True)
    return Repo(dest, repo.suite, repo.codename, repo.keyring, repo.components, repo.architectures,
                {k: dest / v.relative_to(repo.path) for k, v in repo.debs.items()}, dict(repo.packages))
