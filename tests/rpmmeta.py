"""rpm-md repositories of metadata only: primary, filelists, comps and
modules written from Python, for resolver tests that need many packages
(dnf resolves from metadata alone; nothing here builds an RPM).

    repo = write_repo(path, [Pkg("a", "1", requires=["b >= 2", "/usr/share/b/data"]), ...],
                      comps=..., modules=...)
"""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

TIMESTAMP = 1700000000
_OPS = {"=": "EQ", "==": "EQ", "<": "LT", ">": "GT", "<=": "LE", ">=": "GE"}
_DEP = re.compile(r"^(\S+)\s+(<=|>=|==|=|<|>)\s+(\S+)$")


@dataclass
class Pkg:
    name: str
    version: str = "1.0"
    release: str = "1"
    arch: str = "x86_64"
    epoch: str = "0"
    provides: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    requires_pre: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    obsoletes: list[str] = field(default_factory=list)
    recommends: list[str] = field(default_factory=list)
    suggests: list[str] = field(default_factory=list)
    supplements: list[str] = field(default_factory=list)
    enhances: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    description: str = ""

    @property
    def evr(self) -> str:
        e = "" if self.epoch == "0" else f"{self.epoch}:"
        return f"{e}{self.version}-{self.release}"

    @property
    def nevra(self) -> str:
        """name-epoch:version-release.arch, as dnf and modulemd spell it."""
        return f"{self.name}-{self.epoch}:{self.version}-{self.release}.{self.arch}"

    @property
    def pkgid(self) -> str:
        return hashlib.sha256(self.nevra.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"


def _entry(dep: str, pre: bool = False) -> str:
    m = _DEP.match(dep)
    extra = ' pre="1"' if pre else ""
    if not m or dep.startswith("("):
        return f"<rpm:entry name={quoteattr(dep)}{extra}/>"
    name, op, evr = m.groups()
    epoch, _, vr = evr.rpartition(":")
    ver, _, rel = vr.partition("-")
    rel_attr = f" rel={quoteattr(rel)}" if rel else ""
    return (f"<rpm:entry name={quoteattr(name)} flags=\"{_OPS[op]}\" epoch=\"{epoch or '0'}\" "
            f"ver={quoteattr(ver)}{rel_attr}{extra}/>")


def _in_primary(path: str) -> bool:
    return path.startswith("/etc/") or "bin/" in path or path == "/usr/lib/sendmail"


def primary_xml(pkgs: list[Pkg]) -> bytes:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<metadata xmlns="http://linux.duke.edu/metadata/common" '
           f'xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="{len(pkgs)}">\n']
    for p in pkgs:
        out.append(f'<package type="rpm">\n  <name>{escape(p.name)}</name>\n  <arch>{p.arch}</arch>\n'
                   f'  <version epoch="{p.epoch}" ver={quoteattr(p.version)} rel={quoteattr(p.release)}/>\n'
                   f'  <checksum type="sha256" pkgid="YES">{p.pkgid}</checksum>\n'
                   f'  <summary>{escape(p.name)}</summary>\n  <description>{escape(p.description or p.name)}</description>\n'
                   f'  <packager/>\n  <url/>\n  <time file="{TIMESTAMP}" build="{TIMESTAMP}"/>\n'
                   f'  <size package="1000" installed="2000" archive="2100"/>\n'
                   f'  <location href="Packages/{escape(p.filename)}"/>\n  <format>\n'
                   f'    <rpm:license>MIT</rpm:license>\n    <rpm:vendor/>\n    <rpm:group>Unspecified</rpm:group>\n'
                   f'    <rpm:buildhost>build.invalid</rpm:buildhost>\n'
                   f'    <rpm:sourcerpm>{escape(p.name)}-{escape(p.version)}-{escape(p.release)}.src.rpm</rpm:sourcerpm>\n'
                   f'    <rpm:header-range start="4504" end="5000"/>\n')
        sections = [("provides", [f"{p.name} = {p.epoch}:{p.version}-{p.release}"] + p.provides, False),
                    ("requires", p.requires_pre, True), ("requires", p.requires, False),
                    ("conflicts", p.conflicts, False), ("obsoletes", p.obsoletes, False),
                    ("suggests", p.suggests, False), ("recommends", p.recommends, False),
                    ("supplements", p.supplements, False), ("enhances", p.enhances, False)]
        merged: dict[str, list[str]] = {}
        for kind, deps, pre in sections:
            merged.setdefault(kind, []).extend(_entry(d, pre) for d in deps)
        for kind, entries in merged.items():
            if entries:
                out.append(f"    <rpm:{kind}>\n" + "".join(f"      {e}\n" for e in entries) + f"    </rpm:{kind}>\n")
        for f in p.files:
            if _in_primary(f):
                out.append(f"    <file>{escape(f)}</file>\n")
        for d in p.dirs:
            if _in_primary(d):
                out.append(f'    <file type="dir">{escape(d)}</file>\n')
        out.append("  </format>\n</package>\n")
    out.append("</metadata>\n")
    return "".join(out).encode()


def filelists_xml(pkgs: list[Pkg]) -> bytes:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<filelists xmlns="http://linux.duke.edu/metadata/filelists" '
           f'packages="{len(pkgs)}">\n']
    for p in pkgs:
        out.append(f'<package pkgid="{p.pkgid}" name={quoteattr(p.name)} arch="{p.arch}">\n'
                   f'  <version epoch="{p.epoch}" ver={quoteattr(p.version)} rel={quoteattr(p.release)}/>\n')
        out.extend(f"  <file>{escape(f)}</file>\n" for f in p.files)
        out.extend(f'  <file type="dir">{escape(d)}</file>\n' for d in p.dirs)
        out.append("</package>\n")
    out.append("</filelists>\n")
    return "".join(out).encode()


