"""Fuzz targets: every parser rootfs runs on bytes it did not make.

Each target is a function of one bytes argument that feeds the bytes to a
parser the way rootfs does. The contract under test: whatever the bytes, a
parser returns or raises a RootfsError whose exit code the README
documents (never 1, which is a bug); any other exception is a crash.
`seeds(name)` gives each target a few well-formed inputs to start from.

fuzz/run.py runs one target under atheris (coverage-guided); `make fuzz`
runs all of them; tests/test_fuzz.py runs a short seeded pass of each.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import lzma
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from rootfs.model.errors import EXIT_CODES, RootfsError

TARGETS: dict[str, Callable[[bytes], None]] = {}
_SEEDS: dict[str, Callable[[], list[bytes]]] = {}


def target(seeds: Callable[[], list[bytes]]):
    def register(fn):
        TARGETS[fn.__name__] = fn
        _SEEDS[fn.__name__] = seeds
        return fn
    return register


def seeds(name: str) -> list[bytes]:
    return _SEEDS[name]()


def documented(exc: BaseException) -> bool:
    """rootfs's own error with a documented exit code other than 1."""
    return isinstance(exc, RootfsError) and exc.exit_code in EXIT_CODES and exc.exit_code != 1


def guarded(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """fn, with rootfs's own errors taken as the documented outcome."""
    def one(data: bytes) -> None:
        try:
            fn(data)
        except RootfsError as exc:
            if not documented(exc):
                raise
    return one


_SCRATCH = Path(tempfile.mkdtemp(prefix="rootfs-fuzz."))


def _split(data: bytes, n: int) -> list[bytes]:
    """n parts of data, cut at the separator the seeds use."""
    parts = data.split(b"\n\x00--\x00\n", n - 1)
    return parts + [b""] * (n - len(parts))


def _join(*parts: bytes) -> bytes:
    return b"\n\x00--\x00\n".join(parts)


# -- apt ---------------------------------------------------------------------

RELEASE = b"""Origin: Debian
Label: Debian
Suite: stable
Codename: bookworm
Date: Sat, 10 Feb 2024 10:00:00 UTC
Valid-Until: Sat, 17 Feb 2024 10:00:00 UTC
Acquire-By-Hash: yes
Architectures: amd64 arm64 all
Components: main contrib
No-Support-for-Architecture-all: Packages
Description: Debian 12
SHA256:
 3957f28db16e3f28c7b34ae84f1c929c567de6970f3f1b95dac9b498dd80fe63   738242 main/binary-amd64/Packages
 0a6fa2b2a6a4ad52a2d0e7a8b9e7d4a1f3f5a5a8b6f4b1c2d3e4f5a6b7c8d9e0f   188124 main/binary-amd64/Packages.xz
"""

INRELEASE = (b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n" + RELEASE.replace(b"\n-", b"\n- -")
             + b"-----BEGIN PGP SIGNATURE-----\n\niQEzBAEBCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n")


def _release_seeds() -> list[bytes]:
    return [RELEASE, INRELEASE, RELEASE.replace(b"SHA256:", b"MD5Sum:")]


@target(_release_seeds)
def release(data: bytes) -> None:
    """InRelease/Release: the signed message's shape, its body, its fields."""
    from rootfs.backends.deb.release import _unsigned_text, check_release, parse_date, parse_release
    from rootfs.net.openpgp import _check_clearsigned_shape

    try:
        _check_clearsigned_shape(data, "InRelease")
    except RootfsError as exc:
        if not documented(exc):
            raise
    text = _unsigned_text(data).decode("utf-8", "surrogateescape")
    rel = parse_release(text, "InRelease")
    for when in (rel.date, rel.valid_until):
        if when:
            try:
                parse_date(when, "InRelease")
            except RootfsError as exc:
                if not documented(exc):
                    raise
    check_release(rel, rel.suite or "stable", check_valid_until=True)


PACKAGES = b"""Package: base-files
Essential: yes
Priority: required
Version: 12.4+deb12u5
Architecture: amd64
Maintainer: Santiago Vila <sanvila@debian.org>
Installed-Size: 393
Provides: base
Pre-Depends: awk
Depends: libc6 (>= 2.36), libcrypt1 (>= 1:4.4.10-10~) | libxcrypt1
Breaks: initscripts (<< 2.88dsf-13.3)
Filename: pool/main/b/base-files/base-files_12.4+deb12u5_amd64.deb
Size: 70872
MD5sum: 4a7a9a3f2c0e1c5c7b2d1b1e6e7f9a0b
SHA256: 92a3b5c29a0f0e4e27ffb1b0d9d8e0a7b3f37e1b7e6e3d5a8c1f9e0d2b4a6c8e
Description: Debian base system miscellaneous files

Package: libc6
Source: glibc (2.36-9)
Version: 2.36-9+deb12u4
Architecture: amd64
Multi-Arch: same
Depends: libgcc-s1
Filename: pool/main/g/glibc/libc6_2.36-9+deb12u4_amd64.deb
Size: 2757936
SHA256: 0c2a5b1e3e9c6d4f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f
Description: GNU C Library: Shared libraries
"""


@target(lambda: [PACKAGES, PACKAGES.replace(b"\n\n", b"\n \n")])
def packages(data: bytes) -> None:
    """A Packages index: stanzas, relations, the Filename check, resolving."""
    from rootfs.backends.deb.index import Index
    from rootfs.backends.deb.relations import parse_relations

    index = Index("amd64", "http://mirror.invalid/debian/")
    index.add([data])
    for name in index.names()[:20]:
        for p in index.packages(name):
            try:
                p.url  # noqa: B018 - the Filename check
            except RootfsError as exc:
                if not documented(exc):
                    raise
            for rel in (p.depends, p.pre_depends):
                parse_relations(rel)
        index.providers(name)


# -- .deb --------------------------------------------------------------------

def _tar(members: list[tuple[str, bytes, int, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, kind, mode, data in members:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = kind, mode, 1_700_000_000
            if kind == tarfile.SYMTYPE or kind == tarfile.LNKTYPE:
                ti.linkname = data.decode()
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _ar(members: list[tuple[str, bytes]]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members:
        out.append(f"{name:<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}`\n".encode())
        out.append(data + (b"\n" if len(data) % 2 else b""))
    return b"".join(out)


CONTROL = _tar([
    ("./", tarfile.DIRTYPE, 0o755, b""),
    ("./control", tarfile.REGTYPE, 0o644, b"Package: hello\nVersion: 1.0\nArchitecture: amd64\n"
     b"Maintainer: x <x@example.org>\nDescription: hello\n"),
    ("./md5sums", tarfile.REGTYPE, 0o644, b"0123456789abcdef0123456789abcdef  etc/hello.conf\n"),
    ("./conffiles", tarfile.REGTYPE, 0o644, b"/etc/hello.conf\nremove-on-upgrade /etc/old.conf\n"),
    ("./triggers", tarfile.REGTYPE, 0o644, b"interest-noawait ldconfig\ninterest /usr/share/hello\n"),
    ("./postinst", tarfile.REGTYPE, 0o755, b"#!/bin/sh\nexit 0\n"),
])
DATA = _tar([
    ("./", tarfile.DIRTYPE, 0o755, b""),
    ("./etc/", tarfile.DIRTYPE, 0o755, b""),
    ("./etc/hello.conf", tarfile.REGTYPE, 0o644, b"greeting=hi\n"),
    ("./usr/", tarfile.DIRTYPE, 0o755, b""),
    ("./usr/bin/", tarfile.DIRTYPE, 0o755, b""),
    ("./usr/bin/hello", tarfile.REGTYPE, 0o4755, b"\x7fELF"),
    ("./usr/bin/hi", tarfile.LNKTYPE, 0o4755, b"./usr/bin/hello"),
    ("./usr/bin/hey", tarfile.SYMTYPE, 0o777, b"hello"),
])


def _deb(control: bytes = CONTROL, data: bytes = DATA) -> bytes:
    return _ar([("debian-binary", b"2.0\n"), ("control.tar.gz", gzip.compress(control, mtime=0)),
                ("data.tar.xz", lzma.compress(data, preset=0))])


def _fresh(name: str) -> Path:
    d = _SCRATCH / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    return d


@target(lambda: [_deb(), _ar([("debian-binary", b"2.0\n"), ("control.tar", CONTROL), ("data.tar", DATA)])])
def deb(data: bytes) -> None:
    """A whole .deb: the ar container, the control archive and every path
    it names, then the data archive extracted into a scratch root."""
    from rootfs.backends.deb.debfile import DebFile
    from rootfs.host.unpacker import Extractor

    work = _fresh("deb")
    path = work / "p.deb"
    path.write_bytes(data)
    root = work / "root"
    root.mkdir()
    with DebFile(path, "p.deb") as d:
        info = d.control()
        info.canonical  # noqa: B018
        with Extractor(root, mode="extract") as ex:
            ex.extract(d.data_stream(), md5sums={}, claims={}, kinds={}, what="p.deb", format_name="tar")
    _inside(work, root)


@target(lambda: [DATA, _tar([("a", tarfile.SYMTYPE, 0o777, b"/"), ("a/b", tarfile.REGTYPE, 0o644, b"x")])])
def data_tar(data: bytes) -> None:
    """data.tar members alone (the Extractor's own defences)."""
    from rootfs.host.unpacker import Extractor

    work = _fresh("data")
    root = work / "root"
    root.mkdir()
    with Extractor(root, mode="extract") as ex:
        ex.extract(io.BytesIO(data), what="data.tar", format_name="tar")
    _inside(work, root)


def _inside(work: Path, root: Path) -> None:
    """Nothing but the root in the scratch directory."""
    left = sorted(p.name for p in work.iterdir())
    if [n for n in left if n not in ("root", "p.deb")]:
        raise AssertionError(f"written outside the root: {left}")


# -- rpm ---------------------------------------------------------------------

def _rpm_seeds() -> list[bytes]:
    # fuzz/seeds/fz-{gzip,xz}.rpm: rpmbuild of a noarch spec with a %config
    # file, a hard link and a symlink, in both payload compressions.
    here = Path(__file__).resolve().parent / "seeds"
    return [p.read_bytes() for p in sorted(here.glob("*.rpm"))] or [b"\xed\xab\xee\xdb" + bytes(92)]


@target(_rpm_seeds)
def rpm(data: bytes) -> None:
    """An rpm: lead, signature header, header, digests, file list, payload."""
    from rootfs.backends.rpm.header import open_rpm
    from rootfs.backends.rpm.payload import file_entries, payload_contents

    work = _fresh("rpm")
    path = work / "p.rpm"
    path.write_bytes(data)
    r = open_rpm(path)
    r.nevra  # noqa: B018
    r.check_digests()
    entries = file_entries(r)
    for _, reader, size in payload_contents(r, entries):
        reader.read_data(min(size, 1 << 20)) if size <= 1 << 20 else reader.copy_to(os.open(os.devnull, os.O_WRONLY), size)


# -- rpm-md ------------------------------------------------------------------

REPOMD = b"""<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="urn:rootfs:fuzz:repo" xmlns:rpm="urn:rootfs:fuzz:rpm">
  <revision>1700000000</revision>
  <data type="primary">
    <checksum type="sha256">5b3a2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b</checksum>
    <location href="repodata/primary.xml.gz"/>
    <size>1234</size>
    <open-size>5678</open-size>
  </data>
  <data type="filelists">
    <checksum type="sha256">6b3a2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b</checksum>
    <location href="repodata/filelists.xml.zst"/>
  </data>
</repomd>
"""

PRIMARY = b"""<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="urn:rootfs:fuzz:common" xmlns:rpm="urn:rootfs:fuzz:rpm" packages="1">
<package type="rpm">
  <name>bash</name>
  <arch>x86_64</arch>
  <version epoch="0" ver="5.2.15" rel="1.fc38"/>
  <checksum type="sha256" pkgid="YES">2b3a2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b</checksum>
  <summary>The GNU Bourne Again shell</summary>
  <time file="1700000000" build="1690000000"/>
  <size package="1900000" installed="8000000" archive="8100000"/>
  <location href="Packages/b/bash-5.2.15-1.fc38.x86_64.rpm"/>
  <format>
    <rpm:license>GPL-3.0-or-later</rpm:license>
    <rpm:sourcerpm>bash-5.2.15-1.fc38.src.rpm</rpm:sourcerpm>
    <rpm:provides>
      <rpm:entry name="bash" flags="EQ" epoch="0" ver="5.2.15" rel="1.fc38"/>
      <rpm:entry name="/bin/sh"/>
    </rpm:provides>
    <rpm:requires>
      <rpm:entry name="libc.so.6(GLIBC_2.34)(64bit)"/>
      <rpm:entry name="filesystem" flags="GE" ver="3" pre="1"/>
      <rpm:entry name="(glibc if foo)"/>
    </rpm:requires>
    <file>/usr/bin/bash</file>
  </format>
</package>
</metadata>
"""

MODULES = b"""---
document: modulemd-defaults
version: 1
data:
  module: nodejs
  stream: "18"
  profiles:
    "18": [common]
...
---
document: modulemd
version: 2
data:
  name: nodejs
  stream: "18"
  version: 8070020230306170042
  context: ad008a3a
  arch: x86_64
  artifacts:
    rpms:
    - nodejs-1:18.14.2-2.module+el8.7.0+18251+5e01f1a5.x86_64
  profiles:
    common:
      rpms: [nodejs, npm]
  dependencies:
  - requires:
      platform: [el8]
...
---
document: modulemd-defaults
version: 1
data:
  module: nodejs
  stream: "18"
...
"""


@target(lambda: [REPOMD, REPOMD.replace(b"sha256", b"md5")])
def repomd(data: bytes) -> None:
    from rootfs.backends.rpm.repomd import parse_repomd

    md = parse_repomd("http://mirror.invalid/repo/", data)
    md.sha256  # noqa: B018


@target(lambda: [PRIMARY])
def primary(data: bytes) -> None:
    """primary.xml into libsolv's pool, then every package as the lock
    takes it (the location check included); the same bytes as filelists."""
    from rootfs.backends.rpm.comps import Comps
    from rootfs.backends.rpm.filelists import scan_filelists
    from rootfs.backends.rpm.modules import Modules
    from rootfs.backends.rpm.repomd import Repomd
    from rootfs.backends.rpm.resolve import Loaded, locked
    from rootfs.backends.rpm.solver import Sack

    sack = Sack("x86_64")
    sack.add_primary(io.BytesIO(data), "primary.xml")
    sack.prepare()
    loaded = Loaded([Repomd(url="http://mirror.invalid/repo", revision="1", data={}, raw=b"")], sack, Modules(),
                    Comps())
    for repo in sack.repos:
        for solvable in list(repo.solvables)[:50]:
            try:
                locked(solvable, loaded)
            except RootfsError as exc:
                if not documented(exc):
                    raise
    list(scan_filelists(io.BytesIO(data), {"/usr/bin/bash"}, "filelists.xml"))


COMPS = b"""<?xml version="1.0" encoding="UTF-8"?>
<comps>
  <group>
    <id>core</id>
    <name>Core</name>
    <name xml:lang="de">Kern</name>
    <packagelist>
      <packagereq type="mandatory">bash</packagereq>
      <packagereq type="conditional" requires="x">y</packagereq>
      <packagereq type="optional">vim</packagereq>
    </packagelist>
  </group>
  <environment>
    <id>minimal</id>
    <name>Minimal</name>
    <grouplist><groupid>core</groupid></grouplist>
    <optionlist><groupid>standard</groupid></optionlist>
  </environment>
</comps>
"""


@target(lambda: [COMPS])
def comps(data: bytes) -> None:
    from rootfs.backends.rpm.comps import parse_comps

    parse_comps(io.BytesIO(data), "comps.xml")


@target(lambda: [MODULES])
def modules(data: bytes) -> None:
    from rootfs.backends.rpm.modules import Modules, parse_modules

    found = parse_modules(io.BytesIO(data), "modules.yaml")
    Modules().merge(found)
    for doc in found.docs[:10]:
        doc.name_stream  # noqa: B018


# -- images ------------------------------------------------------------------

def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


LAYER = gzip.compress(_tar([("etc/", tarfile.DIRTYPE, 0o755, b""),
                            ("etc/os-release", tarfile.REGTYPE, 0o644, b"ID=debian\nVERSION_ID=12\n"),
                            ("var/lib/dpkg/status", tarfile.REGTYPE, 0o644,
                             b"Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n")]), mtime=0)
CONFIG = json.dumps({
    "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
    "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"], "Labels": {"a": "b"}},
    "rootfs": {"type": "layers", "diff_ids": [_digest(gzip.decompress(LAYER))]},
    "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "rootfs make", "comment": "x"},
                {"created": "2024-01-02T03:04:05Z", "created_by": "ENV", "empty_layer": True}],
}).encode()


def _manifest(config: bytes = CONFIG) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _digest(LAYER),
                    "size": len(LAYER)}],
        "annotations": {"org.opencontainers.image.created": "2024-01-02T03:04:05Z"},
    }).encode()


