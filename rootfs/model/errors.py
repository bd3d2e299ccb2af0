"""Errors that users cause, each with the exit code the README documents.

Anything raised that is not a RootfsError is a bug in rootfs and exits 1
with a traceback; everything a user can cause must be one of these, so the
CLI can print one sentence and exit with a stable code that cron jobs and
Makefiles can test.
"""

from __future__ import annotations


class RootfsError(Exception):
    """A failure with a clear message and a documented exit code."""

    exit_code = 1


class UsageError(RootfsError):
    """Bad command line, bad recipe, unknown recipe, bad flag combination."""

    exit_code = 2


class ResolveError(RootfsError):
    """The package set cannot be resolved: unknown package, unsatisfiable
    relation, conflicts, or a suite the repository does not have."""

    exit_code = 3


class VerifyError(RootfsError):
    """A signature, checksum, size or validity check failed."""

    exit_code = 4


class NetworkError(RootfsError):
    """A mirror or registry could not be reached or kept failing."""

    exit_code = 5


class InstallError(RootfsError):
    """Installing packages into the root failed (dpkg, a maintainer script,
    a scriptlet, a hostile payload)."""

    exit_code = 6


class PrivilegeError(RootfsError):
    """The host lacks what a step needs (root, user namespaces, a tool)."""

    exit_code = 7


class EmulationError(PrivilegeError):
    """The build's architecture is foreign to this host and no emulator is
    registered with binfmt_misc to run its maintainer scripts or scriptlets."""


class OutputError(RootfsError):
    """The output cannot be written: missing root, unwritable path, full disk,
    unknown format."""

    exit_code = 8


class BusyError(RootfsError):
    """Another rootfs run holds the lock on the same output or cache."""

    exit_code = 9


class RegistryError(RootfsError):
    """A registry refused the request (authentication, protocol)."""

    exit_code = 10


class CommandTimeout(RootfsError):
    """A command rootfs ran (dpkg, a maintainer script, gpgv, mke2fs...)
    did not finish within ROOTFS_TIMEOUT seconds and was stopped."""

    exit_code = 11


EXIT_CODES: dict[int, str] = {
    0: "success (also: up to date, nothing to do)",
    1: "internal error: a bug in rootfs, reported with a traceback",
    2: "usage: bad command line, unknown or invalid recipe, bad lock file",
    3: "resolve: unknown suite or package, unsatisfiable dependencies, conflicts",
    4: "verification: bad or missing signature, checksum or size mismatch, expired Release",
    5: "network: mirror or registry unreachable, download kept failing",
    6: "install: dpkg, a maintainer script, scriptlet, hook or customize command failed, hostile payload",
    7: "privilege: the host lacks root, user namespaces, a needed tool, or an emulator (binfmt_misc) for a foreign architecture",
    8: "output: missing input root, unwritable or contradictory output, disk full, unknown format, output closed",
    9: "busy: another run holds the lock on this output or cache",
    10: "registry: authentication or protocol error from a registry",
    11: "timeout: a command (dpkg, a maintainer script, gpgv, mke2fs...) outlived ROOTFS_TIMEOUT and was stopped",
    130: "interrupted (Ctrl-C / SIGINT)",
}
