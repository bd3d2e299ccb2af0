#!/usr/bin/env python3
"""Bootstrap benchmark: rootfs make against mmdebstrap and debootstrap, with
rootfs's own per-stage breakdown against the bare tools doing each stage's
work, and (on request) where the time goes inside the stages.

Run as root, on demand (not part of the tests):

    .venv/bin/python bench/bootstrap.py                       # bookworm minbase
    .venv/bin/python bench/bootstrap.py --suite trixie --suite sid --variant buildd --variant default
    .venv/bin/python bench/bootstrap.py --matrix --runs 1     # bookworm, trixie, sid x minbase, buildd, default
    .venv/bin/python bench/bootstrap.py --profile             # + py-spy and strace of one build

Every tool builds the same suite and variant from the same mirror (the one
apt is configured with). For each case a warm-up build of rootfs and of
mmdebstrap comes first (not counted: it fills the page cache and
mmdebstrap's package directory, and leaves rootfs's tree and lock for the
floors). Then, --runs
times, with the tools' order rotating each run: every tool with a cold
cache (no package file on disk), then every tool with a warm one. mmdebstrap
runs with the merged-usr hook, which makes it install debootstrap's package
set (without it apt pulls in usrmerge and perl); rootfs's `default` variant
is mmdebstrap's `debootstrap` and debootstrap's own default.

The breakdown (first case, unless --no-breakdown) takes rootfs's stages from
its build report and its `-v` log and measures, in the same runs, alternating
with them: `dpkg-deb -x` of the very package files rootfs installed, one at
a time and two at a time; their data members decompressed only (`dpkg-deb
--fsys-tarfile`); `tar --sort=name` of rootfs's tree alone, piped into
`zstd -3` and into `pigz -6`, against `rootfs pack` writing the same tree as
tar, tar.zst and an OCI layout with its gzip layer; and the packer's peak
memory on that tree and on one twice its size.

--profile then builds once more under py-spy (the top functions of stage 1
and stage 2) and once under `strace -f` (the system calls per extracted
entry, fsyncs, every program stage 2 runs, maintainer scripts, triggers and
what is done twice). py-spy comes from PyPI (`.venv/bin/pip install py-spy`);
it is not a dependency of rootfs.

The machine is shared: the load average is printed at the start and at the
end of each case. Wall times move with it; CPU times much less. Compare the
ratios, which are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "bench"))

from _measure import Failed, Sample, load, measure, median, ratio, rootfs_cmd  # noqa: E402

from rootfs.backends.deb.mirror import host_mirror  # noqa: E402

MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/merged-usr"
SUITES = ("bookworm", "trixie", "sid")
VARIANTS = ("minbase", "buildd", "default")
# rootfs's variant -> (mmdebstrap --variant, debootstrap --variant or None)
PEER_VARIANT = {"minbase": ("minbase", "minbase"), "buildd": ("buildd", "buildd"), "default": ("debootstrap", None)}
TOOLS = ("rootfs", "mmdebstrap", "debootstrap")
LABEL = {"rootfs": "rootfs make", "mmdebstrap": "mmdebstrap (merged-usr hook)", "debootstrap": "debootstrap"}
GOAL_MMDEBSTRAP = 0.30
STRETCH_MMDEBSTRAP = 0.25


@dataclass
class Case:
    suite: str
    variant: str
    work: Path
    mirror: str
    fmt: str
    ignore_valid_until: bool = False

    @property
    def name(self) -> str:
        return f"{self.suite} {self.variant}"

    def dir(self, *parts: str) -> Path:
        return self.work.joinpath(f"{self.suite}-{self.variant}", *parts)


@dataclass
class Timings:
    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)  # (tool, cold|warm)
    stages: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # cold|warm -> per run
    packages: dict[str, int] = field(default_factory=dict)

    def add(self, tool: str, cache: str, s: Sample) -> None:
        self.samples.setdefault((tool, cache), []).append(s)
        print(f"  {LABEL[tool] + ' (' + cache + ')':<38} {s.wall:7.2f} s wall {s.cpu:7.2f} s cpu {s.rss:6d} MiB",
              flush=True)


# -- the tools ----------------------------------------------------------------


def rootfs_make(case: Case, out: Path, cache: Path, formats: list[str]) -> list[str]:
    # --no-updates: the suite alone, as debootstrap and mmdebstrap (given
    # one mirror) read it; the same package set.
    cmd = rootfs_cmd() + ["-v", "make", case.suite, "--variant", case.variant, "--mirror", case.mirror,
                          "--no-updates", "--no-sbom", "--cache-dir", str(cache), "-o", str(out), "--force"]
    if case.ignore_valid_until:
        cmd.append("--ignore-valid-until")
    for f in formats:
        cmd += ["-f", f]
    return cmd


def mmdebstrap(case: Case, target: Path, debs: Path | None, keep_debs: Path | None = None) -> list[str]:
    cmd = ["mmdebstrap", "--variant=" + PEER_VARIANT[case.variant][0], f"--hook-dir={MERGED_USR_HOOK}"]
    if case.ignore_valid_until:
        cmd.append('--aptopt=Acquire::Check-Valid-Until "false"')
    if debs is not None:
        # mmdebstrap's own recipe for a package cache (its manual, "sync-in")
        cmd += ['--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
                f"--setup-hook=sync-in {debs} /var/cache/apt/archives/"]
    if keep_debs is not None:
        cmd += ["--skip=download/empty", f"--customize-hook=sync-out /var/cache/apt/archives {keep_debs}"]
    return cmd + [case.suite, str(target), case.mirror]


def debootstrap(case: Case, target: Path, cache: Path) -> list[str]:
    variant = PEER_VARIANT[case.variant][1]
    return (["debootstrap"] + ([f"--variant={variant}"] if variant else [])
            + [f"--cache-dir={cache}", case.suite, str(target), case.mirror])


def count_packages(root: Path) -> int:
    out = subprocess.run(["dpkg-query", "--admindir", str(root / "var/lib/dpkg"), "-W", "-f", "${Package}\n"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.split())


def rootfs_stages(stderr: str, report: Path) -> dict[str, float]:
    """resolve, fetch, install, pack from the build report; stage 1 and
    stage 2 from the -v log (the installer says how long each took)."""
    durations = json.loads(report.read_text())["durations"]
    out = {k: float(v) for k, v in durations.items()}
    m1 = re.search(r"stage 1: .*? in ([0-9.]+)s", stderr)
    m2 = re.search(r"stage 2: configured in ([0-9.]+)s", stderr)
    if m1:
        out["stage 1"] = float(m1.group(1))
    if m2:
        out["stage 2"] = float(m2.group(1))
    if m1 and m2 and "install" in out:
        out["install, other"] = max(0.0, out["install"] - out["stage 1"] - out["stage 2"])
    return out


def rmtree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    for suffix in (".lock.json", ".build.json", ".spdx.json"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def run_tool(case: Case, tool: str, cache_state: str, t: Timings) -> None:
    d = case.dir()
    if tool == "rootfs":
        cache = d / "rootfs-cache"
        if cache_state == "cold":
            shutil.rmtree(cache, ignore_errors=True)
        out = d / "rootfs-out"
        rmtree(out)
        s = measure(rootfs_make(case, out, cache, [case.fmt]), cwd=HERE)
        t.add(tool, cache_state, s)
        t.stages.setdefault(cache_state, []).append(rootfs_stages(s.stderr, out.with_name(out.name + ".build.json")))
        rmtree(out)
        return
    target = d / tool
    rmtree(target)
    if tool == "mmdebstrap":
        s = measure(mmdebstrap(case, target, d / "mmdebstrap-debs" if cache_state == "warm" else None))
    else:
        cache = d / "debootstrap-cache"
        if cache_state == "cold":
            shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(exist_ok=True)
        s = measure(debootstrap(case, target, cache))
    t.add(tool, cache_state, s)
    t.packages.setdefault(tool, count_packages(target))
    rmtree(target)


def warm_up(case: Case, tools: list[str], t: Timings) -> Path:
    """One build of rootfs and of mmdebstrap, not counted. Returns rootfs's
    tree (kept for the floors, with its lock beside it)."""
    d = case.dir()
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)  # apt's _apt user reads mmdebstrap's package directory
    print(f"warm-up ({load()})", flush=True)
    tree = d / "tree"
    rmtree(tree)
    s = measure(rootfs_make(case, tree, d / "rootfs-cache", ["dir"]), cwd=HERE)
    print(f"  rootfs make -f dir (warm-up)              {s.wall:7.2f} s", flush=True)
    t.packages["rootfs"] = count_packages(tree)
    if "mmdebstrap" in tools:
        debs = d / "mmdebstrap-debs"
        shutil.rmtree(debs, ignore_errors=True)
        debs.mkdir()
        target = d / "mmdebstrap"
        rmtree(target)
        s = measure(mmdebstrap(case, target, None, keep_debs=debs))
        print(f"  mmdebstrap (warm-up, keeps its packages)  {s.wall:7.2f} s", flush=True)
        rmtree(target)
    # debootstrap needs no warm-up of its own: its cold run fills the
    # cache its warm run uses, and the two builds above warmed the mirror
    return tree


# -- the floors -----------------------------------------------------------------


def package_files(tree: Path, cache: Path) -> list[Path]:
    """The package files rootfs installed into tree, from its lock and cache."""
    from rootfs.model.lock import read_lock
    from rootfs.net.cache import Cache

    lock = read_lock(tree.with_name(tree.name + ".lock.json"))
    c = Cache(cache)
    files = []
    for p in lock.packages:
        path = c.lookup(p.sha256, p.size)
        if path is None:
            raise SystemExit(f"{p.name}: not in rootfs's cache {cache}")
        files.append(path)
    return files


def floors(case: Case, tree: Path, debs: list[Path]) -> dict[str, Sample]:
    """One measurement of each bare tool doing a stage's work."""
    d = case.dir()
    x = d / "floor-x"
    out = d / "floor-out"
    listing = d / "debs.txt"
    listing.write_text("".join(f"{p}\n" for p in debs))
    sh = ["sh", "-c"]
    cases = {
        "dpkg-deb -x, one at a time": sh + ['mkdir -p "$1" && while read -r f; do dpkg-deb -x "$f" "$1"; done < "$2"',
                                            "sh", str(x), str(listing)],
        "dpkg-deb -x, two at a time": sh + ['mkdir -p "$1" && xargs -P2 -I{} dpkg-deb -x {} "$1" < "$2"',
                                            "sh", str(x), str(listing)],
        "dpkg-deb --fsys-tarfile (decompress only)": sh + [
            'while read -r f; do dpkg-deb --fsys-tarfile "$f"; done < "$1" > /dev/null', "sh", str(listing)],
        "tar --sort=name": sh + ['tar --sort=name --numeric-owner --xattrs -C "$1" -cf "$2" .',
                                 "sh", str(tree), str(out)],
        "tar --sort=name | zstd -3": sh + [
            'tar --sort=name --numeric-owner --xattrs -C "$1" -c . | zstd -3 -q -T0 > "$2"', "sh", str(tree), str(out)],
        "tar --sort=name | pigz -6": sh + [
            'tar --sort=name --numeric-owner --xattrs -C "$1" -c . | pigz -6 > "$2"', "sh", str(tree), str(out)],
        "rootfs pack -f tar": packer(tree, out, "tar"),
        "rootfs pack -f tar.zst": packer(tree, out, "tar.zst"),
        "rootfs pack -f oci (gzip layer)": packer(tree, out, "oci"),
    }
    got = {}
    for name, argv in cases.items():
        got[name] = measure(argv, cwd=HERE)
        rmtree(x)
        rmtree(out)
    return got


