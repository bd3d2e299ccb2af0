"""rpm-md repositories and the resolver, with dnf as the oracle.

The repositories are built here with rpmbuild and createrepo_c
(tests/rpmrepo.py) and served on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import rpmrepo
from conftest import needs_tool

from rootfs.backends import ResolveOptions
from rootfs.backends.rpm.resolve import resolve
from rootfs.backends.rpm.settings import adhoc_recipe
from rootfs.model.errors import ResolveError
from rootfs.model.recipe import Recipe
from rootfs.net.fetch import Downloader

pytestmark = needs_tool("rpmbuild", "createrepo_c")

# The fixture packages are unsigned: resolving them needs --no-check-gpg
# (the trust cases are in tests/test_rpm_trust.py).
UNSIGNED = ResolveOptions(check_gpg=False)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return rpmrepo.built_once(tmp_path_factory)


@pytest.fixture(scope="session")
def fx_repo(built, tmp_path_factory) -> Path:
    return rpmrepo.make_repo(tmp_path_factory.mktemp("fxrepo") / "repo", built.fx)


def rootfs(*args) -> subprocess.CompletedProcess:
    """The CLI, run in this process (the same code path as the console
    script, without an interpreter start per call)."""
    from typer.testing import CliRunner

    from rootfs.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def resolved(*args) -> list[str]:
    p = rootfs("resolve", *args)
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


def recipe(repos, packages, **kw) -> Recipe:
    return adhoc_recipe("t", "x86_64", repos, packages, **kw)


# -- dnf as the oracle ------------------------------------------------------------------

def dnf_set(repo: Path, packages: list[str], tmp: Path, weak: bool) -> list[str] | None:
    """What dnf installs for packages (None when it refuses), as
    `name epoch:version-release arch` lines."""
    root = tmp / "dnfroot"
    p = subprocess.run(
        ["dnf", "-q", "-y", "--installroot", str(root), "--releasever=1", "--setopt=reposdir=/dev/null",
         "--nogpgcheck", f"--repofrompath=fx,{repo.as_uri()}", "--repo=fx", "--setopt=tsflags=justdb",
         f"--setopt=install_weak_deps={weak}", "--setopt=cachedir=" + str(tmp / "dnfcache"), "install", *packages],
        capture_output=True, text=True,
    )
    if p.returncode != 0:
        return None
    q = subprocess.run(["rpm", "--root", str(root), "--dbpath", "/root/.rpmdb", "-qa", "--qf",
                        "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH}\n"], capture_output=True, text=True, check=True)
    return sorted(q.stdout.splitlines())


ORACLE_REQUESTS = [
    (["fx-devtools"], True),
    (["fx-devtools"], False),
    (["fx-devtools", "fx-editor-nano", "fx-coreutils-single"], True),
    (["fx-oldtool"], True),
    (["fx-libc"], True),
    (["fx-editor-nano", "fx-editor-vim"], True),
    (["fx-coreutils", "fx-coreutils-single"], True),
    (["fx-daemon"], True),
    # The ways dnf reads a request: NAME.ARCH, NAME-VERSION, NAME-VERSION-RELEASE
    # (with an epoch), a capability, a path in primary.xml and one only in
    # filelists.xml, an obsoleted name, a glob.
    (["fx-libc.x86_64"], False),
    (["fx-libc-2.35"], False),
    (["fx-libc-2.35-1.fx1"], False),
    (["fx-editor-vim-2:9.0.2081-1.fx1.x86_64"], False),
    (["fx-editor"], False),
    (["fx-editor >= 8"], False),
    (["/usr/bin/fx-ls"], False),
    (["/usr/share/fx-data/catalog.txt"], False),
    (["fx-coreutils*"], False),
]


@needs_tool("dnf")
@pytest.mark.parametrize("packages,weak", ORACLE_REQUESTS, ids=lambda v: "+".join(v) if isinstance(v, list) else f"weak={v}")
def test_resolve_matches_dnf(fx_repo, tmp_path, packages, weak):
    want = dnf_set(fx_repo, packages, tmp_path, weak)
    p = rootfs("resolve", "--no-check-gpg", "--repo", fx_repo.as_uri(), "--weak-deps" if weak else "--no-weak-deps", *packages)
    if want is None:
        assert p.returncode == 3, p.stderr
        assert "conflicts with" in p.stderr and "Traceback" not in p.stderr, p.stderr
    else:
        assert p.returncode == 0, p.stderr
        assert sorted(p.stdout.splitlines()) == want
        assert p.stdout.splitlines() == sorted(p.stdout.splitlines())  # sorted by name


def test_expected_choices(fx_repo):
    """The README table, spelled out: epochs, tilde versions, obsoletes,
    wrong arch, weak deps."""
    lines = resolved("--no-check-gpg", "--repo", fx_repo.as_uri(), "--weak-deps", "fx-devtools")
    assert "fx-editor-vim 2:9.0.2081-1.fx1 x86_64" in lines
    assert "fx-docs 0:1.1~rc1-1.fx1 noarch" in lines
    assert "fx-libc 0:2.36-9.fx1 x86_64" in lines
    assert "fx-newtool 0:2.0-1.fx1 noarch" in lines
    assert not any(line.startswith("fx-oldtool ") for line in lines)
    assert not any("aarch64" in line for line in lines)
    assert len(lines) == 10


@pytest.mark.parametrize("compress", ["gz", "xz", "zst", "bz2", "plain"])
def test_metadata_compressions(built, tmp_path, http_serve, compress):
    repo = rpmrepo.make_repo(tmp_path / "repo", built.fx, compress=compress)
    names = list((repo / "repodata").iterdir())
    if compress != "plain":
        assert any(n.name.endswith(f"primary.xml.{compress}") for n in names), names
    url = http_serve(repo).url
    lines = resolved("--no-check-gpg", "--repo", url, "--no-weak-deps", "fx-devtools")
    assert len(lines) == 9 and "fx-data 0:2023c-1.fx1 noarch" in lines


class Recording(Downloader):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def get_bytes(self, url):
        self.urls.append(url)
        return super().get_bytes(url)


def test_filelists_read_only_when_needed(built, fx_repo, tmp_path):
    # Without fx-devtools no package needs a path that only filelists.xml lists.
    repo = rpmrepo.make_repo(tmp_path / "repo", [p for p in built.fx if "fx-devtools" not in p.name])
    d = Recording()
    lock = resolve(recipe([repo.as_uri()], ["fx-libc"]), UNSIGNED, d)
    assert [p.name for p in lock.packages] == ["fx-filesystem", "fx-libc", "fx-setup"]
    assert not any("-filelists.xml" in u for u in d.urls)
    # A requested path outside primary.xml's reach needs it, once.
    d = Recording()
    lock = resolve(recipe([repo.as_uri()], ["/usr/share/fx-data/catalog.txt"]), UNSIGNED, d)
    assert [p.name for p in lock.packages] == ["fx-data"]
    assert sum("-filelists.xml" in u for u in d.urls) == 1
    # fx-devtools needs /usr/share/fx-data/catalog.txt, listed only in filelists.
    d = Recording()
    lock = resolve(recipe([fx_repo.as_uri()], ["fx-devtools"]), UNSIGNED, d)
    assert "fx-data" in {p.name for p in lock.packages}
    assert sum("-filelists.xml" in u for u in d.urls) == 1

def test_lock_contents_and_determinism(fx_repo):
    r = recipe([fx_repo.as_uri()], ["fx-devtools"], weak_deps=True)
    a = resolve(r, UNSIGNED, Downloader())
    b = resolve(r, UNSIGNED, Downloader())
    assert a.to_json() == b.to_json()
    assert a.backend == "rpm" and a.source_date_epoch == rpmrepo.SOURCE_DATE_EPOCH
    vim = next(p for p in a.packages if p.name == "fx-editor-vim")
    assert vim.version == "2:9.0.2081-1.fx1"
    f = fx_repo / "Packages" / vim.filename
    assert vim.size == f.stat().st_size
    import hashlib

    assert vim.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    assert vim.url == fx_repo.as_uri() + "/Packages/" + vim.filename
    assert a.sources[0].metadata == "repodata/repomd.xml"
    assert len(a.sources[0].sha256) == 64


def test_several_repositories_best_version_wins(built, tmp_path):
    old = [p for p in built.fx if "fx-libc-2.35" in p.name or "fx-filesystem" in p.name or "fx-setup" in p.name]
    new = [p for p in built.fx if "fx-libc-2.36-9.fx1.x86_64" in p.name]
    a = rpmrepo.make_repo(tmp_path / "a", old)
    b = rpmrepo.make_repo(tmp_path / "b", new + old)
    lock = resolve(recipe([a.as_uri(), b.as_uri()], ["fx-libc"]), UNSIGNED, Downloader())
    by = {p.name: p for p in lock.packages}
    assert by["fx-libc"].version == "0:2.36-9.fx1" and by["fx-libc"].url.startswith(b.as_uri())
    # The same package in both: the first repository given wins.
    assert by["fx-setup"].url.startswith(a.as_uri())
    lock = resolve(recipe([b.as_uri(), a.as_uri()], ["fx-libc"]), UNSIGNED, Downloader())
    assert {p.name: p for p in lock.packages}["fx-setup"].url.startswith(b.as_uri())


def test_unsatisfiable_names_the_chain(built, tmp_path):
    no_data = [p for p in built.fx if "fx-data" not in p.name]
    repo = rpmrepo.make_repo(tmp_path / "repo", no_data)
    p = rootfs("resolve", "--no-check-gpg", "--repo", repo.as_uri(), "fx-devtools")
    assert p.returncode == 3
    msg = p.stderr[p.stderr.index("rootfs: error:"):].strip()  # after the --no-check-gpg warning
    # libsolv's own account, as dnf prints it.
    assert msg.startswith("rootfs: error: cannot install fx-devtools: ") and msg.count("\n") == 0, msg
    assert "nothing provides /usr/share/fx-data/catalog.txt needed by fx-devtools-1.0-1.fx1.noarch" in msg, msg
    assert "Traceback" not in p.stderr
    # Deeper: vim needs fx-data too.
    p = rootfs("resolve", "--no-check-gpg", "--repo", repo.as_uri(), "fx-editor-vim")
    assert p.returncode == 3 and "nothing provides fx-data needed by fx-editor-vim-2:9.0.2081" in p.stderr, p.stderr


def test_rich_if_and_with(tmp_path):
    """Rich dependencies on metadata alone (tests/rpmmeta.py), escaped in
    primary.xml as createrepo_c escapes them."""
    from rpmmeta import Pkg, write_repo

    def names(packages, req, weak=False):
        repo = write_repo(tmp_path / f"r{len(list(tmp_path.iterdir()))}", packages)
        p = rootfs("resolve", "--no-check-gpg", "--repo", repo.as_uri(), "--weak-deps" if weak else "--no-weak-deps", *req)
        if p.returncode != 0:
            raise ResolveError(p.stderr)
        return [line.split()[0] for line in p.stdout.splitlines()]

    pool = [Pkg("app", requires=["(plugin-x if x else plugin-none)"]), Pkg("x"), Pkg("plugin-x"), Pkg("plugin-none"),
            Pkg("lib", requires=["(impl with fast)"]), Pkg("slow", provides=["impl"]),
            Pkg("turbo", provides=["impl", "fast"]), Pkg("old", "1.5", requires=["(lib < 2 if x)"])]
    assert names(pool, ["app"]) == ["app", "plugin-none"]
    assert names(pool, ["x", "app"]) == ["app", "plugin-x", "x"]
    assert names(pool, ["lib"]) == ["lib", "turbo"]
    assert names(pool, ["old", "x"]) == ["lib", "old", "turbo", "x"]
    # A provider whose own requirements fail is passed over.
    pool += [Pkg("needs-virt", requires=["virt"]), Pkg("a-broken", requires=["missing-lib"], provides=["virt"]),
             Pkg("b-good", provides=["virt"]), Pkg("uses-or", requires=["(a-broken or b-good)"])]
    assert names(pool, ["needs-virt"]) == ["b-good", "needs-virt"]
    assert names(pool, ["uses-or"]) == ["b-good", "uses-or"]
    with pytest.raises(ResolveError, match=r"nothing provides missing-lib needed by a-broken-1.0-1.x86_64"):
        names(pool, ["a-broken"])
    # Supplements pull a package in only with weak deps, and only when true.
    pool.append(Pkg("lang-x", supplements=["(x and app)"]))
    assert names(pool, ["app", "x"]) == ["app", "plugin-x", "x"]
    assert names(pool, ["app", "x"], weak=True) == ["app", "lang-x", "plugin-x", "x"]
    assert names(pool, ["app"], weak=True) == ["app", "plugin-none"]
    with pytest.raises(ResolveError, match="no package provides nothing-here"):
        names(pool, ["nothing-here"])

# -- signatures and bad input ------------------------------------------------------

def test_signed_repository(built, tmp_path, gpg_key, other_gpg_key):
    repo = rpmrepo.make_repo(tmp_path / "signed", built.fx, key=gpg_key)
    assert resolved("--repo", repo.as_uri(), "--repo-gpgcheck", "--gpgkey", gpg_key.armored, "fx-libc")
    p = rootfs("resolve", "--repo", repo.as_uri(), "--repo-gpgcheck", "--gpgkey", other_gpg_key.armored, "fx-libc")
    assert p.returncode == 4 and "not in the keyring" in p.stderr, p.stderr
    # A binary keyring works as well as an armoured key.
    assert resolved("--repo", repo.as_uri(), "--repo-gpgcheck", "--gpgkey", gpg_key.keyring, "fx-libc")
    # Changed after signing.
    md = repo / "repodata" / "repomd.xml"
    md.write_text(md.read_text().replace("<revision>", "<revision>1"))
    p = rootfs("resolve", "--repo", repo.as_uri(), "--repo-gpgcheck", "--gpgkey", gpg_key.armored, "fx-libc")
    assert p.returncode == 4 and "bad signature" in p.stderr, p.stderr
    # Unsigned repository with a key given.
    (repo / "repodata" / "repomd.xml.asc").unlink()
    p = rootfs("resolve", "--repo", repo.as_uri(), "--repo-gpgcheck", "--gpgkey", gpg_key.armored, "fx-libc")
    assert p.returncode == 4 and "not signed" in p.stderr, p.stderr


def test_tampered_primary(built, tmp_path, http_serve):
    repo = rpmrepo.make_repo(tmp_path / "repo", built.fx)
    primary = next((repo / "repodata").glob("*primary.xml.gz"))
    data = bytearray(primary.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, other bytes
    primary.write_bytes(bytes(data))
    p = rootfs("resolve", "--no-check-gpg", "--repo", http_serve(repo).url, "fx-libc")
    assert p.returncode == 4 and "does not match the sha256 checksum in repomd.xml" in p.stderr, p.stderr


def test_unreachable_and_missing(tmp_path, fx_repo):
    from rootfs.model.errors import NetworkError

    with pytest.raises(NetworkError) as exc:
        resolve(recipe(["http://127.0.0.1:9/repo"], ["fx-libc"]), UNSIGNED, Downloader(retries=0))
    assert exc.value.exit_code == 5 and "127.0.0.1:9" in str(exc.value)
    p = rootfs("resolve", "--no-check-gpg", "--repo", (tmp_path / "nothing").as_uri(), "fx-libc")
    assert p.returncode == 5 and "repomd.xml" in p.stderr, p.stderr
    p = rootfs("resolve", "--no-check-gpg", "--repo", fx_repo.as_uri(), "fx-no-such-package")
    assert p.returncode == 3 and "no package provides fx-no-such-package" in p.stderr, p.stderr


def test_recipe_with_rpm_backend(fx_repo, tmp_path):
    r = tmp_path / "fx.toml"
    r.write_text(f'backend = "rpm"\ndistribution = "fixture"\narchitecture = "x86_64"\n[rpm]\n'
                 f'repos = ["{fx_repo.as_uri()}"]\npackages = ["fx-oldtool"]\n')
    lines = resolved("--no-check-gpg", str(r))
    assert [line.split()[0] for line in lines] == ["fx-bash", "fx-filesystem", "fx-libc", "fx-newtool", "fx-setup"]
    # The shipped example recipe, pointed at this repository.
    from rootfs.model.recipe import load_recipe

    example = load_recipe("fx-rpm")
    assert example.backend == "rpm"
    lock = resolve(example.with_settings(repos=(fx_repo.as_uri(),)), UNSIGNED, Downloader())
    assert {"fx-devtools", "fx-daemon", "fx-docs"} <= {p.name for p in lock.packages}


MODULES_YAML = """---
document: modulemd
version: 2
data:
  name: fx-libc
  stream: "new"
  version: 1
  context: abcdef01
  summary: the newer C library
  description: fx-libc 2.36 as a module stream
  license:
    module: [MIT]
  artifacts:
    rpms:
    - fx-libc-0:2.36-9.fx1.x86_64
    - fx-libc-0:2.36-9.fx1.aarch64
