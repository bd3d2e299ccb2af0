"""Single-file images: oci-archive (a layout as one tar) and docker-archive.

Both are plain tars of a few files, written with the same header code as the
root stream: owner 0/0, fixed modes, mtime = the image's `created`, sorted
names, so they are as reproducible as their contents.

docker-archive is what `docker save` writes and `docker load`/`podman load`
read: manifest.json ([{Config, RepoTags, Layers}]), the legacy
`repositories` map, the config blob and an uncompressed layer tar (its
sha256 is then both the layer digest and the diff_id, which `docker load`
checks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rootfs.pack import compress, tarstream
from rootfs.pack.tree import DIR, FILE, Entry


def _file(name: str, mtime: int, *, data: bytes | None = None, path: Path | None = None) -> Entry:
    if data is not None:
        return Entry(name.encode(), FILE, 0o644, 0, 0, mtime, size=len(data), data=data)
    assert path is not None
    return Entry(name.encode(), FILE, 0o644, 0, 0, mtime, size=os.stat(path).st_size, path=os.fsencode(path))


def _dir(name: str, mtime: int) -> Entry:
    return Entry(name.encode(), DIR, 0o755, 0, 0, mtime)


def _write(entries: list[Entry], dest: Path | None) -> tuple[str, int]:
    """The archive at dest, or on standard output when dest is None."""
    hs = compress.HashSink(compress.FileSink(dest) if dest is not None else compress.FileSink(fd=1))
    try:
        tarstream.write_stream(sorted(entries, key=lambda e: e.name), hs.write, {0: "root"}, {0: "root"}, prefix=b"")
    finally:
        hs.close()
    return hs.digest, hs.size


def oci_archive(layout: Path, dest: Path | None, mtime: int) -> tuple[str, int]:
    entries = [_dir("blobs", mtime), _dir("blobs/sha256", mtime)]
    for blob in sorted((layout / "blobs" / "sha256").iterdir()):
        entries.append(_file(f"blobs/sha256/{blob.name}", mtime, path=blob))
    for name in ("index.json", "oci-layout"):
        entries.append(_file(name, mtime, path=layout / name))
    return _write(entries, dest)


def docker_archive(layer_tar: Path, diff_id: str, config: bytes, tag: str, dest: Path | None, mtime: int) -> tuple[str, int]:
    import hashlib

    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_hex = diff_id.split(":", 1)[1]
    layer_name = f"{layer_hex}.tar"
    name, _, t = tag.rpartition(":")
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]
    repositories = {name: {t: layer_hex}}
    enc = lambda obj: json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()  # noqa: E731
    entries = [
        _file(config_name, mtime, data=config),
        _file(layer_name, mtime, path=layer_tar),
        _file("manifest.json", mtime, data=enc(manifest)),
        _file("repositories", mtime, data=enc(repositories)),
    ]
    return _write(entries, dest)
