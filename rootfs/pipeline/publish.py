"""Putting a finished build where the user asked, atomically.

A build is assembled in a staging directory beside the output and only then
renamed into place, so readers (cron, `docker import`, a web server) see the
previous build or the new one, never a mixture.

Layouts:
- one artifact, no --keep: OUT is the artifact; the lock, report and SBOM sit
  beside it as OUT.lock.json, OUT.build.json, OUT.spdx.json.
- several artifacts, no --keep: OUT is a directory holding them, with
  lock.json, build.json and sbom.spdx.json.
- --keep N: OUT is a directory of builds, OUT/<UTC time>-<digest>/ each laid
  out as above, OUT/latest a symlink to the newest good one; the N builds
  before it are kept, older ones removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rootfs.host.atomic import _fsync_dir, _output_error, default_dir_mode, replace_dir

LATEST = "latest"
META_FILES = ("lock.json", "sbom.spdx.json", "build.json")  # build.json last: it marks a complete build


@dataclass(frozen=True)
class OutputPlan:
    out: Path
    names: tuple[str, ...]  # artifact names inside the staging dir, one per format
    keep: int = 0

    @property
    def directory(self) -> bool:
        return self.keep > 0 or len(self.names) != 1

    def report_path(self) -> Path:
        if self.keep:
            return self.out / LATEST / "build.json"
        if self.directory:
            return self.out / "build.json"
        return self.out.parent / f"{self.out.name}.build.json"

    def artifact_path(self, name: str) -> Path:
        """Where artifact `name` of the newest build is once published."""
        if self.keep:
            return self.out / LATEST / name
        if self.directory:
            return self.out / name
        return self.out

    def meta_path(self, meta: str) -> Path:
        if self.keep:
            return self.out / LATEST / meta
        if self.directory:
            return self.out / meta
        return self.out.parent / f"{self.out.name}.{meta.replace('sbom.', '')}"


def staging_dir(plan: OutputPlan) -> Path:
    parent = plan.out if plan.keep else plan.out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{plan.out.name}.", suffix=".staging", dir=parent))
        os.chmod(staging, default_dir_mode())  # it becomes the output directory
        return staging
    except OSError as exc:
        raise _output_error(plan.out, exc) from None


def publish(plan: OutputPlan, staging: Path, build_id: str) -> Path:
    """Move a complete staging dir into place; return the build's directory
    (or the artifact for a single-artifact build)."""
    try:
        if plan.keep:
            final = plan.out / build_id
            os.rename(staging, final)
            link_tmp = plan.out / f".{LATEST}.{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                link_tmp.unlink()
            os.symlink(build_id, link_tmp)
            os.rename(link_tmp, plan.out / LATEST)
            _fsync_dir(plan.out)
            prune_builds(plan.out, plan.keep, current=build_id)
            return final
        if plan.directory:
            replace_dir(staging, plan.out)
            _fsync_dir(plan.out.parent)
            return plan.out
        name = plan.names[0]
        src = staging / name
        if src.is_dir() and not src.is_symlink():
            replace_dir(src, plan.out)
        else:
            os.rename(src, plan.out)
        attrs = staging / f"{name}.attrs.json"  # a rootless dir's owners (rootfs.model.attrs)
        old_attrs = plan.out.parent / f"{plan.out.name}.attrs.json"
        if attrs.exists():
            os.rename(attrs, old_attrs)
        else:
            # A root-mode tree must not inherit the owners of an earlier rootless one.
            with contextlib.suppress(FileNotFoundError):
                old_attrs.unlink()
        # One SBOM per platform of a multi-platform image: OUT.ARCH.spdx.json.
        platform_sboms = sorted(p.name for p in staging.glob("sbom.*.spdx.json"))
        for meta in platform_sboms + list(META_FILES):
            if (staging / meta).exists():
                os.rename(staging / meta, plan.meta_path(meta))
        _fsync_dir(plan.out.parent)
        shutil.rmtree(staging, ignore_errors=True)
        return plan.out
    except OSError as exc:
        raise _output_error(plan.out, exc) from None


def build_id(digest: str) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + digest[:12]


def list_builds(out: Path) -> list[str]:
    """Build directories under a --keep output, oldest first."""
    try:
        names = [p.name for p in out.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]
    except FileNotFoundError:
        return []
    return sorted(n for n in names if (out / n / "build.json").exists())


def prune_builds(out: Path, keep: int, current: str) -> list[str]:
    """Keep `current` and the `keep` builds before it; remove the rest and any
    staging leftovers of killed runs."""
    builds = [b for b in list_builds(out) if b != current]
    doomed = builds[: max(0, len(builds) - keep)]
    for name in doomed:
        shutil.rmtree(out / name, ignore_errors=True)
    return doomed


def clean_stale_staging(parent: Path, name: str) -> None:
    """Remove staging and work directories that a killed run left behind.
    Only called while holding the output lock, so none of them is live."""
    with contextlib.suppress(FileNotFoundError):
        for p in parent.iterdir():
            if p.name.startswith(f".{name}.") and p.name.endswith((".staging", ".work", ".tmp", ".old")):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
