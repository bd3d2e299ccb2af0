"""The mount table as the kernel writes it: octal escapes are bytes, and a
mount point with any name is found, so that the guard on a recursive delete
sees every mount under the tree it is asked to remove."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import needs_root

from rootfs.host.mounts import mount_points

NAME = "café \tnoël\\ü"  # non-ASCII, a space, a tab and a backslash


def _escaped(path: str) -> bytes:
    raw = os.fsencode(path)
    return b"".join(b"\\%03o" % c if c in b" \t\n\\" else bytes([c]) for c in raw)


def test_mountinfo_fields_are_unescaped_as_bytes(tmp_path):
    point = f"/srv/{NAME}"
    info = tmp_path / "mountinfo"
    info.write_bytes(b"36 35 98:0 / " + _escaped(point) + b" rw,noatime master:1 - tmpfs none rw\n"
                     b"37 35 98:0 / /plain rw - ext4 /dev/sda1 rw\n")
    assert mount_points(str(info)) == [point, "/plain"]


@needs_root()
def test_a_mount_under_a_non_ascii_name_stops_the_recursive_delete(tmp_path):
    """A real tmpfs, mounted in a private mount namespace under a directory
    whose name the old reader garbled: the guard must refuse the delete."""
    tree = tmp_path / "tree"
    point = tree / NAME / "proc"
    point.mkdir(parents=True)
    (point / "keep").write_text("host")
    # mount(8) with the name as one argument, from the same namespace
    code = f"""
import os, subprocess, sys
from rootfs.host.mounts import mounts_under
from rootfs.model.errors import RootfsError
from rootfs.pipeline.make import _safe_rmtree
point = {str(point)!r}
subprocess.run(["mount", "-t", "tmpfs", "rootfs-test", point], check=True)
open(os.path.join(point, "inside"), "w").close()
assert mounts_under({str(tree)!r}) == [point], mounts_under({str(tree)!r})
try:
    _safe_rmtree(__import__("pathlib").Path({str(tree)!r}))
except RootfsError as exc:
    print(exc)
    sys.exit(0)
sys.exit("the delete went ahead")
"""
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", code],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr + p.stdout
    assert "is still mounted" in p.stdout and NAME in p.stdout
    assert (point / "keep").read_text() == "host"  # the tree (and what was under the mount) is intact
