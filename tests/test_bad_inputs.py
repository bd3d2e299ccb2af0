"""A catalogue of bad inputs: each ends with one clear sentence, its
documented exit code, no traceback, and nothing written where the output
belongs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import serve_directory
from debrepo import Pkg, build_repo, write_recipe

ROOTFS = [sys.executable, "-m", "rootfs.cli"]


@pytest.fixture(scope="module")
def env(tmp_path_factory, gpg_key, other_gpg_key):
    tmp = tmp_path_factory.mktemp("bad")
    repo = build_repo(tmp / "repo", [
        Pkg("base-files", priority="required", essential=True, files={"etc/x": b"x"}),
        Pkg("apt", priority="important", depends="base-files"),
        Pkg("broken", depends="missing-library (>= 2)"),
    ], key=gpg_key, suite="stable")
    server = serve_directory(repo.path)
    recipe = write_recipe(tmp, repo, variant="minbase")
    lock = tmp / "good.lock"
    subprocess.run([*ROOTFS, "lock", str(recipe), "--mirror", server.url + "/", "-o", str(lock)], check=True,
                   capture_output=True)
    yield {"tmp": tmp, "recipe": recipe, "mirror": server.url + "/", "lock": lock, "repo": repo,
           "other_keyring": other_gpg_key.keyring}
    server.httpd.shutdown()
    server.httpd.server_close()


def recipe_file(tmp: Path, name: str, text: str) -> Path:
    p = tmp / f"{name}.toml"
    p.write_text(text)
    return p


GOOD_HEAD = 'backend = "deb"\ndistribution = "debian"\nsuite = "stable"\n'


def lock_file(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def edited_lock(env, **changes) -> str:
    data = json.loads(env["lock"].read_text())
    for k, v in changes.items():
        if k == "sha256":
            data["packages"][0]["sha256"] = v
        else:
            data[k] = v
    return json.dumps(data)


# (id, argv builder, exit code, words the message must contain)
CASES = [
    ("unknown-recipe", lambda e, o: ["make", "no-such-recipe", "-o", o], 2, "unknown recipe"),
    ("missing-recipe-file", lambda e, o: ["make", str(e["tmp"] / "nope.toml"), "-o", o], 2, "does not exist"),
    ("recipe-not-toml", lambda e, o: ["make", recipe_file(e["tmp"], "nt", "backend = [deb"), "-o", o], 2, "not valid TOML"),
    ("recipe-unknown-key", lambda e, o: ["make", recipe_file(e["tmp"], "uk", GOOD_HEAD + "colour = 'red'\n"), "-o", o], 2, "unknown key 'colour'"),
    ("recipe-wrong-type", lambda e, o: ["make", recipe_file(e["tmp"], "wt", GOOD_HEAD + "[deb]\ncomponents = 'main'\n"), "-o", o], 2, "must be a list"),
    ("recipe-bool-type", lambda e, o: ["make", recipe_file(e["tmp"], "bt", GOOD_HEAD + "[deb]\nmerged_usr = 'yes'\n"), "-o", o], 2, "must be a bool"),
    ("recipe-unknown-backend", lambda e, o: ["make", recipe_file(e["tmp"], "ub", 'backend = "apk"\nsuite = "x"\n'), "-o", o], 2, "backend must be"),
    ("recipe-no-suite", lambda e, o: ["make", recipe_file(e["tmp"], "ns", 'backend = "deb"\n'), "-o", o], 2, "needs a suite"),
    ("recipe-unknown-variant", lambda e, o: ["make", recipe_file(e["tmp"], "uv", GOOD_HEAD + "[deb]\nvariant = 'tiny'\n"), "-o", o], 2, "unknown variant"),
    ("recipe-image-unknown-key", lambda e, o: ["make", recipe_file(e["tmp"], "ik", GOOD_HEAD + "[image]\ncolour = 'x'\n"), "-o", o], 2, "unknown key 'colour'"),
    ("recipe-image-wrong-type", lambda e, o: ["make", recipe_file(e["tmp"], "it", GOOD_HEAD + "[image]\ncmd = '/bin/sh'\n"), "-o", o], 2, "must be a list"),
    ("recipe-labels-not-strings", lambda e, o: ["make", recipe_file(e["tmp"], "ln", GOOD_HEAD + "[image.labels]\nx = 1\n"), "-o", o], 2, "must map names to strings"),
    ("flag-unknown-variant", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "--variant", "huge", "-o", o], 2, "unknown variant"),
    ("flag-unknown-mode", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "--mode", "magic", "-o", o], 2, "unknown mode"),
    ("mirror-bad-scheme", lambda e, o: ["make", e["recipe"], "--mirror", "ftp://127.0.0.1/debian", "-o", o], 2, "not an http"),
    ("mirror-unreachable", lambda e, o: ["make", e["recipe"], "--mirror", "http://127.0.0.1:9/", "-o", o], 5, "127.0.0.1"),
    ("suite-missing", lambda e, o: ["make", recipe_file(e["tmp"], "sm", f'backend = "deb"\ndistribution = "debian"\nsuite = "nosuch"\n[deb]\nkeyring = "{e["repo"].keyring}"\n'), "--mirror", e["mirror"], "-o", o], 3, "nosuch"),
    ("keyring-missing", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "--keyring", str(e["tmp"] / "none.gpg"), "-o", o], 2, "does not exist"),
    ("keyring-wrong-key", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "--keyring", str(e["other_keyring"]), "-o", o], 4, "signed by a key that is not in the keyring"),
    ("package-unknown", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "--include", "no-such-package", "-o", o], 3, "no-such-package"),
    ("package-unsatisfiable", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "--include", "broken", "-o", o], 3, "missing-library"),
    ("lock-missing", lambda e, o: ["make", e["recipe"], "--locked", str(e["tmp"] / "none.lock"), "-o", o], 2, "cannot read lock file"),
    ("lock-not-json", lambda e, o: ["make", e["recipe"], "--locked", lock_file(e["tmp"], "nj.lock", "{not json"), "-o", o], 2, "not valid JSON"),
    ("lock-wrong-format", lambda e, o: ["make", e["recipe"], "--locked", lock_file(e["tmp"], "wf.lock", '{"format": 99}'), "-o", o], 2, "not a rootfs lock file"),
    ("lock-bad-sha256", lambda e, o: ["make", e["recipe"], "--locked", lock_file(e["tmp"], "bs.lock", edited_lock(e, sha256="abc")), "-o", o], 2, "valid sha256"),
    ("lock-wrong-backend", lambda e, o: ["make", e["recipe"], "--locked", lock_file(e["tmp"], "wb.lock", edited_lock(e, backend="rpm")), "-o", o], 2, "rpm backend"),
    ("format-unknown", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "-f", "zip", "-o", o], 8, "unknown format"),
    ("stdout-two-formats", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "-f", "tar", "-f", "oci", "-o", "-"], 2, "streams exactly one of"),
    ("stdout-oci", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "-f", "oci", "-o", "-"], 2, "streams exactly one of"),
    ("stdout-and-json", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "-f", "tar", "-o", "-", "--json"], 2, "standard output"),
    ("stdout-and-keep", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "-f", "tar", "-o", "-", "--keep", "2"], 2, "cannot be combined"),
    ("tag-malformed", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "-f", "oci", "--tag", "Bad Name:x", "-o", o], 2, "malformed tag"),
    ("layer-compression", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "-f", "oci", "--layer-compression", "lz4", "-o", o], 2, "layer compression"),
    ("push-bad-ref", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "--push", "not a ref", "-o", o], 2, "not a ref"),
    ("push-missing-ca", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "--push", "127.0.0.1:5000/x:1", "--ca-cert", str(e["tmp"] / "none.crt"), "-o", o], 2, "does not exist"),
    ("output-unwritable", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "--mode", "extract", "-f", "tar", "-o", "/proc/rootfs-test/img.tar"], 8, "/proc/rootfs-test"),
    ("output-parent-is-file", lambda e, o: ["make", e["recipe"], "--mirror", e["mirror"], "--mode", "extract", "-f", "tar", "-o", str(e["recipe"]) + "/img.tar"], 8, "img.tar"),
    ("jobs-zero", lambda e, o: ["make", e["recipe"], "--jobs", "0", "-o", o], 2, "jobs"),
    ("keep-negative", lambda e, o: ["make", e["recipe"], "--keep", "-1", "-o", o], 2, "keep"),
    ("resolve-nothing", lambda e, o: ["resolve"], 2, "Missing argument"),
    ("resolve-repo-no-packages", lambda e, o: ["resolve", "--repo", "http://127.0.0.1:9/"], 2, "Missing argument"),
    ("pack-missing-root", lambda e, o: ["pack", str(e["tmp"] / "no-root"), "-f", "tar", "-o", o], 8, "does not exist"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(env, tmp_path, case):
    name, argv, code, words = case
    out = tmp_path / "out.tar"
    args = [str(a) for a in argv(env, out)]
    extra_env = {}
    p = subprocess.run([*ROOTFS, *args], capture_output=True, text=True, env={**os.environ, **extra_env}, timeout=120)
    assert p.returncode == code, f"{name}: exit {p.returncode}, stderr: {p.stderr}"
    assert words.lower() in p.stderr.lower(), p.stderr
    assert "Traceback" not in p.stderr
    assert not out.exists()
    assert [x for x in tmp_path.iterdir() if x.name.startswith(".out.tar.") and not x.name.endswith(".lock")] == []


def test_bad_source_date_epoch(env, tmp_path):
    out = tmp_path / "o.tar"
    p = subprocess.run([*ROOTFS, "make", str(env["recipe"]), "--mirror", env["mirror"], "-f", "tar", "-o", str(out)],
                       capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": "yesterday"})
    assert p.returncode == 2 and "SOURCE_DATE_EPOCH" in p.stderr, p.stderr
    assert not out.exists()

