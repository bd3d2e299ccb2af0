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
import errno
import hashlib
import json
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rootfs import decompress
from rootfs.host.safepath import UnsafeName, normalise, shown
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
# The largest index, manifest and config rootfs reads (registries refuse
# manifests over 4 MiB; a config with a long history is a few hundred KiB).
# Anything bigger is refused before it is read, not after.
MANIFEST_LIMIT = 4 << 20
CONFIG_LIMIT = 8 << 20

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
        if not isinstance(digest, str) or ":" not in digest or not isinstance(size, int) or isinstance(size, bool) \
                or size < 0:
            raise UsageError(f"{where}: malformed descriptor {shown(digest)}")
        media = d.get("mediaType", "")
        annotations = d.get("annotations") or {}
        platform = d.get("platform")
        if not isinstance(media, str) or not isinstance(annotations, dict) \
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()) \
                or not (platform is None or isinstance(platform, dict)):
            raise UsageError(f"{where}: malformed descriptor {shown(digest)} (mediaType, annotations or platform)")
        return cls(media, digest, size, dict(annotations), platform)

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
        raise UsageError(f"{where}: unsupported or malformed digest {shown(digest)}")
    if len(hexpart) != (64 if algo == "sha256" else 128):
        raise UsageError(f"{where}: malformed digest {shown(digest)}")
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
    """A layout directory. Names are opened component by component without
    following any link: a blob that is a symlink (to /dev/zero, to a host
    file) is refused, never read."""

    def __init__(self, root: Path):
        self.root = root

    def _fd(self, name: str) -> int:
        comps = normalise(name, str(self.root)).strip("/").split("/")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for comp in comps[:-1]:
                nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = nfd
            leaf = os.open(comps[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(os.fstat(leaf).st_mode):
            os.close(leaf)
            raise IsADirectoryError(errno.EISDIR, "not a regular file")
        return leaf

    def open(self, name: str) -> BinaryIO:
        try:
            return os.fdopen(self._fd(name), "rb")
        except FileNotFoundError:
            raise UsageError(f"{self.root}: {name} is missing") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR):
                raise UsageError(f"{self.root}: {name} is not a regular file in the layout "
                                 "(links are not followed)") from None
            raise UsageError(f"{self.root}: cannot read {name}: {exc.strerror}") from None

    def size(self, name: str) -> int | None:
        try:
            fd = self._fd(name)
        except OSError:
            return None
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)


def _member_name(name: str) -> str:
    try:
        return normalise(name, "an archive member").lstrip("/")
    except UnsafeName:
        return ""  # a name no blob has: never looked up


class _TarStore(_Store):
    def __init__(self, path: Path):
        self.path = path
        try:
            self.tar = tarfile.open(path, "r:*")
            self.members = {}
            for m in self.tar.getmembers():
                if m.isfile():
                    # chroot semantics: "../x" is "x", never above the archive
                    self.members[_member_name(m.name)] = m
        except (OSError, tarfile.TarError, EOFError, ValueError) as exc:
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

    def read_blob(self, digest: str, size: int | None = None, limit: int = MANIFEST_LIMIT) -> bytes:
        """A whole (small) blob, checked against its digest and, when the
        descriptor gives one, its size; refused beyond `limit` bytes."""
        if size is not None and size > limit:
            raise UsageError(f"{self.path}: blob {digest} is {size} bytes, more than the {limit} rootfs reads")
        with self.open_blob(digest) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise UsageError(f"{self.path}: blob {digest} is more than the {limit} bytes rootfs reads")
        _verify(data, digest, self.path)
        if size is not None and len(data) != size:
            raise VerifyError(f"{self.path}: blob {digest} is {len(data)} bytes, its descriptor says {size}")
        return data

    @contextlib.contextmanager
    def layer_tar(self, layer: Descriptor) -> Iterator[tarfile.TarFile]:
        """The layer as a streaming tar (members in order, no seeking). Its
        bytes are hashed as they are read; once the caller has read the tar
        to its end, the rest of the blob is read too and the digest and size
        checked, so a tampered layer fails even when its tar parses."""
        with self.open_blob(layer.digest) as raw:
            checked = _Checked(raw, layer, self.path)
            with _decompressed(checked, layer.media_type) as stream:
                try:
                    with tarfile.open(fileobj=stream, mode="r|") as tar:
                        yield tar
                except (tarfile.TarError, *decompress.ERRORS) as exc:
                    raise VerifyError(f"{self.path}: layer {layer.digest} is not a readable tar ({exc})") from None
                # before the decompressor's close closes the blob too
                checked.finish()

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
            for layer in _list(m, "layers", str(self.path)):
                add(Descriptor.from_json(layer, str(self.path)))
            add(desc)

        if self.root.media_type in INDEX_TYPES:
            idx = _parse_json(self.root_bytes, f"{self.path}: index {self.root.digest}")
            for child in _list(idx, "manifests", str(self.path)):
                cd = Descriptor.from_json(child, str(self.path))
                if cd.media_type in INDEX_TYPES:
                    raise UsageError(f"{self.path}: nested image indexes are not supported")
                walk_manifest(cd, self.read_blob(cd.digest, cd.size))
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
        return self.read_blob(desc.digest, desc.size, max(MANIFEST_LIMIT, CONFIG_LIMIT))


