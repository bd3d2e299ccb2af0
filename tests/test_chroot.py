"""rootfs.host.chroot: what a prepared root offers commands, and that every trace
of the preparation goes away: after success, after an exception, on
SIGTERM, and when a process inside keeps a mount busy."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import needs_root, needs_tool

from rootfs.host.chroot import Chroot
from rootfs.host.mounts import mounts_under

pytestmark = [needs_root(), needs_tool("ldd")]

TOOLS = ("dash", "cat", "sleep", "env", "ls", "sync")


def tiny_root(root: Path) -> Path:
    """dash, a few tools and their libraries from the host; no /proc, /sys
    or /dev directories, so the Chroot has to create (and remove) them."""
    binaries = [shutil.which(t) for t in TOOLS]
    if not all(binaries):
        pytest.skip("host lacks a tool")
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    os.symlink("usr/bin", root / "bin")
    for t, b in zip(TOOLS, binaries):
        shutil.copy2(os.path.realpath(b), root / "usr/bin" / t)
    os.symlink("dash", root / "usr/bin/sh")
    for b in binaries:
        out = subprocess.run(["ldd", b], capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+)", line)
            if m:
                dest = root / m.group(1).lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                if not dest.exists():
                    shutil.copy2(os.path.realpath(m.group(1)), dest)
    return root


def leftovers(root: Path) -> list[str]:
    return [p for p in ("proc", "sys", "dev", "usr/sbin/policy-rc.d", "usr/sbin", "etc/resolv.conf")
            if os.path.lexists(root / p)]


def test_commands_see_proc_dev_and_a_clean_environment(tmp_path, monkeypatch):
    root = tiny_root(tmp_path / "root")
    monkeypatch.setenv("ROOTFS_LEAK_TEST", "leaked")
    with Chroot(root) as ch:
        proc = ch.run(["/bin/sh", "-c",
                       "test -r /proc/self/status && test -c /dev/null && test -c /dev/urandom "
                       "&& test -d /dev/pts && test -L /dev/fd && test -x /usr/sbin/policy-rc.d "
                       "&& ls /sys/kernel >/dev/null && echo ok; /usr/sbin/policy-rc.d; echo rc=$?; env"],
                      {"EXTRA": "given"})
        assert mounts_under(root)
    out = proc.stdout.decode()
    assert out.startswith("ok\nrc=101\n"), out
    env = dict(line.split("=", 1) for line in out.splitlines()[2:] if "=" in line)
    assert "ROOTFS_LEAK_TEST" not in env
    assert env["EXTRA"] == "given"
    assert env["DEBIAN_FRONTEND"] == "noninteractive" and env["DEBCONF_NONINTERACTIVE_SEEN"] == "true"
    assert env["LC_ALL"] == "C.UTF-8"
    assert {"/usr/sbin", "/sbin"} <= set(env["PATH"].split(":"))
    assert mounts_under(root) == []
    assert leftovers(root) == []


def test_syncs_inside_a_root_being_built_return_at_once(tmp_path):
    root = tiny_root(tmp_path / "root")
    # fsync of a pipe fails (EINVAL) when it is really made; filtered, it
    # is never made and returns 0. Everything the command starts inherits it.
    said = {}
    for no_syncs in (False, True):
        with Chroot(root, no_syncs=no_syncs) as ch:
            said[no_syncs] = ch.run(["/bin/sh", "-c", "echo x | sync /dev/stdin; echo rc=$?; "
                                     "sh -c 'echo y | sync /dev/stdin; echo rc=$?'"]).stdout.decode()
    assert said[False].count("Invalid argument\nrc=1\n") == 2, said[False]
    assert said[True] == "rc=0\nrc=0\n", said[True]
    assert leftovers(root) == []


def test_resolv_conf_copied_in_and_removed(tmp_path):
    if not os.path.isfile("/etc/resolv.conf"):
        pytest.skip("host has no /etc/resolv.conf")
    root = tiny_root(tmp_path / "root")
    with Chroot(root) as ch:
        inside = ch.run(["/usr/bin/cat", "/etc/resolv.conf"]).stdout
    assert inside == Path("/etc/resolv.conf").read_bytes()
    assert not os.path.lexists(root / "etc/resolv.conf")


def test_existing_files_are_put_back(tmp_path):
    root = tiny_root(tmp_path / "root")
    (root / "usr/sbin").mkdir()
    (root / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 0\n")
    (root / "usr/sbin/start-stop-daemon").write_text("#!/bin/sh\necho real\n")
    (root / "usr/sbin/start-stop-daemon").chmod(0o755)
    os.symlink("../run/resolv.conf", root / "etc/resolv.conf")  # dangling, as systemd-resolved leaves it
    with Chroot(root) as ch:
        out = ch.run(["/bin/sh", "-c", "/usr/sbin/start-stop-daemon; /usr/sbin/policy-rc.d; echo $?"]).stdout
    assert b"Fake start-stop-daemon" in out and out.endswith(b"101\n")
    assert (root / "usr/sbin/policy-rc.d").read_text() == "#!/bin/sh\nexit 0\n"
    assert (root / "usr/sbin/start-stop-daemon").read_text() == "#!/bin/sh\necho real\n"
    assert not os.path.lexists(root / "usr/sbin/start-stop-daemon.REAL")
    assert os.readlink(root / "etc/resolv.conf") == "../run/resolv.conf"
    assert not (root / "run").exists()  # the dangling link was not written through


def test_cleanup_after_an_exception(tmp_path):
    root = tiny_root(tmp_path / "root")
    with pytest.raises(RuntimeError):
        with Chroot(root):
            raise RuntimeError("boom")
    assert mounts_under(root) == []
    assert leftovers(root) == []


def test_sigterm_unwinds_and_cleans_up(tmp_path):
    root = tiny_root(tmp_path / "root")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            with Chroot(root):
                os.write(w, b"ready")
                time.sleep(60)
        except KeyboardInterrupt:  # Terminated is one
            code = 143
        finally:
            os._exit(code)
    os.close(w)
    assert os.read(r, 5) == b"ready"
    assert mounts_under(root)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    os.close(r)
    assert os.waitstatus_to_exitcode(status) == 143
    assert mounts_under(root) == []
    assert leftovers(root) == []


def test_busy_mount_is_detached(tmp_path):
    root = tiny_root(tmp_path / "root")
    with Chroot(root) as ch:
        # a process left running inside with its cwd on /dev/pts
        ch.run(["/bin/sh", "-c", "cd /dev/pts && /usr/bin/sleep 30 >/dev/null 2>&1 & echo $! > /pid"])
    pid = int((root / "pid").read_text())
    try:
        assert mounts_under(root) == []
    finally:
        os.kill(pid, signal.SIGKILL)
    assert not (root / "dev").exists() or not os.listdir(root / "dev")


def test_proc_linked_to_the_root_is_refused(tmp_path):
    from rootfs.model.errors import InstallError

    root = tiny_root(tmp_path / "root")
    os.symlink("/", root / "proc")
    with pytest.raises(InstallError, match="/proc leads to the root itself"):
        with Chroot(root):
            pass
    assert mounts_under(root) == []
    assert os.readlink(root / "proc") == "/"


def test_mount_points_with_spaces_are_seen(tmp_path):
    root = tiny_root(tmp_path / "a root")
    with Chroot(root):
        assert str(root / "proc") in mounts_under(root)
    assert mounts_under(root) == []


def test_missing_command_is_an_install_error(tmp_path):
    from rootfs.model.errors import InstallError

    root = tiny_root(tmp_path / "root")
    with Chroot(root) as ch:
        with pytest.raises(InstallError, match="cannot run /usr/bin/nonexistent inside the root"):
            ch.run(["/usr/bin/nonexistent"])
    assert mounts_under(root) == []


def test_interruption_kills_what_runs_inside(tmp_path):
    root = tiny_root(tmp_path / "root")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            with Chroot(root) as ch:
                os.write(w, b"ready")
                ch.run(["/bin/sh", "-c", "echo $$ > /shell; /usr/bin/sleep 60 & echo $! > /sleeper; wait"])
        except KeyboardInterrupt:
            code = 143
        finally:
            os._exit(code)
    os.close(w)
    assert os.read(r, 5) == b"ready"
    os.close(r)
    for _ in range(600):  # until the shell inside has started its child
        if (root / "sleeper").exists() and (root / "sleeper").read_text().strip():
            break
        time.sleep(0.05)
    sleeper = int((root / "sleeper").read_text())
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 143
    for _ in range(100):  # SIGKILLed; the zombie is reaped by init shortly
        try:
            os.kill(sleeper, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{sleeper}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.05)
    else:
        pytest.fail("the process started inside survived")
    assert mounts_under(root) == []


def test_a_root_without_usr_is_left_without_usr(tmp_path):
    """policy-rc.d needs /usr/sbin: both directories made for it go again."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    with Chroot(root):
        assert (root / "usr/sbin/policy-rc.d").is_file()
    assert sorted(os.listdir(root)) == ["etc"]
