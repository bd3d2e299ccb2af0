"""Graphs: the package dependency graph of a resolved set, and the lineage
of images by the layers they share.

A package graph shows what actually holds the set together: each relation
resolved the way the package manager resolved it, so an alternative points
at the member that was chosen and a virtual package at its provider. The
DOT text is sorted and carries no timestamps, so the same set always gives
the same bytes; graphviz's `dot` renders it to SVG or PNG.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rootfs.backends.deb.relations import Alt, Relation, parse_provides, parse_relations
from rootfs.backends.deb.version import satisfies
from rootfs.host.run import run as host_run
from rootfs.model.errors import OutputError, PrivilegeError, UsageError

FORMATS = ("dot", "svg", "png")


class PackageLike(Protocol):
    """What both a LockedPackage and a pkgdb.Package offer."""

    name: str
    version: str
    architecture: str
    essential: bool
    depends: tuple[str, ...]
    provides: tuple[str, ...]


@dataclass(frozen=True)
class Node:
    id: str
    name: str
    version: str
    architecture: str
    essential: bool = False


@dataclass(frozen=True, order=True)
class Edge:
    src: str
    dst: str
    kind: str  # "pre-depends", "depends" or "requires"
    via: str = ""  # the virtual package or capability the edge satisfies


@dataclass
class PackageGraph:
    nodes: list[Node]
    edges: list[Edge]
    unresolved: list[tuple[str, str]] = field(default_factory=list)  # (node id, relation)


# ---------------------------------------------------------------- relations


_FIELD = re.compile(r"^\s*(Pre-Depends|Depends)\s*:\s*(.*)$", re.S | re.I)


def deb_relation_groups(raw: Sequence[str]) -> list[tuple[str, Relation]]:
    """(kind, alternatives) for every relation of a package's depends list.

    Accepts both `Pre-Depends: a, b | c (>= 1)` lines and bare `a, b` lists
    (which count as Depends); parsed by the resolver's own parser."""
    out = []
    for line in raw:
        m = _FIELD.match(line)
        kind, text = ("pre-depends" if m.group(1).lower() == "pre-depends" else "depends", m.group(2)) \
            if m else ("depends", line)
        out += [(kind, group) for group in parse_relations(" ".join(text.split()))]
    return out


def _deb_satisfies(have: str, alt: Alt) -> bool:
    if not alt.op:
        return True
    if not have:
        return False
    try:
        return satisfies(have, alt.op, alt.version)
    except ValueError:
        return False


class _Index:
    """Who is called what: real packages and providers, by name."""

    def __init__(self, nodes: dict[str, tuple[Node, PackageLike]], fmt: str):
        self.real: dict[str, list[Node]] = {}
        self.providers: dict[str, list[tuple[Node, str]]] = {}  # name -> (node, provided version)
        for node, pkg in nodes.values():
            self.real.setdefault(node.name, []).append(node)
            for prov in pkg.provides:
                name, version = _split_provide(prov, fmt)
                if name:
                    self.providers.setdefault(name, []).append((node, version))
        for v in self.real.values():
            v.sort(key=lambda n: n.id)
        for p in self.providers.values():
            p.sort(key=lambda nv: nv[0].id)


def _split_provide(entry: str, fmt: str) -> tuple[str, str]:
    entry = " ".join(entry.split())
    if fmt == "deb":
        provided = parse_provides(entry)
        return provided[0] if provided else ("", "")
    name, _, rest = entry.partition(" ")
    return name, rest.split()[-1] if rest else ""


def _prefer_arch(candidates: list[Node], arch: str) -> list[Node]:
    return sorted(candidates, key=lambda n: (n.architecture != arch, n.architecture != "all", n.id))


def _resolve_deb(node: Node, pkg: PackageLike, index: _Index) -> tuple[list[Edge], list[str]]:
    edges, missing = [], []
    for kind, alts in deb_relation_groups(pkg.depends):
        chosen: Edge | None = None
        for alt in alts:
            real = [n for n in index.real.get(alt.name, []) if _deb_satisfies(n.version, alt)]
            if real:
                chosen = Edge(node.id, _prefer_arch(real, node.architecture)[0].id, kind)
                break
            provs = [n for n, v in index.providers.get(alt.name, []) if _deb_satisfies(v, alt)]
            if provs:
                chosen = Edge(node.id, _prefer_arch(provs, node.architecture)[0].id, kind, via=alt.name)
                break
        if chosen is None:
            missing.append(" | ".join(str(a) for a in alts))
        elif chosen.dst != node.id:
            edges.append(chosen)
    return edges, missing


