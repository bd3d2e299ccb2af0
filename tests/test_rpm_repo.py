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
]


@needs_tool("dnf")
@pytest.mark.parametrize("packages,weak", ORACLE_REQUESTS, ids=lambda v: "+".join(v) if isinstance(v, list) else f"weak={v}")
def test_resolve_matches_dnf(fx_repo, tmp_path, packages, weak):
    want = dnf_set(fx_repo, packages, tmp_path, weak)
    p = rootfs("resolve", "--no-check-gpg", "--repo", fx_repo.as_uri(), "--weak-deps" if weak else "--no-weak-deps", *packages)
    if want is None:
        assert p.returncode == 3, p.stderr
        assert "conflicts with" in p.stderr and "Traceback" not in p.stderr
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


def test_filelists_read_only_when_needed(fx_repo):
    d = Recording()
    lock = resolve(recipe([fx_repo.as_uri()], ["fx-libc"]), UNSIGNED, d)
    assert [p.name for p in lock.packages] == ["fx-filesystem", "fx-libc", "fx-setup"]
    assert not any("filelists" in u for u in d.urls)
    # fx-devtools needs /usr/share/fx-data/catalog.txt, listed only in filelists.
    d = Recording()
    lock = resolve(recipe([fx_repo.as_uri()], ["fx-devtools"]), UNSIGNED, d)
    assert "fx-data" in {p.name for p in lock.packages}
    assert sum("filelists" in u for u in d.urls) == 1


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
    msg = p.stderr.strip()
    assert "nothing provides" in msg and "fx-devtools-1.0-1.fx1.noarch (requested)" in msg, msg
    assert "Traceback" not in p.stderr
    # Deeper: vim needs fx-data too, so the chain shows both links.
    p = rootfs("resolve", "--no-check-gpg", "--repo", repo.as_uri(), "fx-editor-vim")
    assert p.returncode == 3 and "nothing provides fx-data (needed by fx-editor-vim" in p.stderr, p.stderr


def test_rich_if_and_with(tmp_path):
    from rootfs.backends.rpm.deps import Dep
    from rootfs.backends.rpm.primary import Package
    from rootfs.backends.rpm.resolver import resolve_packages
    from rootfs.backends.rpm.version import EQUAL, EVR

    def pkg(name, requires=(), provides=(), conflicts=(), supplements=()):
        prov = (Dep(name, EQUAL, EVR("0", "1", "1")),) + tuple(Dep(p) for p in provides)
        return Package(name, "0", "1", "1", "noarch", f"{name}.rpm", "", "sha256", "0" * 64, 1,
                       provide_names=tuple(d.name for d in prov),
                       raw_deps={"provides": prov, "requires": tuple(Dep(r) for r in requires),
                                 "conflicts": tuple(Dep(c) for c in conflicts),
                                 "supplements": tuple(Dep(s) for s in supplements)})

    pool = [pkg("app", ["(plugin-x if x else plugin-none)"]), pkg("x"), pkg("plugin-x"), pkg("plugin-none"),
            pkg("lib", ["(impl with fast)"]), pkg("slow", provides=["impl"]), pkg("turbo", provides=["impl", "fast"])]
    names = lambda req: [p.name for p in resolve_packages(pool, "x86_64", req)]  # noqa: E731
    assert names(["app"]) == ["app", "plugin-none"]
    assert names(["x", "app"]) == ["app", "plugin-x", "x"]
    assert names(["lib"]) == ["lib", "turbo"]
    # A provider whose own requirements fail is undone; the next one is used.
    pool += [pkg("needs-virt", ["virt"]), pkg("a-broken", ["missing-lib"], provides=["virt"]),
             pkg("b-good", provides=["virt"]), pkg("uses-or", ["(a-broken or b-good)"])]
    assert names(["needs-virt"]) == ["b-good", "needs-virt"]
    assert names(["uses-or"]) == ["b-good", "uses-or"]
    with pytest.raises(ResolveError, match=r"nothing provides missing-lib \(needed by a-broken-1-1.noarch \(requested\)\)"):
        names(["a-broken"])
    # Supplements pull a package in only with weak deps, and only when true.
    pool.append(pkg("lang-x", supplements=["(x and app)"]))
    assert names(["app", "x"]) == ["app", "plugin-x", "x"]
    weak = lambda req: [p.name for p in resolve_packages(pool, "x86_64", req, weak_deps=True)]  # noqa: E731
    assert weak(["app", "x"]) == ["app", "lang-x", "plugin-x", "x"]
    assert weak(["app"]) == ["app", "plugin-none"]
    with pytest.raises(ResolveError, match="no package provides"):
        names(["nothing-here"])


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


def test_primary_fast_path_agrees_with_general_path(fx_repo):
    """createrepo_c's layout takes two regular expressions; the general
    field-by-field path must read the same values from it."""
    import gzip
    import io

    from rootfs.backends.rpm import primary as P

    data = gzip.decompress(next((fx_repo / "repodata").glob("*primary.xml.gz")).read_bytes())
    n = 0
    for _head, body in P._blocks(io.BytesIO(data), "package", "package", "primary"):
        m = P._HEAD.match(body)
        t = P._TAIL.search(body, m.end())
        assert tuple(x or "" for x in m.groups() + t.groups()) == P._fields_generic(body)
        n += 1
    assert n == 16


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
