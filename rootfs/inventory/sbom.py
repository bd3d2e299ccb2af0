"""SPDX 2.3 SBOMs of what a root or an image has installed.

The package list comes from the package manager's own database (rootfs.
pkgdb); the lock, when there is one, adds what the database does not keep:
the sha256 and URL of each package file. The document is a pure function of
those inputs and SOURCE_DATE_EPOCH: `created` is that date and the
namespace is derived from the content, so rebuilding gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from rootfs.inventory import licenses
from rootfs.inventory.graph import package_graph
from rootfs.inventory.pkgdb import Package, PackageDB
from rootfs.model.errors import UsageError
from rootfs.model.lock import Lock, LockedPackage

NAMESPACE_BASE = "https://rootfs.invalid/spdx"  # .invalid: a name, never fetched
DOCUMENT_ID = "SPDXRef-DOCUMENT"
SUBJECT_ID = "SPDXRef-Subject"


@dataclass(frozen=True)
class SbomOptions:
    name: str = ""  # the document's and subject's name (default: from the input)
    source_date_epoch: int | None = None  # default: $SOURCE_DATE_EPOCH, the lock's, 0
    namespace_base: str = NAMESPACE_BASE
    platform: str | None = None  # the image of a multi-platform index to describe (default: the host's)
    tool: str = "rootfs"


def _tool_version() -> str:
    # The package's own version, not the installed distribution's metadata:
    # a build from a source checkout must write the same document.
    from rootfs import __version__

    return __version__


def _created(opts: SbomOptions, lock: Lock | None) -> str:
    epoch = opts.source_date_epoch
    if epoch is None and os.environ.get("SOURCE_DATE_EPOCH", "").strip():
        try:
            epoch = int(os.environ["SOURCE_DATE_EPOCH"])
        except ValueError:
            raise UsageError(f"SOURCE_DATE_EPOCH must be an integer, not {os.environ['SOURCE_DATE_EPOCH']!r}") from None
    if epoch is None:
        epoch = lock.source_date_epoch if lock else 0
    try:
        return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"SOURCE_DATE_EPOCH {epoch} is not a usable date") from None


# ---------------------------------------------------------------- identity


def _spdx_id(prefix: str, *parts: str) -> str:
    return prefix + "-" + "-".join(re.sub(r"[^A-Za-z0-9.]+", "-", p).strip("-") or "x" for p in parts)


def _distro(db: PackageDB, lock: Lock | None) -> tuple[str, str]:
    """(namespace for purls, distro qualifier), e.g. ("debian", "debian-12")."""
    osr = db.os_release
    ident = (osr.get("ID") or (lock.distribution if lock else "") or "").lower()
    ident = re.sub(r"[^a-z0-9._-]", "", ident.replace(" ", "-"))
    release = osr.get("VERSION_ID") or osr.get("VERSION_CODENAME") or (lock.suite if lock else "")
    return ident, (f"{ident}-{release}" if ident and release else ident)


def _supplier_name(db: PackageDB, lock: Lock | None) -> str:
    osr = db.os_release
    ident = osr.get("ID") or (lock.distribution if lock else "")
    if not ident:
        return ""
    return {"debian": "Debian", "ubuntu": "Ubuntu", "fedora": "Fedora Project"}.get(ident.lower(), ident[:1].upper() + ident[1:])


def _clean_party(text: str) -> str:
    # SPDX writes "Person: NAME (EMAIL)": parentheses in a name would be
    # read as the e-mail part.
    return " ".join(text.replace("(", " ").replace(")", " ").split())


def _supplier(pkg: Package, distro_name: str) -> str:
    if pkg.format == "rpm" and pkg.vendor:
        return f"Organization: {_clean_party(pkg.vendor)}"
    if distro_name:
        return f"Organization: {distro_name}"
    if pkg.maintainer:
        name, _, rest = pkg.maintainer.partition("<")
        email = rest.rstrip(">").strip()
        name = _clean_party(name) or email
        return f"Person: {name} ({email})" if email else f"Person: {name}"
    return "NOASSERTION"


def purl(pkg: Package, namespace: str, distro: str) -> str:
    q = lambda s: quote(s, safe=".-_~")  # noqa: E731
    qualifiers = {"arch": pkg.architecture}
    version = pkg.version
    if pkg.format == "rpm":
        epoch, sep, rest = version.partition(":")
        if sep:
            qualifiers["epoch"], version = epoch, rest
    if distro:
        qualifiers["distro"] = distro
    if pkg.format == "deb" and pkg.source and pkg.source != pkg.name:
        qualifiers["upstream"] = pkg.source
    ns = f"{q(namespace)}/" if namespace else ""
    query = "&".join(f"{k}={q(v)}" for k, v in sorted(qualifiers.items()) if v)
    return f"pkg:{pkg.format}/{ns}{q(pkg.name)}@{q(version)}" + (f"?{query}" if query else "")


# The SPDX 2.3 spec's grammar for URLs in downloadLocation and homepage: a
# host name with a top-level domain (no bare IP addresses, no file://).
# Other URLs (a local test mirror) are left out rather than made invalid.
_URL = re.compile(
    r"^(https?://(www\.)?|ftp://|sftp://)([\w\-.!~*'()%;:&=+$,]+@)?[a-z0-9]+([\-.][a-z0-9]+){0,100}"
    r"\.[a-z]{2,5}(:[0-9]{1,5})?(/\S*)?$",
    re.IGNORECASE,
)


# ---------------------------------------------------------------- lock


def _norm_version(version: str, fmt: str) -> str:
    return version[2:] if fmt == "rpm" and version.startswith("0:") else version


def _from_lock(lock: Lock) -> PackageDB:
    pkgs = [Package(format=lock.backend, name=p.name, version=_norm_version(p.version, lock.backend),
                    architecture=p.architecture, source=p.source, essential=p.essential,
                    depends=p.depends, provides=p.provides) for p in lock.packages]
    return PackageDB(lock.backend, tuple(sorted(pkgs, key=lambda p: (p.name, p.architecture))), {})


def _lock_index(lock: Lock | None) -> dict[tuple[str, str, str], LockedPackage]:
    if lock is None:
        return {}
    return {(p.name, p.architecture, _norm_version(p.version, lock.backend)): p for p in lock.packages}


# ---------------------------------------------------------------- document


def _declared(pkg: Package, refs: dict[str, str]) -> str:
    if pkg.format == "rpm":
        return licenses.to_spdx(pkg.license, refs) if pkg.license else ""
    return licenses.conjoin([licenses.to_spdx(name, refs) for name in pkg.licenses])


def sbom_document(db: PackageDB, lock: Lock | None, opts: SbomOptions, *, subject: str = "root",
                  subject_digest: str = "") -> dict:
    """The SPDX 2.3 document (a JSON-ready dict) for db's packages."""
    name = opts.name or (lock.recipe if lock and lock.recipe else "rootfs")
    namespace, distro = _distro(db, lock)
    distro_name = _supplier_name(db, lock)
    locked = _lock_index(lock)
    ref_terms: dict[str, str] = {}
    ref_texts: dict[str, str] = {}
    ids: dict[tuple[str, str, str], str] = {}  # (name, arch, version) -> SPDXID
    used: set[str] = set()
    packages = []
    for pkg in sorted(db.packages, key=lambda p: (p.name, p.architecture, p.version)):
        sid = _spdx_id("SPDXRef-Package", pkg.format, pkg.name, pkg.architecture)
        n = 2
        while sid in used:
            sid, n = _spdx_id("SPDXRef-Package", pkg.format, pkg.name, pkg.architecture, str(n)), n + 1
        ids[(pkg.name, pkg.architecture, pkg.version)] = sid
        used.add(sid)
        refs: dict[str, str] = {}
        declared = _declared(pkg, refs)
        for ref, term in sorted(refs.items()):
            ref_terms.setdefault(ref, term)
            text = dict(pkg.license_texts).get(term)
            if text and ref not in ref_texts:
                ref_texts[ref] = text
        entry: dict = {
            "SPDXID": sid,
            "name": pkg.name,
            "versionInfo": pkg.version,
            "supplier": _supplier(pkg, distro_name),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared or "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": purl(pkg, namespace, distro)}],
            "primaryPackagePurpose": "INSTALL",
        }
        lp = locked.get((pkg.name, pkg.architecture, pkg.version))
        if lp is not None:
            entry["checksums"] = [{"algorithm": "SHA256", "checksumValue": lp.sha256}]
            if _URL.match(lp.url):
                entry["downloadLocation"] = lp.url
            if lp.repository:
                # Which of several sources (the suite, -updates, -security...)
                entry["comment"] = f"from the repository {lp.repository}"
        if pkg.source:
            src = pkg.source + (f" {pkg.source_version}" if pkg.source_version else "")
            entry["sourceInfo"] = f"built package from: {src}"
        if pkg.homepage and _URL.match(pkg.homepage):
            entry["homepage"] = pkg.homepage
        packages.append(entry)

    subject_entry: dict = {
        "SPDXID": SUBJECT_ID,
        "name": name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER" if subject == "image" else "OPERATING-SYSTEM",
        "comment": f"The {'image' if subject == 'image' else 'root file system'} whose installed "
                   f"{db.format} packages this document lists.",
    }
    if distro_name:
        subject_entry["supplier"] = f"Organization: {distro_name}"
    if subject_digest.startswith("sha256:"):
        subject_entry["checksums"] = [{"algorithm": "SHA256", "checksumValue": subject_digest[7:]}]

    relationships = [{"spdxElementId": DOCUMENT_ID, "relationshipType": "DESCRIBES", "relatedSpdxElement": SUBJECT_ID}]
    relationships += [{"spdxElementId": SUBJECT_ID, "relationshipType": "CONTAINS", "relatedSpdxElement": sid}
                      for sid in sorted(ids.values())]
    graph = package_graph(db.packages, db.format)
    by_node = {n.id: (n.name, n.architecture, n.version) for n in graph.nodes}
    relationships += sorted(
        ({"spdxElementId": ids[by_node[e.src]], "relationshipType": "DEPENDS_ON", "relatedSpdxElement": ids[by_node[e.dst]]}
         for e in graph.edges),
        key=lambda r: (r["spdxElementId"], r["relatedSpdxElement"]),
    )

    doc: dict = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": DOCUMENT_ID,
        "name": name,
        "documentNamespace": "",
        "creationInfo": {
            "created": _created(opts, lock),
            "creators": [f"Tool: {opts.tool}-{_tool_version()}"],
        },
        "packages": [subject_entry, *packages],
        "relationships": relationships,
    }
    if ref_terms:
        doc["hasExtractedLicensingInfos"] = [
            {"licenseId": ref, "name": term,
             "extractedText": ref_texts.get(ref) or f"The license the package's own records call \"{term}\"."}
            for ref, term in sorted(ref_terms.items())
        ]
    # The namespace names this exact content, so it is unique per content
    # and the same on every rebuild.
    digest = hashlib.sha256(_dump(doc)).hexdigest()
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "rootfs"
    doc["documentNamespace"] = f"{opts.namespace_base.rstrip('/')}/{safe_name}-{digest}"
    return doc