def _resolve_rpm(node: Node, pkg: PackageLike, index: _Index) -> tuple[list[Edge], list[str]]:
    edges, missing = [], []
    for req in pkg.depends:
        req = " ".join(req.split())
        name = req.split(" ", 1)[0]
        if not name or name.startswith("rpmlib(") or name.startswith("("):
            # rpmlib() features are rpm's own; rich (boolean) dependencies
            # name several packages and are left to the resolver's record.
            continue
        # rpm resolved the set already; the name (or capability) says which
        # package satisfied it, and a lock never holds two that compete.
        real = index.real.get(name, [])
        if real:
            edge = Edge(node.id, _prefer_arch(real, node.architecture)[0].id, "requires")
        else:
            provs = [n for n, _ in index.providers.get(name, [])]
            if not provs:
                missing.append(req)
                continue
            if node in provs:
                continue  # the package provides it itself
            edge = Edge(node.id, _prefer_arch(provs, node.architecture)[0].id, "requires", via=name)
        if edge.dst != node.id:
            edges.append(edge)
    return edges, missing


def _rank(e: Edge) -> tuple[bool, bool]:
    return (e.kind == "pre-depends", not e.via)


def package_graph(packages: Iterable[PackageLike], fmt: str) -> PackageGraph:
    """The resolved relations among packages ("deb" or "rpm" semantics)."""
    pkgs = sorted(packages, key=lambda p: (p.name, p.architecture, p.version))
    names: dict[str, int] = {}
    keys: dict[tuple[str, str], int] = {}
    for p in pkgs:
        names[p.name] = names.get(p.name, 0) + 1
        keys[(p.name, p.architecture)] = keys.get((p.name, p.architecture), 0) + 1
    nodes: dict[str, tuple[Node, PackageLike]] = {}
    for p in pkgs:
        # The plain name while it is unique; multi-arch twins get their
        # architecture, rpm's install-only packages (kernels) their version.
        nid = p.name
        if keys[(p.name, p.architecture)] > 1:
            nid = f"{p.name}:{p.architecture}:{p.version}"
        elif names[p.name] > 1:
            nid = f"{p.name}:{p.architecture}"
        nodes[nid] = (Node(nid, p.name, p.version, p.architecture, bool(p.essential)), p)
    index = _Index(nodes, fmt)
    resolve = _resolve_deb if fmt == "deb" else _resolve_rpm
    edges: dict[tuple[str, str], Edge] = {}
    unresolved: list[tuple[str, str]] = []
    for node, pkg in nodes.values():
        found, missing = resolve(node, pkg, index)
        for e in found:
            old = edges.get((e.src, e.dst))
            # One arrow per pair: a Pre-Depends outranks a Depends on the
            # same package, a direct relation outranks one via a virtual.
            if old is None or _rank(e) > _rank(old):
                edges[(e.src, e.dst)] = e
        unresolved.extend((node.id, m) for m in missing)
    return PackageGraph([n for n, _ in nodes.values()], sorted(edges.values()), sorted(unresolved))


