"""Which repositories of a registry hold a blob, remembered across runs so
that a push can ask for a cross-repository mount instead of uploading.

A small JSON file in the cache directory, one map per registry host:
digest -> repository names. It is only a hint: a mount the registry refuses
turns into an ordinary upload, so a stale or lost file costs bandwidth,
never correctness. Concurrent runs may drop each other's entries; same cost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rootfs.host.atomic import atomic_write_text
from rootfs.model.errors import OutputError

KEEP = 20000  # digests per host; the oldest are forgotten first
REPOS_PER_BLOB = 8


class BlobMemory:
    def __init__(self, cache_dir: Path | None, host: str):
        self.path = Path(cache_dir) / "registry-blobs.json" if cache_dir else None
        self.host = host

    def _load(self) -> dict:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def repositories(self, digest: str) -> list[str]:
        repos = self._load().get(self.host, {}).get(digest, [])
        return [r for r in repos if isinstance(r, str)]

    def remember(self, digests: list[str], repository: str) -> None:
        if self.path is None or not digests:
            return
        data = self._load()
        host = data.get(self.host)
        if not isinstance(host, dict):
            host = {}
        for d in digests:
            repos = [r for r in host.pop(d, []) if r != repository]
            host[d] = ([repository] + repos)[:REPOS_PER_BLOB]  # re-inserted: newest last
        while len(host) > KEEP:
            host.pop(next(iter(host)))
        data[self.host] = host
        try:
            os.makedirs(self.path.parent, exist_ok=True)
            atomic_write_text(self.path, json.dumps(data, sort_keys=False))
        except OutputError:
            pass  # only a hint; a read-only cache must not fail a push
