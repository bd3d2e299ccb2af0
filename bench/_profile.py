"""Where a `rootfs make` spends its time: py-spy samples by stage, and the
system calls of one build traced with `strace -f`, and those the kernel
ran counted with perf (syncs filtered inside the root are not among them).

Used by bench/bootstrap.py --profile. The stages are told apart by what
rootfs itself says: in the samples, by the functions on the stack
(stage_one, stage_two, the packer...); in the trace, by the installer's own
`-v` lines, which appear there as writes to standard error ("N package files
verified" ends the fetch, "stage 1: ..." ends stage 1, "stage 2: ..." ends
stage 2).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
RATE = 200  # py-spy samples per second


# -- py-spy ---------------------------------------------------------------------

def _stage_of(frames: list[str]) -> str:
    joined = ";".join(frames)
    if "rootfs/pack/" in joined:
        return "pack"
    if "stage_two " in joined:
        return "stage 2"
    if any(k in joined for k in ("stage_one ", "_extract_one ", "settle_overlaps ")) or frames[0].endswith(
            tuple(f"extract_{i}" for i in range(64))):
        return "stage 1"
    if "_load_lock " in joined or "backends/deb/resolve" in joined or "backends/deb/index" in joined:
        return "resolve"
    if "rootfs/net/" in joined:
        return "fetch"
    return "other (start-up, CLI, reports)"


def pyspy(argv: list[str], raw: Path) -> dict[str, collections.Counter]:
    spy = shutil.which("py-spy") or str(HERE / ".venv/bin/py-spy")
    if not os.path.exists(spy):
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    cmd = [spy, "record", "-r", str(RATE), "--threads", "--nonblocking", "-f", "raw", "-o", str(raw), "--", *argv]
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=HERE)
    if p.returncode != 0 or not raw.exists():
        raise SystemExit(f"py-spy failed: {p.stderr.strip()[-800:]}")
    by_stage: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        stage = _stage_of(frames)
        leaf = frames[-1]
        by_stage[stage][("self", leaf)] += int(n)
        by_stage[stage][("total", "")] += int(n)
        seen = set()
        for fr in frames[1:]:
            if "rootfs/" in fr and fr not in seen:
                seen.add(fr)
                by_stage[stage][("incl", fr)] += int(n)
    return by_stage


def print_pyspy(by_stage: dict[str, collections.Counter], top: int = 12) -> None:
    print(f"\npy-spy, {RATE} samples/s of every rootfs thread while it runs Python or a C call (waiting excluded)")
    for stage in ("resolve", "fetch", "stage 1", "stage 2", "pack", "other (start-up, CLI, reports)"):
        c = by_stage.get(stage)
        if not c:
            continue
        total = c[("total", "")]
        print(f"  {stage}: {total} samples = {total / RATE:.2f} thread-seconds")
        selfs = sorted(((n, k[1]) for k, n in c.items() if k[0] == "self"), reverse=True)[:top]
        for n, fr in selfs:
            print(f"    self {100 * n / total:5.1f}%  {_short(fr)}")
        incl = sorted(((n, k[1]) for k, n in c.items() if k[0] == "incl"), reverse=True)[:top]
        for n, fr in incl:
            print(f"    incl {100 * n / total:5.1f}%  {_short(fr)}")


def _short(frame: str) -> str:
    return re.sub(r"\(/[^)]*?/(rootfs/|site-packages/|lib/python3\.\d+/)", r"(\1", frame)


# -- strace ---------------------------------------------------------------------

_LINE = re.compile(r"^(\d+) +(\d+\.\d+) (.*)$")  # strace pads short pids
_CALL = re.compile(r"^([a-z_0-9]+)\((.*)$")
_RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9]+) resumed>")
_EXECVE = re.compile(r'^execve\("([^"]*)", \[(.*?)\]')
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
_RUNNING = re.compile(r'^write\(2(?:<[^>]*>)?, "running (\S+) preinst')
_MARK = re.compile(r'^write\(2(?:<[^>]*>)?, "(?:\\n)?(\d+ package files verified|stage 1: |stage 2: )')
_CLONE = re.compile(r"^(clone3?|vfork|fork)\(")
_RET = re.compile(r"\) += (\d+)")
_OPEN = re.compile(r'^openat\((AT_FDCWD|\d+)(?:<([^>]*)>)?, "([^"]*)", ([A-Z_|]+)')
FSYNCS = {"fsync", "fdatasync", "sync_file_range", "syncfs", "sync", "msync"}


@dataclass
class Proc:
    pid: int
    parent: int = 0
    thread: bool = False
    program: str = ""
    args: list[str] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    calls: collections.Counter = field(default_factory=collections.Counter)
    opens: list[tuple[float, str, str]] = field(default_factory=list)  # (time, path, flags)


@dataclass
class Trace:
    marks: dict[str, float]
    procs: dict[int, Proc]
    calls: dict[str, collections.Counter]  # stage -> syscall -> count
    call_time: dict[str, collections.Counter]  # stage -> syscall -> seconds inside it
    main: int


def strace(argv: list[str], out: Path) -> Trace:
    if shutil.which("strace") is None:
        raise SystemExit("--profile needs strace (apt-get install strace)")
    cmd = ["strace", "-f", "-qq", "-ttt", "-T", "-y", "-s", "120", "-o", str(out), "--", *argv]
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=HERE)
    if p.returncode != 0:
        raise SystemExit(f"the traced build failed: {p.stderr.strip()[-800:]}")
    return parse(out)


def parse(path: Path) -> Trace:
    procs: dict[int, Proc] = {}
    marks: dict[str, float] = {}
    lines = []
    main = 0
    pending_exec: dict[int, tuple[str, list[str]]] = {}
    pending_clone: dict[int, bool] = {}
    announced: list[tuple[float, str]] = []  # rootfs's "running PKG preinst"
    with open(path, errors="replace") as f:
        for raw in f:
            m = _LINE.match(raw.rstrip("\n"))
            if not m:
                continue
            pid, t, rest = int(m.group(1)), float(m.group(2)), m.group(3)
            if not main:
                main = pid
            p = procs.get(pid)
            if p is None:
                p = procs[pid] = Proc(pid, start=t)
            p.end = t
            if rest.startswith("+++ exited") or rest.startswith("+++ killed"):
                continue
            r = _RESUMED.match(rest)
            if r:
                # counted where the call began; what matters here is a
                # successful exec and the child a clone made
                if r.group(1) == "execve" and re.search(r"\) = 0 <", rest):
                    _exec(p, pending_exec.pop(pid, None), t)
                elif r.group(1) in ("clone", "clone3", "vfork", "fork"):
                    _child(procs, p, rest, pending_clone.pop(pid, False), t)
                continue
            c = _CALL.match(rest)
            if not c:
                continue
            name = c.group(1)
            lines.append((t, pid, name, rest))
            rn = _RUNNING.match(rest)
            if rn:
                announced.append((t, rn.group(1)))
            mk = _MARK.match(rest)
            if mk:
                key = mk.group(1)
                key = "fetched" if "verified" in key else key.strip(": ")
                marks.setdefault(key, t)
            if name == "execve":
                e = _EXECVE.match(rest)
                if e:
                    pending_exec[pid] = (e.group(1), _ARG.findall(e.group(2)))
                if re.search(r"\) = 0 <", rest):
                    _exec(p, pending_exec.pop(pid, None), t)
            if _CLONE.match(rest):
                if "<unfinished" in rest:
                    pending_clone[pid] = "CLONE_THREAD" in rest
                else:
                    _child(procs, p, rest, "CLONE_THREAD" in rest, t)
            if name.startswith("open"):
                o = _OPEN.match(rest)
                if o:
                    base, rel, flags = o.group(2) or "", o.group(3), o.group(4)
                    full = rel if rel.startswith("/") or not base else base.rstrip("/") + "/" + rel
                    p.opens.append((t, full, flags))
    procs[main].program = procs[main].program or "rootfs"
    end = max(p.end for p in procs.values())
    bounds = [("until fetched", 0.0, marks.get("fetched", 0.0)),
              ("stage 1", marks.get("fetched", 0.0), marks.get("stage 1", 0.0)),
              ("stage 2", marks.get("stage 1", 0.0), marks.get("stage 2", end)),
              ("after stage 2 (pack...)", marks.get("stage 2", end), end + 1)]
    calls: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    call_time: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    last_read = 0.0
    for t, pid, name, rest in lines:
        stage = next((s for s, a, b in bounds if a <= t < b), bounds[-1][0])
        if stage == "stage 1":
            if name in ("pread64", "preadv2", "read") and "/sha256/" in rest[:200]:
                last_read = t  # a package file (the cache's layout)
            if name == "openat":
                kind = "O_DIRECTORY" if "O_DIRECTORY" in rest else "O_CREAT" if "O_CREAT" in rest else "other"
                calls["stage 1, openat by kind"][kind] += 1
            if name == "fcntl" and "F_DUPFD" in rest:
                calls["stage 1, openat by kind"]["dup of a directory (one per path walk)"] += 1
        calls[stage][name] += 1
        procs[pid].calls[name] += 1
        dt = re.search(r"<(\d+\.\d+)>$", rest)
        if dt:
            call_time[stage][name] += float(dt.group(1))
    # dpkg runs a preinst from tmp.ci/, where the name says nothing: take
    # the package rootfs announced just before
    for p in procs.values():
        if p.program.endswith("/tmp.ci/preinst"):
            before = [name for t, name in announced if t <= p.start]
            if before:
                p.program = f"/var/lib/dpkg/info/{before[-1]}.preinst"
    if last_read:
        marks["last package read"] = last_read
        tail = collections.Counter(name for t, _, name, _ in lines if last_read < t < marks.get("stage 1", 0.0))
        calls["stage 1, after the last package byte"] = tail
    return Trace(marks, procs, calls, call_time, main)


def _child(procs: dict[int, Proc], p: Proc, rest: str, thread: bool, t: float) -> None:
    ret = _RET.search(rest)
    if not ret:
        return
    child = int(ret.group(1))
    cp = procs.setdefault(child, Proc(child, start=t))
    cp.parent = p.pid
    cp.thread = thread
    if not cp.program:
        cp.program = p.program if thread else f"(fork of {os.path.basename(p.program) or p.pid})"


def _exec(p: Proc, what: tuple[str, list[str]] | None, t: float) -> None:
    if what is not None:
        p.program, p.args = what
        p.start = t
        p.thread = False


def entries_of(tree: Path) -> collections.Counter:
    """The archive members rootfs extracted, by kind, from the tree's dpkg
    lists (every member of every package, the shared directories once per
    package)."""
    kinds: collections.Counter = collections.Counter()
    info = tree / "var/lib/dpkg/info"
    for lst in info.glob("*.list"):
        for line in lst.read_text(errors="replace").splitlines():
            if not line:
                continue
            try:
                st = os.lstat(str(tree) + ("" if line == "/." else line))
            except OSError:
                kinds["gone (diverted or removed)"] += 1
                continue
            import stat as s

            kinds["directory" if s.S_ISDIR(st.st_mode) else "symlink" if s.S_ISLNK(st.st_mode)
                  else "file" if s.S_ISREG(st.st_mode) else "other"] += 1
    return kinds


def print_strace(tr: Trace, tree: Path, cache: Path) -> None:
    kinds = entries_of(tree)
    n = sum(kinds.values())
    m = tr.marks
    print(f"\nstrace -f of one build (timings under strace are inflated; counts are not)")
    if "stage 1" not in m or "stage 2" not in m:
        print(f"  the installer's -v lines were not found in the trace (marks: {sorted(m)}); no stage split")
    else:
        print(f"  stage 1 {m['stage 1'] - m.get('fetched', 0):.1f} s, stage 2 {m['stage 2'] - m['stage 1']:.1f} s "
              f"under strace")
    print(f"  stage 1 extracted {n} archive members: " + ", ".join(f"{v} {k}" for k, v in kinds.most_common()))
    for stage in ("until fetched", "stage 1", "stage 2", "after stage 2 (pack...)"):
        c = tr.calls.get(stage)
        if not c:
            continue
        total = sum(c.values())
        fs = sum(v for k, v in c.items() if k in FSYNCS)
        fst = sum(v for k, v in tr.call_time[stage].items() if k in FSYNCS)
        print(f"  {stage}: {total} system calls, {fs} fsync-like "
              f"({', '.join(f'{k} {v}' for k, v in c.items() if k in FSYNCS) or 'none'}; {fst:.2f} s inside them)")
        per = f"{'per member':>11}" if stage == "stage 1" else ""
        print(f"    {'call':<18}{'count':>9}{per}{'s inside':>10}")
        for name, v in c.most_common(18 if stage == "stage 1" else 10):
            extra = f"{v / n:11.2f}" if stage == "stage 1" and n else ""
            print(f"    {name:<18}{v:9d}{extra}{tr.call_time[stage][name]:10.3f}")

    kinds1 = tr.calls.get("stage 1, openat by kind")
    if kinds1:
        print("    stage 1's openat by kind: " + ", ".join(f"{k} {v}" for k, v in kinds1.most_common()))
    tail = tr.calls.get("stage 1, after the last package byte")
    if tail and "stage 1" in m:
        print(f"    after the last package byte was read (overlaps settled, directory mtimes stamped again, "
              f"conffiles, the database written): {m['stage 1'] - m['last package read']:.1f} s, "
              f"{sum(tail.values())} calls: " + ", ".join(f"{k} {v}" for k, v in tail.most_common(6)))

    # stage 2: every program it ran
    s1, s2 = m.get("stage 1", 0.0), m.get("stage 2", float("inf"))
    progs = [p for p in tr.procs.values() if not p.thread and p.pid != tr.main and s1 <= p.start < s2 and p.args]
    by_prog: dict[str, list[float]] = collections.defaultdict(list)
    scripts: list[tuple[float, str]] = []
    for p in progs:
        base = os.path.basename(p.program)
        what = base
        if "/var/lib/dpkg/" in p.program:
            what = f"maintainer script {base.rsplit('.', 1)[-1]} {p.args[1] if len(p.args) > 1 else ''}".strip()
            scripts.append((p.end - p.start, f"{base} {' '.join(p.args[1:2])}"))
        by_prog[what].append(p.end - p.start)
    print(f"  stage 2 ran {len(progs)} programs (exec'd processes):")
    print(f"    {'program':<44}{'runs':>6}{'s (incl. children)':>20}")
    for what, ts in sorted(by_prog.items(), key=lambda kv: -sum(kv[1]))[:25]:
        print(f"    {what:<44}{len(ts):6d}{sum(ts):20.2f}")
    print("  slowest maintainer scripts:")
    for dt, what in sorted(scripts, reverse=True)[:12]:
        print(f"    {dt:6.2f} s  {what}")
    triggered = [p for p in progs if "/var/lib/dpkg/" in p.program and p.args[1:2] == ["triggered"]]
    print(f"  triggers processed: {len(triggered)} 'postinst triggered' runs: "
          + "; ".join(f"{os.path.basename(p.program)} {' '.join(p.args[2:])}" for p in triggered))
    for tool in ("ldconfig", "mandb", "update-alternatives", "install-info", "update-mime-database"):
        runs = [p for p in progs if os.path.basename(p.program) == tool]
        if runs:
            who = collections.Counter(_caller(tr, p) for p in runs)
            print(f"  {tool}: {len(runs)} runs, {sum(p.end - p.start for p in runs):.2f} s, started by "
                  + ", ".join(f"{k} ({v})" for k, v in who.most_common()))
    dpkgs = [p for p in progs if os.path.basename(p.program) == "dpkg"]
    helpers = [p for p in dpkgs if not any(a in p.args for a in ("--configure", "--audit", "--install", "--unpack",
                                                                   "--triggers-only"))]
    print(f"  dpkg runs: {len(dpkgs) - len(helpers)} that change the database, and {len(helpers)} version checks "
          f"(--validate-version, --compare-versions: dpkg-maintscript-helper) taking "
          f"{sum(p.end - p.start for p in helpers):.2f} s")
    for p in dpkgs:
        if p in helpers:
            continue
        writes = sum(1 for _, path, fl in p.opens if ("O_WRONLY" in fl or "O_RDWR" in fl) and "/var/lib/dpkg/" in path)
        fs = sum(p.calls[k] for k in FSYNCS)
        names = [a for a in p.args[1:] if not a.startswith("-")]
        print(f"    dpkg {' '.join(a for a in p.args[1:] if a.startswith('-'))} ({len(names)} packages named): "
              f"{p.end - p.start:.2f} s, {writes} database files opened for writing, {fs} fsyncs of its own")

    # work done twice
    from rootfs.model.lock import read_lock

    ours = {p.sha256 for p in read_lock(tree.with_name(tree.name + ".lock.json")).packages}
    debs = collections.Counter()
    written = collections.Counter()
    for p in tr.procs.values():
        for _, path, flags in p.opens:
            if str(cache) in path and os.path.basename(path) in ours:
                debs[os.path.basename(path)] += 1
            if ("O_WRONLY" in flags or "O_RDWR" in flags) and str(cache) not in path:
                written[_in_root(path)] += 1
    if debs:
        hist = collections.Counter(debs.values())
        print(f"  the {len(ours)} package files were opened: "
              + ", ".join(f"{v} of them {k} times" for k, v in sorted(hist.items()))
              + " (the fetch re-hashes every cached file, then stage 1 reads it)")
    again = {k: v for k, v in written.items() if v > 1}
    by_dir = collections.Counter()
    for k, v in again.items():
        by_dir[os.path.dirname(k)] += v - 1
    print(f"  paths opened for writing more than once in the whole build: {len(again)} "
          f"({sum(again.values()) - len(again)} extra opens); most in:")
    for d, v in by_dir.most_common(10):
        print(f"    {v:6d}  {d}/")


def _caller(tr: Trace, p: Proc) -> str:
    """The nearest ancestor that is a maintainer script, dpkg or rootfs."""
    q = tr.procs.get(p.parent)
    while q is not None:
        if q.pid == tr.main:
            return "rootfs"
        if "/var/lib/dpkg/" in q.program and not q.thread:
            return f"{os.path.basename(q.program)} {' '.join(q.args[1:2])}".strip()
        if os.path.basename(q.program) == "dpkg" and not q.thread:
            return "dpkg"
        q = tr.procs.get(q.parent)
    return "?"


def _in_root(path: str) -> str:
    """Host paths of the staging root shortened to their in-root part."""
    m = re.search(r"/(?:\.root|rootfs|profiled[^/]*)(/.*)$", path)
    return m.group(1) if m else path


_KERNEL_EVENTS = ("fsync", "fdatasync", "sync", "syncfs", "sync_file_range", "execve")


def kernel_counts(argv: list[str]) -> dict[str, int] | None:
    """System calls of one build that the kernel ran, counted by perf's
    tracepoints (None without perf). They fire after seccomp, so the syncs
    the build's filter turns into no-ops inside the root are not among them
    (strace, which stops before seccomp, lists those too)."""
    if shutil.which("perf") is None:
        return None
    events = [f"syscalls:sys_enter_{e}" for e in _KERNEL_EVENTS] + ["raw_syscalls:sys_enter"]
    with tempfile.NamedTemporaryFile(prefix="bench-perf.", suffix=".csv") as f:
        r = subprocess.run(["perf", "stat", "-x", ",", "-o", f.name, "-e", ",".join(events), "--", *argv],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        text = Path(f.name).read_text()
    if r.returncode != 0:
        return None
    out = {}
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and not line.startswith("#") and parts[0].isdigit():
            out[parts[2].rpartition(":")[2].replace("sys_enter_", "") or parts[2]] = int(parts[0])
    return out


def report(case, tree: Path, argv: list[str]) -> None:
    d = case.dir("profile")
    d.mkdir(parents=True, exist_ok=True)
    out = Path(argv[argv.index("-o") + 1])
    raw = d / "pyspy.raw"
    print(f"\n== profile of {case.name} (warm cache); py-spy raw samples and the strace log in {d}", flush=True)
    try:
        print_pyspy(pyspy(argv, raw))
    except SystemExit as exc:
        print(f"  py-spy: {exc}")
    _remove(out)
    tr = strace(argv, d / "strace.log")
    _remove(out)
    print_strace(tr, tree, case.dir("rootfs-cache"))
    _remove(out)
    counts = kernel_counts(argv)
    _remove(out)
    if counts is None:
        print("  perf is not installed (or cannot count tracepoints): no count of what reached the kernel")
    else:
        syncs = sum(v for k, v in counts.items() if k in FSYNCS or k == "sync_file_range")
        print(f"  system calls the kernel ran (perf, whole build): {counts.get('sys_enter', 0)}, of them "
              f"{syncs} fsync-like (" + ", ".join(f"{k} {counts[k]}" for k in _KERNEL_EVENTS if k in counts)
              + "); strace's fsync counts include the no-ops inside the root")


def _remove(out: Path) -> None:
    if out.is_dir():
        shutil.rmtree(out, ignore_errors=True)
    else:
        out.unlink(missing_ok=True)
    for suffix in (".lock.json", ".build.json", ".spdx.json"):
        out.with_name(out.name + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    # Re-read a kept trace: _profile.py TRACE TREE CACHE
    print_strace(parse(Path(sys.argv[1])), Path(sys.argv[2]), Path(sys.argv[3]))