# ---------------------------------------------------------------- DOT


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(pairs: Iterable[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{k}={_q(v)}" for k, v in pairs) + "]"


def package_dot(graph: PackageGraph, title: str = "packages") -> str:
    lines = [
        f"digraph {_q(title)} {{",
        f"  // {len(graph.nodes)} packages, {len(graph.edges)} relations;"
        " bold filled boxes are Essential, bold red arrows Pre-Depends,"
        " dashed arrows go through a virtual package",
        '  graph [rankdir="LR"];',
        '  node [shape="box", fontname="sans-serif"];',
        '  edge [fontname="sans-serif", fontsize="9"];',
    ]
    for n in sorted(graph.nodes, key=lambda n: n.id):
        attrs = [("label", f"{n.name}\n{n.version}"), ("version", n.version), ("arch", n.architecture)]
        if n.essential:
            attrs += [("essential", "yes"), ("style", "filled,bold"), ("fillcolor", "lightgrey")]
        lines.append(f"  {_q(n.id)} {_attrs(attrs)};")
    for e in graph.edges:
        attrs = [("kind", e.kind)]
        if e.kind == "pre-depends":
            attrs += [("style", "bold"), ("color", "red")]
        if e.via:
            attrs += [("via", e.via), ("label", e.via), ("style", "dashed,bold" if e.kind == "pre-depends" else "dashed")]
        lines.append(f"  {_q(e.src)} -> {_q(e.dst)} {_attrs(dict(attrs).items())};")
    for src, rel in graph.unresolved:
        lines.append(f"  // unresolved: {src} -> {rel}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- lineage


@dataclass(frozen=True)
class ImageLayers:
    """An image for the lineage graph: its tags and its layers, bottom first
    (uncompressed digests: the config's diff_ids)."""

    tags: tuple[str, ...]
    layers: tuple[str, ...]


def image_tags(img, spec: str) -> tuple[str, ...]:
    """The names to label an image's top layer with: the tag asked for, the
    layout's ref name, a docker-archive's RepoTags, else how it was named."""
    from rootfs.image.reader import DOCKER_ARCHIVE, REF_NAME

    if img.tag:
        return (img.tag,)
    if img.root.annotations.get(REF_NAME):
        return (img.root.annotations[REF_NAME],)
    if img.kind == DOCKER_ARCHIVE:
        import json
        import tarfile

        try:
            with tarfile.open(img.path) as tar:
                member = tar.extractfile("manifest.json")
                entries = json.load(member) if member else []
            tags = tuple(t for e in entries for t in (e.get("RepoTags") or []))
        except (OSError, tarfile.TarError, ValueError, KeyError, AttributeError, TypeError):
            tags = ()
        if tags:
            return tags
    return (spec,)


def chain_ids(layers: Sequence[str]) -> list[str]:
    """OCI ChainIDs: a layer is the same node only on the same parents."""
    out: list[str] = []
    for diff_id in layers:
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def lineage_dot(images: Sequence[ImageLayers], title: str = "images") -> str:
    """Layers as nodes, parent -> child edges, each image's top layer
    labelled with its tags: images built on a common base fork from it."""
    labels: dict[str, str] = {}  # chain id -> diff id
    edges: set[tuple[str, str]] = set()
    tags: dict[str, set[str]] = {}
    for img in images:
        chain = chain_ids(img.layers)
        for i, (cid, did) in enumerate(zip(chain, img.layers)):
            labels[cid] = did
            if i:
                edges.add((chain[i - 1], cid))
        if chain:
            tags.setdefault(chain[-1], set()).update(img.tags)
    lines = [
        f"digraph {_q(title)} {{",
        f"  // {len(images)} images, {len(labels)} distinct layers; nodes are layer chains (OCI ChainID)",
        '  node [shape="box", fontname="monospace"];',
    ]
    for cid in sorted(labels):
        did = labels[cid]
        short = did.split(":", 1)[-1][:12]
        attrs = [("label", short), ("layer", did)]
        if cid in tags:
            names = sorted(tags[cid])
            attrs = [("label", "\n".join([short, *names])), ("layer", did), ("tags", " ".join(names)),
                     ("style", "filled"), ("fillcolor", "lightblue")]
        lines.append(f"  {_q(cid)} {_attrs(attrs)};")
    for a, b in sorted(edges):
        lines.append(f"  {_q(a)} -> {_q(b)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- output


def render(dot_text: str, fmt: str) -> bytes:
    """DOT text as fmt: the text itself, or what graphviz's `dot` makes of it."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown graph format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "dot":
        return dot_text.encode()
    exe = shutil.which("dot")
    if exe is None:
        raise PrivilegeError(f"rendering {fmt} needs graphviz's `dot`; install graphviz or use --format dot")
    try:
        proc = host_run([exe, f"-T{fmt}"], input=dot_text.encode(), what="graphviz's dot")
    except OSError as exc:
        raise OutputError(f"graphviz's dot failed to render {fmt}: {exc}") from None
    if proc.returncode != 0 or not proc.stdout:
        msg = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise OutputError(f"graphviz's dot failed to render {fmt}: {msg}")
    return proc.stdout


def write_output(data: bytes, out: Path | None) -> None:
    """To out (complete or not at all), or to stdout when out is None or `-`."""
    if out is None or str(out) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    from rootfs.host.atomic import atomic_write_bytes

    atomic_write_bytes(Path(out), data)


def format_from_path(out: Path | None, fmt: str | None) -> str:
    """--format wins; else the output's suffix; else DOT."""
    if fmt:
        return fmt.lower()
    if out is not None and out.suffix.lower().lstrip(".") in FORMATS:
        return out.suffix.lower().lstrip(".")
    if out is not None and out.suffix.lower() == ".gv":
        return "dot"
    return "dot"
