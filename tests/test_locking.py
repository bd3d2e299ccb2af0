"""Locks between real processes: an output is built by one run at a time,
the cache is shared by builds and taken whole by a prune."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from faulty_server import assert_clean
from typer.testing import CliRunner

from rootfs.cli import app
from rootfs.host.locks import cache_lock, lock_file_for, output_lock
from rootfs.model.errors import BusyError
from rootfs.net.fetch import Cache

HOLDER = r"""
import os, subprocess, sys
from pathlib import Path
from rootfs.host.locks import cache_lock, output_lock

kind, path, log, then = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
if kind == "output":
    ctx = output_lock(path, timeout=None if then == "wait" else 0)
else:
    ctx = cache_lock(path, shared=kind == "shared")
with ctx:
    with open(log, "a") as f:
        f.write(f"{os.getpid()} in\n")
    print("locked", flush=True)
    if then == "crash":
        # A child that outlives us must not keep the lock.
        print(subprocess.Popen(["sleep", "60"]).pid, flush=True)
        os._exit(3)
    if then != "wait":
        sys.stdin.readline()
    with open(log, "a") as f:
        f.write(f"{os.getpid()} out\n")
"""


class Holder:
    def __init__(self, kind: str, path: Path, log: Path, then: str = "stdin"):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, kind, str(path), str(log), then],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.pid = self.proc.pid

    def wait_locked(self) -> None:
        line = self.proc.stdout.readline()
        assert line == "locked\n", self.proc.stderr.read()

    def release(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.wait(timeout=30) == 0, self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


@pytest.fixture
def holders():
    started: list[Holder] = []

    def start(*args, **kw) -> Holder:
        h = Holder(*args, **kw)
        started.append(h)
        return h

    yield start
    for h in started:
        h.close()


def test_second_run_on_the_same_output_is_busy(tmp_path, holders):
    out = tmp_path / "out" / "image.tar"
    a = holders("output", out, tmp_path / "log")
    a.wait_locked()
    assert lock_file_for(out) == tmp_path / "out" / ".image.tar.lock"
    with pytest.raises(BusyError, match=rf"another rootfs run is building {out} \(pid {a.pid}\)") as exc:
        with output_lock(out):
            pytest.fail("took a lock another process holds")
    assert exc.value.exit_code == 9
    # Other outputs are free meanwhile.
    with output_lock(tmp_path / "out" / "other.tar"):
        pass
    a.release()
    with output_lock(out, timeout=0) as lockfile:
        assert lockfile.read_text() == f"{os.getpid()}\n"
    assert not lock_file_for(out).exists()


def test_a_waiting_run_builds_after_the_first(tmp_path, holders):
    out = tmp_path / "root"
    log = tmp_path / "log"
    a = holders("output", out, log)
    a.wait_locked()
    b = holders("output", out, log, then="wait")
    a.release()
    b.wait_locked()
    assert b.proc.wait(timeout=30) == 0
    assert log.read_text().split("\n") == [f"{a.pid} in", f"{a.pid} out", f"{b.pid} in", f"{b.pid} out", ""]
    assert not lock_file_for(out).exists()


CONTENDER = r"""
import os, sys
from pathlib import Path
from rootfs.host.locks import output_lock

out, log = Path(sys.argv[1]), sys.argv[2]
for _ in range(int(sys.argv[3])):
    with output_lock(out, timeout=None):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} in\n")
        with open(log, "a") as f:
            f.write(f"{os.getpid()} out\n")
