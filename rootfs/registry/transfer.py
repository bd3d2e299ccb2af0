"""Push an image to a registry and pull one into an OCI layout."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rootfs import ui
from rootfs.host.atomic import atomic_path, atomic_write_bytes
from rootfs.image.reader import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
    Descriptor,
    Image,
    check_digest,
)
from rootfs.model.errors import (
    NetworkError,
    OutputError,
    RegistryError,
    UsageError,
    VerifyError,
)
from rootfs.registry.client import RESPONSE_LIMIT, RegistryOptions, Response, Session, Transient
from rootfs.registry.memory import BlobMemory
from rootfs.registry.ref import Reference, parse_reference

ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1"


@dataclass
class PushResult:
    ref: Reference
    digest: str  # of what the tag now names (manifest or index)
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the repository
    mounted: list[str] = field(default_factory=list)  # cross-repository mounts


class _Counter:
    def __init__(self):
        self.lock = threading.Lock()

    def add(self, lst: list[str], item: str) -> None:
        with self.lock:
            lst.append(item)


class _Slice:
    """n bytes of f from offset, as a file for http.client. Made afresh for
    each sending, so a request repeated after a challenge sends the same bytes."""

    def __init__(self, f: BinaryIO, offset: int, n: int, progress):
        f.seek(offset)
        self.f, self.left, self.progress = f, n, progress

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size < 0 else min(size, self.left)
        data = self.f.read(size)
        self.left -= len(data)
        if self.progress and data:
            self.progress(len(data))
        return data


def push_image(image: Image, ref: str | Reference, opts: RegistryOptions) -> PushResult:
    """Upload every blob the registry lacks, then the manifests, then the tag."""
    r = parse_reference(ref) if isinstance(ref, str) else ref
    if r.digest:
        raise UsageError(f"push to a tag, not a digest: {r}")
    sess = Session(r, opts)
    sess.ping(push=True)
    memory = BlobMemory(opts.cache_dir, r.host)
    result = PushResult(r, image.root.digest)
    count = _Counter()
    blobs = image.blobs()
    manifests = [d for d in blobs if d.media_type in MANIFEST_TYPES + INDEX_TYPES]
    plain = [d for d in blobs if d.media_type not in MANIFEST_TYPES + INDEX_TYPES]
    lock = threading.Lock()  # one blob at a time reads from a tar-backed image

    def one(desc: Descriptor, o: RegistryOptions) -> None:
        how = _push_blob(sess, image, desc, memory, lock, o)
        count.add({"uploaded": result.uploaded, "skipped": result.skipped, "mounted": result.mounted}[how], desc.digest)
        ui.detail(f"{how} {desc.digest} ({desc.size} bytes)")

    try:
        # An archive is one file read through one tarfile object: blobs out
        # of it go one at a time (the lock in _blob_reader), checks still overlap.
        jobs = max(1, min(opts.jobs, len(plain) or 1))
        with _bar(opts, sum(d.size for d in plain), f"pushing {r}") as o, \
                ThreadPoolExecutor(max_workers=jobs) as pool:
            _wait_all([pool.submit(one, d, o) for d in plain])
        for desc in manifests:
            if desc.digest != image.root.digest:
                _put_manifest(sess, desc, image.read_any(desc), desc.digest)
            elif desc.media_type in INDEX_TYPES:
                push_index(r, image.read_any(desc), opts, media_type=desc.media_type, session=sess)
            else:
                _put_manifest(sess, desc, image.read_any(desc), r.tag or "latest")
        memory.remember([d.digest for d in plain], r.name)
    finally:
        sess.transport.close()
    return result


def push_index(ref: str | Reference, index: bytes, opts: RegistryOptions, *, media_type: str = OCI_INDEX,
               session: Session | None = None) -> str:
    """PUT the image index `index` (its bytes, as they are to be stored)
    as REF: under REF's tag, or by its digest when REF names none. Every
    manifest it lists must already be in REF's repository (each is checked
    with a HEAD by digest, and a missing one is refused in one sentence
    before the index is stored), so push the platforms' manifests and their
    blobs first: push_image does that for a layout or an archive; a caller
    joining images already pushed (by digest, from other machines) only
    builds the index and calls this. Returns the index's digest (sha256 of
    the bytes, which the registry is held to). `session`: one the caller
    has open to REF's repository; else one is opened and closed here."""
    r = parse_reference(ref) if isinstance(ref, str) else ref
    digest = "sha256:" + hashlib.sha256(index).hexdigest()
    if r.digest and r.digest != digest:
        raise UsageError(f"{r} names {r.digest}, but the index to push is {digest}")
    try:
        parsed = json.loads(index)
    except (ValueError, RecursionError):
        raise UsageError("the image index to push is not JSON") from None
    children = _entries(parsed, "manifests", r) if isinstance(parsed, dict) else None
    if children is None or media_type not in INDEX_TYPES:
        raise UsageError(f"what was given to push as the index of {r} is not an image index")
    sess = session or Session(r, opts)
    try:
        if session is None:
            sess.ping(push=True)
        for child in children:
            cd = _remote_descriptor(child, r)
            head = sess.call("HEAD", f"/v2/{r.name}/manifests/{cd.digest}", push=True,
                             headers={"Accept": ACCEPT})
            if head.status == 404:
                raise RegistryError(f"the index lists {cd.digest}, which is not in {r.host}/{r.name}; "
                                    "push that image there first")
            if head.status != 200:
                raise RegistryError(f"{r.host} answered HTTP {head.status} to a manifest check: {head.error_text()}")
        _put_manifest(sess, Descriptor(media_type, digest, len(index)), index, r.tag or (r.digest or digest))
    finally:
        if session is None:
            sess.transport.close()
    return digest


