"""Reading OCI images from disk: an OCI layout directory (`DIR[:TAG]`), an
oci-archive (the same layout in a tar) or a docker-archive (`docker save`).

All three become one `Image`: the manifest (bytes and parsed), the config,
the layer descriptors, and a way to open any blob. A docker-archive that is
not also an OCI layout has no manifest on disk; one is synthesised in the
Docker v2 schema 2 shape from its manifest.json, with layer digests computed
from the layer files, so the rest of rootfs never has to care which kind it
was handed.

Nothing is unpacked to disk: blobs are read from the directory or straight
out of the tar, and layers are streamed through a decompressor.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rootfs import decompress
from rootfs.model.arch import host_platform
from rootfs.model.errors import UsageError, VerifyError

OCI_LAYOUT = "oci-layout"
OCI_ARCHIVE = "oci-archive"
DOCKER_ARCHIVE = "docker-archive"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
REF_NAME = "org.opencontainers.image.ref.name"

CHUNK = 1 << 20

@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and size."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False)
    platform: dict | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, d: dict, where: str) -> Descriptor:
        try:
            digest, size = d["digest"], d["size"]
        except (KeyError, TypeError):
            raise UsageError(f"{where}: a descriptor lacks its digest or size") from None
        if not isinstance(digest, str) or ":" not in digest or not isinstance(size, int) or size < 0:
            raise UsageError(f"{where}: malformed descriptor {digest!r}")
        return cls(d.get("mediaType", ""), digest, size, dict(d.get("annotations") or {}), d.get("platform"))

    def to_json(self) -> dict:
        d: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform:
            d["platform"] = dict(self.platform)
        return d

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str, where: str) -> tuple[str, str]:
    """Split a digest and refuse algorithms and encodings we cannot check
    (a hex string is also what keeps blob names inside blobs/)."""
    algo, _, hexpart = digest.partition(":")
    if algo not in ("sha256", "sha512") or not hexpart or any(c not in "0123456789abcdef" for c in hexpart):
        raise UsageError(f"{where}: unsupported or malformed digest {digest!r}")
    if len(hexpart) != (64 if algo == "sha256" else 128):
        raise UsageError(f"{where}: malformed digest {digest!r}")
    return algo, hexpart


# -- blob stores ---------------------------------------------------------------


class _Store:
    """Blobs by name inside a layout (a directory or a tar)."""

    def open(self, name: str) -> BinaryIO:  # pragma: no cover - interface
        raise NotImplementedError

    def size(self, name: str) -> int | None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class _DirStore(_Store):
    def __init__(self, root: Path):
        self.root = root

    def open(self, name: str) -> BinaryIO:
        try:
            return open(self.root / name, "rb")
        except FileNotFoundError:
            raise UsageError(f"{self.root}: {name} is missing") from None
        except OSError as exc:
            raise UsageError(f"{self.root}: cannot read {name}: {exc.strerror}") from None

    def size(self, name: str) -> int | None:
        try:
            return (self.root / name).stat().st_size
        except OSError:
            return None


class _TarStore(_Store):
    def __init__(self, path: Path):
        self.path = path
        try:
            self.tar = tarfile.open(path, "r:*")
            self.members = {}
            for m in self.tar.getmembers():
                if m.isfile():
                    self.members[os.path.normpath(m.name).lstrip("/")] = m
        except (OSError, tarfile.TarError) as exc:
            raise UsageError(f"{path} is not a readable tar archive ({exc})") from None

    def open(self, name: str) -> BinaryIO:
        m = self.members.get(name)
        if m is None:
            raise UsageError(f"{self.path}: {name} is missing from the archive")
        f = self.tar.extractfile(m)
        assert f is not None
        return f  # type: ignore[return-value]

    def size(self, name: str) -> int | None:
        m = self.members.get(name)
        return m.size if m is not None else None

    def close(self) -> None:
        self.tar.close()


# -- the image -----------------------------------------------------------------


@dataclass
class Image:
    """One image, opened: use as a context manager, or call close()."""

    path: Path
    kind: str  # OCI_LAYOUT, OCI_ARCHIVE or DOCKER_ARCHIVE
    tag: str | None
    root: Descriptor  # what the tag names: a manifest, or an index
    root_bytes: bytes
    descriptor: Descriptor  # the manifest chosen for this platform
    manifest_bytes: bytes
    manifest: dict
    config_descriptor: Descriptor
    config_bytes: bytes
    config: dict
    layers: list[Descriptor]
    _store: _Store
    _names: dict[str, str] = field(default_factory=dict)  # digest -> name in the store

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._store.close()

    @property
    def annotations(self) -> dict[str, str]:
        """The manifest's annotations over those on its index entry."""
        merged = dict(self.root.annotations)
        merged.update(self.descriptor.annotations)
        merged.update(self.manifest.get("annotations") or {})
        return merged

    def _name(self, digest: str) -> str:
        name = self._names.get(digest)
        if name is None:
            algo, hexpart = check_digest(digest, str(self.path))
            name = f"blobs/{algo}/{hexpart}"
        return name

    def blob_size(self, digest: str) -> int | None:
        return self._store.size(self._name(digest))

    def open_blob(self, digest: str) -> BinaryIO:
        """The raw blob; its digest is the caller's to check while reading."""
        return self._store.open(self._name(digest))

    def read_blob(self, digest: str) -> bytes:
        """A whole (small) blob, checked against its digest."""
        with self.open_blob(digest) as f:
            data = f.read()
        _verify(data, digest, self.path)
        return data

    @contextlib.contextmanager
    def layer_tar(self, layer: Descriptor) -> Iterator[tarfile.TarFile]:
        """The layer as a streaming tar (members in order, no seeking)."""
        with self.open_blob(layer.digest) as raw:
            with _decompressed(raw, layer.media_type) as stream:
                try:
                    with tarfile.open(fileobj=stream, mode="r|") as tar:
                        yield tar
                except (tarfile.TarError, OSError, EOFError) as exc:
                    raise VerifyError(f"{self.path}: layer {layer.digest} is not a readable tar ({exc})") from None

    def blobs(self) -> list[Descriptor]:
        """Every blob the image references, children before parents, the
        root descriptor last (the order a registry push needs)."""
        out: list[Descriptor] = []
        seen: set[str] = set()

        def add(d: Descriptor) -> None:
            if d.digest not in seen:
                seen.add(d.digest)
                out.append(d)

        def walk_manifest(desc: Descriptor, data: bytes) -> None:
            m = _parse_json(data, f"{self.path}: manifest {desc.digest}")
            add(Descriptor.from_json(m.get("config") or {}, str(self.path)))
            for layer in m.get("layers") or []:
                add(Descriptor.from_json(layer, str(self.path)))
            add(desc)

        if self.root.media_type in INDEX_TYPES:
            idx = _parse_json(self.root_bytes, f"{self.path}: index {self.root.digest}")
            for child in idx.get("manifests") or []:
                cd = Descriptor.from_json(child, str(self.path))
                if cd.media_type in INDEX_TYPES:
                    raise UsageError(f"{self.path}: nested image indexes are not supported")
                walk_manifest(cd, self.read_blob(cd.digest))
            add(self.root)
        else:
            walk_manifest(self.root, self.root_bytes)
        return out

    def read_any(self, desc: Descriptor) -> bytes:
        """A blob's bytes, including the synthesised docker-archive manifest."""
        if desc.digest == self.root.digest:
            return self.root_bytes
        if desc.digest == self.descriptor.digest:
            return self.manifest_bytes
        return self.read_blob(desc.digest)


