"""The supermin-style pair, `prepare` and `build`: the pipeline of `make`
cut in two at the package files.

An appliance is a directory with the lock (lock.json) and the verified
package files (packages/): everything `build` needs, offline, on any later
day. `prepare` resolves and fetches as `make` does (the same stages, the
same cache) and publishes the appliance atomically as `make` publishes a
build; `build` runs the rest of `make` on it: install into a staging
directory beside the output, SBOM, pack, publish, with the lock, SBOM and
report beside the artifact.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rootfs import ui
from rootfs.backends import Mode, ResolveOptions
from rootfs.backends.rpm import appliance as rpm_appliance
from rootfs.host.locks import cache_lock, output_lock
from rootfs.host.policy import DEFAULT as DEFAULT_POLICY
from rootfs.host.policy import Policy
from rootfs.model.errors import OutputError
from rootfs.model.lock import Lock
from rootfs.model.recipe import Recipe
from rootfs.model.report import (
    BuildReport,
    package_versions,
    packages_digest,
    recipe_digest,
)
from rootfs.net.fetch import Cache, Downloader
from rootfs.pack.outputs import check_output
from rootfs.pipeline import stages
from rootfs.pipeline.make import MakeRequest, artifact_name, build_and_publish
from rootfs.pipeline.publish import (
    OutputPlan,
    clean_stale_staging,
    publish,
    staging_dir,
)

LOCK_NAME = rpm_appliance.LOCK_NAME
PACKAGES = rpm_appliance.PACKAGES


def prepare(recipe: Recipe, opts: ResolveOptions, downloader: Downloader, output: Path, cache: Cache,
            jobs: int = 4) -> Lock:
    """Resolve, fetch and verify into the appliance directory output."""
    output = Path(output)
    check_output(output, ("dir",))
    plan = OutputPlan(output, (PACKAGES, LOCK_NAME))
    with output_lock(output):
        clean_stale_staging(output.parent, output.name)
        lock = stages.resolve(recipe, opts, downloader)
        with cache_lock(cache.root, shared=True, timeout=None):
            files = stages.fetch(lock, cache, downloader, jobs)
            staging = staging_dir(plan)
            try:
                rpm_appliance.place_packages(lock, files, staging / PACKAGES)
                lock.write(staging / LOCK_NAME)
                with ui.phase("publish") as ph:
                    publish(plan, staging, "")
                    ph.summary = f"{output}: {len(lock.packages)} packages"
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    return lock


def build(appliance: Path, formats: list[str], output: Path, mode: Mode,
          policy: Policy = DEFAULT_POLICY) -> BuildReport:
    """Install the appliance offline and pack the root as formats at output."""
    from rootfs.backends.rpm.settings import adhoc_recipe

    start = time.monotonic()
    appliance, output = Path(appliance), Path(output)
    if output.absolute().resolve() == appliance.absolute().resolve():
        raise OutputError("the output must not be the appliance itself")
    lock, files = rpm_appliance.load_appliance(appliance)
    check_output(output, formats)
    from rootfs.host.binfmt import check_runnable

    check_runnable(lock.architecture, Mode(mode).configures, rootless=Mode(mode) is Mode.ROOTLESS)
    recipe = adhoc_recipe(lock.recipe or appliance.name, lock.architecture, (), ())
    req = MakeRequest(recipe=recipe, output=str(output), formats=tuple(formats), mode=mode, command="build",
                      policy=policy)
    report = BuildReport(recipe=recipe.name, started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         formats=list(formats), output=str(output), reason="rootfs build")
    report.recipe_digest = recipe_digest(recipe)
    report.lock_digest = lock.digest()
    report.packages_digest = packages_digest(lock)
    report.packages = package_versions(lock)
    report.source_date_epoch = lock.source_date_epoch
    plan = OutputPlan(output, tuple(artifact_name(f) for f in formats))
    with output_lock(output):
        clean_stale_staging(output.parent, output.name)
        build_and_publish(req, lock, files, report, plan)
    ui.info(f"I: success in {time.monotonic() - start:.1f} s")
    return report