def _wait_all(futures: list) -> None:
    """The first failure wins; blobs not yet started are not started."""
    try:
        for f in futures:
            f.result()
    except BaseException:
        for f in futures:
            f.cancel()
        raise


@contextlib.contextmanager
def _bar(opts: RegistryOptions, total: int, what: str):
    """opts with a progress callback: the caller's, or a bar on the terminal."""
    if opts.progress is not None:
        yield opts
        return
    with ui.download_bar(total, what) as advance:
        yield dataclasses.replace(opts, progress=advance)


def _push_blob(sess: Session, image: Image, desc: Descriptor, memory: BlobMemory, lock, opts) -> str:
    head = sess.call("HEAD", f"/v2/{sess.ref.name}/blobs/{desc.digest}", push=True)
    if head.status == 200:
        return "skipped"
    if head.status != 404:
        raise RegistryError(f"{sess.ref.host} answered HTTP {head.status} to a blob check: {head.error_text()}")
    actual = image.blob_size(desc.digest)
    if actual != desc.size:
        # Sending a Content-Length the file cannot fill would hang until the
        # registry times out; refuse before opening a session.
        raise VerifyError(f"blob {desc.digest} in {image.path} is {actual} bytes, its descriptor says {desc.size}"
                          if actual is not None else f"blob {desc.digest} is missing from {image.path}")
    location = None
    for other in memory.repositories(desc.digest):
        if other == sess.ref.name:
            continue
        q = urllib.parse.urlencode({"mount": desc.digest, "from": other})
        r = sess.call("POST", f"/v2/{sess.ref.name}/blobs/uploads/?{q}", push=True, mount_from=(other,),
                      headers={"Content-Length": "0"})
        if r.status == 201:
            return "mounted"
        if r.status == 202:
            # Not mountable (gone from there, or not allowed): the registry
            # opened an ordinary upload session instead; use it.
            location = r.header("Location")
            break
    last = ""
    for attempt in range(opts.retries + 1):
        try:
            if location is None:
                location = _start_upload(sess)
            _upload(sess, image, desc, location, lock, opts)
            return "uploaded"
        except Transient as exc:
            last = str(exc)
            location = None  # the session's state is unknown: start the blob again
            ui.detail(f"upload of {desc.digest} failed ({last}); starting it again")
            if attempt < opts.retries:
                time.sleep(opts.backoff * (2**attempt) * (0.5 + random.random()))
    raise NetworkError(f"upload of blob {desc.digest} to {sess.ref.host} kept failing: {last} "
                       f"(after {opts.retries + 1} attempts)")


def _start_upload(sess: Session) -> str:
    r = sess.call("POST", f"/v2/{sess.ref.name}/blobs/uploads/", push=True, headers={"Content-Length": "0"})
    if r.status != 202 or not r.header("Location"):
        raise RegistryError(f"{sess.ref.host} refused to start an upload (HTTP {r.status}): {r.error_text()}")
    return r.header("Location")  # type: ignore[return-value]