def _verify(data: bytes, digest: str, where) -> None:
    algo, hexpart = check_digest(digest, str(where))
    if hashlib.new(algo, data).hexdigest() != hexpart:
        raise VerifyError(f"{where}: blob {digest} does not match its digest")


def _parse_json(data: bytes, where: str) -> dict:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{where} is not a JSON object")
    return value


class _PeekReader:
    """A reader that gives back the bytes sniffed off its front."""

    def __init__(self, raw: BinaryIO, head: bytes):
        self.raw, self.head = raw, head

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                data, self.head = self.head + self.raw.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.raw.read(n - len(data))
            return data
        return self.raw.read(n)

    def close(self) -> None:
        self.raw.close()


@contextlib.contextmanager
def _decompressed(raw: BinaryIO, media_type: str) -> Iterator:
    # Sniff rather than trust the media type: docker-archives say nothing,
    # and some tools label gzip layers as plain tar.
    head = raw.read(6)
    with contextlib.closing(decompress.reader(_PeekReader(raw, head), decompress.sniff(head))) as stream:  # type: ignore[arg-type]
        yield stream


# -- opening -------------------------------------------------------------------


def split_image_spec(spec: str) -> tuple[Path, str | None]:
    """`DIR[:TAG]` or `ARCHIVE[:TAG]` -> (path, tag).

    The path is the longest existing prefix before a colon, so paths with
    colons work, and so do tags with colons (podman writes ref names like
    `localhost/test:1`)."""
    if not spec:
        raise UsageError("name an image: an OCI layout DIR[:TAG], an oci-archive or a docker-archive")
    if os.path.lexists(spec):
        return Path(spec), None
    pos = -1
    while (pos := spec.find(":", pos + 1)) != -1:
        if pos and os.path.lexists(spec[:pos]):
            return Path(spec[:pos]), spec[pos + 1:] or None
    raise UsageError(f"image {spec} does not exist (expected an OCI layout DIR[:TAG], an oci-archive or a docker-archive)")