def packer(root: Path, out: Path, fmt: str) -> list[str]:
    """The packer alone, as `rootfs make` calls it (no CLI start-up)."""
    code = ("import sys\nfrom rootfs.pack import PackOptions, pack\n"
            "pack(sys.argv[1], [sys.argv[3]], sys.argv[2], PackOptions(source_date_epoch=1700000000))\n")
    return [sys.executable, "-c", code, str(root), str(out), fmt]


def pack_memory(case: Case, tree: Path) -> tuple[Sample, Sample, int, int]:
    """The packer's peak memory on the tree and on a tree twice its size."""
    double = case.dir("double")
    rmtree(double)
    double.mkdir()
    for half in ("a", "b"):
        subprocess.run(["cp", "-a", "--reflink=auto", str(tree), str(double / half)], check=True)
    out = case.dir("floor-out")
    one = measure(packer(tree, out, "oci"), cwd=HERE)
    rmtree(out)
    two = measure(packer(double, out, "oci"), cwd=HERE)
    rmtree(out)
    size1 = _du(tree)
    rmtree(double)
    return one, two, size1, 2 * size1


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


# -- the report -------------------------------------------------------------------


def print_comparison(case: Case, t: Timings, tools: list[str], caches: list[str], runs: int) -> None:
    print(f"\n{case.name}, -f {case.fmt} for rootfs, median of {runs} run(s), alternating")
    head = "".join(f"{c + ' wall':>11}{c + ' cpu':>10}" for c in caches)
    print(f"  {'':<30}{head}{'peak MiB':>10}{'packages':>10}")
    med: dict[tuple[str, str], tuple[float, float]] = {}
    for tool in tools:
        row = ""
        rss = 0
        for c in caches:
            ss = t.samples.get((tool, c), [])
            w, u = median(s.wall for s in ss), median(s.cpu for s in ss)
            med[(tool, c)] = (w, u)
            rss = max([rss] + [s.rss for s in ss])
            row += f"{w:11.2f}{u:10.2f}"
        print(f"  {LABEL[tool]:<30}{row}{rss:10d}{t.packages.get(tool, 0):10d}")
    if "rootfs" not in tools:
        return
    for peer in (p for p in tools if p != "rootfs"):
        row = ""
        for c in caches:
            (w, u), (pw, pu) = med[("rootfs", c)], med[(peer, c)]
            row += f"{ratio(w, pw):>11}{ratio(u, pu):>10}"
        goal = f"   goal <= {GOAL_MMDEBSTRAP:.2f}, stretch {STRETCH_MMDEBSTRAP:.2f}" if peer == "mmdebstrap" else ""
        print(f"  {'rootfs / ' + peer:<30}{row}{goal}")
    if len(set(t.packages.values())) > 1:
        print(f"  note: the tools installed different package counts: {t.packages}")