def _next(sess: Session, r: Response, location: str) -> str:
    return urllib.parse.urljoin(sess.url(location), r.header("Location") or location)


def _with_digest(url: str, digest: str) -> str:
    return url + ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})


def _upload(sess: Session, image: Image, desc: Descriptor, location: str, lock, opts: RegistryOptions) -> None:
    """One attempt: a monolithic PUT for small blobs, PATCH chunks for big ones.
    Failures inside raise Transient; the caller opens a new session."""
    url = sess.url(location)
    size = desc.size
    with _blob_reader(image, desc, lock) as f:
        if size <= opts.chunk_size:
            r = sess.call("PUT", _with_digest(url, desc.digest), push=True, repeat=False,
                          headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                          body=lambda: _Slice(f, 0, size, opts.progress))
            _check_put(sess, r, desc, image)
            return
        offset = 0
        while offset < size:
            n = min(opts.chunk_size, size - offset)
            r = sess.call("PATCH", url, push=True, repeat=False,
                          headers={"Content-Type": "application/octet-stream", "Content-Length": str(n),
                                   "Content-Range": f"{offset}-{offset + n - 1}"},
                          body=lambda n=n, offset=offset: _Slice(f, offset, n, opts.progress))
            if r.status != 202:
                if r.status == 416 or r.status == 404:
                    raise Transient(f"the registry lost the upload session (HTTP {r.status})")
                raise RegistryError(f"{sess.ref.host} refused a chunk of {desc.digest} (HTTP {r.status}): {r.error_text()}")
            url = _next(sess, r, url)
            offset += n
        r = sess.call("PUT", _with_digest(url, desc.digest), push=True, repeat=False,
                      headers={"Content-Length": "0"}, body=lambda: b"")
        _check_put(sess, r, desc, image)


def _check_put(sess: Session, r: Response, desc: Descriptor, image: Image) -> None:
    if r.status in (201, 204):
        return
    if "DIGEST_INVALID" in r.error_codes() or "SIZE_INVALID" in r.error_codes():
        raise VerifyError(f"blob {desc.digest} in {image.path} does not match its digest or size "
                          f"(the registry refused it: {r.error_text()})")
    if r.status == 404:
        raise Transient("the registry lost the upload session")
    raise RegistryError(f"{sess.ref.host} refused blob {desc.digest} (HTTP {r.status}): {r.error_text()}")


@contextlib.contextmanager
def _blob_reader(image: Image, desc: Descriptor, lock):
    if image.kind == "oci-layout":
        with image.open_blob(desc.digest) as f:
            yield f
    else:
        with lock, image.open_blob(desc.digest) as f:
            yield f


def _put_manifest(sess: Session, desc: Descriptor, data: bytes, reference: str) -> None:
    r = sess.call("PUT", f"/v2/{sess.ref.name}/manifests/{reference}", push=True,
                  headers={"Content-Type": desc.media_type, "Content-Length": str(len(data))},
                  body=lambda: data)
    if r.status != 201:
        raise RegistryError(f"{sess.ref.host} refused the manifest {desc.digest} (HTTP {r.status}): {r.error_text()}")
    served = r.header("Docker-Content-Digest")
    if served and served != desc.digest:
        raise RegistryError(f"{sess.ref.host} stored the manifest as {served}, not {desc.digest}")


# -- pull --------------------------------------------------------------------------


def split_dest(spec: str, default_tag: str) -> tuple[Path, str]:
    """`DIR[:TAG]` for a layout that may not exist yet: the tag is what
    follows the last colon, unless that text holds a slash (a path)."""
    if os.path.lexists(spec) or ":" not in spec:
        return Path(spec), default_tag
    path, _, tag = spec.rpartition(":")
    if "/" in tag or not path:
        return Path(spec), default_tag
    return Path(path), tag or default_tag


