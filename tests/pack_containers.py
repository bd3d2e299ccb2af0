"""podman and skopeo in a throw-away environment (see /work/shared/containers.md).

Every call runs in a private mount namespace with a tmpfs over /run and
private directories over /var/tmp and /var/lib, with storage, runroot,
configuration and cgroup parent all under one temporary directory, so a test
leaves nothing behind on the host: runc (crun refuses hybrid cgroups here),
cgroupfs, the overlay driver (a run does not copy the image, unlike vfs),
file locks and events, explicit nofile/nproc ulimits (root lacks
CAP_SYS_RESOURCE here), no network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

_WRAP = ('mount -t tmpfs tmpfs /run && mount --bind "$1" /var/tmp && mount --bind "$2" /var/lib '
         '&& shift 2 && exec "$@"')


class Containers:
    def __init__(self, work: Path):
        self.w = work
        for d in ("root", "runroot", "tmp", "net", "vartmp", "varlib", "volumes"):
            (work / d).mkdir(parents=True, exist_ok=True)
        self.cgroup = f"rootfs-pack-test-{os.getpid()}-{work.name}"
        (work / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{work}/root"\nrunroot = "{work}/runroot"\n')
        (work / "containers.conf").write_text(f"""[containers]
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
lock_type = "file"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{work}/events.log"
runtime = "runc"
tmp_dir = "{work}/tmp"
image_copy_tmp_dir = "{work}/tmp"
volume_path = "{work}/volumes"
[network]
network_config_dir = "{work}/net"
""")
        self.env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(work / "storage.conf"),
                    "CONTAINERS_CONF": str(work / "containers.conf"), "TMPDIR": str(work / "tmp")}

    def _run(self, argv: list[str], check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
        full = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _WRAP, "sh",
                str(self.w / "vartmp"), str(self.w / "varlib"), *argv]
        r = subprocess.run(full, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr[-2000:]}")
        return r

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self._run(["podman", *args], check)

    def skopeo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self._run(["skopeo", "--tmpdir", str(self.w / "tmp"), *args], check)

    def run(self, image: str, *cmd: str) -> str:
        r = self.podman("run", "--rm", "--network=none", "--cgroup-parent", "/" + self.cgroup, image, *cmd)
        return r.stdout

    def close(self) -> None:
        # podman leaves its cgroup parent behind, and conmon leaves its child
        # a moment after the container is gone: remove ours, retrying briefly.
        for _ in range(50):
            left = remove_cgroups(self.cgroup)
            if not left:
                break
            time.sleep(0.1)
        shutil.rmtree(self.w, ignore_errors=True)


def remove_cgroups(name: str) -> int:
    """rmdir /sys/fs/cgroup/*/NAME and its children, deepest first; returns
    how many directories remain."""
    left = 0
    for ctrl in Path("/sys/fs/cgroup").iterdir():
        base = ctrl / name
        if ctrl.is_symlink() or not base.is_dir():
            continue
        for d in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [base]:
            try:
                d.rmdir()
            except OSError:
                left += 1
    return left


def available() -> str | None:
    """Why the container tools cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("podman", "skopeo", "runc", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None