...
"""

DEFAULTS_YAML = """---
document: modulemd-defaults
version: 1
data:
  module: fx-libc
  stream: "new"
...
"""


@pytest.mark.parametrize("default", [False, True], ids=["no-default-stream", "default-stream"])
def test_modular_packages_follow_default_streams(built, tmp_path, default):
    """A package of a module stream is offered only when that stream is the
    default, and then it hides the non-modular package of the same name."""
    repo = rpmrepo.make_repo(tmp_path / "repo", built.fx)
    yml = tmp_path / "modules.yaml"
    yml.write_text(MODULES_YAML + (DEFAULTS_YAML if default else ""))
    subprocess.run(["modifyrepo_c", "--mdtype=modules", str(yml), str(repo / "repodata")], check=True, capture_output=True)
    lines = resolved("--no-check-gpg", "--repo", repo.as_uri(), "fx-libc")
    want = "fx-libc 0:2.36-9.fx1 x86_64" if default else "fx-libc 0:2.35-1.fx1 x86_64"
    assert want in lines, lines
    if shutil.which("dnf"):  # dnf 4 filters modular packages the same way
        assert dnf_set(repo, ["fx-libc"], tmp_path, True) == sorted(lines)
    if not default:
        # fx-bash needs fx-libc >= 2.36, which only the hidden stream has.
        p = rootfs("resolve", "--no-check-gpg", "--repo", repo.as_uri(), "fx-bash")
        assert p.returncode == 3 and "fx-libc(x86-64) >= 2.36" in p.stderr, p.stderr


COMPS_XML = """<?xml version="1.0" encoding="UTF-8"?>
<comps>
  <group>
    <id>fx-core</id>
    <name>FX Core</name>
    <packagelist>
      <packagereq type="mandatory">fx-bash</packagereq>
      <packagereq type="default">fx-coreutils-single</packagereq>
      <packagereq type="optional">fx-daemon</packagereq>
      <packagereq type="conditional" requires="fx-editor-vim">fx-docs</packagereq>
    </packagelist>
  </group>
  <group>
    <id>fx-editors</id>
    <name>FX Editors</name>
    <packagelist>
      <packagereq type="mandatory">fx-editor-vim</packagereq>
    </packagelist>
  </group>
  <environment>
    <id>fx-minimal-environment</id>
    <name>FX Minimal</name>
    <grouplist><groupid>fx-core</groupid><groupid>fx-editors</groupid></grouplist>
    <optionlist><groupid>fx-tools</groupid></optionlist>
  </environment>
