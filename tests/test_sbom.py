"""SPDX SBOMs: validated with spdx-tools, and their package lists compared
with what dpkg and rpm themselves say is installed in the same root."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from conftest import needs_root, needs_tool

from rootfs.inventory import licenses, pkgdb
from rootfs.inventory.sbom import SbomOptions, sbom_bytes, write_sbom
from rootfs.model.errors import UsageError
from rootfs.model.lock import Lock, LockedPackage

# ---------------------------------------------------------------- helpers


def validate(path: Path) -> dict:
    """Parse and validate with spdx-tools; no message may come back."""
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import (
        validate_full_spdx_document,
    )

    messages = validate_full_spdx_document(parse_file(str(path)))
    assert [m.validation_message for m in messages] == []
    return json.loads(path.read_text())


def packages_of(doc: dict) -> dict[tuple[str, str], dict]:
    """(name, arch) -> package entry, the described subject left out."""
    out = {}
    for p in doc["packages"]:
        if p["SPDXID"] == "SPDXRef-Subject":
            continue
        out[(p["name"], purl_qualifiers(p)["arch"])] = p
    return out


def purl_of(p: dict) -> str:
    (ref,) = [r for r in p["externalRefs"] if r["referenceType"] == "purl"]
    return ref["referenceLocator"]


def purl_qualifiers(p: dict) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(purl_of(p)).query).items()}


def lines_of(doc: dict) -> list[str]:
    return sorted(f"{p['name']} {p['versionInfo']} {purl_qualifiers(p)['arch']}"
                  for p in doc["packages"] if p["SPDXID"] != "SPDXRef-Subject")


def dpkg_query(root: Path) -> list[str]:
    out = subprocess.run(
        ["dpkg-query", "--admindir", str(root / "var/lib/dpkg"), "-W",
         "-f", "${db:Status-Abbrev}|${Package} ${Version} ${Architecture}\n"],
        capture_output=True, text=True, check=True).stdout
    # Packages whose files are gone (`rc`: config-files only) are not installed.
    return sorted(line.split("|", 1)[1] for line in out.splitlines() if not line.startswith(("rc", "un", "pn")))


def depends_on(doc: dict) -> set[tuple[str, str]]:
    names = {p["SPDXID"]: p["name"] for p in doc["packages"]}
    return {(names[r["spdxElementId"]], names[r["relatedSpdxElement"]])
            for r in doc["relationships"] if r["relationshipType"] == "DEPENDS_ON"}


# ---------------------------------------------------------------- a hand-written dpkg root

STATUS = """\
Package: base-files
Essential: yes
Status: install ok installed
Priority: required
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: amd64
Version: 12.4+deb12u5
Provides: base
Pre-Depends: awk
Description: Debian base system miscellaneous files

Package: mawk
Status: install ok installed
Maintainer: Boyuan Yang <byang@debian.org>
Architecture: amd64
Version: 1.3.4.20200120-3.1
Provides: awk
Depends: libc6 (>= 2.29)
Description: Pattern scanning and text processing language

Package: libc6
Status: install ok installed
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Depends: libgcc-s1
Homepage: https://example.org/software/libc/libc.html
Description: GNU C Library: Shared libraries

Package: libc6
Status: install ok installed
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: i386
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Description: GNU C Library: Shared libraries

Package: libgcc-s1
Status: install ok installed
Architecture: amd64
Source: gcc-12 (12.2.0-14)
Version: 12.2.0-14
Maintainer: Debian GCC Maintainers <debian-gcc@lists.debian.org>
Depends: gcc-12-base (= 12.2.0-14), libc6 (>= 2.35)
Description: GCC support library

Package: gcc-12-base
Status: install ok installed
Architecture: amd64
Source: gcc-12
Version: 12.2.0-14
Maintainer: Debian GCC Maintainers <debian-gcc@lists.debian.org>
Description: GCC, the GNU Compiler Collection (base package)

