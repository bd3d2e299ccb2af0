"""`rootfs make --push REF` on an ephemeral runner: no previous output, no
cache. The image at REF carries the lock and inputs digests; when both
match, the run says "up to date at REF", fetches no package and builds
nothing; when REF is missing or differs it builds and pushes; a registry
that cannot be asked is an error, not a rebuild.

Hermetic, in --mode extract, against Debian's docker-registry on 127.0.0.1;
skopeo reads back what is at REF.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import _QuietHandler, needs_tool, packages
from debrepo import build_repo, write_recipe

from rootfs.model.inputs import INPUTS_ANNOTATION, LOCK_ANNOTATION, SBOM_ANNOTATION

ROOTFS = [sys.executable, "-m", "rootfs.cli"]

pytestmark = needs_tool("docker-registry", "skopeo")


class LoggingRepo:
    """The signed repository on 127.0.0.1, remembering every path asked for:
    the evidence that no package file was downloaded."""

    def __init__(self, root: Path):
        paths = self.paths = []

        class Handler(_QuietHandler):
            def do_GET(self):
                paths.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def debs(self) -> list[str]:
        return [p for p in self.paths if p.endswith(".deb")]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def env(tmp_path, gpg_key):
    from registry_server import start_registry

    repo = build_repo(tmp_path / "repo", packages(), key=gpg_key, suite="stable")
    server = LoggingRepo(repo.path)
    recipe = write_recipe(tmp_path, repo, variant="minbase")
    reg = start_registry(tmp_path / "registry", "plain")
    runs = [0]

    def make(*args, check=True) -> dict:
        """One job on a fresh runner: empty output, cache and XDG cache."""
        runs[0] += 1
        job = tmp_path / f"job{runs[0]}"
        p = subprocess.run([*ROOTFS, "make", str(recipe), "--mirror", server.url, "--mode", "extract",
                            "--cache-dir", str(job / "cache"), "-o", str(job / "out"), "--insecure", "--json",
                            *map(str, args)],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "COLUMNS": "1000", "XDG_CACHE_HOME": str(job / "xdg")})
        if check:
            assert p.returncode == 0, p.stderr
        report = json.loads(p.stdout) if p.stdout.strip() else {}
        report.update(returncode=p.returncode, stderr=p.stderr, job=job)
        return report

    yield {"make": make, "reg": reg, "server": server, "tmp": tmp_path}
    server.stop()
    reg.stop()


def raw(ref: str) -> dict:
    p = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_a_fresh_runner_finds_the_image_up_to_date_at_the_registry(env):
    make, reg, server = env["make"], env["reg"], env["server"]
    ref = f"{reg.host}/base:nightly"
    first = make("--push", ref)
    assert first["outcome"] == "built"
    assert first["reason"] == f"{ref} does not exist yet"
    manifest = raw(ref)
    ann = manifest["annotations"]
    assert ann[LOCK_ANNOTATION] == "sha256:" + first["lock_digest"]
    assert ann[INPUTS_ANNOTATION].startswith("sha256:") and len(ann[INPUTS_ANNOTATION]) == 71
    assert SBOM_ANNOTATION in ann
    assert len(server.debs()) == 4

    server.paths.clear()
    again = make("--push", ref)
    assert again["outcome"] == "up-to-date", again["stderr"]
    assert f"up to date at {ref}" in again["stderr"]
    assert again["reason"] == f"up to date at {ref}"
    assert again["pushed"] == {ref: first["pushed"][ref]}
    assert server.debs() == [] and server.paths, "resolving reads the indexes, and nothing else"
    assert "fetch" not in again["durations"] and "push" not in again["durations"]
    cache = again["job"] / "cache"
    assert not [p for p in cache.rglob("*.deb")] if cache.exists() else True
    # the output says so, and holds nothing else
    out = again["job"] / "out"
    saved = json.loads((out / "build.json").read_text())
    assert saved["outcome"] == "up-to-date" and saved["pushed"] == {ref: first["pushed"][ref]}
    assert sorted(p.name for p in out.iterdir()) == ["build.json"]
    # other formats beside the image do not change the image
    more = make("--push", ref, "-f", "tar")
    assert more["outcome"] == "up-to-date", more["stderr"]


def test_a_changed_input_or_a_second_registry_builds_and_pushes(env, tmp_path):
    from registry_server import start_registry

    make, reg = env["make"], env["reg"]
    ref = f"{reg.host}/base:nightly"
    first = make("--push", ref)
    changed = make("--push", ref, "--layer-compression", "zstd")
    assert changed["outcome"] == "built"
    assert changed["reason"] == f"{ref} holds an image built from other inputs"
    assert changed["pushed"][ref] != first["pushed"][ref]
    assert raw(ref)["annotations"][INPUTS_ANNOTATION] != "" and raw(ref)["layers"][0]["mediaType"].endswith("zstd")

    # The inputs digest does not depend on where the image goes: the image
    # pushed to a second registry is byte for byte the first one.
    other = start_registry(tmp_path / "other", "plain")
    try:
        ref2 = f"{other.host}/mirror/base:nightly"
        copy = make("--push", ref2)
        assert copy["outcome"] == "built" and copy["reason"] == f"{ref2} does not exist yet"
        assert copy["pushed"][ref2] == first["pushed"][ref] != changed["pushed"][ref]
        # one destination that differs rebuilds for all of them
        both = make("--push", ref, "--push", ref2)
        assert both["outcome"] == "built" and both["reason"] == f"{ref} holds an image built from other inputs"
        assert both["pushed"] == {ref: copy["pushed"][ref2], ref2: copy["pushed"][ref2]}
        stands = make("--push", ref, "--push", ref2)
        assert stands["outcome"] == "up-to-date" and stands["reason"] == f"up to date at {ref}, {ref2}"
    finally:
        other.stop()
    # --force builds whatever the registry holds
    forced = make("--push", ref, "--force")
    assert forced["outcome"] == "built" and forced["reason"] == "--force"


@needs_tool("umoci")
def test_an_image_without_the_annotations_is_rebuilt(env):
    """An image someone else pushed to REF (here: one from an older rootfs,
    the same tree without the annotations) is not taken for this build."""
    make, reg = env["make"], env["reg"]
    ref = f"{reg.host}/base:other"
    from oci_images import build_test_images

    images = build_test_images(env["tmp"] / "images")
    p = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{images.layout}:1", f"docker://{ref}"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    built = make("--push", ref)
    assert built["outcome"] == "built" and built["reason"] == f"{ref} holds an image built from other inputs"


def test_a_registry_that_cannot_be_asked_is_an_error_not_a_rebuild(env, tmp_path):
    from registry_server import start_registry

    make, server = env["make"], env["server"]
    locked = start_registry(tmp_path / "basic", "basic")
    try:
        failed = make("--push", f"{locked.host}/base:nightly", check=False)
    finally:
        locked.stop()
    assert failed["returncode"] == 10, failed["stderr"]
    assert "authentication" in failed["stderr"]
    assert server.debs() == []
    assert not (failed["job"] / "out").exists()


def test_a_push_to_a_digest_is_refused_before_anything_is_fetched(env):
    failed = env["make"]("--push", f"{env['reg'].host}/base@sha256:{'0' * 64}", check=False)
    assert failed["returncode"] == 2 and "--push takes a tag, not a digest" in failed["stderr"]
    assert env["server"].paths == []
