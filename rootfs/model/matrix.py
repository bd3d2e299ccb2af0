"""The job matrix of a fleet: one job per recipe and architecture, written
for a CI engine's own matrix feature (GitHub Actions' `strategy.matrix`,
GitLab CI's `parallel: matrix:`), so the engine schedules, retries and
shows the jobs, and rootfs only says what they are."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from rootfs.model.arch import lookup
from rootfs.model.errors import UsageError
from rootfs.model.recipe import Recipe

FORMATS = ("json", "github", "gitlab")


@dataclass(frozen=True)
class Job:
    recipe: str  # as the command line named it: what `rootfs make` takes
    arch: str  # the backend's spelling: what `rootfs make --arch` takes
    platform: str  # OCI: linux/GOARCH[/VARIANT]


def platform_of(arch: str) -> str:
    a = lookup(arch)
    return "/".join(["linux", a.goarch] + ([a.variant] if a.variant else []))


def plan(recipes: list[tuple[str, Recipe]], arches: tuple[str, ...]) -> list[Job]:
    """Each recipe at each of arches, or at its own architecture when none
    is asked for; in the order given, duplicates once."""
    jobs: list[Job] = []
    for name, recipe in recipes:
        for wanted in arches or (recipe.architecture,):
            a = lookup(wanted)
            spelled = a.rpm if recipe.backend == "rpm" else a.deb
            if not spelled:
                raise UsageError(f"recipe {name} ({recipe.backend}) cannot be built for {wanted}: "
                                 f"no {recipe.backend} distribution ships it")
            job = Job(name, spelled, platform_of(spelled))
            if job not in jobs:
                jobs.append(job)
    return jobs


def render(jobs: list[Job], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([asdict(j) for j in jobs], indent=2) + "\n"
    if fmt == "github":
        # One line: what `echo "matrix=$(rootfs matrix --format github)" >>
        # "$GITHUB_OUTPUT"` needs, read back with fromJSON.
        return json.dumps({"include": [asdict(j) for j in jobs]}, separators=(",", ":")) + "\n"
    if fmt == "gitlab":
        # JSON strings are YAML strings: no quoting rules of our own.
        lines = ["parallel:", "  matrix:"]
        for j in jobs:
            lines += [f"    - RECIPE: {json.dumps(j.recipe)}", f"      ARCH: {json.dumps(j.arch)}",
                      f"      PLATFORM: {json.dumps(j.platform)}"]
        return "\n".join(lines) + "\n"
    raise UsageError(f"unknown matrix format {fmt!r} (known: {', '.join(FORMATS)})")