</comps>
"""


@pytest.fixture(scope="session")
def comps_repo(built, tmp_path_factory) -> Path:
    repo = rpmrepo.make_repo(tmp_path_factory.mktemp("compsrepo") / "repo", built.fx)
    comps = repo.parent / "comps.xml"
    comps.write_text(COMPS_XML)
    subprocess.run(["modifyrepo_c", "--mdtype=group", str(comps), str(repo / "repodata")], check=True, capture_output=True)
    return repo


@needs_tool("dnf")
@pytest.mark.parametrize("specs,dnf_specs", [
    (["@fx-core"], None), (["@FX Core"], None),
    (["@fx-core", "fx-editor-vim"], None), (["@^fx-minimal-environment"], ["@fx-minimal-environment"]),
    (["@fx-minimal-environment"], None),
], ids=lambda v: " ".join(v) if v else "")
def test_groups_match_dnf(comps_repo, tmp_path, specs, dnf_specs):
    """comps groups and environments (dnf 4.14 spells an environment
    without the ^; `@group/types` is in the generated test against dnf's
    API, since dnf's command line does not read it)."""
    want = dnf_set(comps_repo, dnf_specs or specs, tmp_path, False)
    assert want is not None
    lines = resolved("--no-check-gpg", "--repo", comps_repo.as_uri(), "--no-weak-deps", *specs)
    assert sorted(lines) == want


def test_unknown_group_and_module(comps_repo):
    p = rootfs("resolve", "--no-check-gpg", "--repo", comps_repo.as_uri(), "@fx-nothing")
    assert p.returncode == 3 and "no module, group or environment called 'fx-nothing'" in p.stderr, p.stderr
    p = rootfs("resolve", "--no-check-gpg", "--repo", comps_repo.as_uri(), "@^fx-core")
    assert p.returncode == 3 and "no environment called 'fx-core'" in p.stderr, p.stderr


def _modular_repo(built, tmp_path, defaults: bool) -> Path:
    repo = rpmrepo.make_repo(tmp_path / "repo", built.fx)
    yml = tmp_path / "modules.yaml"
    yml.write_text(MODULES_YAML.replace("  artifacts:", "  profiles:\n    common:\n      rpms: [fx-libc]\n  artifacts:")
                   + (DEFAULTS_YAML if defaults else ""))
    subprocess.run(["modifyrepo_c", "--mdtype=modules", str(yml), str(repo / "repodata")], check=True, capture_output=True)
    return repo


def test_module_streams_enabled_by_recipe_and_request(built, tmp_path):
    repo = _modular_repo(built, tmp_path, defaults=False)
    assert "fx-libc 0:2.35-1.fx1 x86_64" in resolved("--no-check-gpg", "--repo", repo.as_uri(), "fx-libc")
    # Enabled on the command line, in the recipe, or by an @module request.
    assert "fx-libc 0:2.36-9.fx1 x86_64" in resolved("--no-check-gpg", "--repo", repo.as_uri(), "--module", "fx-libc:new", "fx-libc")
    r = tmp_path / "mod.toml"
    r.write_text(f'backend = "rpm"\narchitecture = "x86_64"\n[rpm]\nrepos = ["{repo.as_uri()}"]\n'
                 'packages = ["fx-bash"]\nmodules = ["fx-libc:new"]\n')
    assert "fx-libc 0:2.36-9.fx1 x86_64" in resolved("--no-check-gpg", str(r))
    lines = resolved("--no-check-gpg", "--repo", repo.as_uri(), "@fx-libc:new/common")
    assert "fx-libc 0:2.36-9.fx1 x86_64" in lines
    if shutil.which("dnf"):
        assert dnf_set(repo, ["@fx-libc:new/common"], tmp_path, True) == sorted(lines)
    # No default profile, and streams that do not exist, are refused in one sentence.
    p = rootfs("resolve", "--no-check-gpg", "--repo", repo.as_uri(), "@fx-libc:new")
    assert p.returncode == 3 and "has no default profile" in p.stderr and "common" in p.stderr, p.stderr
    p = rootfs("resolve", "--no-check-gpg", "--repo", repo.as_uri(), "--module", "fx-libc:old", "fx-libc")
    assert p.returncode == 2 and "module fx-libc has no stream 'old'" in p.stderr, p.stderr
    r.write_text(r.read_text().replace('modules = ["fx-libc:new"]', 'modules = ["fx-libc"]'))
    p = rootfs("resolve", "--no-check-gpg", str(r))
    assert p.returncode == 2 and "modules entries are name:stream" in p.stderr, p.stderr


def test_lock_records_the_request_as_written(fx_repo):
    lock = resolve(recipe([fx_repo.as_uri()], ["fx-editor >= 8", "fx-libc.x86_64", "/usr/bin/fx-ls"]),
                   UNSIGNED, Downloader())
    assert lock.requested == ("fx-editor >= 8", "fx-libc.x86_64", "/usr/bin/fx-ls")


def test_nodeps_prepare_appliance(built, tmp_path):
    """An appliance of packages whose dependencies no repository has."""
    from rootfs.model.lock import read_lock

    only = [p for p in built.fx if p.name.startswith(("fx-devtools-", "fx-docs-"))]
    repo = rpmrepo.make_repo(tmp_path / "repo", only)
    p = rootfs("prepare", "--no-check-gpg", "--repo", repo.as_uri(), "-o", tmp_path / "app", "--cache-dir", tmp_path / "cache",
               "fx-devtools", "fx-docs")
    assert p.returncode == 3 and "nothing provides" in p.stderr and not (tmp_path / "app").exists()
    p = rootfs("prepare", "--no-check-gpg", "--repo", repo.as_uri(), "-o", tmp_path / "app", "--cache-dir", tmp_path / "cache",
               "--nodeps", "fx-devtools", "fx-docs")
    assert p.returncode == 0, p.stderr
    lock = read_lock(tmp_path / "app" / "lock.json")
    assert [x.name for x in lock.packages] == ["fx-devtools", "fx-docs"]
    assert sorted(f.name for f in (tmp_path / "app" / "packages").iterdir()) == sorted(x.name for x in only)
    # resolve takes --nodeps too; a deb recipe refuses it.
    assert [line.split()[0] for line in resolved("--no-check-gpg", "--repo", repo.as_uri(), "--nodeps", "fx-devtools")] == ["fx-devtools"]
    p = rootfs("resolve", "--no-check-gpg", "bookworm", "--nodeps")
    assert p.returncode == 2 and "--nodeps does not apply to deb recipes" in p.stderr, p.stderr
