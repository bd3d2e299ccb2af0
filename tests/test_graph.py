"""`rootfs graph`: package dependency graphs and image lineage.

The DOT is parsed back (by a small parser here and, when graphviz is
installed, by `dot -Tjson0`) and compared with the relations a crafted lock
resolves to; lineage is drawn for real OCI images built with umoci.
"""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import needs_root, needs_tool
from skopeo_private import skopeo_copy

from rootfs.inventory import graph as g
from rootfs.model.lock import Lock, LockedPackage


def rootfs(*args: str):
    """Run the CLI in-process: (exit code, stdout bytes, stderr text)."""
    from typer.testing import CliRunner

    from rootfs.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout_bytes, result.stderr


def pkg(name, version="1.0", *, depends=(), provides=(), essential=False, arch="amd64"):
    return LockedPackage(name=name, version=version, architecture=arch, url=f"http://127.0.0.1/{name}.deb",
                         size=1, sha256="0" * 64, essential=essential, depends=tuple(depends),
                         provides=tuple(provides))


# The relations cover: a Pre-Depends on a virtual package (awk -> mawk), an
# alternative whose first member is absent (exim4 | postfix), an
# alternative whose first member is present at too old a version, a
# virtual package (mail-transport-agent), both relation forms (field lines
# and bare lists), an arch-qualified name, a cycle, a relation both
# Pre-Depends and Depends on one target, and one that nothing satisfies.
def is_svg_root(tag: str) -> bool:
    """An <svg> element in the W3C's SVG namespace (…/2000/svg)."""
    return tag.endswith("/2000/svg}svg") and tag.startswith("{http")


CRAFTED = [
    pkg("base-files", "12.4", essential=True, depends=["Pre-Depends: awk"]),
    pkg("mawk", "1.3.4", provides=["awk"], depends=["Depends: libc6 (>= 2.29)"]),
    pkg("dash", "0.5.12", essential=True, depends=["Pre-Depends: libc6 (>= 2.34)", "Depends: libc6, debianutils (>= 5)"]),
    pkg("debianutils", "5.7", essential=True, depends=["Pre-Depends: libc6 (>= 2.34)"]),
    pkg("libc6", "2.36", depends=["Depends: libgcc-s1"]),
    pkg("libgcc-s1", "12.2", depends=["gcc-12-base (= 12.2), libc6 (>= 2.35)"]),
    pkg("gcc-12-base", "12.2"),
    pkg("mailx", "8.1", depends=["Depends: exim4 | postfix, libc6:any, oldlib (>= 3) | newlib"]),
    pkg("oldlib", "2.0"),
    pkg("newlib", "3.1"),
    pkg("postfix", "3.7", provides=["mail-transport-agent", "default-mta (= 3.7)"], depends=["Depends: libc6"]),
    pkg("cron", "3.0", depends=["Depends: default-mta (>= 4) | mail-transport-agent, not-in-the-set (>= 1)"]),
]

EXPECTED_EDGES = {
    ("base-files", "mawk", "pre-depends", "awk"),
    ("mawk", "libc6", "depends", ""),
    ("dash", "libc6", "pre-depends", ""),
    ("dash", "debianutils", "depends", ""),
    ("debianutils", "libc6", "pre-depends", ""),
    ("libc6", "libgcc-s1", "depends", ""),
    ("libgcc-s1", "gcc-12-base", "depends", ""),
    ("libgcc-s1", "libc6", "depends", ""),
    ("mailx", "postfix", "depends", ""),
    ("mailx", "libc6", "depends", ""),
    ("mailx", "newlib", "depends", ""),
    ("postfix", "libc6", "depends", ""),
    ("cron", "postfix", "depends", "mail-transport-agent"),
}
ESSENTIAL = {"base-files", "dash", "debianutils"}


def crafted_lock(packages=CRAFTED) -> Lock:
    return Lock(backend="deb", recipe="crafted", distribution="debian", suite="bookworm",
                architecture="amd64", packages=tuple(packages))


# ---------------------------------------------------------------- a tiny DOT reader

_STMT = re.compile(r'^\s*"((?:[^"\\]|\\.)*)"\s*(?:->\s*"((?:[^"\\]|\\.)*)"\s*)?(?:\[(.*)\])?;\s*$')
_ATTR = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _unq(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), s)