def pull_image(ref: str | Reference, dest: str, opts: RegistryOptions,
               platform: str | None = None) -> tuple[Path, str, str]:
    """Fetch REF into the OCI layout DEST (`DIR[:TAG]`); -> (dir, tag, digest).
    An image index comes whole, unless `platform` (linux/arm64...) picks
    one of its manifests, which is then what the tag names."""
    r = parse_reference(ref) if isinstance(ref, str) else ref
    path, tag = split_dest(dest, r.tag or "latest")
    if path.exists() and not (path / "index.json").is_file():
        if not path.is_dir() or any(path.iterdir()):
            raise OutputError(f"{path} exists and is not an OCI layout")
    sess = Session(r, opts)
    sess.ping()
    memory = BlobMemory(opts.cache_dir, r.host)
    try:
        root_desc, root_bytes = _get_manifest(sess, r.reference, r.digest)
        if platform is not None and root_desc.media_type in INDEX_TYPES:
            from rootfs.image.reader import choose_platform

            chosen = choose_platform(json.loads(root_bytes), platform, str(r))
            if chosen.media_type in INDEX_TYPES:
                raise RegistryError(f"{r} is a nested image index, which rootfs does not pull")
            check_digest(chosen.digest, str(r))
            desc, root_bytes = _get_manifest(sess, chosen.digest, chosen.digest)
            root_desc = Descriptor(desc.media_type, desc.digest, desc.size, {}, chosen.platform)
        todo: list[tuple[Descriptor, bytes | None]] = [(root_desc, root_bytes)]
        if root_desc.media_type in INDEX_TYPES:
            index = json.loads(root_bytes)
            for child in _entries(index, "manifests", r):
                cd = _remote_descriptor(child, r)
                if cd.media_type in INDEX_TYPES:
                    raise RegistryError(f"{r} is a nested image index, which rootfs does not pull")
                _, data = _get_manifest(sess, cd.digest, cd.digest)
                todo.append((cd, data))
        blobs: dict[str, Descriptor] = {}
        for desc, data in todo:
            if desc.media_type in INDEX_TYPES:
                continue
            m = json.loads(data)
            for d in [m.get("config") or {}] + _entries(m, "layers", r):
                bd = _remote_descriptor(d, r)
                blobs[bd.digest] = bd

        def write(target: Path) -> None:
            (target / "blobs").mkdir(parents=True, exist_ok=True)
            with _bar(opts, sum(b.size for b in blobs.values()), f"pulling {r}") as o, \
                    ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool:
                _wait_all([pool.submit(_fetch_blob, sess, bd, target, o.progress) for bd in blobs.values()])
            for desc, data in todo:
                _store_bytes(target, desc.digest, data)
            _write_index(target, root_desc, tag)

        if (path / "index.json").is_file():
            write(path)  # blobs land atomically one by one; index.json last
        else:
            with atomic_path(path, directory=True) as tmp:
                os.chmod(tmp, 0o755)
                write(tmp)
        memory.remember(list(blobs), r.name)
    finally:
        sess.transport.close()
    return path, tag, root_desc.digest


def _entries(obj: dict, key: str, r: Reference) -> list:
    value = obj.get(key) or []
    if not isinstance(value, list):
        raise RegistryError(f"the manifest of {r} has a {key} that is not a list")
    return value


def _remote_descriptor(d, r: Reference) -> Descriptor:
    """A descriptor from a registry's manifest: malformed is the registry's fault."""
    try:
        desc = Descriptor.from_json(d, f"the manifest of {r}")
        check_digest(desc.digest, f"the manifest of {r}")
    except UsageError as exc:
        raise RegistryError(str(exc)) from None
    return desc


def remote_manifest(ref: str | Reference, opts: RegistryOptions) -> tuple[Descriptor, dict] | None:
    """REF's manifest or index, verified and parsed; None when the registry
    says it does not exist (404). Anything else that keeps the answer away
    (authentication, a registry that stays unreachable) is an error: a
    caller that rebuilt on it would only fail again at the push."""
    r = parse_reference(ref) if isinstance(ref, str) else ref
    sess = Session(r, opts)
    try:
        sess.ping()
        got = _get_manifest(sess, r.reference, r.digest, missing_ok=True)
    finally:
        sess.transport.close()
    if got is None:
        return None
    desc, data = got
    return desc, json.loads(data)


