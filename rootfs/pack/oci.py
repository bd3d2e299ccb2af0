"""OCI image config, manifest and image layout (image-spec v1.0).

JSON is written canonically (sorted keys, no spaces) so the digests depend
only on the content. The tag goes into index.json as
org.opencontainers.image.ref.name exactly as given ("localhost/debian:12"),
as podman and buildah write it: `podman load` then names the image after it,
and `skopeo ... oci:DIR:localhost/debian:12` finds it.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from rootfs.model.arch import oci_platform
from rootfs.model.errors import UsageError
from rootfs.model.recipe import ImageConfig

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TAG = "localhost/rootfs:latest"

# The distribution reference grammar (distribution/reference), without digests.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_HOST_RE = re.compile(rf"^{_HOST}$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


def parse_tag(ref: str) -> str:
    """Validate NAME[:TAG] and return it with the tag made explicit."""
    name, tag = ref, "latest"
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        name, tag = ref[:colon], ref[colon + 1:]
    # As docker reads a reference: the first component is a registry host
    # only if it looks like one (a dot, a port, or localhost).
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host_ok, path = bool(_HOST_RE.match(first)), rest
    else:
        host_ok, path = True, name
    if len(name) > 255 or not host_ok or not _PATH.match(path) or not _TAG.match(tag):
        raise UsageError(
            f"malformed tag {ref!r}: expected NAME[:TAG] with a lowercase name such as localhost/debian:bookworm"
        )
    return f"{name}:{tag}"


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True)
class Layer:
    path: Path  # the blob as written (compressed)
    digest: str  # "sha256:..." of the blob
    size: int
    diff_id: str  # "sha256:..." of the uncompressed tar
    media_type: str


def image_config(*, arch: str, created: int, diff_id: str, image: ImageConfig, created_by: str) -> bytes:
    goarch, variant = oci_platform(arch)
    env = dict(image.env)
    env.setdefault("PATH", DEFAULT_PATH)
    config: dict = {"Env": [f"{k}={v}" for k, v in sorted(env.items(), key=lambda kv: kv[0] != "PATH")]}
    config["Cmd"] = list(image.cmd) if image.cmd else (["/bin/sh"] if not image.entrypoint else [])
    if not config["Cmd"]:
        del config["Cmd"]
    if image.entrypoint:
        config["Entrypoint"] = list(image.entrypoint)
    if image.labels:
        config["Labels"] = dict(image.labels)
    if image.workdir:
        config["WorkingDir"] = image.workdir
    if image.user:
        config["User"] = image.user
    doc = {
        "architecture": goarch,
        "os": "linux",
        "created": rfc3339(created),
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": rfc3339(created), "created_by": created_by, "comment": "rootfs: one layer holding the whole root filesystem"}],
    }
    if variant:
        doc["variant"] = variant
    return canonical(doc)


def manifest(config: bytes, layer: Layer, annotations: dict[str, str]) -> bytes:
    from hashlib import sha256

    doc: dict = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": "sha256:" + sha256(config).hexdigest(), "size": len(config)},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}],
    }
    if annotations:
        doc["annotations"] = dict(sorted(annotations.items()))
    return canonical(doc)


def _write_blob(blobs: Path, data: bytes) -> tuple[str, int]:
    from hashlib import sha256

    hexd = sha256(data).hexdigest()
    path = blobs / hexd
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    return "sha256:" + hexd, len(data)


@dataclass(frozen=True)
class LayoutImage:
    """One platform's image before it is written: its layer (a file that
    write_layout moves into the layout), config and manifest annotations."""

    layer: Layer
    config: bytes
    annotations: dict[str, str]
    platform: tuple[str, str]  # (GOARCH, variant)
    created: int = 0  # the config's `created`, for the archive's mtimes


def platform_json(platform: tuple[str, str]) -> dict:
    goarch, variant = platform
    plat = {"architecture": goarch, "os": "linux"}
    if variant:
        plat["variant"] = variant
    return plat


def write_layout(dest: Path, *, images: list[LayoutImage], tag: str, annotations: dict[str, str] | None = None) -> str:
    """Fill the (empty, temporary) directory dest with an image layout; each
    layer file is moved into it. One image: index.json names its manifest,
    with the tag. Several (one per platform): their manifests are listed,
    with their platforms, in an image index blob, and index.json names that
    index with the tag, as buildx and `podman manifest push --all` write a
    multi-platform layout; annotations are that index's own (one image
    carries its own in its manifest). Returns the digest of what the tag
    names."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    entries = []
    for img in images:
        name = img.layer.digest.split(":", 1)[1]
        os.rename(img.layer.path, blobs / name)
        os.chmod(blobs / name, 0o644)
        _write_blob(blobs, img.config)
        mdigest, msize = _write_blob(blobs, manifest(img.config, img.layer, img.annotations))
        entries.append({"mediaType": MEDIA_MANIFEST, "digest": mdigest, "size": msize,
                        "platform": platform_json(img.platform)})
    if len(entries) == 1:
        top = entries[0]
    else:
        platforms = [json.dumps(e["platform"], sort_keys=True) for e in entries]
        if len(set(platforms)) != len(platforms):
            raise UsageError("an image index holds one image per platform; two of these have the same platform")
        doc: dict = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": entries}
        if annotations:
            doc["annotations"] = dict(sorted(annotations.items()))
        idigest, isize = _write_blob(blobs, canonical(doc))
        top = {"mediaType": MEDIA_INDEX, "digest": idigest, "size": isize}
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{**top, "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }
    (dest / "index.json").write_bytes(canonical(index))
    (dest / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    for d in (dest, dest / "blobs", blobs):
        os.chmod(d, 0o755)
    return top["digest"]
