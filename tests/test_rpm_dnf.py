"""The rpm solver against dnf itself, request by request.

A generated distribution of more than 5,000 packages (tests/rpmdistro.py:
rich, weak and file dependencies, obsoletes, conflicts, multilib, module
streams, comps groups) is written as metadata-only repodata; dnf 4 (its
Python API, tests/dnf_oracle.py) and rootfs resolve the same requests
against it, with weak dependencies on and off, and must install the same
NEVRAs, or both refuse.

The same comparison runs on real repodata: ROOTFS_DNF_REPODATA=DIR[:DIR...]
names repositories (a directory holding repodata/, or repodata/ itself),
for example a mirror of a distribution's BaseOS and AppStream.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest
import rpmdistro
from conftest import needs_tool
from rpmdistro import Case
from rpmmeta import write_repo

from rootfs.backends import ResolveOptions
from rootfs.backends.rpm.resolve import Loaded, load, solve
from rootfs.backends.rpm.settings import adhoc_recipe
from rootfs.backends.rpm.solver import SolveOptions
from rootfs.model.errors import RootfsError
from rootfs.net.fetch import Downloader

HERE = Path(__file__).parent


def _dnf_usable() -> bool:
    if not os.path.exists("/usr/bin/python3"):
        return False
    return subprocess.run(["/usr/bin/python3", "-c", "import dnf"], capture_output=True).returncode == 0


pytestmark = [needs_tool("dnf"), pytest.mark.slow,
              pytest.mark.skipif(not _dnf_usable(), reason="dnf's Python module is not importable by /usr/bin/python3")]


def nevra(s) -> str:
    evr = s.evr if ":" in s.evr else "0:" + s.evr
    return f"{s.name}-{evr}.{s.arch}"


def dnf_answers(repos: list[Path], cases: list[Case], tmp: Path, platform: str | None) -> list[dict]:
    req = {"repos": [str(r) for r in repos], "root": str(tmp / "dnfroot"), "arch": "x86_64", "platform": platform,
           "cases": [{"specs": c.dnf_specs or c.specs, "weak": weak, "best": c.best, "modules": c.modules,
                      "exclude": c.exclude} for c in cases for weak in (True, False)]}
    p = subprocess.run(["/usr/bin/python3", str(HERE / "dnf_oracle.py")], input=json.dumps(req),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


def rootfs_answer(loaded: Loaded, case: Case, weak: bool) -> list[str] | None:
    try:
        chosen = solve(loaded, case.specs, modules=tuple(case.modules), exclude=tuple(case.exclude),
                       options=SolveOptions(weak_deps=weak, best=case.best))
    except RootfsError:
        return None
    return sorted(nevra(s) for s in chosen)


def compare(repos: list[Path], cases: list[Case], tmp: Path, platform: str | None = None) -> tuple[int, int]:
    """(answers compared, of which refusals); fails with every difference."""
    want = dnf_answers(repos, cases, tmp, platform)
    recipe = adhoc_recipe("dnf-diff", "x86_64", [r.as_uri() for r in repos], ["-"])
    loaded = load(recipe, ResolveOptions(check_gpg=False), Downloader(), [s for c in cases for s in c.specs])
    diffs, refused, i = [], 0, 0
    for case in cases:
        for weak in (True, False):
            dnf = want[i]
            i += 1
            ours = rootfs_answer(loaded, case, weak)
            if "error" in dnf:
                refused += 1
                if ours is not None:
                    diffs.append(f"{case.label} (weak={weak}): dnf refuses ({dnf['error'].splitlines()[-1]}), "
                                 f"rootfs installs {len(ours)} packages")
            elif ours != dnf["nevras"]:
                if ours is None:
                    diffs.append(f"{case.label} (weak={weak}): rootfs refuses, dnf installs {len(dnf['nevras'])}")
                else:
                    only_dnf = sorted(set(dnf["nevras"]) - set(ours))
                    only_us = sorted(set(ours) - set(dnf["nevras"]))
                    diffs.append(f"{case.label} (weak={weak}): only dnf {only_dnf}, only rootfs {only_us}")
    assert not diffs, f"{len(diffs)} of {i} answers differ from dnf's:\n" + "\n".join(diffs)
    return i, refused


@pytest.fixture(scope="module")
def distro():
    return rpmdistro.generate()


def test_generated_distribution_matches_dnf(distro, tmp_path):
    assert len(distro.packages) >= 5000 and len(distro.cases) >= 50
    repo = write_repo(tmp_path / "repo", distro.packages, comps=distro.comps, modules=distro.modules)
    compared, refused = compare([repo], distro.cases, tmp_path, rpmdistro.PLATFORM)
    assert compared == 2 * len(distro.cases)
    # The comparison means something only if both kinds of answer occur.
    assert 0 < refused < compared // 4


def _real_repos() -> list[Path]:
    out = []
    for part in os.environ.get("ROOTFS_DNF_REPODATA", "").split(":"):
        if part:
            p = Path(part).resolve()
            out.append(p.parent if p.name == "repodata" else p)
    return out


def _real_cases(loaded: Loaded, seed: int = 7) -> list[Case]:
    """Requests drawn from the repositories' own names, provides, paths,
    groups and modules."""
    rng = random.Random(seed)
    names = sorted(n for n in loaded.sack.names() if loaded.sack.named(n))
    cases = [Case([n]) for n in rng.sample(names, min(40, len(names)))]
    cases += [Case(rng.sample(names, 4)) for _ in range(5)]
    for name in ("bash", "coreutils", "systemd", "glibc", "python3", "dnf"):
        if name in names:
            cases.append(Case([name]))
    for path in ("/bin/sh", "/usr/bin/python3"):
        cases.append(Case([path]))
    for gid in sorted(loaded.comps.groups)[:5]:
        cases.append(Case([f"@{gid}"]))
    for mod, stream in sorted(loaded.modules.defaults.items())[:3]:
        cases.append(Case([f"@{mod}:{stream}"]))
    return cases


@pytest.mark.skipif(not os.environ.get("ROOTFS_DNF_REPODATA"),
                    reason="ROOTFS_DNF_REPODATA names no repodata to compare on")
def test_real_repodata_matches_dnf(tmp_path):
    repos = _real_repos()
    recipe = adhoc_recipe("dnf-diff", "x86_64", [r.as_uri() for r in repos], ["-"])
    loaded = load(recipe, ResolveOptions(check_gpg=False), Downloader(), ["@"])
    platforms = [s for d in loaded.modules.docs for alt in d.requires for s in alt.get("platform", ())]
    platform = f"platform:{max(set(platforms), key=platforms.count)}" if platforms else None
    cases = _real_cases(loaded)
    compare(repos, cases, tmp_path, platform)