def _get_manifest(sess: Session, reference: str, digest: str | None,
                  missing_ok: bool = False) -> tuple[Descriptor, bytes] | None:
    resp = sess.call("GET", f"/v2/{sess.ref.name}/manifests/{reference}", headers={"Accept": ACCEPT})
    if resp.status == 404:
        if missing_ok:
            return None
        raise RegistryError(f"{sess.ref} does not exist on {sess.ref.host} ({resp.error_text()})")
    if resp.status != 200:
        raise RegistryError(f"{sess.ref.host} answered HTTP {resp.status} for {sess.ref}: {resp.error_text()}")
    data = resp.body
    media = (resp.header("Content-Type") or "").split(";")[0].strip()
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        raise RegistryError(f"{sess.ref.host} served a manifest for {sess.ref} that is not JSON") from None
    if not isinstance(parsed, dict):
        raise RegistryError(f"{sess.ref.host} served a manifest for {sess.ref} that is not a JSON object")
    if media.startswith(SCHEMA1) or parsed.get("schemaVersion") == 1:
        raise RegistryError(f"{sess.ref} is an old Docker schema 1 image, which rootfs does not pull")
    if media not in MANIFEST_TYPES + INDEX_TYPES:
        media = parsed.get("mediaType") or (OCI_INDEX if "manifests" in parsed else OCI_MANIFEST)
        if not isinstance(media, str):
            raise RegistryError(f"{sess.ref.host} served a manifest for {sess.ref} whose mediaType is not a string")
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if digest and not digest.startswith("sha256:"):
        algo, hexpart = check_digest(digest, str(sess.ref))
        actual = f"{algo}:" + hashlib.new(algo, data).hexdigest()
    if digest and actual != digest:
        raise VerifyError(f"the manifest {sess.ref.host} served for {digest} has digest {actual}")
    served = resp.header("Docker-Content-Digest")
    if served and served.startswith("sha256:") and served != "sha256:" + hashlib.sha256(data).hexdigest():
        raise VerifyError(f"the manifest {sess.ref.host} served for {sess.ref} does not match its digest {served}")
    return Descriptor(media, actual, len(data)), data


def _blob_path(target: Path, digest: str) -> Path:
    algo, hexpart = check_digest(digest, str(target))
    return target / "blobs" / algo / hexpart


def _has_blob(path: Path, digest: str, size: int) -> bool:
    try:
        if path.stat().st_size != size:
            return False
    except OSError:
        return False
    algo = digest.split(":", 1)[0]
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return f"{algo}:{h.hexdigest()}" == digest


def _store_bytes(target: Path, digest: str, data: bytes) -> None:
    dest = _blob_path(target, digest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, data)


