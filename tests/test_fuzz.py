"""A short, seeded pass of every fuzz target (fuzz/targets.py) under
atheris: each parser of untrusted bytes meets a few thousand mutated inputs
and may only raise rootfs's own errors with documented exit codes. The long
runs are `make fuzz`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import targets  # noqa: E402

# Enough inputs per target for the mutations to leave the seeds' shape;
# the whole pass stays under a minute on two cores.
RUNS = {"data_tar": 1500, "deb": 1500, "rpm": 1500, "oci_layer": 1500, "registry": 1500}


def test_every_untrusted_parser_has_a_target():
    assert set(targets.TARGETS) == {
        "release", "packages", "deb", "data_tar", "rpm", "repomd", "primary", "modules", "comps",
        "oci_index", "oci_manifest", "oci_config", "oci_layer", "docker_manifest", "registry"}


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seeds_are_accepted(name):
    """The seeds themselves are what the parsers accept (or refuse in one
    sentence): a target whose seeds crash would fuzz nothing."""
    for seed in targets.seeds(name):
        targets.guarded(targets.TARGETS[name])(seed)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seeded_fuzz_pass(name, tmp_path):
    pytest.importorskip("atheris", reason="atheris publishes wheels for x86_64 Linux only")
    runs = RUNS.get(name, 4000)
    p = subprocess.run([sys.executable, str(FUZZ / "run.py"), name, f"-runs={runs}", "-seed=1",
                        f"-artifact_prefix={tmp_path}/"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"Done {runs} runs" in p.stderr
