"""The README is the users' contract: what it promises must be what the code does."""

import re
from pathlib import Path

from rootfs.model.errors import EXIT_CODES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_lists_every_exit_code():
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README, re.M))
    assert {int(k): v for k, v in table.items()} == EXIT_CODES


def test_readme_setup_commands_are_the_ci_command_and_exist():
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "exec ./scripts/test" in ci
    for script in ("./scripts/image", "./scripts/test"):
        assert f"\n    {script}\n" in README
        assert (Path(__file__).resolve().parent.parent / script).stat().st_mode & 0o111