def print_breakdown(t: Timings, fl: list[dict[str, Sample]], mem, runs: int) -> None:
    print(f"\nrootfs's stages (median of its {runs} warm run(s)) against the bare tools doing the same work "
          f"(median of {len(fl)}, measured between them)")
    st = {k: median(r.get(k, float('nan')) for r in t.stages.get("warm", [])) for k in
          ("resolve", "fetch", "stage 1", "stage 2", "install, other", "pack")}
    cold = {k: median(r.get(k, float('nan')) for r in t.stages.get("cold", [])) for k in ("fetch",)}
    f = {k: median(s.wall for s in (x[k] for x in fl)) for k in fl[0]} if fl else {}
    fc = {k: median(s.cpu for s in (x[k] for x in fl)) for k in fl[0]} if fl else {}

    def line(name: str, value: float, note: str = "") -> None:
        print(f"  {name:<44}{value:7.2f} s  {note}")

    line("resolve (verify, parse, choose)", st["resolve"], "goal <= 0.4 s")
    line("fetch (warm cache)", st["fetch"], f"cold cache: {cold['fetch']:.2f} s")
    line("stage 1 (extract and register)", st["stage 1"])
    if f:
        one, two, dec = (f["dpkg-deb -x, one at a time"], f["dpkg-deb -x, two at a time"],
                         f["dpkg-deb --fsys-tarfile (decompress only)"])
        line("  floor: dpkg-deb -x, one at a time", one, f"cpu {fc['dpkg-deb -x, one at a time']:.2f} s")
        line("  floor: dpkg-deb -x, two at a time", two,
             f"cpu {fc['dpkg-deb -x, two at a time']:.2f} s; stage 1 / this = {ratio(st['stage 1'], two)} "
             "(goal <= 1.2)")
        line("  floor: decompress only (--fsys-tarfile)", dec, "one at a time")
    line("stage 2 (configure)", st["stage 2"])
    line("install, other (ldconfig, fstab, cleanup)", st["install, other"])
    line(f"pack (-f {'tar'})", st["pack"])
    if f:
        for ours, floor in (("rootfs pack -f tar", "tar --sort=name"),
                            ("rootfs pack -f tar.zst", "tar --sort=name | zstd -3"),
                            ("rootfs pack -f oci (gzip layer)", "tar --sort=name | pigz -6")):
            goal = " (goal <= 1.2)" if "gzip" in ours else ""
            line(f"  {ours}", f[ours], f"cpu {fc[ours]:.2f} s")
            line(f"  floor: {floor}", f[floor],
                 f"cpu {fc[floor]:.2f} s; ratio wall {ratio(f[ours], f[floor])}, cpu {ratio(fc[ours], fc[floor])}{goal}")
    if mem is not None:
        one, two, size1, size2 = mem
        print(f"  packer's peak memory, -f oci: {one.rss} MiB on the tree ({size1 / 1e6:.0f} MB of files), "
              f"{two.rss} MiB on one twice its size ({size2 / 1e6:.0f} MB): ratio {two.rss / one.rss:.2f}")


