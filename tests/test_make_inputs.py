"""`rootfs make` is up to date only when every input is: each one changed
alone rebuilds (and the report says which), nothing changed skips, and a
push destination not reached yet is pushed to even when the build stands.

Hermetic, in `--mode extract` (setup hooks run there too), like
test_make_ops.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_tool
from debrepo import build_repo, write_recipe
from test_make_ops import packages

from rootfs.model.inputs import BuildInputs

ROOTFS = [sys.executable, "-m", "rootfs.cli"]


def run(*args, env=None, cwd=None) -> dict:
    p = subprocess.run([*ROOTFS, *map(str, args), "--json"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "1000", **(env or {})}, cwd=cwd, timeout=300)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    report["stderr"] = p.stderr
    return report


@pytest.fixture
def env(tmp_path, gpg_key, http_serve):
    repo = build_repo(tmp_path / "repo", packages(), key=gpg_key, suite="stable")
    server = http_serve(repo.path)
    recipe = write_recipe(tmp_path, repo, variant="minbase")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "motd").write_text("hello\n")
    return {"tmp": tmp_path, "recipe": recipe, "repo": repo,
            "base": ["make", recipe, "--mirror", server.url + "/", "--mode", "extract", "--cache-dir",
                     tmp_path / "cache", "-o", tmp_path / "out"]}


def test_every_input_counts_and_nothing_else_does(env):
    tmp, recipe = env["tmp"], env["recipe"]
    # (what changes, the extra arguments after it, environment, the reason the report must give)
    args = ["-f", "tar", "-f", "oci", "--setup-hook", "upload files/motd /etc/motd"]
    first = run(*env["base"], *args, cwd=tmp)
    assert first["outcome"] == "built"
    inputs = BuildInputs.from_dict(first["inputs"])
    assert inputs is not None and inputs.digest() == first["inputs_digest"]
    assert [w for w, _ in inputs.files] == ["setup:files/motd"]

    # (what changes, how, arguments added, environment added, the reason the report gives);
    # each change stays for the steps after it
    steps = [
        ("the hook's file", lambda: (tmp / "files" / "motd").write_text("changed\n"), [], {},
         "a file the customization reads changed (files/motd)"),
        ("a hook", None, ["--setup-hook", 'echo x > "$1/etc/x"'], {},
         "the customization (hooks, [customize]) changed"),
        ("the recipe", lambda: recipe.write_text(recipe.read_text().replace(
            '[deb]\n', '[deb]\ndpkgopt = ["path-exclude=/usr/share/doc/*"]\n')), [], {}, "the recipe changed"),
        ("the image configuration", lambda: recipe.write_text(recipe.read_text() + '[image]\ncmd = ["/bin/sh"]\n'),
         [], {}, "the image configuration changed"),
        ("the formats", None, ["-f", "tar.gz"], {}, "other formats were asked for"),
        ("the tag", None, ["--tag", "example/base:2"], {}, "the tag changed (none -> example/base:2)"),
        ("the layer compression", None, ["--layer-compression", "zstd"], {},
         "the layer compression changed (gzip -> zstd)"),
        ("SOURCE_DATE_EPOCH", None, [], {"SOURCE_DATE_EPOCH": "1700000000"}, "SOURCE_DATE_EPOCH changed"),
        ("the SBOM", None, ["--no-sbom"], {}, "the SBOM was turned off"),
    ]
    current_env: dict = {}
    step_args = list(args)
    prev_digest = first["inputs_digest"]
    for what, change, extra, step_env, reason in steps:
        if change:
            change()
        step_args += extra
        current_env.update(step_env)
        again = run(*env["base"], *step_args, env=current_env, cwd=tmp)
        assert again["outcome"] == "built", what
        assert again["reason"].startswith(reason), (what, again["reason"])
        assert again["inputs_digest"] != prev_digest, what
        prev_digest = again["inputs_digest"]
        same = run(*env["base"], *step_args, env=current_env, cwd=tmp)
        assert same["outcome"] == "up-to-date", (what, same["reason"])
        assert "up to date" in same["stderr"]
        assert same["inputs_digest"] == prev_digest
    # Options that change no artifact leave it standing.
    unchanged = run(*env["base"], *step_args, "--report", tmp / "r.json", env=current_env, cwd=tmp)
    assert unchanged["outcome"] == "up-to-date"


@needs_tool("docker-registry", "skopeo")
def test_a_destination_not_pushed_to_yet_is_pushed_to(env, tmp_path):
    from registry_server import start_registry

    reg = start_registry(tmp_path / "registry", "plain")
    xdg = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    try:
        a, b = f"{reg.host}/base:nightly", f"{reg.host}/base:20240101"
        first = run(*env["base"], "-f", "oci", "--push", a, "--insecure", env=xdg)
        assert first["outcome"] == "built" and list(first["pushed"]) == [a]
        same = run(*env["base"], "-f", "oci", "--push", a, "--insecure", env=xdg)
        assert same["outcome"] == "up-to-date" and "pushed" not in same["stderr"]
        assert "push" not in same["durations"]
        both = run(*env["base"], "-f", "oci", "--push", a, "--push", b, "--insecure", env=xdg)
        assert both["outcome"] == "up-to-date"
        assert f"pushed {b}@" in both["stderr"] and f"pushed {a}@" not in both["stderr"]
        assert both["pushed"] == {a: first["pushed"][a], b: first["pushed"][a]}
        p = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{b}"], capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0 and json.loads(p.stdout)["Digest"] == first["pushed"][a]
        # the published report remembers both: a third run pushes nothing
        third = run(*env["base"], "-f", "oci", "--push", a, "--push", b, "--insecure", env=xdg)
        assert "pushed" not in third["stderr"] and set(third["pushed"]) == {a, b}
        # a rebuild pushes again, to every destination asked for
        rebuilt = run(*env["base"], "-f", "oci", "--push", b, "--insecure", "--tag", "example/base:3", env=xdg)
        assert rebuilt["outcome"] == "built" and list(rebuilt["pushed"]) == [b]
    finally:
        reg.stop()


def test_a_recipe_moved_elsewhere_has_the_same_inputs(tmp_path):
    """Where a recipe was read (its path, the source locations messages
    cite, the directory its hooks start in) is not an input: the same file
    in another directory builds the same image, so a copy of the project
    (a CI checkout, a rootless user's copy) finds it up to date."""
    import shutil

    from rootfs.model.inputs import build_inputs
    from rootfs.model.lock import Lock
    from rootfs.model.recipe import load_recipe
    from rootfs.model.report import recipe_digest

    original = Path(__file__).resolve().parent.parent / "rootfs" / "recipes" / "bookworm.toml"
    moved = tmp_path / "elsewhere" / "bookworm.toml"
    moved.parent.mkdir()
    shutil.copy(original, moved)
    text = original.read_text() + '\n[customize]\ncommands = ["true"]\n'
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "c.toml").write_text(text)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "c.toml").write_text(text)
    lock = Lock("deb", "bookworm", "debian", "bookworm", "amd64")

    def inputs(path: Path):
        r = load_recipe(str(path))
        return recipe_digest(r), build_inputs(r, lock, files=[], formats=("oci",), tag="", layer_compression="gzip",
                                              source_date_epoch=0, sbom=True).digest()

    assert inputs(original) == inputs(moved)
    assert inputs(tmp_path / "a" / "c.toml") == inputs(tmp_path / "b" / "c.toml")
    # and what the recipe says still counts
    (tmp_path / "b" / "c.toml").write_text(text.replace('"true"', '"false"'))
    assert inputs(tmp_path / "a" / "c.toml")[1] != inputs(tmp_path / "b" / "c.toml")[1]
