"""The habits a new user brings from mmdebstrap, apt and docker, tried on a
real `rootfs` process: --version, global options after the command, help
without Python types, one log line per phase in a pipe, the format from
-o's suffix, output problems found before building, archives on standard
output, and a closed pipe said as such."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import needs_root
from test_make_ops import ROOTFS, rootfs, sha256

from rootfs import __version__

UNREACHABLE = "http://127.0.0.1:1/"  # nothing listens there: reaching the network would fail with exit 5


def test_version():
    p = rootfs("--version", check=True)
    assert p.stdout == f"rootfs {__version__}\n"


def test_global_options_after_the_command(repo_env, tmp_path):
    quiet = rootfs(*repo_env["base"], "-f", "tar", "-o", tmp_path / "q.tar", "--quiet", check=True)
    assert quiet.stderr == ""
    loud = rootfs(*repo_env["base"], "-f", "tar", "-o", tmp_path / "v.tar", "--force", "-v", check=True)
    assert "package files verified in" in loud.stderr  # a --verbose detail
    before = rootfs("--quiet", *repo_env["base"], "-f", "tar", "-o", tmp_path / "b.tar", check=True)
    assert before.stderr == ""


def _commands():
    import typer

    from rootfs.cli import app

    group = typer.main.get_command(app)
    out = [[]]
    for name, cmd in group.commands.items():
        out.append([name])
        out += [[name, sub] for sub in getattr(cmd, "commands", {})]
    return out


@pytest.mark.parametrize("words", _commands(), ids=lambda w: " ".join(w) or "rootfs")
def test_help_names_values_not_python_types(words):
    text = rootfs(*words, "--help", check=True).stdout
    assert not re.search(r"<(bool|str|int|float|path|list\[)", text), text
    assert "{" not in text.split("\n", 1)[0]  # the usage line: RECIPE, not {recipe}
    for flag in ("--quiet", "--verbose"):  # before the command or after it
        assert flag in text or "COMMAND [ARGS]" in text


def test_one_log_line_per_phase_never_wrapped_in_a_pipe(repo_env, tmp_path):
    deep = tmp_path / ("a-directory-with-a-long-name-" * 4) / "img.tar"
    p = rootfs(*repo_env["base"], "-f", "tar", "-o", deep, check=True)
    lines = p.stderr.splitlines()
    for phase, counted in (("resolve", "4 packages"), ("fetch", "4 packages"), ("install", "4 packages"),
                           ("sbom", "4 packages"), ("pack", "tar"), ("publish", str(deep))):
        [line] = [x for x in lines if x.startswith(f"I: {phase}: ")]
        assert counted in line and re.search(r" in \d+\.\d s$", line), line
    assert re.fullmatch(r"I: success in \d+\.\d s", lines[-2]), lines
    assert lines[-1] == f"wrote {deep}"  # longer than 80 columns, on one line


@pytest.mark.parametrize("name,check", [
    ("img.tar.zst", lambda p: p.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"),
    ("img.oci.tar", lambda p: "oci-layout" in tarfile.open(p).getnames()),
    ("img.docker.tar", lambda p: "manifest.json" in tarfile.open(p).getnames()),
    ("img.tgz", lambda p: p.read_bytes()[:2] == b"\x1f\x8b"),
    ("plain", lambda p: (p / "usr/bin/apt").is_file()),
])
def test_the_suffix_of_o_names_the_format(repo_env, tmp_path, name, check):
    out = tmp_path / name
    report = json.loads(rootfs(*repo_env["base"], "-o", out, "--json", check=True).stdout)
    assert check(out)
    assert list(report["artifacts"]) == [str(out)]


def test_the_readme_documents_the_suffix_table():
    from rootfs.pack.outputs import SUFFIXES

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    rows = dict(re.findall(r"^\| (`\.[^|]+`) \| ([a-z0-9.-]+(?:, [a-z0-9.-]+)?) \|$", readme, re.M))
    documented = {}
    for suffixes, formats in rows.items():
        names = re.findall(r"`(\.[^`]+)`", suffixes)
        fmts = formats.split(", ")
        for i, s in enumerate(names):
            documented[s] = fmts[i] if len(fmts) == len(names) else fmts[0]
    assert documented == dict(SUFFIXES)


def _refused_before_building(repo_env, *args) -> str:
    """Run make against a mirror nobody serves: an output check that comes
    before the build answers 8; one that comes after the resolve would be a
    network failure (5)."""
    base = [a if a != repo_env["server"].url + "/" else UNREACHABLE for a in repo_env["base"]]
    p = rootfs(*base, *args)
    assert p.returncode == 8, p.stderr
    [line] = p.stderr.splitlines()
    assert line.startswith("rootfs: error: ")
    return line


def test_output_problems_are_found_before_building(repo_env, tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    assert "is not a directory" in _refused_before_building(repo_env, "-f", "tar", "-o", afile / "img.tar")
    assert "exists and is not a directory" in _refused_before_building(repo_env, "-f", "dir", "-o", afile)
    assert "names a tar.zst file" in _refused_before_building(repo_env, "-f", "tar", "-o", tmp_path / "x.tar.zst")
    assert "directory of artifacts" in _refused_before_building(repo_env, "-f", "tar", "-f", "oci",
                                                                "-o", tmp_path / "x.tar")
    (tmp_path / "adir").mkdir()
    assert "is a directory" in _refused_before_building(repo_env, "-f", "tar", "-o", tmp_path / "adir")
    assert sorted(os.listdir(tmp_path)) == ["a-file", "adir", "cache", "repo", "testrepo.toml"] or \
        not (tmp_path / "x.tar.zst").exists()


@needs_root()
def test_an_unwritable_output_directory_is_found_before_building(repo_env, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    base = [a if a != repo_env["server"].url + "/" else UNREACHABLE for a in repo_env["base"]]
    cmd = " ".join(map(lambda a: "'" + str(a) + "'", [*ROOTFS, *base, "-f", "tar", "-o", ro / "img.tar"]))
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f"mount --bind -o ro '{ro}' '{ro}' && mount -o remount,bind,ro '{ro}' && exec {cmd}"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 8, p.stderr
    assert p.stderr.strip() == f"rootfs: error: cannot write in {ro}: read-only file system"


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_archives_stream_to_standard_output(repo_env, tmp_path, fmt):
    as_file = tmp_path / "file.tar"
    rootfs(*repo_env["base"], "-f", fmt, "-o", as_file, check=True)
    streamed = tmp_path / "streamed.tar"
    with open(streamed, "wb") as sink:
        p = subprocess.run([*ROOTFS, *map(str, repo_env["base"]), "-f", fmt, "-o", "-"], stdout=sink,
                           stderr=subprocess.PIPE, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    assert sha256(streamed) == sha256(as_file)


def test_docker_load_reads_the_stream_from_a_pipe(repo_env, tmp_path):
    """`rootfs make RECIPE -f docker-archive -o - | podman load`."""
    from pack_containers import Containers, available

    why = available()
    if why:
        pytest.skip(why)
    c = Containers(tmp_path / "podman")
    try:
        make = " ".join("'" + str(a) + "'" for a in [*ROOTFS, *repo_env["base"], "-f", "docker-archive",
                                                       "--tag", "localhost/streamed:1", "-o", "-"])
        r = c._run(["bash", "-c", f"set -o pipefail; {make} | podman load"])
        assert "localhost/streamed:1" in r.stdout + r.stderr
        listed = c.podman("image", "inspect", "localhost/streamed:1").stdout
        assert json.loads(listed)[0]["RootFS"]["Layers"]
    finally:
        c.close()


def test_a_closed_pipe_is_output_closed(repo_env):
    proc = subprocess.Popen([*ROOTFS, *map(str, repo_env["base"]), "-f", "tar", "-o", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(512)  # the stream started...
    proc.stdout.close()  # ...and its reader went away
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 8
    assert err.splitlines()[-1] == "rootfs: error: output closed: the reader of standard output went away", err
    assert "cannot read" not in err
