"""The package cache: verified on use, refetched when damaged, pruned on
request, and a full disk ends in one clear OutputError with no debris."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import needs_root
from faulty_server import (
    FaultyServer,
    Stall,
    assert_clean,
    blob,
    fast,
    package,
    path_of,
)
from typer.testing import CliRunner

from rootfs.cli import app
from rootfs.model.errors import OutputError, UsageError
from rootfs.model.lock import Lock, LockedPackage
from rootfs.net.cache import cache_info, prune
from rootfs.net.fetch import Cache, default_cache_dir, fetch_packages

DAY = 86400


@pytest.fixture
def server():
    s = FaultyServer()
    yield s
    s.stop()


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "rootfs"


def test_warm_run_makes_no_requests(server, tmp_path):
    pkgs = [package(server, f"p{i}", blob(20_000, i)) for i in range(4)]
    cache = Cache(tmp_path / "cache")
    first = fetch_packages(pkgs, cache, fast())
    second = fetch_packages(pkgs, cache, fast())
    assert first == second
    assert server.requests() == 4
    for p in pkgs:
        assert first[p.key] == cache.path(p.sha256)
        assert oct(first[p.key].stat().st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("damage", ["flip", "truncate", "append"])
def test_damaged_entry_is_fetched_again(server, tmp_path, damage):
    p = package(server, "p", blob(50_000, 1))
    other = package(server, "other", blob(10_000, 2))
    cache = Cache(tmp_path / "cache")
    fetch_packages([p, other], cache, fast())
    entry = cache.path(p.sha256)
    data = bytearray(entry.read_bytes())
    if damage == "flip":
        data[777] ^= 1
    elif damage == "truncate":
        del data[-1]
    else:
        data += b"\0"
    entry.write_bytes(bytes(data))
    files = fetch_packages([p, other], cache, fast())
    assert files[p.key].read_bytes() == blob(50_000, 1)
    assert server.requests(path_of(p)) == 2
    assert server.requests(path_of(other)) == 1
    assert assert_clean(cache) == 2


def test_lookup_records_the_last_use(tmp_path):
    cache = Cache(tmp_path)
    data = b"package"
    digest = hashlib.sha256(data).hexdigest()
    cache.ensure_dir(digest)
    entry = cache.path(digest)
    entry.write_bytes(data)
    os.utime(entry, (time.time() - 30 * DAY, time.time() - 30 * DAY))
    mtime = entry.stat().st_mtime_ns
    assert cache.lookup(digest, len(data)) == entry
    assert entry.stat().st_atime > time.time() - DAY
    assert entry.stat().st_mtime_ns == mtime
    assert cache.lookup(digest, len(data) + 1) is None
    assert not entry.exists()


# -- a full disk ------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    d = tmp_path / "small"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=True)


@needs_root()
def test_full_disk_is_an_output_error_without_debris(server, small_disk):
    small = package(server, "small", blob(100_000, 3))
    big = package(server, "big", blob(3 << 20, 4))
    cache = Cache(small_disk / "cache")
    with pytest.raises(OutputError, match="no space left on the device holding .*small/cache/sha256"):
        fetch_packages([small, big], cache, fast(), jobs=1)
    assert not cache.path(big.sha256).exists()
    assert assert_clean(cache) <= 1  # the small one may have made it
    # Nothing was retried: a full disk is not the mirror's fault.
    assert server.requests(path_of(big)) == 1

    with pytest.raises(OutputError, match="no space left"):
        fast().download(big.url, small_disk / "big.deb", size=big.size, sha256=big.sha256)
    assert not [n for n in os.listdir(small_disk) if n != "cache"]


# -- prune and info -------------------------------------------------------------------


_serial = itertools.count()


def fill(cache: Cache, n: int, *, age_days: float = 0) -> list[str]:
    """n entries of 1000 bytes each, last used age_days ago."""
    digests = []
    for _ in range(n):
        data = f"entry {next(_serial):04}".encode() * 100
        digest = hashlib.sha256(data).hexdigest()
        cache.ensure_dir(digest)
        cache.path(digest).write_bytes(data)
        t = time.time() - age_days * DAY
        os.utime(cache.path(digest), (t, t))
        digests.append(digest)
    return digests


def remaining(cache: Cache) -> set[str]:
    return {e.sha256 for e in cache.entries()}


def test_prune_by_age(tmp_path):
    cache = Cache(tmp_path)
    old = fill(cache, 3, age_days=40)
    new = fill(cache, 2, age_days=1)
    report = prune(cache, max_age_days=30)
    assert (report.removed, report.kept) == (3, 2)
    assert report.freed == 3000
    assert remaining(cache) == set(new)
    assert not set(old) & remaining(cache)


def test_prune_keeps_what_locks_name_and_old_and_unreferenced_together(tmp_path):
    cache = Cache(tmp_path)
    old = fill(cache, 3, age_days=40)
    new = fill(cache, 3, age_days=1)
    prune(cache, max_age_days=30, keep={old[0]})
    assert remaining(cache) == {old[0], *new}
    prune(cache, keep={new[1]})
    assert remaining(cache) == {new[1]}


def test_prune_everything_and_stray_parts(tmp_path):
    cache = Cache(tmp_path)
    digests = fill(cache, 4)
    part = cache.path(digests[0]).parent / f".{digests[0]}.abc123.part"
    part.write_bytes(b"half a download")
    live = cache.path(digests[1]).parent / f".{digests[1]}.def456.part"
    live.write_bytes(b"being written")
    holder = subprocess.Popen([sys.executable, "-c", PART_HOLDER, str(live)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        report = prune(cache, everything=True)
    finally:
        holder.stdin.close()
        holder.wait()
    assert (report.removed, report.parts, report.kept) == (4, 1, 0)
    assert report.freed == 4 * 1000 + len(b"half a download")
    assert [p.name for p in cache.parts()] == [live.name]


def test_prune_needs_a_criterion(tmp_path):
    with pytest.raises(UsageError, match="say what to prune"):
        prune(Cache(tmp_path))


def test_cli_info_and_prune(tmp_path):
    cache = Cache(tmp_path / "c")
    keep = fill(cache, 2, age_days=50)
    fill(cache, 3, age_days=50)
    (cache.objects / "ff").mkdir(exist_ok=True)
    (cache.objects / "ff" / ".x.part").write_bytes(b"12345")
    lock = Lock("deb", "t", "debian", "s", "amd64", packages=tuple(
        LockedPackage(f"k{i}", "1", "all", f"http://cache.invalid/k{i}.deb", 1, d) for i, d in enumerate(keep)))
    lock.write(tmp_path / "t.lock")
    runner = CliRunner()

    r = runner.invoke(app, ["cache", "info", "--cache-dir", str(cache.root)])
    assert r.exit_code == 0, r.output
    assert "5 entries" in r.output and f"({cache_info(cache).bytes} bytes)" in r.output
    assert "1 unfinished downloads" in r.output

    r = runner.invoke(app, ["cache", "prune", "--cache-dir", str(cache.root), "--max-age", "30",
                            "--keep-lock", str(tmp_path / "t.lock")])
    assert r.exit_code == 0, r.output
    assert "removed 3 entries and 1 unfinished downloads" in r.output
    assert "2 entries kept" in r.output
    assert remaining(cache) == set(keep)

    r = runner.invoke(app, ["cache", "prune", "--cache-dir", str(cache.root), "--all", "--max-age", "3"])
    assert r.exit_code == 2 and "does not combine" in r.output
    r = runner.invoke(app, ["cache", "prune", "--cache-dir", str(cache.root), "--keep-lock", str(tmp_path / "none.lock")])
    assert r.exit_code == 2 and "cannot read lock file" in r.output
    assert remaining(cache) == set(keep)

    r = runner.invoke(app, ["cache", "prune", "--cache-dir", str(cache.root), "--all"])
    assert r.exit_code == 0 and "removed 2 entries" in r.output
    assert cache_info(cache).entries == 0


@pytest.fixture
def read_only(tmp_path):
    """read_only(dir): dir becomes a read-only bind mount of itself."""
    mounts = []

    def make(d: Path) -> Path:
        subprocess.run(["mount", "--bind", str(d), str(d)], check=True)
        mounts.append(d)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(d)], check=True)
        return d

    yield make
    for d in reversed(mounts):
        subprocess.run(["umount", "-l", str(d)], check=True)


@needs_root()
def test_read_only_cache_serves_hits(server, tmp_path, read_only):
    pkgs = [package(server, f"p{i}", blob(10_000, 100 + i)) for i in range(3)]
    cache = Cache(tmp_path / "cache")
    cache.root.mkdir()
    fetch_packages(pkgs[:2], cache, fast())
    assert [f.name for f in cache.root.iterdir()] == ["sha256"]  # no lock file to write
    read_only(cache.root)
    files = fetch_packages(pkgs[:2], cache, fast())
    assert files[pkgs[0].key].read_bytes() == blob(10_000, 100)
    assert server.requests() == 2
    # A miss still needs a writable cache, and says so.
    with pytest.raises(OutputError, match="cannot create cache directory|cannot write"):
        fetch_packages(pkgs, cache, fast())


# -- debris of killed runs ------------------------------------------------------------

KILLED_FETCH = r"""
import json, sys
from pathlib import Path
from rootfs.net.fetch import Cache, Downloader, fetch_packages
from rootfs.model.lock import LockedPackage