def parse_dot(text: str) -> tuple[dict[str, dict], list[tuple[str, str, dict]]]:
    """Nodes and edges of the DOT subset rootfs writes (quoted ids, one
    statement per line); any other statement line fails the test."""
    nodes: dict[str, dict] = {}
    edges: list[tuple[str, str, dict]] = []
    lines = text.splitlines()
    assert lines[0].startswith("digraph ") and lines[-1] == "}"
    for line in lines[1:-1]:
        if line.strip().startswith("//") or re.match(r"^\s*(graph|node|edge) \[", line):
            continue
        m = _STMT.match(line)
        assert m, f"unexpected DOT line: {line!r}"
        attrs = {k: _unq(v) for k, v in _ATTR.findall(m.group(3) or "")}
        if m.group(2) is None:
            nodes[_unq(m.group(1))] = attrs
        else:
            edges.append((_unq(m.group(1)), _unq(m.group(2)), attrs))
    return nodes, edges


def edge_set(edges) -> set[tuple[str, str, str, str]]:
    return {(a, b, attrs["kind"], attrs.get("via", "")) for a, b, attrs in edges}


# ---------------------------------------------------------------- package graphs


def test_dot_of_crafted_lock_has_the_resolved_relations():
    lock = crafted_lock()
    dot = g.package_dot(g.package_graph(lock.packages, "deb"))
    nodes, edges = parse_dot(dot)
    assert set(nodes) == {p.name for p in CRAFTED}
    assert edge_set(edges) == EXPECTED_EDGES
    assert len(edges) == len(EXPECTED_EDGES)  # one arrow per pair
    assert {n for n, a in nodes.items() if a.get("essential") == "yes"} == ESSENTIAL
    for n, a in nodes.items():
        assert ("filled" in a.get("style", "")) == (n in ESSENTIAL)
        assert a["label"] == f"{n}\n{next(p.version for p in CRAFTED if p.name == n)}"
    # Pre-Depends are drawn differently from Depends.
    for a, b, attrs in edges:
        assert ("bold" in attrs.get("style", "")) == (attrs["kind"] == "pre-depends")
    assert "// unresolved: cron -> not-in-the-set (>= 1)" in dot


def test_dot_is_deterministic():
    shuffled = list(CRAFTED)
    random.Random(7).shuffle(shuffled)
    a = g.package_dot(g.package_graph(crafted_lock().packages, "deb"))
    b = g.package_dot(g.package_graph(crafted_lock(shuffled).packages, "deb"))
    assert a == b


@needs_tool("dot")
def test_graphviz_reads_the_same_graph():
    dot = g.package_dot(g.package_graph(crafted_lock().packages, "deb"))
    out = json.loads(subprocess.run(["dot", "-Tjson0"], input=dot.encode(), capture_output=True, check=True).stdout)
    names = [o["name"] for o in out["objects"]]
    assert set(names) == {p.name for p in CRAFTED}
    got = {(names[e["tail"]], names[e["head"]], e["kind"], e.get("via", "")) for e in out["edges"]}
    assert got == EXPECTED_EDGES
    assert {o["name"] for o in out["objects"] if o.get("essential") == "yes"} == ESSENTIAL


def test_multiarch_packages_get_distinct_nodes():
    pkgs = [pkg("libc6", "2.36", arch="amd64"), pkg("libc6", "2.36", arch="i386"),
            pkg("tool", depends=["Depends: libc6"], arch="i386"), pkg("other", depends=["libc6:any"])]
    nodes, edges = parse_dot(g.package_dot(g.package_graph(pkgs, "deb")))
    assert set(nodes) == {"libc6:amd64", "libc6:i386", "tool", "other"}
    # An unqualified relation prefers the depender's own architecture.
    assert edge_set(edges) == {("tool", "libc6:i386", "depends", ""), ("other", "libc6:amd64", "depends", "")}


def test_rpm_requires_resolve_through_provides():
    pkgs = [
        pkg("bash", "5.2-1", arch="x86_64", provides=["bash = 5.2-1", "/bin/sh"],
            depends=["rpmlib(CompressedFileNames) <= 3.0.4-1", "libc.so.6()(64bit)", "filesystem >= 3"]),
        pkg("glibc", "2.38-1", arch="x86_64", provides=["libc.so.6()(64bit)", "glibc = 2.38-1"], depends=["/bin/sh"]),
        pkg("filesystem", "3.18-1", arch="x86_64"),
        pkg("setup", "2.14-1", arch="noarch", depends=["(foo if bar)", "missing-cap"]),
    ]
    graph = g.package_graph(pkgs, "rpm")
    assert {(e.src, e.dst, e.kind, e.via) for e in graph.edges} == {
        ("bash", "glibc", "requires", "libc.so.6()(64bit)"),
        ("bash", "filesystem", "requires", ""),
        ("glibc", "bash", "requires", "/bin/sh"),
    }
    assert graph.unresolved == [("setup", "missing-cap")]


