"""An apt repository's signed metadata: InRelease / Release(+.gpg), and the
Packages indices it vouches for.

Trust flows one way: the keyring vouches for the Release, the Release's
SHA256 lines vouch for each index, each index's SHA256 vouches for a .deb.
Nothing is parsed before the step above it checked it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
from dataclasses import dataclass, field

from rootfs import ui
from rootfs.model.errors import NetworkError, ResolveError, VerifyError
from rootfs.net.fetch import Downloader, NotFound
from rootfs.net.openpgp import verify_clearsigned, verify_detached


@dataclass(frozen=True)
class IndexFile:
    path: str  # relative to dists/SUITE/
    size: int
    sha256: str


@dataclass(frozen=True)
class Release:
    suite: str = ""
    codename: str = ""
    date: str = ""
    valid_until: str = ""
    architectures: tuple[str, ...] = ()
    components: tuple[str, ...] = ()
    acquire_by_hash: bool = False
    no_arch_all_packages: bool = False  # "No-Support-for-Architecture-all: Packages"
    origin: str = ""
    label: str = ""
    not_automatic: bool = False  # "NotAutomatic: yes" (experimental, backports)
    but_automatic_upgrades: bool = False  # "ButAutomaticUpgrades: yes" (backports)
    files: dict[str, IndexFile] = field(default_factory=dict)  # the SHA256 section


@dataclass(frozen=True)
class FetchedRelease:
    release: Release
    metadata: str  # "InRelease" or "Release"
    sha256: str  # of the file as fetched
    url: str  # dists/SUITE/ on the mirror


def parse_release(text: str, what: str = "Release") -> Release:
    fields: dict[str, str] = {}
    sha256: dict[str, IndexFile] = {}
    section = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0] in " \t":
            if section == "SHA256":
                parts = line.split()
                if len(parts) != 3:
                    raise VerifyError(f"{what} has a malformed SHA256 line: {line.strip()!r}")
                digest, size, path = parts
                try:
                    sha256[path] = IndexFile(path, int(size), digest.lower())
                except ValueError:
                    raise VerifyError(f"{what} has a malformed SHA256 line: {line.strip()!r}") from None
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise VerifyError(f"{what} is not a Release file (bad line {line[:60]!r})")
        section = key
        fields[key] = value.strip()
    return Release(
        suite=fields.get("Suite", ""),
        codename=fields.get("Codename", ""),
        date=fields.get("Date", ""),
        valid_until=fields.get("Valid-Until", ""),
        architectures=tuple(fields.get("Architectures", "").split()),
        components=tuple(fields.get("Components", "").split()),
        acquire_by_hash=fields.get("Acquire-By-Hash", "").lower() == "yes",
        no_arch_all_packages="Packages" in fields.get("No-Support-for-Architecture-all", "").split(),
        origin=fields.get("Origin", ""),
        label=fields.get("Label", ""),
        not_automatic=fields.get("NotAutomatic", "").lower() == "yes",
        but_automatic_upgrades=fields.get("ButAutomaticUpgrades", "").lower() == "yes",
        files=sha256,
    )


def parse_date(value: str, what: str) -> dt.datetime:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise VerifyError(f"{what} has an unreadable date {value[:100]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when


def check_release(rel: Release, suite: str, *, check_valid_until: bool, now: dt.datetime | None = None) -> None:
    """The Release must be the suite that was asked for, and still valid."""
    if suite not in (rel.suite, rel.codename):
        raise VerifyError(
            f"the Release for {suite} names Suite {rel.suite or '(none)'} and Codename "
            f"{rel.codename or '(none)'}, not {suite}"
        )
    if not rel.files:
        raise VerifyError(f"the Release for {suite} has no SHA256 checksums")
    if rel.valid_until and check_valid_until:
        until = parse_date(rel.valid_until, f"the Release for {suite}")
        now = now or dt.datetime.now(dt.timezone.utc)
        if now > until:
            raise VerifyError(
                f"the Release for {suite} expired on {rel.valid_until} (Valid-Until); "
                "pass --ignore-valid-until for a snapshot mirror"
            )


def _unsigned_text(data: bytes) -> bytes:
    """The body of a clearsigned message without checking it (--no-check-gpg)."""
    text = data.replace(b"\r\n", b"\n")
    if not text.lstrip().startswith(b"-----BEGIN PGP SIGNED MESSAGE-----"):
        return text
    body = text.split(b"\n\n", 1)[1] if b"\n\n" in text else b""
    body = body.split(b"\n-----BEGIN PGP SIGNATURE-----", 1)[0]
    # Dash-escaped lines ("- -----") are unescaped, as RFC 4880 7.1 says.
    return b"\n".join(ln[2:] if ln.startswith(b"- ") else ln for ln in body.split(b"\n")) + b"\n"


def fetch_release(
    downloader: Downloader, mirror: str, suite: str, keyring: str, *, check_gpg: bool
) -> tuple[FetchedRelease, str]:
    """InRelease, else Release + Release.gpg, verified; (fetched, Release text)."""
    base = f"{mirror}dists/{suite}/"
    try:
        inrelease = downloader.get_optional(base + "InRelease")
        release = detached = None
        if inrelease is None:
            release = downloader.get_optional(base + "Release")
            if release is None:
                raise ResolveError(f"the mirror {mirror} has no suite {suite}")
            detached = downloader.get_optional(base + "Release.gpg")
    except NetworkError as exc:
        raise NetworkError(f"cannot reach the mirror {mirror}: {exc}") from None

    if inrelease is not None:
        metadata, raw = "InRelease", inrelease
        if check_gpg:
            text = verify_clearsigned(inrelease, keyring, f"{base}InRelease")
        else:
            text = _unsigned_text(inrelease)
    else:
        assert release is not None
        metadata, raw, text = "Release", release, release
        if check_gpg:
            if detached is None:
                raise VerifyError(f"{base}Release is not signed (no InRelease, no Release.gpg)")
            verify_detached(release, detached, keyring, f"{base}Release")
    if not check_gpg:
        ui.warn(f"NOT checking the signature of {base}{metadata} (--no-check-gpg): "
                "anyone between you and the mirror can choose what gets installed")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise VerifyError(f"{base}{metadata} is not UTF-8 text") from None
    rel = parse_release(decoded, f"{base}{metadata}")
    return FetchedRelease(rel, metadata, hashlib.sha256(raw).hexdigest(), base), decoded


# Preference among the compressed forms a Release lists, all verified the
# same way: the fastest to decompress first. Measured on bookworm main (50
# MB): zstd ~0.1 s, gzip 0.2 s (12 MB to fetch), xz 0.3 s on two cores and
# 0.5 s of CPU (8.8 MB). From a mirror on the local network or a cache, as
# build farms have, the 3 MB more of gzip cost less than xz's decoding.
PREFERENCE = (".zst", ".gz", ".xz", ".bz2", "")


def index_candidates(rel: Release, component: str, arch: str) -> list[IndexFile]:
    stem = f"{component}/binary-{arch}/Packages"
    return [rel.files[stem + ext] for ext in PREFERENCE if stem + ext in rel.files]


def plain_size(rel: Release, component: str, arch: str) -> int:
    """The uncompressed size of component/binary-arch/Packages as the
    Release lists it (Debian's and Ubuntu's archives do), else 0."""
    f = rel.files.get(f"{component}/binary-{arch}/Packages")
    return f.size if f is not None else 0


def fetch_index(downloader: Downloader, fetched: FetchedRelease, component: str, arch: str) -> tuple[bytes, str]:
    """The first listed compressed form of component/binary-arch/Packages that
    the mirror serves, checked against the Release; (bytes, extension)."""
    rel = fetched.release
    candidates = index_candidates(rel, component, arch)
    if not candidates:
        if rel.components and component not in rel.components:
            raise ResolveError(
                f"the suite {rel.codename or rel.suite} has no component {component} "
                f"(it has {', '.join(rel.components)})"
            )
        if rel.architectures and arch not in rel.architectures:
            raise ResolveError(
                f"the suite {rel.codename or rel.suite} has no architecture {arch} "
                f"(it has {', '.join(a for a in rel.architectures if a != 'all')})"
            )
        raise ResolveError(f"the Release lists no Packages index for {component}/binary-{arch}")
    for f in candidates:
        ext = f.path[len(f"{component}/binary-{arch}/Packages"):]
        urls = []
        if rel.acquire_by_hash:
            urls.append(f"{fetched.url}{component}/binary-{arch}/by-hash/SHA256/{f.sha256}")
        urls.append(fetched.url + f.path)
        for url in urls:
            try:
                data = downloader.get_bytes(url)
            except NotFound:
                continue
            except NetworkError as exc:
                raise NetworkError(f"cannot fetch {url}: {exc}") from None
            if len(data) != f.size or hashlib.sha256(data).hexdigest() != f.sha256:
                raise VerifyError(
                    f"{fetched.url}{f.path} does not match the size and SHA256 its Release lists "
                    "(changed or damaged on the mirror)"
                )
            ui.detail(f"verified {url} ({len(data)} bytes)")
            return data, ext
    raise ResolveError(f"the mirror lacks {fetched.url}{component}/binary-{arch}/Packages in every form its Release lists")