def _index(manifest: bytes) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _digest(manifest),
         "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "1"},
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()


class _MemStore:
    """A layout held in memory, as the reader's blob store."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.members = files  # what the docker-archive reader looks at

    def open(self, name: str):
        from rootfs.model.errors import UsageError

        if name not in self.files:
            raise UsageError(f"{name} is missing")
        return io.BytesIO(self.files[name])

    def size(self, name: str):
        return len(self.files[name]) if name in self.files else None

    def close(self) -> None:
        pass


def _blobs(*items: bytes) -> dict[str, bytes]:
    return {f"blobs/sha256/{hashlib.sha256(b).hexdigest()}": b for b in items}


def _use(img) -> None:
    """What inspect, history, sbom, graph and push do with an opened image."""
    from rootfs.image import info
    from rootfs.inventory import pkgdb

    rows = info.history(img)
    info.history_table(rows)
    info.history_json(rows)
    got = info.inspect(img, with_packages=False)
    info.inspect_text(got)
    img.annotations  # noqa: B018
    for d in img.blobs():
        img.read_any(d) if d.size < (1 << 20) and d.media_type.endswith("json") else None
    try:
        pkgdb.read_image(img)
    except RootfsError as exc:
        if not documented(exc):
            raise


def _open(files: dict[str, bytes], kind: str):
    from rootfs.image import reader

    store = _MemStore(files)
    if kind == "docker":
        return reader._open_docker_archive(Path("image.docker.tar"), store, None)
    return reader._open_layout(Path("layout"), store, reader.OCI_LAYOUT, None, None)


def _manifest_seed() -> list[bytes]:
    return [_manifest()]


@target(lambda: [_index(_manifest()), _index(_manifest()).replace(b"amd64", b"arm64")])
def oci_index(data: bytes) -> None:
    m = _manifest()
    _use(_open({"index.json": data, **_blobs(m, CONFIG, LAYER)}, "oci"))


@target(_manifest_seed)
def oci_manifest(data: bytes) -> None:
    _use(_open({"index.json": _index(data), **_blobs(data, CONFIG, LAYER)}, "oci"))


@target(lambda: [CONFIG])
def oci_config(data: bytes) -> None:
    m = _manifest(data)
    _use(_open({"index.json": _index(m), **_blobs(m, data, LAYER)}, "oci"))


@target(lambda: [gzip.decompress(LAYER), LAYER])
def oci_layer(data: bytes) -> None:
    """A layer: read for its package database (whiteouts, links, rpmdb)."""
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    m = json.dumps({"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                                   "digest": _digest(cfg), "size": len(cfg)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(data),
                                "size": len(data)}]}).encode()
    _use(_open({"index.json": _index(m), **_blobs(m, cfg, data)}, "oci"))


def _docker_seed() -> list[bytes]:
    raw = gzip.decompress(LAYER)
    return [json.dumps([{"Config": f"{hashlib.sha256(CONFIG).hexdigest()}.json", "RepoTags": ["x:1"],
                         "Layers": ["abc/layer.tar"]}]).encode(), _join(raw)]


@target(_docker_seed)
def docker_manifest(data: bytes) -> None:
    raw = gzip.decompress(LAYER)
    files = {"manifest.json": data, f"{hashlib.sha256(CONFIG).hexdigest()}.json": CONFIG, "abc/layer.tar": raw}
    _use(_open(files, "docker"))


# -- registry ----------------------------------------------------------------

def _registry_seeds() -> list[bytes]:
    return [
        _join(b'Bearer realm="https://auth.invalid/token",service="registry.invalid",scope="repository:a/b:pull"',
              b'{"token": "abc.def-ghi", "expires_in": 300}',
              b'{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {"Tag": "x"}}]}',
              _index(_manifest())),
        _join(b'Basic realm="x"', b"{}", b"not json", _manifest()),
    ]


@target(_registry_seeds)
def registry(data: bytes) -> None:
    """A registry's answers: the auth challenge, the token service's
    response, an error body and a manifest."""
    from rootfs.registry.auth import parse_challenge
    from rootfs.registry.client import RegistryOptions, Response, Session
    from rootfs.registry.ref import parse_reference
    from rootfs.registry.transfer import _get_manifest

    challenge, token, error, manifest = _split(data, 4)

    def headers(**values: str) -> http.client.HTTPMessage:
        h = http.client.HTTPMessage()
        for k, v in values.items():
            h[k.replace("_", "-")] = v
        return h

    ch = challenge.decode("latin-1").replace("\r", " ").replace("\n", " ")
    parse_challenge(ch)
    err = Response(404, headers(Content_Type="application/json"), error, "https://registry.invalid/v2/")
    err.error_text()
    err.error_codes()
    err.json()

    class Answers:
        def __init__(self):
            self.calls = 0

        def send(self, method, url, hdrs, body=None, *, sink=None):
            self.calls += 1
            if "/token" in url or "auth" in url or not url.startswith("https://registry.invalid"):
                return Response(200, headers(), token, url)
            if "Authorization" not in hdrs and self.calls == 1:
                return Response(401, headers(WWW_Authenticate=ch), error, url)
            return Response(200, headers(Content_Type="application/vnd.oci.image.index.v1+json"), manifest, url)

        def close(self):
            pass

        def drop(self, url):
            pass

    ref = parse_reference("registry.invalid/a/b:1")
    sess = Session(ref, RegistryOptions(retries=0, creds=None), transport=Answers())
    sess.creds = None
    _get_manifest(sess, "1", None)


def main() -> None:
    print("\n".join(sorted(TARGETS)))


if __name__ == "__main__":
    sys.exit(main())