@needs_tool("dot")
def test_svg_and_png_rendering(tmp_path):
    dot = g.package_dot(g.package_graph(crafted_lock().packages, "deb"))
    svg = g.render(dot, "svg")
    root = ET.fromstring(svg)
    assert is_svg_root(root.tag)
    titles = {t.text for t in root.findall(".//{*}title")}
    assert {"base-files", "cron", "cron->postfix"} <= titles
    png = g.render(dot, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@needs_tool("dot")
def test_cli_graph_of_a_lock(tmp_path):
    lock_path = tmp_path / "crafted.lock.json"
    crafted_lock().write(lock_path)
    out = tmp_path / "g.svg"
    code, _, err = rootfs("graph", lock_path, "-o", out)
    assert code == 0, err
    assert is_svg_root(ET.parse(out).getroot().tag)
    code, stdout, err = rootfs("graph", lock_path)
    assert code == 0, err
    assert edge_set(parse_dot(stdout.decode())[1]) == EXPECTED_EDGES
    png = tmp_path / "g.png"
    assert rootfs("graph", lock_path, "-o", png)[0] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # -f wins over the suffix
    odd = tmp_path / "graph.out"
    assert rootfs("graph", lock_path, "-f", "svg", "-o", odd)[0] == 0
    assert is_svg_root(ET.parse(odd).getroot().tag)


def test_cli_svg_without_graphviz_is_a_privilege_error(tmp_path, monkeypatch):
    lock_path = tmp_path / "crafted.lock.json"
    crafted_lock().write(lock_path)
    out = tmp_path / "g.svg"
    bindir = tmp_path / "bin"  # a PATH with no `dot` on it
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    code, _, err = rootfs("graph", lock_path, "--format", "svg", "-o", out)
    assert code == 7, err
    assert "dot" in err and "graphviz" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "crafted.lock.json"]  # nothing half-written
    # DOT itself needs no graphviz.
    code, _, err = rootfs("graph", lock_path, "-o", tmp_path / "g.dot")
    assert code == 0, err
    assert parse_dot((tmp_path / "g.dot").read_text())[0].keys() == {p.name for p in CRAFTED}