def _fetch_blob(sess: Session, desc: Descriptor, target: Path, progress) -> None:
    dest = _blob_path(target, desc.digest)
    if _has_blob(dest, desc.digest, desc.size):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    algo = desc.digest.split(":", 1)[0]
    last = ""
    for attempt in range(sess.opts.retries + 1):
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name[:16]}.", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                h = hashlib.new(algo)
                got = [0]

                def sink(chunk: bytes) -> None:
                    got[0] += len(chunk)
                    if got[0] > desc.size:
                        raise VerifyError(f"blob {desc.digest} from {sess.ref.host} is larger than its {desc.size} bytes")
                    h.update(chunk)
                    out.write(chunk)
                    if progress:
                        progress(len(chunk))

                url = f"/v2/{sess.ref.name}/blobs/{desc.digest}"
                for _hop in range(5):
                    r = sess.call("GET", url, sink=sink, repeat=False)
                    if r.status in (301, 302, 303, 307, 308) and r.header("Location"):
                        url = urllib.parse.urljoin(sess.url(url), r.header("Location"))
                        continue
                    break
                if r.status != 200:
                    raise RegistryError(f"{sess.ref.host} answered HTTP {r.status} for blob {desc.digest}: {r.error_text()}")
                if got[0] != desc.size:
                    raise Transient(f"short blob: {got[0]} of {desc.size} bytes")
                out.flush()
                os.fsync(out.fileno())
            if f"{algo}:{h.hexdigest()}" != desc.digest:
                raise VerifyError(f"blob {desc.digest} from {sess.ref.host} does not match its digest "
                                  f"(got {algo}:{h.hexdigest()})")
            os.chmod(tmp, 0o644)
            os.rename(tmp, dest)
            return
        except Transient as exc:
            last = str(exc)
            if attempt < sess.opts.retries:
                time.sleep(sess.opts.backoff * (2**attempt) * (0.5 + random.random()))
        except OSError as exc:
            raise OutputError(f"cannot write {dest}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    raise NetworkError(f"download of blob {desc.digest} from {sess.ref.host} kept failing: {last}")


def _write_index(target: Path, root: Descriptor, tag: str) -> None:
    index_path = target / "index.json"
    index: dict = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise OutputError(f"cannot read {index_path}: {exc}") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests") or [], list):
            raise OutputError(f"{index_path} is not an OCI image index")
    entries = [e for e in index.get("manifests") or [] if (e.get("annotations") or {}).get(REF_NAME) != tag]
    entry = root.to_json()
    entry["annotations"] = {REF_NAME: tag}
    entries.append(entry)
    index["manifests"] = entries
    layout = target / "oci-layout"
    if not layout.is_file():
        atomic_write_bytes(layout, b'{"imageLayoutVersion":"1.0.0"}')
    atomic_write_bytes(index_path, json.dumps(index, indent=2).encode() + b"\n")


# -- joining images into an index ----------------------------------------------------


@dataclass
class IndexResult:
    ref: Reference
    digest: str  # of the index TARGET now names
    platforms: list[str] = field(default_factory=list)  # os/architecture[/variant], in the index's order
    mounted: list[str] = field(default_factory=list)  # blobs mounted from a source repository
    copied: list[str] = field(default_factory=list)  # blobs the registry would not mount: downloaded, uploaded
    present: list[str] = field(default_factory=list)  # already in TARGET's repository


@dataclass
class _Member:
    """One image of the index to be: its manifest as the registry holds it,
    and the platform its config declares."""

    source: Reference
    desc: Descriptor
    data: bytes
    platform: dict
    blobs: list[Descriptor]


class _Blobs:
    """Blobs downloaded to a directory, read by _upload as from a layout."""

    kind = "oci-layout"

    def __init__(self, path: Path):
        self.path = path

    def open_blob(self, digest: str):
        return open(_blob_path(self.path, digest), "rb")


def platform_text(p: dict) -> str:
    return "/".join(x for x in (p.get("os", ""), p.get("architecture", ""), p.get("variant", "")) if x)


def _platform_key(p: dict) -> tuple[str, str, str]:
    # arm64 images say v8 or nothing; both mean the same machine
    variant = p.get("variant") or ""
    if p.get("architecture") == "arm64" and variant == "v8":
        variant = ""
    return p.get("os") or "", p.get("architecture") or "", variant


def put_index(target: str | Reference, sources: list[str | Reference], opts: RegistryOptions) -> IndexResult:
    """Join images already in TARGET's registry (each source a manifest or an
    index, by tag or digest, from any repository there) into one OCI image
    index tagged TARGET, as `docker buildx imagetools create` does. Each
    image's platform is read from its config and must agree with what a
    source index says of it; two images of one platform are refused. Blobs
    of other repositories are mounted into TARGET's, or copied where the
    registry will not mount them; the tag is put last."""
    t = parse_reference(target) if isinstance(target, str) else target
    if t.digest:
        raise UsageError(f"the index is put under a tag, not a digest: {t}")
    refs = [parse_reference(s) if isinstance(s, str) else s for s in sources]
    if not refs:
        raise UsageError("name at least one source image")
    for r in refs:
        if r.host != t.host:
            raise UsageError(f"source {r} is not on the registry of {t} ({t.host}); copy it there first")
    with tempfile.TemporaryDirectory(prefix="rootfs-index.") as tmp:
        work = Path(tmp)
        members: list[_Member] = []
        for r in refs:
            members += _members(r, opts, work)
        seen: dict[tuple, Reference] = {}
        for m in members:
            key = _platform_key(m.platform)
            if key in seen:
                raise UsageError(f"{seen[key]} and {m.source} are both {platform_text(m.platform)}: "
                                 "an index holds one image per platform")
            seen[key] = m.source
        return _put_members(t, members, opts, work)


def _members(r: Reference, opts: RegistryOptions, work: Path) -> list[_Member]:
    sess = Session(r, opts)
    try:
        sess.ping()
        desc, data = _get_manifest(sess, r.reference, r.digest)
        if desc.media_type in MANIFEST_TYPES:
            return [_member(sess, desc, data, None, work)]
        out = []
        for child in _entries(json.loads(data), "manifests", r):
            cd = _remote_descriptor(child, r)
            if cd.media_type in INDEX_TYPES:
                raise RegistryError(f"{r} is a nested image index, which rootfs does not join")
            if (cd.platform or {}).get("os") == "unknown":
                ui.detail(f"leaving out {cd.digest} of {r}: an attestation, not an image")
                continue
            _, cdata = _get_manifest(sess, cd.digest, cd.digest)
            out.append(_member(sess, cd, cdata, cd.platform or {}, work))
        return out
    finally:
        sess.transport.close()


def _member(sess: Session, desc: Descriptor, data: bytes, said: dict | None, work: Path) -> _Member:
    r = sess.ref
    m = json.loads(data)
    if not isinstance(m, dict) or not isinstance(m.get("config"), dict):
        raise RegistryError(f"the manifest {desc.digest} of {r} has no config")
    config = _remote_descriptor(m["config"], r)
    layers = [_remote_descriptor(d, r) for d in _entries(m, "layers", r)]
    if config.size > RESPONSE_LIMIT:
        raise RegistryError(f"the config of {desc.digest} in {r} is {config.size} bytes; a config is never that big")
    _fetch_blob(sess, config, work, None)
    try:
        doc = json.loads(_blob_path(work, config.digest).read_bytes())
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) and doc.get(k) for k in ("os", "architecture")):
        raise RegistryError(f"the config of {desc.digest} in {r} names no os and architecture")
    platform = {"architecture": doc["architecture"], "os": doc["os"]}
    for key in ("os.version", "variant"):
        if isinstance(doc.get(key), str) and doc[key]:
            platform[key] = doc[key]
    if isinstance(doc.get("os.features"), list) and doc["os.features"]:
        platform["os.features"] = doc["os.features"]
    if said is not None and _platform_key(said) != _platform_key(platform):
        raise VerifyError(f"{r} lists {desc.digest} as {platform_text(said)}, but its config says "
                          f"{platform_text(platform)}")
    return _Member(r, Descriptor(desc.media_type, desc.digest, desc.size), data, platform, [config, *layers])


