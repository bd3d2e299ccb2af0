"""The build report: what a build did, for the humans and scripts that read
cron mail. One JSON document per build (--report FILE, --json on stdout),
also kept beside the artifacts as the state the next build compares with.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rootfs import __version__
from rootfs.model.lock import Lock
from rootfs.model.recipe import Recipe

REPORT_FORMAT = 1


def recipe_digest(recipe: Recipe) -> str:
    """Digest of everything in a recipe that changes what gets built."""
    from rootfs.model.recipe import build_data

    return hashlib.sha256(json.dumps(build_data(recipe), sort_keys=True, default=str).encode()).hexdigest()


def packages_digest(lock: Lock) -> str:
    """Digest of the resolved set alone: a new Release that changes no
    package does not make a new image."""
    lines = sorted(f"{p.name} {p.architecture} {p.version} {p.sha256}" for p in lock.packages)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def package_versions(lock: Lock) -> dict[str, str]:
    return {p.key: p.version for p in lock.packages}


@dataclass
class PackageChanges:
    added: list[str] = field(default_factory=list)  # "name:arch version"
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # "name:arch old -> new"
    # name:arch of each added or changed package -> the source it came from
    # ("URL SUITE", as the lock names it)
    sources: dict[str, str] = field(default_factory=dict)
    # One line for a cron mail: "3 security updates: libc6 2.36-9+deb12u7, ..."
    summary: str = ""


def _summary(changes: PackageChanges, lock: Lock | None) -> str:
    groups: dict[str, list[str]] = {}
    by_id = {src.id: src for src in lock.sources} if lock is not None else {}
    for line in changes.changed:
        key, _, versions = line.partition(" ")
        new = versions.rpartition(" -> ")[2]
        src = by_id.get(changes.sources.get(key, ""))
        if src is not None and src.security:
            label = "security update"
        elif src is not None:
            label = f"update from {src.suite}"
        else:
            label = "update"
        groups.setdefault(label, []).append(f"{key.split(':', 1)[0]} {new}")
    parts = []
    for label in sorted(groups, key=lambda g: (g != "security update", g)):
        items = groups[label]
        plural = "s" if len(items) != 1 else ""
        word = label.replace("update", "update" + plural, 1)
        parts.append(f"{len(items)} {word}: {', '.join(items)}")
    if changes.added:
        parts.append(f"{len(changes.added)} added: {', '.join(a.split(':', 1)[0] + ' ' + a.split(' ', 1)[1] for a in changes.added)}")
    if changes.removed:
        parts.append(f"{len(changes.removed)} removed: {', '.join(r.split(':', 1)[0] for r in changes.removed)}")
    return "; ".join(parts)


def diff_packages(old: dict[str, str], new: dict[str, str], lock: Lock | None = None) -> PackageChanges:
    """What changed between two builds' package sets; with the new lock,
    also where each new version came from and a one-line summary."""
    ch = PackageChanges()
    for key in sorted(new.keys() - old.keys()):
        ch.added.append(f"{key} {new[key]}")
    for key in sorted(old.keys() - new.keys()):
        ch.removed.append(f"{key} {old[key]}")
    for key in sorted(old.keys() & new.keys()):
        if old[key] != new[key]:
            ch.changed.append(f"{key} {old[key]} -> {new[key]}")
    if lock is not None:
        touched = {line.split(" ", 1)[0] for line in ch.added + ch.changed}
        for p in lock.packages:
            if p.key in touched:
                src = lock.source_of(p)
                if src is not None:
                    ch.sources[p.key] = src.id
        # The first build has nothing to compare with.
        ch.summary = _summary(ch, lock) if old else ""
    return ch


@dataclass
class BuildReport:
    recipe: str
    outcome: str = "failed"  # "built", "up-to-date", "failed"
    reason: str = ""  # why it was (re)built or skipped
    tool_version: str = __version__
    recipe_digest: str = ""
    lock_digest: str = ""
    packages_digest: str = ""
    formats: list[str] = field(default_factory=list)
    output: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)  # path -> sha256 (dirs: digest of their listing)
    packages: dict[str, str] = field(default_factory=dict)  # name:arch -> version
    changes: PackageChanges = field(default_factory=PackageChanges)
    durations: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    source_date_epoch: int = 0
    started: str = ""
    error: str = ""
    exit_code: int = 0
    inputs: dict = field(default_factory=dict)  # rootfs.model.inputs.BuildInputs of this build
    inputs_digest: str = ""
    pushed: dict[str, str] = field(default_factory=dict)  # destination -> manifest digest, for these inputs

    @contextmanager
    def stage(self, name: str):
        t = time.monotonic()
        try:
            yield
        finally:
            self.durations[name] = round(self.durations.get(name, 0.0) + time.monotonic() - t, 3)

    def to_json(self) -> str:
        data = asdict(self)
        data["format"] = REPORT_FORMAT
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def read_report(path: Path) -> BuildReport | None:
    """The previous build's report, or None when there is none or it is
    unreadable (then the build simply runs)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        return None
    data.pop("format")
    try:
        data["changes"] = PackageChanges(**data.get("changes", {}))
        return BuildReport(**data)
    except TypeError:
        return None