p = LockedPackage(**json.loads(sys.argv[2]))
fetch_packages([p], Cache(Path(sys.argv[1])), Downloader(timeout=60))
"""

PART_HOLDER = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
"""


def test_parts_of_killed_runs_are_swept_and_live_ones_kept(server, tmp_path):
    p = package(server, "p", blob(200_000, 7))
    server.script(path_of(p), Stall(keep=50_000))
    cache = Cache(tmp_path / "cache")
    run = subprocess.Popen([sys.executable, "-c", KILLED_FETCH, str(cache.root), json.dumps(dataclasses.asdict(p))])
    try:
        deadline = time.monotonic() + 30
        while not list(cache.parts()) and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.02)
        [killed] = list(cache.parts())
    finally:
        run.kill()
        run.wait()
    # A second .part, as old, whose writer is still alive.
    live = killed.with_name(".live.abc.part")
    live.write_bytes(b"in progress")
    fresh = killed.with_name(".fresh.abc.part")
    fresh.write_bytes(b"just created")
    old = time.time() - 600
    for f in (killed, live):
        os.utime(f, (old, old))
    holder = subprocess.Popen([sys.executable, "-c", PART_HOLDER, str(live)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        files = fetch_packages([p], cache, fast())
        assert files[p.key].read_bytes() == blob(200_000, 7)
        assert sorted(f.name for f in cache.parts()) == [".fresh.abc.part", ".live.abc.part"]
    finally:
        holder.stdin.close()
        holder.wait()