class _Checked:
    """A raw blob stream that hashes what passes through it."""

    def __init__(self, raw: BinaryIO, desc: Descriptor, where):
        algo, self.hexpart = check_digest(desc.digest, str(where))
        self.raw, self.desc, self.where = raw, desc, where
        self.h = hashlib.new(algo)
        self.n = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.h.update(data)
        self.n += len(data)
        if self.n > self.desc.size:
            raise VerifyError(f"{self.where}: layer {self.desc.digest} is larger than its {self.desc.size} bytes")
        return data

    def close(self) -> None:
        self.raw.close()

    def finish(self) -> None:
        while self.read(CHUNK):
            pass
        if self.n != self.desc.size or self.h.hexdigest() != self.hexpart:
            raise VerifyError(f"{self.where}: layer {self.desc.digest} does not match its digest or size")


def _verify(data: bytes, digest: str, where) -> None:
    algo, hexpart = check_digest(digest, str(where))
    if hashlib.new(algo, data).hexdigest() != hexpart:
        raise VerifyError(f"{where}: blob {digest} does not match its digest")


def _list(obj: dict, key: str, where: str) -> list:
    value = obj.get(key) or []
    if not isinstance(value, list):
        raise UsageError(f"{where}: {key} is not a list")
    return value


def _parse_json(data: bytes, where: str) -> dict:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"{where} is not valid JSON ({type(exc).__name__})") from None
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


def _read_small(store: _Store, name: str, limit: int = MANIFEST_LIMIT) -> bytes:
    """index.json, a manifest or a config: refused past limit bytes."""
    size = store.size(name)
    if size is not None and size > limit:
        raise UsageError(f"{name} is {size} bytes, more than the {limit} rootfs reads of an index or manifest")
    with store.open(name) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{name} is more than the {limit} bytes rootfs reads of an index or manifest")
    return data


def _open_layout(path: Path, store: _Store, kind: str, tag: str | None, platform: str | None) -> Image:
    index = _parse_json(_read_small(store, "index.json"), f"{path}/index.json")
    entries = [Descriptor.from_json(d, f"{path}/index.json") for d in _list(index, "manifests", f"{path}/index.json")]
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
    root_bytes = _blob(store, root.digest, path, root.size)
    media = root.media_type or _parse_json(root_bytes, img_where).get("mediaType", OCI_MANIFEST)
    if not isinstance(media, str):
        raise UsageError(f"{img_where}: mediaType is not a string")
    root = Descriptor(media, root.digest, root.size, root.annotations, root.platform)
    desc, manifest_bytes = root, root_bytes
    if media in INDEX_TYPES:
        desc = choose_platform(_parse_json(root_bytes, img_where), platform, img_where)
        manifest_bytes = _blob(store, desc.digest, path, desc.size)
    if len(manifest_bytes) != desc.size:
        raise VerifyError(f"{img_where}: manifest {desc.digest} is {len(manifest_bytes)} bytes, the index says {desc.size}")
    manifest = _parse_json(manifest_bytes, f"{img_where} manifest")
    if not isinstance(manifest.get("mediaType", ""), str):
        raise UsageError(f"{img_where}: the manifest's mediaType is not a string")
    if manifest.get("mediaType") in INDEX_TYPES:
        raise UsageError(f"{img_where}: nested image indexes are not supported")
    if not desc.media_type:
        desc = Descriptor(manifest.get("mediaType") or OCI_MANIFEST, desc.digest, desc.size, desc.annotations, desc.platform)
    return _finish(path, kind, tag, root, root_bytes, desc, manifest_bytes, manifest, store, names)


