"""In CI (CI=true), a skipped test fails the run unless its reason is one of
ALLOWED: facts about the machine or the mirror that no set-up script can
change. Everything else a skip could hide (a missing tool, no root, no
mirror, an unreachable mirror) is something CI must have, so there it is a
failure that says which test and why. Outside CI, skips stay skips (and
`-ra` lists them)."""

from __future__ import annotations

import os

import pytest

ALLOWED = (
    "the mirror does not answer over https",  # a fact about the mirror apt is configured with
    "setcap cannot set capabilities here",  # the file system under /tmp refuses security.capability
    "host has no /etc/resolv.conf",  # a sandbox without name resolution
    # opt-in: a distribution's rpm repodata is no package registry's, so CI has none to give
    "ROOTFS_DNF_REPODATA names no repodata to compare on",
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _reason(longrepr) -> str:
    # A skip's longrepr is (file, line, "Skipped: REASON").
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _refuse(report) -> None:
    reason = _reason(report.longrepr)
    if report.skipped and not hasattr(report, "wasxfail") and reason not in ALLOWED:
        report.outcome = "failed"
        report.longrepr = (f"skipped in CI, and the reason is not on the allow list in tests/ci_skips.py: "
                           f"{reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if in_ci():
        _refuse(outcome.get_result())


# A module skipped whole: turned into a collection error it would stop the
# session before any test ran, so it is remembered and fails the run at its end.
_MODULES: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and _reason(report.longrepr) not in ALLOWED:
        _MODULES.append(f"{report.nodeid}: {_reason(report.longrepr)}")


def pytest_terminal_summary(terminalreporter):
    for line in _MODULES:
        terminalreporter.write_line(f"FAILED {line} (skipped in CI, and the reason is not on the allow list "
                                    "in tests/ci_skips.py)")


def pytest_sessionfinish(session, exitstatus):
    if _MODULES and exitstatus == 0:
        session.exitstatus = 1