def test_cli_graph_bad_inputs(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = rootfs("graph", bad)
    assert code == 2 and "not valid JSON" in err
    code, _, err = rootfs("graph", "no-such-recipe-here")
    assert code == 2 and "unknown recipe" in err
    lock_path = tmp_path / "l.json"
    crafted_lock().write(lock_path)
    code, _, err = rootfs("graph", lock_path, "--format", "gif")
    assert code == 2 and "gif" in err
    empty = tmp_path / "emptydir"
    empty.mkdir()
    code, _, err = rootfs("graph", empty)
    assert code == 2 and "package database" in err
    code, _, err = rootfs("graph", lock_path, lock_path)
    assert code == 2 and "not an image" in err


# ---------------------------------------------------------------- lineage


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return path


def _umoci(*args):
    subprocess.run(["umoci", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def two_images(tmp_path_factory) -> Path:
    """One layout, three tags: `base` (one layer), `a` and `b` built on it."""
    d = tmp_path_factory.mktemp("lineage")
    layout = d / "img"
    base = _tar(d / "base.tar", {"etc/os-release": b"ID=test\n", "bin/tool": b"base\n"})
    la = _tar(d / "a.tar", {"srv/a": b"a\n"})
    lb = _tar(d / "b.tar", {"srv/b": b"b\n"})
    _umoci("init", "--layout", str(layout))
    _umoci("new", "--image", f"{layout}:empty")
    _umoci("raw", "add-layer", "--image", f"{layout}:empty", "--tag", "base", str(base))
    _umoci("raw", "add-layer", "--image", f"{layout}:base", "--tag", "a", str(la))
    _umoci("raw", "add-layer", "--image", f"{layout}:base", "--tag", "b", str(lb))
    _umoci("rm", "--image", f"{layout}:empty")
    return layout


@needs_tool("umoci")
def test_lineage_of_two_images_sharing_a_base(two_images, tmp_path):
    out = tmp_path / "lineage.dot"
    code, _, err = rootfs("graph", f"{two_images}:a", f"{two_images}:b", "-o", out)
    assert code == 0, err
    nodes, edges = parse_dot(out.read_text())
    assert len(nodes) == 3 and len(edges) == 2
    roots = set(nodes) - {b for _, b, _ in edges}
    assert len(roots) == 1
    (base,) = roots
    children = {b for a, b, _ in edges if a == base}
    assert len(children) == 2
    assert {nodes[c]["tags"] for c in children} == {"a", "b"}
    assert "tags" not in nodes[base]
    # The shared node is the base layer: its digest is the uncompressed base tar's.
    cfg = _config(two_images, "base")
    assert nodes[base]["layer"] == cfg["rootfs"]["diff_ids"][0]
    for c in children:
        tag = nodes[c]["tags"]
        assert nodes[c]["layer"] == _config(two_images, tag)["rootfs"]["diff_ids"][1]


@needs_tool("umoci")
def test_lineage_of_a_whole_layout_labels_every_tag(two_images):
    code, stdout, err = rootfs("graph", "--lineage", two_images)
    assert code == 0, err
    nodes, edges = parse_dot(stdout.decode())
    assert sorted(a.get("tags", "") for a in nodes.values()) == ["a", "b", "base"]
    assert len(edges) == 2


@needs_root()
@needs_tool("umoci", "skopeo", "unshare")
def test_lineage_of_docker_archives_uses_their_repo_tags(two_images, tmp_path):
    archives = []
    for tag in ("a", "b"):
        archive = tmp_path / f"{tag}.tar"
        skopeo_copy(tmp_path, f"oci:{two_images}:{tag}", f"docker-archive:{archive}:localhost/test:{tag}")
        archives.append(archive)
    code, stdout, err = rootfs("graph", *archives)
    assert code == 0, err
    nodes, edges = parse_dot(stdout.decode())
    assert len(nodes) == 3 and len(edges) == 2
    assert sorted(a.get("tags", "") for a in nodes.values()) == ["", "localhost/test:a", "localhost/test:b"]
    # The same layers as the OCI layout's: lineage does not depend on the container format.
    code, from_oci, err = rootfs("graph", f"{two_images}:a", f"{two_images}:b")
    assert code == 0, err
    assert set(parse_dot(from_oci.decode())[0]) == set(nodes)


def test_lineage_does_not_merge_equal_layers_on_different_parents():
    x, y, z = ("sha256:" + c * 64 for c in "xyz")
    dot = g.lineage_dot([g.ImageLayers(("one",), (x, z)), g.ImageLayers(("two",), (y, z))])
    nodes, edges = parse_dot(dot)
    assert len(nodes) == 4 and len(edges) == 2  # z on x and z on y are different layers


def _config(layout: Path, tag: str) -> dict:
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    manifest = json.loads((layout / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_text())
    return json.loads((layout / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_text())



# ---------------------------------------------------------------- a recipe, resolved first


def test_graph_of_a_recipe_resolves_it_first(tmp_path, gpg_key, http_serve):
    from debrepo import Pkg, build_repo, write_recipe

    repo = build_repo(tmp_path / "repo", [
        Pkg("base-files", priority="required", essential=True, pre_depends="awk"),
        Pkg("mawk", priority="required", provides="awk", depends="libc6 (>= 2.0)"),
        Pkg("libc6", version="2.36-9", priority="required"),
        Pkg("mailx", depends="exim4 | postfix, libc6"),
        Pkg("postfix", provides="mail-transport-agent", depends="libc6"),
        Pkg("cron", depends="mail-transport-agent"),
        Pkg("unrelated", depends="libc6"),
    ], key=gpg_key)
    server = http_serve(repo.path)
    recipe = write_recipe(tmp_path, repo, variant="essential", include=("mailx", "cron"))
    code, stdout, err = rootfs("graph", recipe, "--mirror", server.url + "/")
    assert code == 0, err
    nodes, edges = parse_dot(stdout.decode())
    assert set(nodes) == {"base-files", "mawk", "libc6", "mailx", "postfix", "cron"}
    assert nodes["base-files"]["essential"] == "yes" and nodes["libc6"]["version"] == "2.36-9"
    assert edge_set(edges) == {
        ("base-files", "mawk", "pre-depends", "awk"),
        ("mawk", "libc6", "depends", ""),
        ("mailx", "postfix", "depends", ""),
        ("mailx", "libc6", "depends", ""),
        ("postfix", "libc6", "depends", ""),
        ("cron", "postfix", "depends", "mail-transport-agent"),
    }
