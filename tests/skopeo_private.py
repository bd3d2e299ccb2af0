"""Running skopeo in tests without touching the host's container state."""

from __future__ import annotations

import subprocess
from pathlib import Path


def skopeo_copy(tmp_path: Path, src: str, dest: str) -> None:
    """skopeo as containers.md runs it as root: in a private mount namespace
    with its own /run, /var/tmp and /var/lib, so no host state changes."""
    w = tmp_path / "skopeo"
    for d in ("vartmp", "varlib", "tmp"):
        (w / d).mkdir(parents=True, exist_ok=True)
    script = 'mount -t tmpfs tmpfs /run && mount --bind "$1" /var/tmp && mount --bind "$2" /var/lib && shift 2 && exec "$@"'
    subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                    str(w / "vartmp"), str(w / "varlib"), "skopeo", "--tmpdir", str(w / "tmp"), "copy", src, dest],
                   check=True, capture_output=True)