Package: sed
Essential: yes
Status: install ok installed
Architecture: amd64
Version: 1:4.9-1
Maintainer: Clint Adams <clint@debian.org>
Pre-Depends: libc6 (>= 2.34)
Description: GNU stream editor

Package: oldpkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
Maintainer: Nobody <nobody@rootfs.invalid>
Description: removed, only its conffiles remain
"""

MAWK_COPYRIGHT = """\
Format: https://example.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: mawk

Files: *
Copyright: 2008-2020 Thomas E. Dickey
License: GPL-2

Files: debian/*
Copyright: 2020 Someone
License: GPL-2+ or Artistic

License: Artistic
 This is the Artistic license text.
 .
 A second paragraph.
"""

GCC_COPYRIGHT = """\
Format: https://example.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: Free Software Foundation
License: GPL-3+ with GCC-exception-3.1

Files: libiberty/*
Copyright: Free Software Foundation
License: LGPL-2.1+
"""

GLIBC_COPYRIGHT = """\
This is the Debian prepackaged version of the GNU C Library.
It is not in the machine-readable format: no license is claimed from it.
"""

SED_COPYRIGHT = """\
Format: https://example.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: FSF
License: GPL-3+
"""


def write_dpkg_root(root: Path, status: str = STATUS) -> Path:
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(status)
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n')
    doc = root / "usr/share/doc"
    for name, text in [("mawk", MAWK_COPYRIGHT), ("gcc-12-base", GCC_COPYRIGHT), ("libc6", GLIBC_COPYRIGHT),
                       ("sed", SED_COPYRIGHT)]:
        (doc / name).mkdir(parents=True)
        (doc / name / "copyright").write_text(text)
    # As in Debian: a library's doc directory is a symlink to its base package's.
    (doc / "libgcc-s1").symlink_to("gcc-12-base")
    # A hostile link must not make us read the host's files: this one names
    # a directory outside the root that holds a DEP-5 file.
    outside = root.parent / f"{root.name}-outside"
    outside.mkdir()
    (outside / "copyright").write_text(SED_COPYRIGHT.replace("GPL-3+", "MIT"))
    (doc / "base-files").symlink_to(outside.resolve())
    return root


@pytest.fixture
def dpkg_root(tmp_path) -> Path:
    return write_dpkg_root(tmp_path / "root")


@needs_tool("dpkg-query")
def test_hermetic_root_sbom_is_valid_and_matches_dpkg(dpkg_root, tmp_path):
    out = tmp_path / "root.spdx.json"
    data, digest = write_sbom(dpkg_root, None, out, SbomOptions(source_date_epoch=1700000000))
    assert out.read_bytes() == data
    import hashlib

    assert hashlib.sha256(data).hexdigest() == digest
    doc = validate(out)
    assert lines_of(doc) == dpkg_query(dpkg_root)
    assert "oldpkg" not in {p["name"] for p in doc["packages"]}
    assert doc["spdxVersion"] == "SPDX-2.3"
    assert doc["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    assert {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
            "relatedSpdxElement": "SPDXRef-Subject"} in doc["relationships"]
    contained = {r["relatedSpdxElement"] for r in doc["relationships"] if r["relationshipType"] == "CONTAINS"}
    assert contained == {p["SPDXID"] for p in packages_of(doc).values()}


def test_hermetic_root_sbom_fields(dpkg_root, tmp_path):
    data, _ = sbom_bytes(dpkg_root, None, SbomOptions(source_date_epoch=0))
    out = tmp_path / "s.json"
    out.write_bytes(data)
    doc = validate(out)
    pkgs = packages_of(doc)
    sed = pkgs[("sed", "amd64")]
    assert purl_of(sed) == "pkg:deb/debian/sed@1%3A4.9-1?arch=amd64&distro=debian-12"
    assert unquote(urlsplit(purl_of(sed)).path.split("@")[1]) == "1:4.9-1"
    assert sed["supplier"] == "Organization: Debian"
    assert sed["licenseDeclared"] == "GPL-3.0-or-later"
    libgcc = pkgs[("libgcc-s1", "amd64")]
    assert purl_of(libgcc) == "pkg:deb/debian/libgcc-s1@12.2.0-14?arch=amd64&distro=debian-12&upstream=gcc-12"
    assert libgcc["sourceInfo"] == "built package from: gcc-12 12.2.0-14"
    # Through the symlinked doc directory, the base package's copyright.
    assert libgcc["licenseDeclared"] == pkgs[("gcc-12-base", "amd64")]["licenseDeclared"] == \
        "LGPL-2.1-or-later AND LicenseRef-gpl-3-plus-with-gcc-exception-3.1"
    assert pkgs[("mawk", "amd64")]["licenseDeclared"] == "GPL-2.0-only AND (GPL-2.0-or-later OR LicenseRef-artistic)"
    assert pkgs[("libc6", "amd64")]["licenseDeclared"] == "NOASSERTION"  # free-form copyright file
    assert pkgs[("base-files", "amd64")]["licenseDeclared"] == "NOASSERTION"  # the link out of the root is not followed
    assert pkgs[("libc6", "amd64")]["homepage"] == "https://example.org/software/libc/libc.html"
    refs = {e["licenseId"]: e for e in doc["hasExtractedLicensingInfos"]}
    assert set(refs) == {"LicenseRef-artistic", "LicenseRef-gpl-3-plus-with-gcc-exception-3.1"}
    assert refs["LicenseRef-artistic"]["extractedText"] == "This is the Artistic license text.\n\nA second paragraph."
    assert refs["LicenseRef-gpl-3-plus-with-gcc-exception-3.1"]["name"] == "GPL-3+ with GCC-exception-3.1"
    # Dependencies as dpkg resolved them: awk is mawk, libc6 is the same-arch one.
    assert depends_on(doc) == {("base-files", "mawk"), ("mawk", "libc6"), ("libc6", "libgcc-s1"),
                               ("libgcc-s1", "gcc-12-base"), ("libgcc-s1", "libc6"), ("sed", "libc6")}
    libc_ids = {a: p["SPDXID"] for (n, a), p in pkgs.items() if n == "libc6"}
    mawk_id = pkgs[("mawk", "amd64")]["SPDXID"]
    assert {"spdxElementId": mawk_id, "relationshipType": "DEPENDS_ON",
            "relatedSpdxElement": libc_ids["amd64"]} in doc["relationships"]


def test_sbom_is_reproducible(dpkg_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    a, da = sbom_bytes(dpkg_root, None)
    copy = tmp_path / "elsewhere" / "root"
    shutil.copytree(dpkg_root, copy, symlinks=True)
    b, db = sbom_bytes(copy, None)
    assert a == b and da == db
    doc = json.loads(a)
    assert doc["creationInfo"]["created"] == "2009-02-13T23:31:30Z"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567891")
    c, _ = sbom_bytes(dpkg_root, None)
    other = json.loads(c)
    assert other["creationInfo"]["created"] == "2009-02-13T23:31:31Z"
    # A different document gets a different namespace.
    assert other["documentNamespace"] != doc["documentNamespace"]


def test_lock_adds_checksums_and_urls(dpkg_root, tmp_path):
    def lp(name, version, arch):
        return LockedPackage(name=name, version=version, architecture=arch,
                             url=f"http://example.org/pool/{name}_{version}_{arch}.deb", size=10,
                             sha256=(name.encode().hex() + "0" * 64)[:64])

    lock = Lock(backend="deb", recipe="tiny", distribution="debian", suite="bookworm", architecture="amd64",
                packages=(lp("sed", "1:4.9-1", "amd64"), lp("mawk", "1.3.4.20200120-3.1", "amd64"),
                          lp("libc6", "2.35-1", "amd64")))  # not the installed version: no checksum
    out = tmp_path / "tiny.spdx.json"
    write_sbom(dpkg_root, lock, out, SbomOptions())
    doc = validate(out)
    assert doc["name"] == "tiny"
    pkgs = packages_of(doc)
    assert pkgs[("sed", "amd64")]["checksums"] == [{"algorithm": "SHA256", "checksumValue": lock.packages[0].sha256}]
    assert pkgs[("sed", "amd64")]["downloadLocation"] == lock.packages[0].url
    assert pkgs[("mawk", "amd64")]["checksums"][0]["checksumValue"] == lock.packages[1].sha256
    assert "checksums" not in pkgs[("libc6", "amd64")]
    assert pkgs[("libc6", "amd64")]["downloadLocation"] == "NOASSERTION"
    # A URL the SPDX grammar does not accept (a local mirror by address) is
    # left out, and the document stays valid.
    local = dataclasses.replace(lock, packages=tuple(dataclasses.replace(p, url="http://127.0.0.1:8000/x.deb")
                                                     for p in lock.packages))
    write_sbom(dpkg_root, local, out, SbomOptions())
    pkgs = packages_of(validate(out))
    assert pkgs[("sed", "amd64")]["downloadLocation"] == "NOASSERTION"
    assert pkgs[("sed", "amd64")]["checksums"][0]["checksumValue"] == lock.packages[0].sha256


def test_root_without_a_database_falls_back_to_its_lock(tmp_path):
    root = tmp_path / "bare"
    (root / "etc").mkdir(parents=True)
    lock = Lock(backend="deb", recipe="bare", distribution="debian", suite="bookworm", architecture="amd64",
                packages=(LockedPackage(name="a", version="1.0", architecture="amd64", url="http://127.0.0.1/a.deb",
                                        size=1, sha256="a" * 64),))
    out = tmp_path / "s.json"
    write_sbom(root, lock, out)
    assert lines_of(validate(out)) == ["a 1.0 amd64"]
    with pytest.raises(UsageError, match="no package database"):
        write_sbom(root, None, out)


def test_distroless_status_d(tmp_path):
    """Distroless images have var/lib/dpkg/status.d/NAME files, no status."""
    root = write_dpkg_root(tmp_path / "root")
    (root / "var/lib/dpkg/status").unlink()
    status_d = root / "var/lib/dpkg/status.d"
    status_d.mkdir()
    for para in STATUS.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in para.splitlines() if ": " in line)
        (status_d / f"{fields['Package']}-{fields['Architecture']}").write_text(para + "\n")
        (status_d / f"{fields['Package']}-{fields['Architecture']}.md5sums").write_text("0" * 32 + "  usr/bin/x\n")
    expected = json.loads(sbom_bytes(write_dpkg_root(tmp_path / "plain"), None, SbomOptions(name="x"))[0])
    got = json.loads(sbom_bytes(root, None, SbomOptions(name="x"))[0])
    assert packages_of(got) == packages_of(expected)
    with tarfile.open(_layer_from_dir(root, tmp_path / "layer.tar")) as tar:
        db = pkgdb.read_layers([tar])
    assert [(p.name, p.architecture) for p in db.packages] == [(p["name"], purl_qualifiers(p)["arch"])
                                                                for p in packages_of(expected).values()]


def test_supplier_from_maintainer_without_a_known_distribution(tmp_path):
    root = write_dpkg_root(tmp_path / "root")
    (root / "etc/os-release").unlink()
    out = tmp_path / "s.json"
    write_sbom(root, None, out)
    pkgs = packages_of(validate(out))
    assert pkgs[("sed", "amd64")]["supplier"] == "Person: Clint Adams (clint@debian.org)"
    assert purl_of(pkgs[("sed", "amd64")]) == "pkg:deb/sed@1%3A4.9-1?arch=amd64"


def test_sbom_from_a_lock_alone(tmp_path):
    lock = Lock(backend="deb", recipe="only-lock", distribution="debian", suite="bookworm", architecture="amd64",
                source_date_epoch=86400,
                packages=(LockedPackage(name="a", version="1.0", architecture="amd64", url="http://127.0.0.1/a.deb",
                                        size=1, sha256="a" * 64, depends=("Depends: b",)),
                          LockedPackage(name="b", version="2.0", architecture="all", url="http://127.0.0.1/b.deb",
                                        size=1, sha256="b" * 64)))
    out = tmp_path / "l.json"
    write_sbom(None, lock, out)
    doc = validate(out)
    assert lines_of(doc) == ["a 1.0 amd64", "b 2.0 all"]
    assert doc["creationInfo"]["created"] == "1970-01-02T00:00:00Z"
    assert purl_of(packages_of(doc)[("b", "all")]) == "pkg:deb/debian/b@2.0?arch=all&distro=debian-bookworm"
    assert depends_on(doc) == {("a", "b")}


def test_two_versions_of_one_rpm_are_two_packages(tmp_path):
    def lp(name, version, depends=()):
        return LockedPackage(name=name, version=version, architecture="x86_64", url="http://127.0.0.1/x.rpm",
                             size=1, sha256="c" * 64, depends=depends)

    lock = Lock(backend="rpm", recipe="kernels", distribution="fedora", suite="40", architecture="x86_64",
                packages=(lp("kernel-core", "0:6.5.1-300.fc40"), lp("kernel-core", "0:6.8.9-300.fc40"),
                          lp("kmod", "31-5.fc40"), lp("dracut", "0:102-1", depends=("kernel-core >= 6",))))
    out = tmp_path / "k.json"
    write_sbom(None, lock, out)
    doc = validate(out)
    assert lines_of(doc) == ["dracut 102-1 x86_64", "kernel-core 6.5.1-300.fc40 x86_64",
                             "kernel-core 6.8.9-300.fc40 x86_64", "kmod 31-5.fc40 x86_64"]
    kernels = [p for p in doc["packages"] if p["name"] == "kernel-core"]
    assert len({p["SPDXID"] for p in kernels}) == 2
    contained = [r for r in doc["relationships"] if r["relationshipType"] == "CONTAINS"]
    assert len(contained) == 4


# ---------------------------------------------------------------- the CLI


def rootfs(*args):
    from typer.testing import CliRunner

    from rootfs.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout_bytes, result.stderr


def test_cli_sbom(dpkg_root, tmp_path):
    out = tmp_path / "out" / "root.spdx.json"
    code, _, err = rootfs("sbom", dpkg_root, "-o", out, "--name", "hermetic")
    assert code == 0, err
    doc = validate(out)
    assert doc["name"] == "hermetic"
    code, stdout, err = rootfs("sbom", dpkg_root, "--name", "hermetic")
    assert code == 0, err
    assert stdout == out.read_bytes()


def test_cli_sbom_errors(tmp_path):
    code, _, err = rootfs("sbom", tmp_path / "missing")
    assert code == 8 and "does not exist" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "x.json"
    code, _, err = rootfs("sbom", empty, "-o", out)
    assert code == 2 and "no package database" in err
    assert not out.exists()
    bad = tmp_path / "bad.lock"
    bad.write_text("[]")
    code, _, err = rootfs("sbom", empty, "--lock", bad)
    assert code == 2 and "lock" in err


# ---------------------------------------------------------------- images


def _layer_from_dir(src: Path, dest: Path, extra: dict[str, bytes | None] | None = None) -> Path:
    """An uncompressed layer tar of src; extra adds files (None: a whiteout)."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        if src is not None:
            for path in sorted(src.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(src)), recursive=False)
        for name, data in sorted((extra or {}).items()):
            if data is None:
                head, _, base = name.rpartition("/")
                name, data = f"{head}/.wh.{base}" if head else f".wh.{base}", b""
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


EXTRA = """
Package: extra
Status: install ok installed
Architecture: all
Version: 2.0
Maintainer: Nobody <nobody@rootfs.invalid>
Depends: sed
Description: added by the second layer
"""


@needs_tool("umoci")
def test_image_sbom_reads_the_merged_layers(tmp_path):
    """Layer 1 is the root; layer 2 adds a package to the status file and
    whites out a copyright file. The image's SBOM must equal that of a
    root with the same changes made on disk."""
    base = write_dpkg_root(tmp_path / "base")
    (base / "usr/share/doc/base-files").unlink()
    l1 = _layer_from_dir(base, tmp_path / "l1.tar")
    l2 = _layer_from_dir(None, tmp_path / "l2.tar", {
        "var/lib/dpkg/status": (STATUS + EXTRA).encode(),
        "usr/share/doc/sed/copyright": None,
    })
    layout = tmp_path / "img"
    for args in (["init", "--layout", str(layout)], ["new", "--image", f"{layout}:empty"],
                 ["raw", "add-layer", "--image", f"{layout}:empty", "--tag", "one", str(l1)],
                 ["raw", "add-layer", "--image", f"{layout}:one", "--tag", "two", str(l2)]):
        subprocess.run(["umoci", *args], check=True, capture_output=True)

    merged = tmp_path / "merged"
    shutil.copytree(base, merged, symlinks=True)
    (merged / "var/lib/dpkg/status").write_text(STATUS + EXTRA)
    (merged / "usr/share/doc/sed/copyright").unlink()

    opts = SbomOptions(name="same", source_date_epoch=0)
    img_doc = json.loads(sbom_bytes(f"{layout}:two", None, opts)[0])
    root_doc = json.loads(sbom_bytes(merged, None, opts)[0])
    assert packages_of(img_doc) == packages_of(root_doc)
    assert packages_of(img_doc)[("sed", "amd64")]["licenseDeclared"] == "NOASSERTION"
    assert packages_of(img_doc)[("extra", "all")]["versionInfo"] == "2.0"
    assert depends_on(img_doc) == depends_on(root_doc)
    subject = img_doc["packages"][0]
    assert subject["primaryPackagePurpose"] == "CONTAINER"
    index = json.loads((layout / "index.json").read_text())
    two = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "two")
    assert subject["checksums"] == [{"algorithm": "SHA256", "checksumValue": two["digest"].split(":")[1]}]
    # The lower image does not have the second layer's package.
    one = json.loads(sbom_bytes(f"{layout}:one", None, opts)[0])
    assert ("extra", "all") not in packages_of(one)
    assert packages_of(one)[("sed", "amd64")]["licenseDeclared"] == "GPL-3.0-or-later"
    out = tmp_path / "img.spdx.json"
    out.write_bytes(sbom_bytes(f"{layout}:two", None, opts)[0])
    validate(out)
    # A docker-archive of the same image reads the same.
    if os.geteuid() == 0 and shutil.which("skopeo") and shutil.which("unshare"):
        from skopeo_private import skopeo_copy

        archive = tmp_path / "two.tar"
        skopeo_copy(tmp_path, f"oci:{layout}:two", f"docker-archive:{archive}:localhost/two:1")
        assert packages_of(json.loads(sbom_bytes(archive, None, opts)[0])) == packages_of(root_doc)
    # and the graph of the image is the graph of the merged root
    code, from_image, err = rootfs("graph", f"{layout}:two")
    assert code == 0, err
    code, from_root, err = rootfs("graph", merged)
    assert code == 0, err
    assert from_image.split(b"\n", 1)[1] == from_root.split(b"\n", 1)[1]  # all but the title line


# ---------------------------------------------------------------- licenses


def test_every_spdx_id_we_emit_is_on_the_spdx_list():
    from license_expression import get_spdx_licensing

    spdx = get_spdx_licensing()
    assert spdx.validate("NotALicense-1").errors  # the check can fail
    for ident in set(licenses.SPDX_IDS) | set(licenses.ALIASES.values()):
        assert spdx.validate(ident).errors == [], ident


@pytest.mark.parametrize("text, expected", [
    ("GPL-2+", "GPL-2.0-or-later"),
    ("Expat", "MIT"),
    ("GPL-2+ or Artistic", "GPL-2.0-or-later OR LicenseRef-artistic"),
    ("GPL-2+ or Artistic, and BSD-3-clause", "(GPL-2.0-or-later OR LicenseRef-artistic) AND BSD-3-Clause"),
    ("GPLv2+ and ASL 2.0", "GPL-2.0-or-later AND Apache-2.0"),
    ("(MIT OR Apache-2.0) AND Zlib", "(MIT OR Apache-2.0) AND Zlib"),
    ("public-domain", "LicenseRef-public-domain"),
    ("artistic", "LicenseRef-artistic"),  # SPDX ids compare case-insensitively: one ref for both spellings
    ("MIT MIT", "LicenseRef-mit-mit"),
    ("MIT and (Zlib", "LicenseRef-mit-and-zlib"),
])
def test_license_statements_to_spdx(text, expected):
    assert licenses.to_spdx(text) == expected


# ---------------------------------------------------------------- rpm

SPECS = {
    "tiny-a": dict(epoch="1", version="1.2", release="3", license="MIT OR GPL-2.0-or-later",
                   requires=["tiny-b >= 1.0", "tiny-cap"], provides=[]),
    "tiny-b": dict(epoch="", version="1.0", release="1", license="GPLv2+ and ASL 2.0", requires=[], provides=[]),
    "tiny-c": dict(epoch="", version="0.9", release="2", license="Weird License", requires=["/usr/share/tiny-b/file"],
                   provides=["tiny-cap = 5"]),
}


def _spec(name: str, s: dict) -> str:
    lines = [f"Name: {name}", f"Version: {s['version']}", f"Release: {s['release']}", "Summary: tiny",
             f"License: {s['license']}", "Vendor: Rootfs Tests", "Packager: Test Person <test@rootfs.invalid>",
             "URL: https://example.invalid/tiny", "BuildArch: noarch"]
    if s["epoch"]:
        lines.append(f"Epoch: {s['epoch']}")
    lines += [f"Requires: {r}" for r in s["requires"]] + [f"Provides: {p}" for p in s["provides"]]
    lines += ["%description", "tiny", "%install", f"mkdir -p %{{buildroot}}/usr/share/{name}",
              f"echo {name} > %{{buildroot}}/usr/share/{name}/file", "%files", f"/usr/share/{name}/file", ""]
    return "\n".join(lines)


@pytest.fixture(scope="session")
def rpm_root(tmp_path_factory) -> Path:
    if not (shutil.which("rpmbuild") and shutil.which("rpm")):
        pytest.skip("needs rpmbuild and rpm")
    d = tmp_path_factory.mktemp("rpm")
    top = d / "top"
    (top / "SPECS").mkdir(parents=True)
    for name, s in SPECS.items():
        spec = top / "SPECS" / f"{name}.spec"
        spec.write_text(_spec(name, s))
        subprocess.run(["rpmbuild", "--define", f"_topdir {top}", "-bb", str(spec)], check=True, capture_output=True)
    root = d / "root"
    root.mkdir()
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('ID=fedora\nVERSION_ID=40\n')
    rpms = sorted(str(p) for p in (top / "RPMS").rglob("*.rpm"))
    subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "--nodeps", "--noscripts", "-i", *rpms],
                   check=True, capture_output=True)
    return root


def test_rpm_root_sbom_matches_rpm(rpm_root, tmp_path):
    out = tmp_path / "rpm.spdx.json"
    write_sbom(rpm_root, None, out, SbomOptions(source_date_epoch=0))
    doc = validate(out)
    qa = subprocess.run(["rpm", "--root", str(rpm_root), "--dbpath", "/var/lib/rpm", "-qa", "--qf",
                         "%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE} %{ARCH}\n"],
                        capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(qa) == 3
    assert lines_of(doc) == sorted(qa)
    pkgs = packages_of(doc)
    a = pkgs[("tiny-a", "noarch")]
    assert a["versionInfo"] == "1:1.2-3"
    assert purl_of(a) == "pkg:rpm/fedora/tiny-a@1.2-3?arch=noarch&distro=fedora-40&epoch=1"
    assert a["supplier"] == "Organization: Rootfs Tests"
    assert a["licenseDeclared"] == "MIT OR GPL-2.0-or-later"
    assert a["sourceInfo"] == "built package from: tiny-a-1.2-3.src.rpm"
    assert pkgs[("tiny-b", "noarch")]["licenseDeclared"] == "GPL-2.0-or-later AND Apache-2.0"
    assert pkgs[("tiny-c", "noarch")]["licenseDeclared"] == "LicenseRef-weird-license"
    # Requires resolved by name, through a Provides, and through a file.
    assert depends_on(doc) == {("tiny-a", "tiny-b"), ("tiny-a", "tiny-c"), ("tiny-c", "tiny-b")}


def test_cli_graph_of_an_rpm_root(rpm_root):
    code, stdout, err = rootfs("graph", rpm_root)
    assert code == 0, err
    text = stdout.decode()
    assert '"tiny-a" -> "tiny-b" [kind="requires"];' in text
    assert '"tiny-a" -> "tiny-c" [kind="requires", via="tiny-cap", label="tiny-cap", style="dashed"];' in text
    assert '"tiny-c" -> "tiny-b" [kind="requires", via="/usr/share/tiny-b/file"' in text


def test_rpm_db_read_from_an_image_layer(rpm_root, tmp_path):
    """The rpm database inside a layer tar is read without unpacking the image."""
    layer = _layer_from_dir(rpm_root, tmp_path / "layer.tar")
    with tarfile.open(layer) as tar:
        db = pkgdb.read_layers([tar])
    assert db.format == "rpm"
    assert [(p.name, p.version) for p in db.packages] == [("tiny-a", "1:1.2-3"), ("tiny-b", "1.0-1"), ("tiny-c", "0.9-2")]
    assert db.os_release["ID"] == "fedora"


# ---------------------------------------------------------------- a real Debian root


@pytest.fixture(scope="session")
def debian_root(bookworm_build) -> Path:
    """The session's real bookworm minbase root, built by rootfs (conftest)."""
    return bookworm_build.root


@pytest.mark.mirror
@pytest.mark.slow
@needs_root()
def test_real_debian_root_sbom(debian_root, tmp_path):
    out = tmp_path / "bookworm.spdx.json"
    write_sbom(debian_root, None, out, SbomOptions(source_date_epoch=0))
    proc = subprocess.run([shutil.which("pyspdxtools") or str(Path(sys.executable).parent / "pyspdxtools"),
                           "-i", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr
    doc = validate(out)
    assert lines_of(doc) == dpkg_query(debian_root)
    pkgs = packages_of(doc)
    assert len(pkgs) > 10
    # Debian's own DEP-5 files: coreutils is GPL-3+, and every package has a purl for bookworm.
    coreutils = next(p for (n, _), p in pkgs.items() if n == "coreutils")
    assert "GPL-3.0-or-later" in coreutils["licenseDeclared"]
    assert all("distro=debian-12" in purl_of(p) for p in pkgs.values())
    # libc6 is what nearly everything depends on.
    assert sum(1 for _, b in depends_on(doc) if b == "libc6") > 5
