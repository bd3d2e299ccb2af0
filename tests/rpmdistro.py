"""A generated distribution: thousands of packages shaped like a real one's
(shared libraries in several versions and a few multilib i686 builds,
virtual capabilities with competing providers, a glibc-like langpack
choice steered by Suggests, rich and file dependencies, weak dependencies
both ways, obsoletes of renamed packages, conflicts, epochs and tilde
versions, module streams with defaults and profiles, comps groups and
environments), and requests that exercise all of it.

The same seed gives the same repository and requests on every run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from rpmmeta import Environment, Group, Pkg, Stream, comps_xml, modules_yaml

PLATFORM = "platform:f1"  # what the generated module streams require


@dataclass
class Case:
    specs: list[str]
    modules: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    best: bool = False
    # dnf 4.14 reads `@^env` as a group called "^env"; it takes the
    # environment as `@env`.
    dnf_specs: list[str] | None = None

    @property
    def label(self) -> str:
        extra = "".join(f" +{m}" for m in self.modules) + "".join(f" -{x}" for x in self.exclude)
        return " ".join(self.specs) + extra + (" best" if self.best else "")


@dataclass
class Distro:
    packages: list[Pkg]
    comps: bytes
    modules: bytes
    cases: list[Case]


def _v(rng: random.Random) -> str:
    return f"{rng.randint(0, 9)}.{rng.randint(0, 30)}"


def generate(seed: int = 13, apps: int = 2000) -> Distro:
    rng = random.Random(seed)
    pkgs: list[Pkg] = []
    add = pkgs.append

    # The bottom: a filesystem, a C library in two arches, and the langpack
    # choice dnf makes through Suggests (glibc-minimal-langpack).
    add(Pkg("base-filesystem", "3.18", "2", arch="noarch", dirs=["/usr", "/usr/bin", "/usr/share", "/etc"]))
    add(Pkg("base-setup", "2.14", "1", arch="noarch", files=["/etc/passwd", "/etc/group"]))
    for arch, soname in (("x86_64", "libc.so.6()(64bit)"), ("i686", "libc.so.6")):
        add(Pkg("base-libc", "2.36", "9", arch=arch, provides=[soname, "/bin/sh"], requires=["base-filesystem",
                "base-langpack"], requires_pre=["base-setup"], suggests=["base-langpack-minimal"],
                files=["/usr/bin/ldd", "/usr/sbin/ldconfig"]))
        add(Pkg("base-libc", "2.35", "1", arch=arch, provides=[soname], requires=["base-filesystem"]))
    for name in ("base-langpack-all", "base-langpack-minimal", "base-langpack-en"):
        add(Pkg(name, "2.36", "9", provides=["base-langpack"], requires=["base-libc = 2.36-9"]))
    libc = "libc.so.6()(64bit)"

    # Shared libraries: families with one to three versions. The newest
    # version sometimes bumps the soname; a compat package then carries the
    # old one, as distributions do, and the old versions still offer it too.
    libs: list[tuple[str, list[int]]] = []
    for i in range(420):
        name = f"lib{i:03d}"
        n_versions = rng.choice([1, 1, 2, 2, 3])
        bump = n_versions > 1 and rng.random() < 0.3
        multilib = rng.random() < 0.15
        for k in range(n_versions):
            major = 2 if bump and k == n_versions - 1 else 1
            deps = [libc]
            for _ in range(rng.randint(0, 3)):
                if libs:
                    other, om = rng.choice(libs)
                    deps.append(f"lib{other}.so.{rng.choice(om)}()(64bit)")
            ver = f"{k + 1}.{rng.randint(0, 9)}"
            add(Pkg(name, ver, f"{rng.randint(1, 5)}", provides=[f"lib{name}.so.{major}()(64bit)"], requires=deps,
                    files=[f"/usr/lib64/lib{name}.so.{major}"]))
            if multilib and k == n_versions - 1:
                add(Pkg(name, ver, "1", arch="i686", provides=[f"lib{name}.so.{major}"],
                        requires=["libc.so.6"], files=[f"/usr/lib/lib{name}.so.{major}"]))
        if bump:
            add(Pkg(f"{name}-compat", "1.0", "1", provides=[f"lib{name}.so.1()(64bit)"], requires=[libc],
                    files=[f"/usr/lib64/lib{name}.so.1"]))
        libs.append((name, [1, 2] if bump else [1]))
    sonames = [f"lib{n}.so.{m}()(64bit)" for n, ms in libs for m in ms]

    # Virtual capabilities with two to four providers; some providers
    # exclude each other, as MTAs do.
    caps: list[str] = []
    exclusive_caps: list[str] = []
    for c in range(130):
        cap = f"cap{c:03d}"
        caps.append(cap)
        exclusive = rng.random() < 0.3
        if exclusive:
            exclusive_caps.append(cap)
        for k in range(rng.randint(2, 4)):
            prov = f"{cap}-impl{k}"
            add(Pkg(prov, _v(rng), "1", arch=rng.choice(["x86_64", "noarch"]),
                    provides=[f"{cap} = {k + 1}.0"], requires=[rng.choice(sonames), libc],
                    conflicts=[cap] if exclusive else []))

    # Data packages whose files only filelists.xml lists, and tools with
    # files in /usr/bin (primary.xml); some paths have two owners.
    for i in range(300):
        add(Pkg(f"data{i:03d}", f"20{rng.randint(10, 23)}{rng.choice('abc')}", "1", arch="noarch",
                files=[f"/usr/share/data{i:03d}/catalog.txt"], dirs=[f"/usr/share/data{i:03d}"]))
    for i in range(200):
        files = [f"/usr/bin/tool{i:03d}"]
        add(Pkg(f"tool{i:03d}", _v(rng), "2", files=files, requires=[libc, rng.choice(sonames)]))
        if i % 10 == 0:
            add(Pkg(f"tool{i:03d}-alt", _v(rng), "1", files=files, requires=[libc]))

    # Module streams: modular packages, some with the names of
    # non-modular ones, default streams and profiles, one stream that
    # requires another module's stream.
    streams: list[Stream] = []
    defaults: dict[str, tuple[str, dict[str, list[str]]]] = {}
    modular_names: list[str] = []
    for m in range(6):
        mod = f"mod{m}"
        names = [f"{mod}-pkg{j}" for j in range(rng.randint(3, 6))]
        modular_names.extend(names)
        stream_names = [str(10 + 2 * s) for s in range(rng.randint(2, 3))]
        for si, st in enumerate(stream_names):
            for version in (1, 2):
                arts = []
                for j, n in enumerate(names):
                    p = Pkg(n, f"{st}.{j}.{version}", f"1.module_{mod}", requires=[libc] + (
                        [names[0]] if j else []) + ([f"mod{m - 1}-pkg0"] if m == 5 and j == 0 else []))
                    add(p)
                    arts.append(p)
                streams.append(Stream(mod, st, arts, version=version,
                                      profiles={"common": names[:2], "devel": names},
                                      requires={f"mod{m - 1}": [str(10 + 2 * (si % 2))]} if m == 5 else {}))
        if m % 2 == 0:
            defaults[mod] = (stream_names[-1], {stream_names[-1]: ["common"]})
        if m in (1, 2):
            add(Pkg(names[0], "1.0", "1", requires=[libc]))  # the non-modular one of the same name
        if m == 2:
            add(Pkg(f"{mod}-compat", "1.0", "1", provides=[names[1]], requires=[libc]))

    # Applications, the bulk: one to three versions each.
    app_names = [f"app{i:04d}" for i in range(apps)]
    langs = ["de", "fr", "ja"]
    for xx in langs:
        add(Pkg(f"lang-base-{xx}", "1.0", "1", arch="noarch"))
    broken = set(rng.sample(range(100, apps), apps // 50))
    renamed = set(rng.sample(range(100, apps), apps // 40))
    for i, name in enumerate(app_names):
        n_versions = rng.choice([1, 1, 2, 2, 3])
        epoch = "1" if rng.random() < 0.05 else "0"
        for k in range(n_versions):
            newest = k == n_versions - 1
            req = [libc] + rng.sample(sonames, rng.randint(1, 4))
            if rng.random() < 0.3:
                req.append(rng.choice(caps) + (f" >= {rng.randint(1, 3)}.0" if rng.random() < 0.3 else ""))
            if rng.random() < 0.2 and i > 10:
                a, b = rng.sample(app_names[:i], 2)
                req.append(rng.choice([f"({a} or {b})", f"({rng.choice(caps)} or {a})",
                                       f"({a} if {b})", f"({a} if {b} else {rng.choice(caps)})",
                                       f"({a} unless {b})", f"({rng.choice(caps)} with {rng.choice(caps)}-impl0)"]))
            if rng.random() < 0.2:
                req.append(rng.choice([f"/usr/share/data{rng.randint(0, 299):03d}/catalog.txt",
                                       f"/usr/share/data{rng.randint(0, 299):03d}",
                                       f"/usr/bin/tool{rng.randint(0, 199):03d}"]))
            if rng.random() < 0.3 and i > 5:
                dep = rng.choice(app_names[max(0, i - 200):i])
                req.append(dep + (" >= 1.0" if rng.random() < 0.3 else ""))
            if rng.random() < 0.04:
                req.append(rng.choice(modular_names))
            if i in broken and newest:
                req.append(f"missing-capability{i}")
            rec, sug, sup, enh, conf, obs, prov = [], [], [], [], [], [], []
            if rng.random() < 0.3 and i > 5:
                rec.append(rng.choice([rng.choice(app_names[:i]), rng.choice(caps),
                                       f"({rng.choice(app_names[:i])} or {rng.choice(caps)})"]))
            if rng.random() < 0.15:
                cap = rng.choice(caps)
                rec.append(cap)
                sug.append(f"{cap}-impl{rng.randint(0, 1)}")
            if rng.random() < 0.05 and i > 5:
                sup.append(rng.choice([rng.choice(app_names[:i]), f"({rng.choice(app_names[:i])} and base-libc)"]))
            if rng.random() < 0.04 and i > 5:
                enh.append(rng.choice(app_names[:i]))
            if rng.random() < 0.06 and i > 5:
                other = rng.choice(app_names[:i])
                conf.append(rng.choice([f"{other} < 2.0", f"{other} < 1:1.0", other]))
            if i in renamed:
                obs.append(f"old-{name} < 9.0")
                prov.append(f"old-{name} = 9.0")
            version = f"{k + 1}.{rng.randint(0, 9)}" + ("~rc1" if newest and rng.random() < 0.05 else "")
            add(Pkg(name, version, f"{rng.randint(1, 3)}", epoch=epoch, arch=rng.choice(["x86_64"] * 4 + ["noarch"]),
                    requires=req, recommends=rec, suggests=sug, supplements=sup, enhances=enh, conflicts=conf,
                    obsoletes=obs, provides=prov, files=[f"/usr/bin/{name}", f"/usr/share/doc/{name}/README"]))
        if i in renamed:
            add(Pkg(f"old-{name}", "1.0", "1", requires=[libc]))
        if i % 7 == 0:
            xx = langs[i % 3]
            add(Pkg(f"{name}-langpack-{xx}", "1.0", "1", arch="noarch",
                    supplements=[f"({name} and lang-base-{xx})"]))

    # comps: groups of applications and tools, and environments of groups.
    groups = []
    for g in range(24):
        members = rng.sample(app_names[: apps // 2], 6) + rng.sample([f"tool{t:03d}" for t in range(200)], 2)
        types = ["mandatory"] * 3 + ["default"] * 2 + ["optional"] * 2
        plist = [(n, rng.choice(types)) for n in members]
        plist.append((f"{members[0]}-langpack-de", f"conditional:{members[1]}"))
        plist.append(("no-such-package", "default"))  # dnf warns and goes on
        groups.append(Group(f"group{g:02d}", plist, name=f"Group {g}"))
    envs = [Environment(f"env{e}", [f"group{g:02d}" for g in rng.sample(range(24), 3)],
                        optional=[f"group{rng.randint(0, 23):02d}"]) for e in range(4)]

    modules = modules_yaml(streams, defaults)
    distro = Distro(pkgs, comps_xml(groups, envs), modules, [])
    distro.cases = _cases(rng, distro, app_names, caps, sonames, sorted(broken), sorted(renamed))
    # Refusals: two providers that exclude each other; the newest version
    # of a package whose requirement nothing provides, with best.
    distro.cases.append(Case([f"{exclusive_caps[0]}-impl0", f"{exclusive_caps[0]}-impl1"]))
    distro.cases += [Case([app_names[b]], best=True) for b in sorted(broken)[:2]]
    return distro


def _cases(rng, distro: Distro, app_names, caps, sonames, broken, renamed) -> list[Case]:
    by_name: dict[str, list[Pkg]] = {}
    for p in distro.packages:
        by_name.setdefault(p.name, []).append(p)
    ok_apps = [a for a in app_names if int(a[3:]) not in set(broken)]
    multi = [n for n in ok_apps if len(by_name[n]) > 1]
    cases = [Case([a]) for a in rng.sample(ok_apps, 18)]
    cases += [Case([app_names[b]]) for b in broken[:2]]  # nothing provides a requirement
    cases.append(Case(["base-libc"]))
    for n in rng.sample(multi, 4):
        old = sorted(by_name[n], key=lambda p: p.version)[0]
        cases.append(Case([f"{n}-{old.version}"]))
        cases.append(Case([f"{n}-{old.evr}" if old.epoch == "0" else f"{n}-{old.epoch}:{old.version}-{old.release}"]))
    epoch_pkgs = [p for p in distro.packages if p.epoch != "0" and p.name in ok_apps]
    for p in epoch_pkgs[:2]:
        cases.append(Case([f"{p.name}-{p.epoch}:{p.version}-{p.release}.{p.arch}"]))
    cases.append(Case([f"{rng.choice(ok_apps)}.x86_64"]))
    i686 = sorted({p.name for p in distro.packages if p.arch == "i686" and p.name.startswith("lib")})
    cases += [Case([f"{n}.i686"]) for n in i686[:2]]
    cases += [Case([c]) for c in rng.sample(caps, 3)]
    cases.append(Case([f"{rng.choice(caps)} >= 2.0"]))
    cases.append(Case([rng.choice(sonames)]))
    cases.append(Case([f"({rng.choice(caps)} or {rng.choice(caps)})"]))
    cases += [Case([f"/usr/bin/tool{t:03d}"]) for t in (0, 7)]
    cases += [Case([f"/usr/share/data{d:03d}/catalog.txt"]) for d in (3, 150)]
    cases += [Case([f"old-{app_names[r]}"]) for r in renamed[:3]]
    cases.append(Case(["tool01?"]))
    for _ in range(6):
        cases.append(Case(rng.sample(ok_apps, rng.randint(3, 7))))
    cases.append(Case(["base-langpack-all", "base-libc"]))
    cases += [Case([f"@group{g:02d}"]) for g in (0, 5, 11)]
    cases.append(Case(["@Group 17"]))
    cases.append(Case(["@group03/mandatory,optional"]))
    cases.append(Case(["@^env0"], dnf_specs=["@env0"]))
    cases.append(Case(["@env1"]))
    cases.append(Case(["@mod0:10/devel"]))
    cases.append(Case(["@mod1:12"]))  # no default profile
    cases.append(Case(["@mod2"]))
    cases.append(Case(["@mod5:10/common"]))
    cases.append(Case(["mod1-pkg0"]))
    cases.append(Case(["mod1-pkg0", "mod2-pkg1"], modules=["mod1:12", "mod2:10"]))
    cases.append(Case(["mod3-pkg0"], modules=["mod3:10"]))
    users = [a for a in ok_apps if any(r.startswith("mod") for p in by_name[a] for r in p.requires)]
    cases += [Case([u]) for u in users[:3]]
    cases.append(Case(rng.sample(ok_apps, 4), exclude=[f"{rng.choice(caps)}-impl0"]))
    cases.append(Case([rng.choice(ok_apps)], exclude=["base-langpack-minimal"]))
    cases += [Case([n], best=True) for n in rng.sample(multi, 3)]
    return cases