def _blob(store: _Store, digest: str, where: Path, size: int | None = None) -> bytes:
    algo, hexpart = check_digest(digest, str(where))
    if size is not None and size > MANIFEST_LIMIT:
        raise UsageError(f"{where}: manifest {digest} is {size} bytes, more than the {MANIFEST_LIMIT} rootfs reads")
    data = _read_small(store, f"blobs/{algo}/{hexpart}")
    _verify(data, digest, where)
    if size is not None and len(data) != size:
        raise VerifyError(f"{where}: blob {digest} is {len(data)} bytes, its descriptor says {size}")
    return data


def _finish(path, kind, tag, root, root_bytes, desc, manifest_bytes, manifest, store, names) -> Image:
    where = f"{path}" + (f":{tag}" if tag else "")
    cfg = Descriptor.from_json(manifest.get("config") or {}, f"{where} manifest")
    layers = [Descriptor.from_json(d, f"{where} manifest") for d in _list(manifest, "layers", f"{where} manifest")]
    notes = manifest.get("annotations") or {}
    if not isinstance(notes, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in notes.items()):
        raise UsageError(f"{where}: the manifest's annotations are not a map of strings")
    img = Image(path, kind, tag, root, root_bytes, desc, manifest_bytes, manifest, cfg, b"", {}, layers, store, names)
    img.config_bytes = img.read_blob(cfg.digest, cfg.size, CONFIG_LIMIT)
    img.config = _parse_json(img.config_bytes, f"{where} config")
    check_config(img.config, f"{where} config")
    return img


# The types the OCI image spec gives the config fields rootfs reads; a
# config that says otherwise is refused here, once, so that no reader of it
# meets a number where a string belongs.
_STR, _STRS, _MAP = "a string", "a list of strings", "a map of strings"
_CONFIG_FIELDS = {"created": _STR, "author": _STR, "architecture": _STR, "variant": _STR, "os": _STR}
_RUN_FIELDS = {"User": _STR, "Env": _STRS, "Entrypoint": _STRS, "Cmd": _STRS, "WorkingDir": _STR,
               "Labels": _MAP, "ExposedPorts": "a map", "Volumes": "a map", "StopSignal": _STR}
_HISTORY_FIELDS = {"created": _STR, "created_by": _STR, "comment": _STR, "author": _STR}


def _is(value, kind: str) -> bool:
    if value is None:
        return True
    if kind == _STR:
        return isinstance(value, str)
    if kind == _STRS:
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    if kind == _MAP:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return isinstance(value, dict)


def check_config(cfg: dict, where: str) -> None:
    def need(obj: dict, fields: dict[str, str], prefix: str) -> None:
        for key, kind in fields.items():
            if not _is(obj.get(key), kind):
                raise UsageError(f"{where}: {prefix}{key} is not {kind}")

    need(cfg, _CONFIG_FIELDS, "")
    run = cfg.get("config")
    if run is not None:
        if not isinstance(run, dict):
            raise UsageError(f"{where}: config is not an object")
        need(run, _RUN_FIELDS, "config.")
    rootfs = cfg.get("rootfs")
    if rootfs is not None:
        if not isinstance(rootfs, dict) or not _is(rootfs.get("diff_ids"), _STRS):
            raise UsageError(f"{where}: rootfs.diff_ids is not {_STRS}")
    history = cfg.get("history")
    if history is not None:
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise UsageError(f"{where}: history is not a list of objects")
        for h in history:
            need(h, _HISTORY_FIELDS, "history[].")
            if not isinstance(h.get("empty_layer", False), bool):
                raise UsageError(f"{where}: history[].empty_layer is not a boolean")