"""


def test_contending_runs_never_overlap(tmp_path):
    # Many short holds: the lock file is unlinked on every release, so this
    # exercises a waiter that locked a file just removed by its holder.
    out, log = tmp_path / "root", tmp_path / "log"
    procs = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(out), str(log), "100"]) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    lines = log.read_text().splitlines()
    assert len(lines) == 4 * 100 * 2
    for enter, leave in zip(lines[::2], lines[1::2]):
        assert enter.endswith(" in") and leave == enter.replace(" in", " out"), (enter, leave)
    assert not lock_file_for(out).exists()


def test_waiting_gives_up_after_the_timeout(tmp_path, holders):
    out = tmp_path / "root"
    a = holders("output", out, tmp_path / "log")
    a.wait_locked()
    with pytest.raises(BusyError, match=f"pid {a.pid}"):
        with output_lock(out, timeout=0.3):
            pass


@pytest.mark.parametrize("death", ["kill", "crash with a child left running"])
def test_a_lock_dies_with_its_holder(tmp_path, holders, death):
    out = tmp_path / "root"
    if death == "kill":
        a = holders("output", out, tmp_path / "log")
        a.wait_locked()
        os.kill(a.pid, signal.SIGKILL)
        a.proc.wait()
    else:
        a = holders("output", out, tmp_path / "log", then="crash")
        a.wait_locked()
        orphan = int(a.proc.stdout.readline())
        assert a.proc.wait(timeout=30) == 3
    # The lock file is still there (nobody cleaned up), but unlocked.
    assert lock_file_for(out).exists()
    try:
        with output_lock(out, timeout=0):
            pass
    finally:
        if death != "kill":
            os.kill(orphan, signal.SIGKILL)


def test_cache_is_shared_by_builds_and_taken_whole_by_prune(tmp_path, holders):
    cache_dir = tmp_path / "cache"
    log = tmp_path / "log"
    a = holders("shared", cache_dir, log)
    b = holders("shared", cache_dir, log)
    a.wait_locked()
    b.wait_locked()  # both at once
    with pytest.raises(BusyError, match=f"the cache {cache_dir} is in use by another rootfs run"):
        with cache_lock(cache_dir, shared=False, timeout=0):
            pass
    a.release()
    b.release()
    p = holders("exclusive", cache_dir, log)
    p.wait_locked()
    with pytest.raises(BusyError, match=rf"another rootfs run is pruning the cache {cache_dir} \(pid {p.pid}\)"):
        with cache_lock(cache_dir, shared=True, timeout=0):
            pass
    p.release()
    with cache_lock(cache_dir, shared=False, timeout=0):
        assert (cache_dir / ".prune.pid").read_text() == f"{os.getpid()}\n"
    # The cache holds entries only.
    assert os.listdir(cache_dir) == []


def test_prune_during_a_build_exits_busy(tmp_path, holders):
    cache_dir = tmp_path / "cache"
    (cache_dir / "sha256" / "ab").mkdir(parents=True)
    entry = cache_dir / "sha256" / "ab" / ("ab" + "0" * 62)
    entry.write_bytes(b"in use")
    a = holders("shared", cache_dir, tmp_path / "log")
    a.wait_locked()
    r = CliRunner().invoke(app, ["cache", "prune", "--all", "--cache-dir", str(cache_dir)])
    assert r.exit_code == 9, r.output
    assert f"the cache {cache_dir} is in use by another rootfs run" in r.output
    assert entry.exists()
    a.release()
    r = CliRunner().invoke(app, ["cache", "prune", "--all", "--cache-dir", str(cache_dir)])
    assert r.exit_code == 0, r.output
    assert not entry.exists()


FETCHER = r"""
import json, sys
from pathlib import Path
from rootfs.net.fetch import Cache, Downloader, fetch_packages
from rootfs.model.lock import LockedPackage

pkgs = [LockedPackage(**p) for p in json.loads(sys.argv[2])]
files = fetch_packages(pkgs, Cache(Path(sys.argv[1])), Downloader(backoff=0.01), jobs=3)
print(json.dumps({k: str(v) for k, v in sorted(files.items())}))
"""


def test_concurrent_runs_share_one_cache(tmp_path, http_serve):
    repo = tmp_path / "repo"
    repo.mkdir()
    pkgs = []
    for i in range(12):
        data = os.urandom(100_000 + i * 20_000)
        (repo / f"p{i}.deb").write_bytes(data)
        pkgs.append({"name": f"p{i}", "version": "1", "architecture": "all", "url": f"p{i}.deb",
                     "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    srv = http_serve(repo)
    for p in pkgs:
        p["url"] = f"{srv.url}/{p['url']}"
    cache_dir = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", FETCHER, str(cache_dir), json.dumps(pkgs)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e for _, e in outs]
    results = [json.loads(o) for o, _ in outs]
    assert results[0] == results[1] == results[2]
    cache = Cache(cache_dir)
    assert assert_clean(cache) == 12
    for p in pkgs:
        assert results[0][f"{p['name']}:all"] == str(cache.path(p["sha256"]))
