"""The CI rule on skips, tried on a throwaway test module run by pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

MODULE = '''
import pytest

def test_hidden():
    pytest.skip("missing tool(s): nothing")

def test_allowed():
    pytest.skip("the mirror does not answer over https")

@pytest.mark.skipif(True, reason="needs root")
def test_marked():
    pass

def test_runs():
    pass
'''


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_sample.py").write_text(MODULE)
    (tmp_path / "test_whole.py").write_text('import pytest\npytest.skip("needs dnf", allow_module_level=True)\n')
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(HERE)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "ci_skips", "-p", "no:cacheprovider", "-q", "-rA",
                           "--rootdir", str(tmp_path), str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_in_ci_a_skip_without_an_allowed_reason_fails(tmp_path):
    p = _run(tmp_path, "true")
    assert p.returncode == 1, p.stdout
    # a skip in a test's body fails it, one in its set-up (a mark) is an
    # error, a module skipped whole fails the run; the allowed one stays a skip
    assert "1 failed, 1 passed, 2 skipped, 1 error" in p.stdout, p.stdout
    assert "not on the allow list in tests/ci_skips.py: missing tool(s): nothing" in p.stdout
    assert "not on the allow list in tests/ci_skips.py: needs root" in p.stdout
    assert "FAILED test_whole.py: needs dnf (skipped in CI, and the reason is not on the allow list" in p.stdout


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_skips_stay_skips(tmp_path, ci):
    p = _run(tmp_path, ci)
    assert p.returncode == 0, p.stdout
    assert "1 passed, 4 skipped" in p.stdout, p.stdout