# -- main -----------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", action="append", choices=SUITES, help="repeatable (default: bookworm)")
    ap.add_argument("--variant", action="append", choices=VARIANTS, help="repeatable (default: minbase)")
    ap.add_argument("--matrix", action="store_true", help="every suite with every variant")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of " + ", ".join(TOOLS))
    ap.add_argument("--cache", default="cold,warm", help="cold, warm or both")
    ap.add_argument("--format", default="tar", help="rootfs make's output format (default tar)")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the stage floors and the packer's memory")
    ap.add_argument("--profile", action="store_true", help="py-spy and strace one more build of the first case")
    ap.add_argument("--ignore-valid-until", action="store_true",
                    help="a snapshot mirror whose Release has expired (rootfs's flag, apt's option for mmdebstrap; "
                         "debootstrap does not check)")
    ap.add_argument("--work", type=Path, help="scratch directory (default: a new one under /var/tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (traces, logs)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/bootstrap.py needs root (debootstrap, mmdebstrap and rootfs configure chrooted)",
              file=sys.stderr)
        return 2
    tools = [x for x in args.tools.split(",") if x]
    caches = [x for x in args.cache.split(",") if x]
    if set(tools) - set(TOOLS) or set(caches) - {"cold", "warm"} or not tools or not caches:
        ap.error("--tools takes rootfs, mmdebstrap, debootstrap; --cache takes cold, warm")
    suites = list(SUITES) if args.matrix else (args.suite or ["bookworm"])
    variants = list(VARIANTS) if args.matrix else (args.variant or ["minbase"])
    mirror = host_mirror("debian", "Debian")
    if not mirror:
        print("no Debian mirror in apt's configuration; nothing to measure against", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="rootfs-bench.", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    print(f"scratch: {work}; {load()}")
    try:
        first = True
        for suite in suites:
            for variant in variants:
                case = Case(suite, variant, work, mirror, args.format, args.ignore_valid_until)
                run_case(case, tools, caches, args.runs, breakdown=first and not args.no_breakdown and
                         "rootfs" in tools and "warm" in caches, profile=first and args.profile)
                first = False
    except Failed as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def run_case(case: Case, tools: list[str], caches: list[str], runs: int, *, breakdown: bool, profile: bool) -> None:
    print(f"\n== {case.name} ({load()})", flush=True)
    t = Timings()
    tree = warm_up(case, tools, t)
    debs = package_files(tree, case.dir("rootfs-cache")) if breakdown else []
    fl: list[dict[str, Sample]] = []
    for run in range(runs):
        order = tools[run % len(tools):] + tools[:run % len(tools)]
        print(f"run {run + 1}/{runs} ({load()})", flush=True)
        for c in caches:
            for tool in order:
                run_tool(case, tool, c, t)
        if breakdown:
            fl.append(floors(case, tree, debs))
            for name, s in fl[-1].items():
                print(f"  {name:<44} {s.wall:7.2f} s wall {s.cpu:7.2f} s cpu", flush=True)
    mem = pack_memory(case, tree) if breakdown else None
    print_comparison(case, t, tools, caches, runs)
    if breakdown:
        print_breakdown(t, fl, mem, runs)
    if profile:
        import _profile

        _profile.report(case, tree, rootfs_make(case, case.dir("profiled"), case.dir("rootfs-cache"), [case.fmt]))
    print(f"({case.name} done; {load()})")


if __name__ == "__main__":
    sys.exit(main())