def other_xml(pkgs: list[Pkg]) -> bytes:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<otherdata xmlns="http://linux.duke.edu/metadata/other" '
           f'packages="{len(pkgs)}">\n']
    for p in pkgs:
        out.append(f'<package pkgid="{p.pkgid}" name={quoteattr(p.name)} arch="{p.arch}">\n'
                   f'  <version epoch="{p.epoch}" ver={quoteattr(p.version)} rel={quoteattr(p.release)}/>\n</package>\n')
    out.append("</otherdata>\n")
    return "".join(out).encode()


@dataclass
class Group:
    id: str
    packages: list[tuple[str, str]]  # (name, type) or (name, "conditional:REQUIRED")
    name: str = ""


@dataclass
class Environment:
    id: str
    groups: list[str]
    optional: list[str] = field(default_factory=list)
    name: str = ""


def comps_xml(groups: list[Group], environments: list[Environment] = ()) -> bytes:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" '
           '"comps.dtd">\n<comps>\n']
    for g in groups:
        out.append(f"  <group>\n    <id>{escape(g.id)}</id>\n    <name>{escape(g.name or g.id.title())}</name>\n"
                   f'    <name xml:lang="de">{escape(g.id)} (de)</name>\n    <description>{escape(g.id)}</description>\n'
                   "    <default>false</default>\n    <uservisible>true</uservisible>\n    <packagelist>\n")
        for name, kind in g.packages:
            if kind.startswith("conditional:"):
                out.append(f'      <packagereq type="conditional" requires={quoteattr(kind.split(":", 1)[1])}>'
                           f"{escape(name)}</packagereq>\n")
            else:
                out.append(f'      <packagereq type="{kind}">{escape(name)}</packagereq>\n')
        out.append("    </packagelist>\n  </group>\n")
    for e in environments:
        out.append(f"  <environment>\n    <id>{escape(e.id)}</id>\n    <name>{escape(e.name or e.id.title())}</name>\n"
                   f"    <description>{escape(e.id)}</description>\n    <display_order>10</display_order>\n    <grouplist>\n")
        out.extend(f"      <groupid>{escape(g)}</groupid>\n" for g in e.groups)
        out.append("    </grouplist>\n    <optionlist>\n")
        out.extend(f"      <groupid>{escape(g)}</groupid>\n" for g in e.optional)
        out.append("    </optionlist>\n  </environment>\n")
    out.append("</comps>\n")
    return "".join(out).encode()


@dataclass
class Stream:
    """One modulemd document (a version and context of a stream)."""

    name: str
    stream: str
    artifacts: list[Pkg]
    version: int = 1
    context: str = "c0ffee01"
    profiles: dict[str, list[str]] = field(default_factory=dict)
    requires: dict[str, list[str]] = field(default_factory=dict)


def modules_yaml(streams: list[Stream], defaults: dict[str, tuple[str, dict[str, list[str]]]] = {}) -> bytes:  # noqa: B006
    """defaults: module -> (stream, {stream: [default profiles]})."""
    import yaml

    docs = []
    for s in streams:
        data = {"name": s.name, "stream": s.stream, "version": s.version, "context": s.context, "arch": "x86_64",
                "summary": f"{s.name} {s.stream}", "description": f"{s.name} {s.stream}",
                "license": {"module": ["MIT"]},
                "dependencies": [{"buildrequires": {"platform": ["f1"]},
                                  "requires": {"platform": ["f1"], **s.requires}}],
                "profiles": {k: {"rpms": v} for k, v in s.profiles.items()},
                "artifacts": {"rpms": [p.nevra for p in s.artifacts]}}
        docs.append({"document": "modulemd", "version": 2, "data": data})
    for module, (stream, profiles) in defaults.items():
        data = {"module": module, "stream": stream, "profiles": profiles}
        docs.append({"document": "modulemd-defaults", "version": 1, "data": data})
    return yaml.safe_dump_all(docs, explicit_start=True, explicit_end=True, sort_keys=False).encode()


def write_repo(dest: Path, pkgs: list[Pkg], *, comps: bytes | None = None, modules: bytes | None = None,
               revision: int = TIMESTAMP) -> Path:
    """An rpm-md repository of metadata only at dest (repodata/ with
    gzip-compressed files named by their checksums). Returns dest."""
    rd = dest / "repodata"
    rd.mkdir(parents=True)
    files = [("primary", primary_xml(pkgs), True), ("filelists", filelists_xml(pkgs), True),
             ("other", other_xml(pkgs), True)]
    if comps is not None:
        files.append(("group", comps, False))
    if modules is not None:
        files.append(("modules", modules, True))
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<repomd xmlns="http://linux.duke.edu/metadata/repo" '
           f'xmlns:rpm="http://linux.duke.edu/metadata/rpm">\n  <revision>{revision}</revision>\n']
    for kind, raw, compress in files:
        data = gzip.compress(raw, 6, mtime=0) if compress else raw
        csum = hashlib.sha256(data).hexdigest()
        name = f"{csum}-{kind}.{'xml' if kind != 'modules' else 'yaml'}{'.gz' if compress else ''}"
        (rd / name).write_bytes(data)
        open_part = (f'    <open-checksum type="sha256">{hashlib.sha256(raw).hexdigest()}</open-checksum>\n'
                     f"    <open-size>{len(raw)}</open-size>\n") if compress else ""
        out.append(f'  <data type="{kind}">\n    <checksum type="sha256">{csum}</checksum>\n{open_part}'
                   f'    <location href="repodata/{name}"/>\n    <timestamp>{revision}</timestamp>\n'
                   f"    <size>{len(data)}</size>\n  </data>\n")
    out.append("</repomd>\n")
    (rd / "repomd.xml").write_text("".join(out))
    return dest
