"""`rootfs matrix`: the jobs of a fleet for a CI engine's matrix feature.
Each format is read back the way its engine reads it (JSON; GitHub's
fromJSON of the one-line output's `include`; GitLab's YAML)."""

from __future__ import annotations

import json
import subprocess
import sys

from ruamel.yaml import YAML

from rootfs.model.recipe import load_recipe, recipe_names

ROOTFS = [sys.executable, "-m", "rootfs.cli"]


def matrix(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*ROOTFS, "matrix", *args], capture_output=True, text=True, timeout=60)


def test_default_is_every_recipe_at_its_own_architecture():
    p = matrix()
    assert p.returncode == 0, p.stderr
    jobs = json.loads(p.stdout)
    assert [j["recipe"] for j in jobs] == recipe_names()
    for j in jobs:
        assert j["arch"] == load_recipe(j["recipe"]).architecture
    fx = next(j for j in jobs if j["recipe"] == "fx-rpm")
    assert fx == {"recipe": "fx-rpm", "arch": "x86_64", "platform": "linux/amd64"}


def test_recipes_times_architectures_in_each_format():
    want = [
        {"recipe": "bookworm", "arch": "amd64", "platform": "linux/amd64"},
        {"recipe": "bookworm", "arch": "arm64", "platform": "linux/arm64/v8"},
        {"recipe": "bookworm", "arch": "armhf", "platform": "linux/arm/v7"},
        {"recipe": "fx-rpm", "arch": "x86_64", "platform": "linux/amd64"},
        {"recipe": "fx-rpm", "arch": "aarch64", "platform": "linux/arm64/v8"},
        {"recipe": "fx-rpm", "arch": "armv7hl", "platform": "linux/arm/v7"},
    ]
    args = ["bookworm", "fx-rpm", "--arch", "amd64,arm64", "--arch", "armhf"]
    assert json.loads(matrix(*args, "--format", "json").stdout) == want
    gh = matrix(*args, "--format", "github").stdout
    assert gh.count("\n") == 1, "one line, for $GITHUB_OUTPUT"
    assert json.loads(gh) == {"include": want}
    gl = YAML(typ="safe").load(matrix(*args, "--format", "gitlab").stdout)
    assert gl == {"parallel": {"matrix": [{"RECIPE": j["recipe"], "ARCH": j["arch"], "PLATFORM": j["platform"]}
                                          for j in want]}}


def test_what_cannot_be_a_job_says_so():
    p = matrix("fx-rpm", "--arch", "armel")
    assert p.returncode == 2 and "fx-rpm (rpm) cannot be built for armel" in p.stderr
    p = matrix("bookworm", "--arch", "vax")
    assert p.returncode == 2 and "unknown architecture 'vax'" in p.stderr
    p = matrix("no-such-recipe")
    assert p.returncode == 2 and p.stdout == ""
    p = matrix("bookworm", "--format", "jenkins")
    assert p.returncode == 2 and "unknown matrix format 'jenkins'" in p.stderr