def _put_members(t: Reference, members: list[_Member], opts: RegistryOptions, work: Path) -> IndexResult:
    sess = Session(t, opts)
    result = IndexResult(t, "")
    try:
        sess.ping(push=True)
        done: set[str] = set()
        for m in members:
            for blob in m.blobs:
                if blob.digest not in done:
                    done.add(blob.digest)
                    _place_blob(sess, m.source, blob, opts, work, result)
            _put_manifest(sess, m.desc, m.data, m.desc.digest)
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                 "manifests": [{**m.desc.to_json(), "platform": m.platform} for m in members]}
        data = json.dumps(index, indent=2).encode() + b"\n"
        # A target without a tag is :latest, as docker reads it.
        result.digest = push_index(t if t.tag else dataclasses.replace(t, tag="latest"), data, opts, session=sess)
        result.platforms = [platform_text(m.platform) for m in members]
    finally:
        sess.transport.close()
    return result


def _place_blob(sess: Session, source: Reference, blob: Descriptor, opts: RegistryOptions, work: Path,
                result: IndexResult) -> None:
    head = sess.call("HEAD", f"/v2/{sess.ref.name}/blobs/{blob.digest}", push=True)
    if head.status == 200:
        result.present.append(blob.digest)
        return
    if head.status != 404:
        raise RegistryError(f"{sess.ref.host} answered HTTP {head.status} to a blob check: {head.error_text()}")
    if source.name == sess.ref.name:
        raise RegistryError(f"{source} names blob {blob.digest}, which its repository does not hold")
    q = urllib.parse.urlencode({"mount": blob.digest, "from": source.name})
    r = sess.call("POST", f"/v2/{sess.ref.name}/blobs/uploads/?{q}", push=True, mount_from=(source.name,),
                  headers={"Content-Length": "0"})
    if r.status == 201:
        result.mounted.append(blob.digest)
        return
    if r.status != 202 or not r.header("Location"):
        raise RegistryError(f"{sess.ref.host} refused to mount or upload {blob.digest} (HTTP {r.status}): "
                            f"{r.error_text()}")
    # Not mountable: the registry opened an ordinary upload instead.
    location = r.header("Location")
    src = Session(source, opts)
    try:
        _fetch_blob(src, blob, work, None)
    finally:
        src.transport.close()
    blobs = _Blobs(work)
    for attempt in range(opts.retries + 1):
        try:
            _upload(sess, blobs, blob, location or _start_upload(sess), threading.Lock(), opts)  # type: ignore[arg-type]
            result.copied.append(blob.digest)
            return
        except Transient as exc:
            location = None
            if attempt == opts.retries:
                raise NetworkError(f"upload of blob {blob.digest} to {sess.ref.host} kept failing: {exc}") from None
            time.sleep(opts.backoff * (2**attempt) * (0.5 + random.random()))
