"""rpm-md repositories: repodata/repomd.xml (+ .asc), and the metadata
files it names, each checked against repomd's checksum before use.
"""

from __future__ import annotations

import hashlib
import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rootfs import decompress as decompress_mod
from rootfs.model.errors import NetworkError, UsageError, VerifyError
from rootfs.net.fetch import Downloader, NotFound

# Any namespace: createrepo_c and older tools disagree on nothing but the
# namespace URI, and the element names are what matter.
REPO = "{*}"


@dataclass(frozen=True)
class DataFile:
    type: str  # primary, filelists, other, ...
    href: str
    checksum_type: str
    checksum: str
    size: int


@dataclass
class Repomd:
    url: str  # the repository base URL, without a trailing slash
    raw: bytes
    revision: str
    data: dict[str, DataFile]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def normalize_url(url: str) -> str:
    """A repository URL without the trailing slash; a plain local path
    becomes a file:// URL."""
    if "://" not in url and not url.startswith("file:"):
        if not url.startswith("/") and not url.startswith("."):
            raise UsageError(f"repository {url!r} is neither a URL nor a local path")
        url = Path(url).resolve().as_uri()
    return url.rstrip("/")


def _get(downloader: Downloader, url: str, what: str) -> bytes:
    try:
        return downloader.get_bytes(url)
    except NotFound:
        raise NetworkError(f"{what} is missing: {url} does not exist") from None


def fetch_repomd(downloader: Downloader, url: str, keyring: str | None) -> Repomd:
    """repomd.xml of the repository at url, signature-checked with keyring
    when one is given (a missing or bad repomd.xml.asc is refused)."""
    base = normalize_url(url)
    raw = _get(downloader, base + "/repodata/repomd.xml", f"the repository {base}")
    if keyring:
        from rootfs.net import openpgp as gpg

        sig = downloader.get_optional(base + "/repodata/repomd.xml.asc")
        if sig is None:
            raise VerifyError(f"{base}/repodata/repomd.xml is not signed (no repomd.xml.asc), but repo_gpgcheck is on")
        gpg.verify_detached(raw, sig, keyring, f"{base}/repodata/repomd.xml")
    return parse_repomd(base, raw)


def parse_repomd(base: str, raw: bytes) -> Repomd:
    try:
        root = ET.fromstring(raw)
    except (ET.ParseError, ValueError, LookupError) as exc:  # an encoding expat cannot read
        raise VerifyError(f"{base}/repodata/repomd.xml is not valid XML: {exc}") from None
    data: dict[str, DataFile] = {}
    for d in root.findall(REPO + "data"):
        loc = d.find(REPO + "location")
        ck = d.find(REPO + "checksum")
        if loc is None or ck is None:
            continue
        size = d.findtext(REPO + "size")
        data[d.get("type", "")] = DataFile(
            type=d.get("type", ""), href=loc.get("href", ""),
            checksum_type=ck.get("type", "sha256").lower(), checksum=(ck.text or "").strip().lower(),
            size=int(size) if size and size.isdigit() else -1,
        )
    if "primary" not in data:
        raise VerifyError(f"{base}/repodata/repomd.xml names no primary metadata")
    return Repomd(base, raw, (root.findtext(REPO + "revision") or "").strip(), data)


# What repomd.xml may vouch for metadata with: sha256 or stronger, as
# dnf/librepo require. md5 and sha1 ("sha") collide on demand, and a
# collision is all an attacker who can replace primary.xml would need.
STRONG = ("sha256", "sha384", "sha512")


def check_strong(kind: str, what: str) -> None:
    if kind not in STRONG:
        raise VerifyError(f"{what}: repomd.xml gives only a {kind or 'missing'} checksum for it; "
                          "rootfs accepts sha256, sha384 or sha512")


def decompress(data: bytes, where: str) -> IO[bytes]:
    """A readable stream of data, whatever compression it uses (gzip, xz,
    zstd, bzip2 or none), recognised by its magic bytes."""
    kind = decompress_mod.sniff(data[:6])
    if kind is None and data[:1] not in (b"<", b"\xef", b" ", b"\n"):
        raise VerifyError(f"{where} uses a compression rootfs does not know")
    return decompress_mod.reader(io.BytesIO(data), kind)


def fetch_data(downloader: Downloader, repomd: Repomd, kind: str) -> IO[bytes] | None:
    """The checked, decompressed stream of one metadata file, or None when
    repomd.xml does not name it."""
    entry = repomd.data.get(kind)
    if entry is None:
        return None
    url = repomd.url + "/" + entry.href.lstrip("/")
    check_strong(entry.checksum_type, url)  # before anything is fetched
    data = _get(downloader, url, f"{kind} metadata of {repomd.url}")
    if entry.size >= 0 and len(data) != entry.size:
        raise VerifyError(f"{url}: size {len(data)} does not match the {entry.size} bytes repomd.xml promises")
    if hashlib.new(entry.checksum_type, data).hexdigest() != entry.checksum:
        raise VerifyError(f"{url} does not match the {entry.checksum_type} checksum in repomd.xml")
    return decompress(data, url)