def open_image(spec: str | Path, *, platform: str | None = None) -> Image:
    """Open IMAGE (`DIR[:TAG]`, an oci-archive or a docker-archive)."""
    path, tag = split_image_spec(str(spec))
    if path.is_dir():
        if not (path / "index.json").is_file():
            raise UsageError(f"{path} is not an OCI layout (it has no index.json)")
        return _open_layout(path, _DirStore(path), OCI_LAYOUT, tag, platform)
    store = _TarStore(path)
    try:
        if "index.json" in store.members:
            return _open_layout(path, store, OCI_ARCHIVE, tag, platform)
        if "manifest.json" in store.members:
            return _open_docker_archive(path, store, tag)
        raise UsageError(f"{path} is neither an oci-archive nor a docker-archive (no index.json or manifest.json)")
    except BaseException:
        store.close()
        raise


def _read_small(store: _Store, name: str) -> bytes:
    # Indexes, manifests and configs are small; a 64 MiB cap keeps a
    # hostile one from exhausting memory (it then fails its digest check).
    with store.open(name) as f:
        return f.read(64 << 20)


def _open_layout(path: Path, store: _Store, kind: str, tag: str | None, platform: str | None) -> Image:
    index = _parse_json(_read_small(store, "index.json"), f"{path}/index.json")
    entries = [Descriptor.from_json(d, f"{path}/index.json") for d in index.get("manifests") or []]
    if not entries:
        raise UsageError(f"{path} holds no image (index.json lists no manifests)")
    if tag is not None:
        found = [d for d in entries if d.annotations.get(REF_NAME) == tag]
        if not found:
            raise UsageError(f"{path} has no tag {tag!r} (tags: {_tag_list(entries)})")
        root = found[0]
    elif len(entries) == 1:
        root = entries[0]
    else:
        raise UsageError(f"{path} holds {len(entries)} images; name one as {path}:TAG (tags: {_tag_list(entries)})")
    names: dict[str, str] = {}
    img_where = f"{path}" + (f":{tag}" if tag else "")
    root_bytes = _blob(store, root.digest, path)
    media = root.media_type or _parse_json(root_bytes, img_where).get("mediaType", OCI_MANIFEST)
    root = Descriptor(media, root.digest, root.size, root.annotations, root.platform)
    desc, manifest_bytes = root, root_bytes
    if media in INDEX_TYPES:
        desc = _choose_platform(_parse_json(root_bytes, img_where), platform, img_where)
        manifest_bytes = _blob(store, desc.digest, path)
    if len(manifest_bytes) != desc.size:
        raise VerifyError(f"{img_where}: manifest {desc.digest} is {len(manifest_bytes)} bytes, the index says {desc.size}")
    manifest = _parse_json(manifest_bytes, f"{img_where} manifest")
    if manifest.get("mediaType") in INDEX_TYPES:
        raise UsageError(f"{img_where}: nested image indexes are not supported")
    if not desc.media_type:
        desc = Descriptor(manifest.get("mediaType") or OCI_MANIFEST, desc.digest, desc.size, desc.annotations, desc.platform)
    return _finish(path, kind, tag, root, root_bytes, desc, manifest_bytes, manifest, store, names)


