"""A nightly fleet, as CI engines run it: four `rootfs make` jobs (two
recipes, two architectures) as separate processes with empty caches and
outputs of their own, all behind one apt-cacher-ng, each pushing by tag to
a local docker-registry; then `rootfs index` per recipe; then every job
again from empty directories, which finds its image up to date at the
registry and fetches no package.

The proxy's own transfer log is the evidence: each package file came from
the mirror once, and was served to every job that needed it. The second
recipe is bookworm with another image configuration: the same packages,
so every file is asked for by two jobs per architecture (arch: all ones by
four). bookworm amd64 is compared with the session's direct build
(conftest bookworm_build: the same selection, no proxy).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aptcacher import AptCacher
from binfmt import emulation
from conftest import BOOKWORM_ARGS, needs_root, needs_tool

from rootfs.model.inputs import INPUTS_ANNOTATION, LOCK_ANNOTATION
from rootfs.model.lock import read_lock
from rootfs.model.recipe import find_recipe

pytestmark = [pytest.mark.mirror, pytest.mark.slow, needs_root(),
              needs_tool("apt-cacher-ng", "docker-registry", "skopeo")]

ROOTFS = [sys.executable, "-m", "rootfs.cli"]
ARCHES = ("amd64", "arm64")


def second_recipe(tmp: Path) -> Path:
    """bookworm under another name and image configuration."""
    text = find_recipe("bookworm").read_text()
    text = text.replace('tag = "debian:bookworm"', 'tag = "example/bookworm-fleet:1"')
    assert "example/bookworm-fleet" in text
    path = tmp / "bookworm-fleet.toml"
    path.write_text(text + '"org.example.fleet" = "second recipe"\n')
    return path


STAGGER = 4.0  # seconds between job starts


def run_jobs(jobs: list[dict], base: Path, proxy: str, round_: str, stagger: float = STAGGER) -> list[dict]:
    """Every job at once, each a process with its own cache and output.
    The starts are a few seconds apart, as jobs on separate runners are:
    seen here on a loaded machine, apt-cacher-ng fetched a file twice from
    the mirror when two jobs asked for it in the same instant, before its
    first download was under way."""
    procs = []
    for i, job in enumerate(jobs):
        if i:
            time.sleep(stagger)
        d = base / round_ / f"{job['name']}-{job['arch']}"
        d.mkdir(parents=True)
        env = {**os.environ, "COLUMNS": "1000", "XDG_CACHE_HOME": str(d / "xdg"), "http_proxy": proxy,
               "no_proxy": "127.0.0.1,localhost"}
        env.pop("https_proxy", None)
        cmd = [*ROOTFS, "make", job["recipe"], *BOOKWORM_ARGS[:2], "-f", "oci", "--arch", job["arch"],
               "--push", job["ref"], "--insecure", "--cache-dir", str(d / "cache"), "-o", str(d / "out"), "--json"]
        procs.append((job, d, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                               env=env)))
    results = []
    for job, d, p in procs:
        out, err = p.communicate(timeout=2400)
        assert p.returncode == 0, f"{job['name']} {job['arch']}: {err[-3000:]}"
        results.append({**json.loads(out), "stderr": err, "dir": d, "job": job})
    return results


def raw(ref: str) -> dict:
    p = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_four_jobs_behind_one_proxy_then_up_to_date_at_the_registry(bookworm_build, tmp_path):
    from registry_server import start_registry

    reg = start_registry(tmp_path / "registry", "plain")
    proxy = AptCacher(tmp_path / "acng").start()
    recipes = {"bookworm": "bookworm", "bookworm-fleet": str(second_recipe(tmp_path))}
    jobs = [{"name": name, "recipe": recipe, "arch": arch, "ref": f"{reg.host}/fleet/{name}:nightly-{arch}"}
            for name, recipe in recipes.items() for arch in ARCHES]
    try:
        with emulation(*ARCHES):
            t0 = time.monotonic()
            first = run_jobs(jobs, tmp_path, proxy.url, "first")
            first_s = time.monotonic() - t0
        proxy.stop()
        for r in first:
            assert r["outcome"] == "built" and r["reason"] == f"{r['job']['ref']} does not exist yet"
            ann = raw(r["job"]["ref"])["annotations"]
            assert ann[LOCK_ANNOTATION] == "sha256:" + r["lock_digest"] and INPUTS_ANNOTATION in ann

        # Each package file once from the mirror, to every job that needed it.
        wanted: dict[str, int] = {}
        for r in first:
            for p in read_lock(r["dir"] / "out.lock.json").packages:
                path = p.url.split("://", 1)[1]
                wanted[path] = wanted.get(path, 0) + 1
        fetched, served = proxy.counts("I", ".deb"), proxy.counts("O", ".deb")
        assert set(fetched) == set(wanted), "every package file went through the proxy, and only those"
        assert [p for p, n in fetched.items() if n != 1] == [], "fetched from the mirror more than once"
        assert dict(served) == wanted
        shared = sum(wanted.values()) - len(wanted)
        assert shared >= len(wanted), "the second recipe shares every package file"
        upstream = sum(t.size for t in proxy.transfers() if t.direction == "I" and t.path.endswith(".deb"))
        delivered = sum(t.size for t in proxy.transfers() if t.direction == "O" and t.path.endswith(".deb"))

        # The same image as a build without the proxy.
        direct = json.loads((bookworm_build.out / "oci" / "index.json").read_text())["manifests"][0]["digest"]
        by_job = {(r["job"]["name"], r["job"]["arch"]): r["pushed"][r["job"]["ref"]] for r in first}
        assert by_job[("bookworm", "amd64")] == direct

        # One index per recipe, from the jobs' tags.
        for name in recipes:
            target = f"{reg.host}/fleet/{name}:nightly"
            p = subprocess.run([*ROOTFS, "index", target, *(j["ref"] for j in jobs if j["name"] == name),
                                "--insecure"], capture_output=True, text=True, timeout=300)
            assert p.returncode == 0, p.stderr
            index = raw(target)
            assert [(m["digest"], m["platform"]["architecture"]) for m in index["manifests"]] == \
                [(by_job[(name, "amd64")], "amd64"), (by_job[(name, "arm64")], "arm64")]

        # Every job again, from empty directories: up to date at the registry.
        proxy.logs.joinpath("apt-cacher.log").rename(proxy.logs / "first.log")
        proxy.start()
        t0 = time.monotonic()
        # The runners can build for arm64 (the check comes before anything
        # is asked of the registry or the mirror); nothing is fetched to
        # stagger for.
        with emulation(*ARCHES):
            again = run_jobs(jobs, tmp_path, proxy.url, "again", stagger=0)
        again_s = time.monotonic() - t0
        proxy.stop()
        for r in again:
            ref = r["job"]["ref"]
            assert r["outcome"] == "up-to-date", r["stderr"][-2000:]
            assert f"up to date at {ref}" in r["stderr"]
            assert r["pushed"] == {ref: by_job[(r["job"]["name"], r["job"]["arch"])]}
            assert "fetch" not in r["durations"]
            assert not [f for f in (r["dir"] / "cache").rglob("*") if f.is_file() and f.read_bytes()[:8] == b"!<arch>\n"]
        assert proxy.counts("O", ".deb") == {} and proxy.counts("I", ".deb") == {}, "no package file was asked for"
        print(f"\nfleet: {len(wanted)} package files, {sum(wanted.values())} asked for by the four jobs, "
              f"{sum(fetched.values())} fetched from the mirror ({upstream >> 20} MiB; {delivered >> 20} MiB served); "
              f"first round {first_s:.0f} s, second round (up to date at the registry) {again_s:.0f} s; "
              f"second round's proxy requests: {sum(proxy.counts('O').values())} (indices only)")
    finally:
        proxy.stop()
        reg.stop()
