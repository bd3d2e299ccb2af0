"""dnf's own answers, through its Python API: run with the system python3
(dnf is not on PyPI), requests as JSON on stdin, answers as JSON on stdout.

    {"repos": [DIR, ...], "root": DIR, "cases": [{"specs": [...], "weak": true,
     "best": false, "modules": ["name:stream"], "exclude": [...]}]}
    -> [{"nevras": ["name-epoch:version-release.arch", ...]} | {"error": "..."}, ...]

One dnf.Base reads the repositories once and resolves every case that
needs no state of its own; a case that enables module streams, names
@groups or modules, or excludes packages gets a fresh Base, so nothing one
case does leaks into the next. Nothing is downloaded or installed: dnf
resolves from repodata alone.
"""

import json
import sys
import tempfile

import dnf
import dnf.exceptions
import dnf.module.module_base


def new_base(repos, root, cache, arch, exclude=(), platform=None):
    base = dnf.Base()
    conf = base.conf
    conf.installroot = root
    conf.cachedir = cache
    conf.reposdir = []
    conf.gpgcheck = False
    conf.substitutions["releasever"] = "1"
    if arch:
        conf.substitutions["arch"] = arch
        conf.substitutions["basearch"] = dnf.rpm.basearch(arch)
    if platform:
        conf.module_platform_id = platform
    conf.excludepkgs = list(exclude)
    for i, path in enumerate(repos):
        base.repos.add_new_repo(f"r{i}", conf, baseurl=["file://" + path], skip_if_unavailable=False)
    base.fill_sack(load_system_repo=False)
    base.read_comps(arch_filter=True)
    return base


def answer(base, case):
    base.conf.install_weak_deps = case.get("weak", False)
    base.conf.best = case.get("best", False)
    try:
        if case.get("modules"):
            dnf.module.module_base.ModuleBase(base).enable(case["modules"])
        base.install_specs(case["specs"])
        base.resolve()
    except dnf.exceptions.Error as exc:
        return {"error": str(exc)}
    return {"nevras": sorted(f"{p.name}-{p.epoch}:{p.version}-{p.release}.{p.arch}"
                             for p in base.transaction.install_set)}


def main():
    req = json.load(sys.stdin)
    out = []
    with tempfile.TemporaryDirectory() as cache:
        shared = None
        for case in req["cases"]:
            own = case.get("modules") or case.get("exclude") or any(s.startswith("@") for s in case["specs"])
            if own:
                base = new_base(req["repos"], req["root"], cache, req.get("arch"), case.get("exclude", ()),
                                req.get("platform"))
            else:
                if shared is None:
                    shared = new_base(req["repos"], req["root"], cache, req.get("arch"),
                                      platform=req.get("platform"))
                base = shared
                base.reset(goal=True)
            out.append(answer(base, case))
            if own:
                base.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
