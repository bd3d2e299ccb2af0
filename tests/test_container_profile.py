"""The container profile and the slim variant against debuerreotype, and a
customized image in podman, on the Debian mirror apt is configured with
(discovered at run time; skipped without one).

debuerreotype (the tool behind the official Docker `debian` images) builds
bookworm minbase with debootstrap in its --non-debian mode, then applies its
minimizing configuration and, for the slim variant, slimify. rootfs's
bookworm recipe has the container profile on; `--slim` is the slim
variant. The trees must have the same packages and the same files, every
difference being one listed below with its reason.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import needs_root, needs_tool

pytestmark = [pytest.mark.mirror, pytest.mark.slow, needs_root()]

ROOTFS = [sys.executable, "-m", "rootfs.cli"]

# Paths only debuerreotype's image has, and why.
ONLY_DEBUERREOTYPE = {
    "etc/hostname": "debuerreotype writes one; a container gets its hostname from the runtime",
    "etc/resolv.conf": "debuerreotype writes one; a container gets its resolver from the runtime",
    "var/lib/dpkg/cmethopt": "debootstrap's dselect method file; mmdebstrap does not write it either",
    "var/lib/dpkg/status-old": "dpkg's backup; rootfs leaves -old backups out of images",
    "var/lib/dpkg/diversions-old": "dpkg's backup; rootfs leaves -old backups out of images",
    "var/cache/debconf/config.dat-old": "debconf's backup; rootfs leaves -old backups out of images",
    "var/cache/debconf/templates.dat-old": "debconf's backup; rootfs leaves -old backups out of images",
    "etc/apt/sources.list": "debuerreotype-init writes one-line sources; rootfs writes bookworm's deb822 "
                            "debian.sources, as the official images do (debuerreotype-debian-sources-list --deb822)",
}
# Paths only rootfs's image has, and why.
ONLY_ROOTFS = {
    "var/cache/apt/archives": "apt's own directories, which debuerreotype-tar leaves out",
    "var/cache/apt/archives/partial": "apt's own directories, which debuerreotype-tar leaves out",
    "var/lib/apt/lists/partial": "apt's own directories, which debuerreotype-tar leaves out",
    "var/lib/dpkg/arch": "dpkg's architecture list, which mmdebstrap writes too",
    "etc/apt/sources.list.d/debian.sources": "deb822 sources with Signed-By, as the official bookworm images have",
}
# Paths in both whose contents differ, and why (each checked as far as it
# can be: the same settings, the same entries).
CONTENT_DIFFERS = {
    "etc/apt/apt.conf.d/docker-autoremove-suggests": "the same setting, rootfs's own comment",
    "etc/apt/apt.conf.d/docker-clean": "the same settings, rootfs's own comments",
    "etc/apt/apt.conf.d/docker-gzip-indexes": "the same setting, rootfs's own comment",
    "etc/apt/apt.conf.d/docker-no-languages": "the same setting, rootfs's own comment",
    "etc/dpkg/dpkg.cfg.d/docker-apt-speedup": "the same setting, rootfs's own comment",
    "usr/sbin/policy-rc.d": "the same exit 101, rootfs's own comment",
    "var/lib/apt/extended_states": "the same entries; apt writes them in its cache's hash order, rootfs sorted",
    "var/lib/dpkg/available": "debootstrap records the archive's index there; rootfs leaves it empty as mmdebstrap",
    "var/lib/dpkg/status": "the same packages; Priority from each package's control (as mmdebstrap) rather than "
                           "the archive's override (debootstrap)",
}
# Slim only: dpkg's maintainer scripts, run with the filters in place, skip
# the alternatives and diversions of man pages that are not there (as in any
# install under these rules); slimify deletes the pages afterwards and
# leaves the links dangling. slimify makes the man section directories with
# the caller's umask.
SLIM_ONLY_DEBUERREOTYPE_PREFIXES = ("etc/alternatives/", "var/lib/dpkg/alternatives/")
SLIM_CONTENT_DIFFERS = {
    "etc/dpkg/dpkg.cfg.d/docker": "the same rules; slimify's comments list the packages each rule hit",
    "var/lib/dpkg/diversions": "dash's diversion of the excluded sh.1.gz is not made",
}


def mirror_url() -> str:
    from rootfs.backends.deb.mirror import host_mirror

    url = host_mirror("debian", "Debian")
    if not url:
        pytest.skip("apt has no Debian mirror configured on this machine")
    return url


def tar_listing(path: Path) -> dict[str, tuple]:
    out = {}
    with tarfile.open(path) as t:
        for m in t:
            name = m.name.lstrip("./").rstrip("/") or "."
            body = hashlib.sha256(t.extractfile(m).read()).hexdigest() if m.isfile() else ""
            link = m.linkname.lstrip("./") if m.islnk() else m.linkname
            out[name] = (m.type, m.mode, m.uid, m.gid, link, body)
    return out


def read_member(tar: Path, name: str) -> str:
    with tarfile.open(tar) as t:
        for m in t:
            if (m.name.lstrip("./").rstrip("/") or ".") == name:
                return t.extractfile(m).read().decode()
    raise KeyError(name)


def settings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def paragraphs(text: str, drop: tuple[str, ...] = ()) -> list[str]:
    return sorted("\n".join(line for line in p.splitlines() if not line.startswith(drop))
                  for p in text.split("\n\n") if p.strip())


@pytest.fixture(scope="module")
def debuerreotype(tmp_path_factory):
    """debuerreotype's bookworm: init (debootstrap), minimizing-config and
    fixup, then its tar; and the same after slimify."""
    for tool in ("debuerreotype-init", "debootstrap", "wget"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    mirror = mirror_url().rstrip("/")
    base = tmp_path_factory.mktemp("debuerreotype")
    p = subprocess.run(["debuerreotype-init", "--non-debian", "--keyring",
                        "/usr/share/keyrings/debian-archive-keyring.gpg", str(base / "rootfs"), "bookworm", mirror],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    for step in (["debuerreotype-minimizing-config"], ["debuerreotype-fixup"]):
        subprocess.run([*step, str(base / "rootfs")], check=True, capture_output=True, timeout=300)
    subprocess.run(["debuerreotype-tar", str(base / "rootfs"), str(base / "rootfs.tar")], check=True,
                   capture_output=True, timeout=300)
    subprocess.run(["debuerreotype-slimify", str(base / "rootfs")], check=True, capture_output=True, timeout=300)
    subprocess.run(["debuerreotype-tar", str(base / "rootfs"), str(base / "slim.tar")], check=True,
                   capture_output=True, timeout=300)
    yield {"tar": base / "rootfs.tar", "slim": base / "slim.tar", "root": base / "rootfs"}
    shutil.rmtree(base, ignore_errors=True)


def _as_shipped(bookworm_build, out: Path, *extra: str) -> Path:
    """bookworm as debuerreotype-init makes it: the point release alone,
    without -updates and -security (debuerreotype-init takes one suite)."""
    p = subprocess.run([*ROOTFS, "make", "bookworm", "--no-updates", *extra, "--variant", "minbase",
                        "-f", "dir", "-f", "tar", "-o", str(out), "--cache-dir", str(bookworm_build.cache)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def shipped_build(bookworm_build, tmp_path_factory):
    return _as_shipped(bookworm_build, tmp_path_factory.mktemp("shipped") / "out")


@pytest.fixture(scope="module")
def slim_build(bookworm_build, tmp_path_factory):
    return _as_shipped(bookworm_build, tmp_path_factory.mktemp("slim") / "out", "--slim")


def packages_of(root: Path) -> list[str]:
    q = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package} ${Version}\n"],
                       capture_output=True, text=True, check=True)
    return sorted(q.stdout.splitlines())


def compare(theirs: Path, ours: Path, slim: bool) -> tuple[int, list[str]]:
    a, b = tar_listing(theirs), tar_listing(ours)
    problems = []
    for path in sorted(a.keys() - b.keys()):
        if path not in ONLY_DEBUERREOTYPE and not (slim and path.startswith(SLIM_ONLY_DEBUERREOTYPE_PREFIXES)):
            problems.append(f"only debuerreotype: {path}")
    for path in sorted(b.keys() - a.keys()):
        if path not in ONLY_ROOTFS:
            problems.append(f"only rootfs: {path}")
    known = {**CONTENT_DIFFERS, **(SLIM_CONTENT_DIFFERS if slim else {})}
    for path in sorted(a.keys() & b.keys()):
        if a[path] == b[path]:
            continue
        if path in known and a[path][:5] == b[path][:5]:
            continue
        if slim and path.startswith("usr/share/man/man") and path.count("/") == 3 and \
                (a[path][0], a[path][2:]) == (b[path][0], b[path][2:]):
            continue  # the section directories: only the mode (slimify's umask) differs
        problems.append(f"differs: {path} {a[path]} {b[path]}")
    return len(a.keys() & b.keys()), problems


def test_same_packages_as_debuerreotype(debuerreotype, shipped_build):
    assert packages_of(debuerreotype["root"]) == packages_of(shipped_build / "rootfs")


def test_same_files_as_debuerreotype_but_the_documented(debuerreotype, shipped_build):
    theirs, ours = debuerreotype["tar"], shipped_build / "rootfs.tar"
    compared, problems = compare(theirs, ours, slim=False)
    print(f"debuerreotype comparison: {compared} paths in both")
    assert problems == []
    for path in CONTENT_DIFFERS:
        if path.startswith(("etc/apt/apt.conf.d/", "etc/dpkg/dpkg.cfg.d/", "usr/sbin/policy-rc.d")):
            assert settings(read_member(theirs, path)) == settings(read_member(ours, path)), path
    assert paragraphs(read_member(theirs, "var/lib/apt/extended_states")) == \
        paragraphs(read_member(ours, "var/lib/apt/extended_states"))
    assert paragraphs(read_member(theirs, "var/lib/dpkg/status"), ("Priority:",)) == \
        paragraphs(read_member(ours, "var/lib/dpkg/status"), ("Priority:",))
    # The same mirror, suite and components, one-line against deb822.
    kind, uri, suite, *components = read_member(theirs, "etc/apt/sources.list").split()
    stanza = dict(line.split(": ", 1) for line in read_member(ours, "etc/apt/sources.list.d/debian.sources").splitlines()
                  if ": " in line)
    assert (kind, uri.rstrip("/"), suite, components) == \
        (stanza["Types"], stanza["URIs"].rstrip("/"), stanza["Suites"], stanza["Components"].split())


def test_slim_like_slimify_and_no_larger(debuerreotype, slim_build):
    theirs, ours = debuerreotype["slim"], slim_build / "rootfs.tar"
    compared, problems = compare(theirs, ours, slim=True)
    ours_size, theirs_size = ours.stat().st_size, theirs.stat().st_size
    print(f"slim: rootfs {ours_size} bytes, slimify {theirs_size} bytes, {compared} paths in both")
    assert problems == []
    assert ours_size <= theirs_size
    rules = [line.split(None, 1) for line in settings(read_member(ours, "etc/dpkg/dpkg.cfg.d/docker"))]
    assert rules == [line.split(None, 1) for line in settings(read_member(theirs, "etc/dpkg/dpkg.cfg.d/docker"))]


def test_slim_dpkg_database_agrees_with_the_disk(slim_build):
    """dpkg lists what its filters left out, as it does in any install under
    path-exclude rules; everything it misses is such a path, nothing on disk
    differs from what dpkg recorded."""
    from rootfs.backends.deb.profile import PathFilter, dpkg_rules

    root = slim_build / "rootfs"
    flt = PathFilter(tuple(dpkg_rules((root / "etc/dpkg/dpkg.cfg.d/docker").read_text())))
    p = subprocess.run(["chroot", str(root), "dpkg", "--verify"], capture_output=True, text=True,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    lines = p.stdout.splitlines()
    assert lines, "the filtered documentation is listed, as dpkg lists it"
    for line in lines:
        status, path = line.split(None, 1)
        assert status == "missing" and flt.skips(path.split()[-1], False), line
    assert not (root / "usr/share/doc/bash/README.gz").exists()
    assert (root / "usr/share/doc/bash/copyright").exists()
    assert (root / "usr/share/man/man1").is_dir()  # openjdk's postinst wants it, as slimify keeps it


@needs_tool("podman", "runc")
def test_apt_in_the_image_stays_lean(bookworm_build, tmp_path):
    """After `apt-get install cron` in the image, apt's cache is gone and
    only cron is marked manual (so autoremove works)."""
    from pack_containers import Containers, available

    if available():
        pytest.skip(available())
    c = Containers(tmp_path / "podman")
    try:
        c.podman("import", "-q", str(bookworm_build.out / "rootfs.tar"), "localhost/profile:1")
        r = c.podman("run", "--rm", "--network=host", "--cgroup-parent", "/" + c.cgroup, "localhost/profile:1",
                     "/bin/sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cron "
                     ">/dev/null && du -sk /var/cache/apt && echo MANUAL && apt-mark showmanual")
    finally:
        c.close()
    du, manual = r.stdout.split("MANUAL\n")
    kb = int(du.split()[0])
    print(f"/var/cache/apt after installing cron: {kb} KB")
    assert kb < 1024
    assert manual.split() == ["cron"]


@needs_tool("podman", "runc", "openssl")
def test_customized_image_runs_as_its_user(bookworm_build, tmp_path):
    """useradd in a customize hook, a CA certificate copied in and
    update-ca-certificates run, time zone Europe/Berlin: podman runs the
    image as that user and the bundle has the certificate. (That a rootless
    build with hooks and [customize] equals the root one is
    test_hooks.py's.)"""
    from pack_containers import Containers, available

    if available():
        pytest.skip(available())
    work = tmp_path / "recipe"
    work.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=rootfs test CA", "-keyout", str(work / "ca.key"), "-out", str(work / "corp.crt")],
                   check=True, capture_output=True)
    recipe = work / "corp.toml"
    recipe.write_text((Path(__file__).parent.parent / "recipes" / "bookworm.toml").read_text() + """
[customize]
files = [{ src = "corp.crt", dest = "/usr/local/share/ca-certificates/corp.crt", mode = "0644" }]
timezone = "Europe/Berlin"
commands = ["update-ca-certificates"]
""")
    args = ["make", str(recipe), "--include", "ca-certificates,tzdata", "--mirror", bookworm_build.mirror,
            "--customize-hook", 'chroot "$1" useradd -u 10000 -m app', "-f", "tar"]
    root_tar = tmp_path / "root.tar"
    p = subprocess.run([*ROOTFS, *args, "-o", str(root_tar), "--cache-dir", str(bookworm_build.cache)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    body = "".join(line for line in (work / "corp.crt").read_text().splitlines() if "-----" not in line)
    c = Containers(tmp_path / "podman")
    try:
        c.podman("import", "-q", str(root_tar), "localhost/corp:1")
        who = c.podman("run", "--rm", "--network=none", "--user", "app", "--cgroup-parent", "/" + c.cgroup,
                       "localhost/corp:1", "id").stdout.strip()
        zone = c.run("localhost/corp:1", "date", "+%Z", "-d", "2024-01-15").strip()
        bundle = c.run("localhost/corp:1", "cat", "/etc/ssl/certs/ca-certificates.crt")
    finally:
        c.close()
    assert who.startswith("uid=10000(app) gid=10000(app)"), who
    assert zone == "CET"
    assert body in "".join(bundle.split())
