"""The example CI pipelines in examples/ci/: valid for their engines (the
GitHub Actions and GitLab CI schemas check-jsonschema bundles), and their
shell does what the engine would have it do: the plan step, run for real,
gives one job per recipe and architecture, each job pushes to its own tag,
and the index step joins exactly those tags per recipe. `rootfs make` and
`rootfs index` are stood in for by a recorder there (the fleet test runs
them for real)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "ci"
CHECK = Path(sys.executable).parent / "check-jsonschema"


def validate(schema: str, *files: Path) -> None:
    p = subprocess.run([str(CHECK), "--builtin-schema", schema, *map(str, files)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def load(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


@pytest.fixture
def shim(tmp_path) -> tuple[Path, Path]:
    """A bin directory where `rootfs matrix` is the real one and every other
    command is recorded (one shell-quoted line per call) -> (bin, log)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    (bin_dir / "rootfs").write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = matrix ]; then exec {shlex.quote(sys.executable)} -m rootfs.cli "$@"; fi\n'
        f'for a in "$@"; do printf "%s\\0" "$a"; done >> {shlex.quote(str(log))}\n'
        f"printf '\\n' >> {shlex.quote(str(log))}\n")
    (bin_dir / "rootfs").chmod(0o755)
    return bin_dir, log


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [line.rstrip("\0").split("\0") for line in log.read_text().splitlines() if line]


def sh(script: str, env: dict, cwd: Path) -> str:
    p = subprocess.run(["sh", "-eu", "-c", script], capture_output=True, text=True, cwd=cwd, timeout=120,
                       env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **env})
    assert p.returncode == 0, p.stderr
    return p.stdout


def after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def check_fleet(made: list[list[str]], joined: list[list[str]], registry: str) -> None:
    """Four jobs, each pushing its own tag; one index per recipe of exactly those."""
    assert all(c[0] == "make" for c in made) and all(c[0] == "index" for c in joined)
    jobs = {(c[1], after(c, "--arch")): after(c, "--push") for c in made}
    assert len(made) == 4 and set(jobs) == {(r, a) for r in ("bookworm", "trixie") for a in ("amd64", "arm64")}
    assert len(set(jobs.values())) == 4
    assert [c[1:4] for c in joined] == [[f"{registry}/{r}:nightly", jobs[(r, "amd64")], jobs[(r, "arm64")]]
                                        for r in ("bookworm", "trixie")]


def test_github_actions_example(shim, tmp_path):
    import json

    path = EXAMPLES / "github-actions.yml"
    validate("vendor.github-workflows", path)
    wf = load(path)
    bin_dir, log = shim
    env = {k: str(v) for k, v in wf["env"].items()}
    env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    out = tmp_path / "github_output"
    sh(wf["jobs"]["plan"]["steps"][0]["run"], {**env, "GITHUB_OUTPUT": str(out)}, tmp_path)
    key, _, value = out.read_text().strip().partition("=")
    assert key == "matrix"
    matrix = json.loads(value)
    assert wf["jobs"]["build"]["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert len(matrix["include"]) == 4
    build = wf["jobs"]["build"]
    assert build["env"]["http_proxy"] == "${{ vars.PACKAGE_PROXY }}"
    for job in matrix["include"]:
        job_env = {**env, "REGISTRY": "registry.invalid/base", "REGISTRY_CREDS": "u:p",
                   "RECIPE": job["recipe"], "ARCH": job["arch"]}
        for step in build["steps"]:
            if "run" in step:
                sh(step["run"], job_env, tmp_path)
    made = calls(log)
    log.unlink()
    sh(wf["jobs"]["index"]["steps"][0]["run"], {**env, "REGISTRY": "registry.invalid/base", "REGISTRY_CREDS": "u:p"},
       tmp_path)
    check_fleet(made, calls(log), "registry.invalid/base")


def test_gitlab_ci_example(shim, tmp_path):
    path = EXAMPLES / "gitlab-ci.yml"
    validate("vendor.gitlab-ci", path, EXAMPLES / "gitlab-fleet.yml")
    ci = load(path)
    bin_dir, log = shim
    env = {k: str(v) for k, v in ci["variables"].items()}
    env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    work = tmp_path / "checkout"
    (work / "examples" / "ci").mkdir(parents=True)
    (work / "examples" / "ci" / "gitlab-fleet.yml").write_text((EXAMPLES / "gitlab-fleet.yml").read_text())
    for line in ci["plan"]["script"]:
        sh(line, env, work)
    child = work / "fleet.yml"
    assert ci["plan"]["artifacts"]["paths"] == ["fleet.yml"]
    validate("vendor.gitlab-ci", child)
    job = load(child)["build"]
    matrix = job["parallel"]["matrix"]
    assert len(matrix) == 4 and all(set(m) == {"RECIPE", "ARCH", "PLATFORM"} for m in matrix)
    assert job["variables"]["http_proxy"] == "$PACKAGE_PROXY"
    for m in matrix:
        for line in job["script"]:
            sh(line, {**env, **m, "REGISTRY": "registry.invalid/base", "REGISTRY_CREDS": "u:p"}, work)
    made = calls(log)
    log.unlink()
    for line in ci["index"]["script"]:
        sh(line, {**env, "REGISTRY": "registry.invalid/base", "REGISTRY_CREDS": "u:p"}, work)
    check_fleet(made, calls(log), "registry.invalid/base")


ACTIONLINT = Path(sys.executable).parent / "actionlint"


def actionlint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(ACTIONLINT), "-no-color", str(path)], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not ACTIONLINT.exists(), reason="actionlint has no wheel for this machine on PyPI")
def test_github_actions_example_passes_actionlint(tmp_path):
    path = EXAMPLES / "github-actions.yml"
    p = actionlint(path)
    assert p.returncode == 0, p.stdout + p.stderr
    # The same file with a job waiting for a job that does not exist must
    # fail: the check above is one that can.
    text = path.read_text()
    assert "needs: plan" in text
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("needs: plan", "needs: no_such_job", 1))
    p = actionlint(broken)
    assert p.returncode != 0 and "no_such_" in p.stdout, p.stdout