def _blob(store: _Store, digest: str, where: Path) -> bytes:
    algo, hexpart = check_digest(digest, str(where))
    data = _read_small(store, f"blobs/{algo}/{hexpart}")
    _verify(data, digest, where)
    return data


def _finish(path, kind, tag, root, root_bytes, desc, manifest_bytes, manifest, store, names) -> Image:
    where = f"{path}" + (f":{tag}" if tag else "")
    cfg = Descriptor.from_json(manifest.get("config") or {}, f"{where} manifest")
    layers = [Descriptor.from_json(d, f"{where} manifest") for d in manifest.get("layers") or []]
    img = Image(path, kind, tag, root, root_bytes, desc, manifest_bytes, manifest, cfg, b"", {}, layers, store, names)
    img.config_bytes = img.read_blob(cfg.digest)
    img.config = _parse_json(img.config_bytes, f"{where} config")
    return img


def _tag_list(entries: list[Descriptor]) -> str:
    tags = [d.annotations[REF_NAME] for d in entries if REF_NAME in d.annotations]
    return ", ".join(tags) if tags else "none"


def _choose_platform(index: dict, platform: str | None, where: str) -> Descriptor:
    children = [Descriptor.from_json(d, where) for d in index.get("manifests") or []]
    children = [c for c in children if c.media_type not in INDEX_TYPES]
    if not children:
        raise UsageError(f"{where}: the image index lists no manifests")
    if len(children) == 1 and platform is None:
        return children[0]
    want = platform or host_platform()
    os_, _, rest = want.partition("/")
    arch, _, variant = rest.partition("/")
    for c in children:
        p = c.platform or {}
        if p.get("os") == os_ and p.get("architecture") == arch and (not variant or p.get("variant") == variant):
            return c
    if platform is None:
        return children[0]  # nothing for this host: the index's first, which inspect shows by its platform
    have = ", ".join(f"{(c.platform or {}).get('os')}/{(c.platform or {}).get('architecture')}" for c in children)
    raise UsageError(f"{where} has no image for {want} (it has: {have})")


def _open_docker_archive(path: Path, store: _TarStore, tag: str | None) -> Image:
    try:
        entries = json.loads(_read_small(store, "manifest.json"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: manifest.json is not valid JSON ({exc})") from None
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{path}: manifest.json lists no images")
    if tag is not None:
        found = [e for e in entries if tag in (e.get("RepoTags") or []) or
                 any(t.rsplit(":", 1)[-1] == tag for t in e.get("RepoTags") or [])]
        if not found:
            raise UsageError(f"{path} has no tag {tag!r}")
        entry = found[0]
    elif len(entries) == 1:
        entry = entries[0]
    else:
        raise UsageError(f"{path} holds {len(entries)} images; name one as {path}:TAG")
    names: dict[str, str] = {}

    def describe(name: str, media: str) -> Descriptor:
        name = os.path.normpath(name).lstrip("/")
        size = store.size(name)
        if size is None:
            raise UsageError(f"{path}: {name} is missing from the archive")
        h = hashlib.sha256()
        with store.open(name) as f:
            head = f.read(4)
            h.update(head)
            while chunk := f.read(CHUNK):
                h.update(chunk)
        if media == DOCKER_LAYER and head[:2] == b"\x1f\x8b":
            media = DOCKER_LAYER_GZIP
        digest = "sha256:" + h.hexdigest()
        names[digest] = name
        return Descriptor(media, digest, size)

    try:
        cfg = describe(entry["Config"], DOCKER_CONFIG)
        layers = [describe(name, DOCKER_LAYER) for name in entry["Layers"]]
    except (KeyError, TypeError):
        raise UsageError(f"{path}: manifest.json entry lacks Config or Layers") from None
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": cfg.to_json(),
        "layers": [d.to_json() for d in layers],
    }
    manifest_bytes = json.dumps(manifest, indent=3).encode()
    desc = Descriptor(DOCKER_MANIFEST, sha256_digest(manifest_bytes), len(manifest_bytes))
    return _finish(path, DOCKER_ARCHIVE, tag, desc, manifest_bytes, desc, manifest_bytes, manifest, store, names)