def _dump(doc: dict) -> bytes:
    # A name that is not UTF-8 (an old package's Latin-1 packager, a file
    # path in provides) is carried as surrogateescape bytes; each such byte
    # is written as its JSON escape (\udcXX), which keeps the document valid
    # UTF-8 and the byte recoverable.
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")


# ---------------------------------------------------------------- inputs


def _is_image(spec: str | Path) -> bool:
    path = Path(spec)
    if path.is_dir():
        return (path / "index.json").is_file()
    return True  # archives and DIR:TAG


def read_input(root_or_image: str | Path | None, lock: Lock | None,
               platform: str | None = None) -> tuple[PackageDB, str, str, str]:
    """(packages, subject kind, subject digest, default name)."""
    from rootfs.inventory import pkgdb

    if root_or_image is None:
        if lock is None:
            raise UsageError("an SBOM needs a root, an image or a lock")
        return _from_lock(lock), "root", "", lock.recipe
    if _is_image(root_or_image):
        from rootfs.image.reader import open_image

        with open_image(root_or_image, platform=platform) as img:
            db = pkgdb.read_image(img)
            name = img.tag or Path(img.path).name
            return db, "image", img.descriptor.digest, name
    path = Path(root_or_image)
    if lock is not None and path.is_dir() and not pkgdb.has_package_db(path):
        # A tree whose package database was cleaned away (or never written,
        # as by a bare extraction): the lock is the best record left.
        return _from_lock(lock), "root", "", path.resolve().name
    return pkgdb.read_root(path), "root", "", path.resolve().name


def sbom_bytes(root_or_image: str | Path | None, lock: Lock | None, opts: SbomOptions = SbomOptions()) -> tuple[bytes, str]:
    """The SPDX JSON document and its sha256 (hex): what the packer puts in
    an annotation (`org.rootfs.sbom.digest`) of the image it describes."""
    db, kind, digest, default_name = read_input(root_or_image, lock, opts.platform)
    if not opts.name:
        opts = dataclasses.replace(opts, name=lock.recipe if lock and lock.recipe else default_name)
    data = _dump(sbom_document(db, lock, opts, subject=kind, subject_digest=digest))
    return data, hashlib.sha256(data).hexdigest()


def write_sbom(root_or_image: str | Path | None, lock: Lock | None, out_path: Path,
               opts: SbomOptions = SbomOptions()) -> tuple[bytes, str]:
    """Write the SBOM to out_path (complete or not at all); returns what
    sbom_bytes returns."""
    from rootfs.host.atomic import atomic_write_bytes

    data, digest = sbom_bytes(root_or_image, lock, opts)
    atomic_write_bytes(Path(out_path), data)
    return data, digest