def _tag_list(entries: list[Descriptor]) -> str:
    tags = [d.annotations[REF_NAME] for d in entries if REF_NAME in d.annotations]
    return ", ".join(tags) if tags else "none"


def choose_platform(index: dict, platform: str | None, where: str) -> Descriptor:
    children = [Descriptor.from_json(d, where) for d in _list(index, "manifests", where)]
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
        # arm64 images are v8 whether or not their platform says so
        have_variant = p.get("variant") or ("v8" if p.get("architecture") == "arm64" else "")
        if p.get("os") == os_ and p.get("architecture") == arch and (not variant or have_variant == variant):
            return c
    if platform is None:
        return children[0]  # nothing for this host: the index's first, which inspect shows by its platform
    have = ", ".join("/".join(str(x) for x in ((c.platform or {}).get("os"), (c.platform or {}).get("architecture"),
                                               (c.platform or {}).get("variant")) if x) for c in children)
    raise UsageError(f"{where} has no image for {want} (it has: {have})")


def _open_docker_archive(path: Path, store: _TarStore, tag: str | None) -> Image:
    try:
        entries = json.loads(_read_small(store, "manifest.json"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UsageError(f"{path}: manifest.json is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise UsageError(f"{path}: manifest.json lists no images")

    def tags_of(e: dict) -> list[str]:
        tags = e.get("RepoTags") or []
        return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []

    if tag is not None:
        found = [e for e in entries if tag in tags_of(e) or any(t.rsplit(":", 1)[-1] == tag for t in tags_of(e))]
        if not found:
            raise UsageError(f"{path} has no tag {shown(tag)}")
        entry = found[0]
    elif len(entries) == 1:
        entry = entries[0]
    else:
        raise UsageError(f"{path} holds {len(entries)} images; name one as {path}:TAG")
    names: dict[str, str] = {}

    def describe(name: str, media: str) -> tuple[Descriptor, bool]:
        """The blob's descriptor, and whether it is compressed."""
        if not isinstance(name, str):
            raise TypeError(name)
        name = _member_name(name)
        size = store.size(name)
        if size is None:
            raise UsageError(f"{path}: {shown(name)} is missing from the archive")
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
        return Descriptor(media, digest, size), head[:2] == b"\x1f\x8b" or head == b"\x28\xb5\x2f\xfd"

    try:
        config_name = entry["Config"]
        cfg, _ = describe(config_name, DOCKER_CONFIG)
        if not isinstance(entry["Layers"], list):
            raise TypeError("Layers")
        described = [describe(name, DOCKER_LAYER) for name in entry["Layers"]]
    except (KeyError, TypeError):
        raise UsageError(f"{path}: manifest.json entry lacks Config or Layers") from None
    # `docker save` names the config by its digest and the config lists each
    # (uncompressed) layer's digest: both are checked, not trusted.
    stem = config_name.rsplit("/", 1)[-1].removesuffix(".json")
    if len(stem) == 64 and all(c in "0123456789abcdef" for c in stem) and cfg.hex != stem:
        raise VerifyError(f"{path}: {shown(config_name)} does not match the digest its name gives")
    if cfg.size > CONFIG_LIMIT:
        raise UsageError(f"{path}: the config is {cfg.size} bytes, more than the {CONFIG_LIMIT} rootfs reads")
    layers = [d for d, _ in described]
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": cfg.to_json(),
        "layers": [d.to_json() for d in layers],
    }
    manifest_bytes = json.dumps(manifest, indent=3).encode()
    desc = Descriptor(DOCKER_MANIFEST, sha256_digest(manifest_bytes), len(manifest_bytes))
    img = _finish(path, DOCKER_ARCHIVE, tag, desc, manifest_bytes, desc, manifest_bytes, manifest, store, names)
    rootfs = img.config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if isinstance(diff_ids, list) and len(diff_ids) == len(described):
        for (d, compressed), diff_id in zip(described, diff_ids):
            if not compressed and d.digest != diff_id:
                raise VerifyError(f"{path}: layer {shown(names[d.digest])} does not match the digest "
                                  f"{shown(diff_id)} its config gives")
    return img
