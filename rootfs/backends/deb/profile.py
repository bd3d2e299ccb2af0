"""The container profile and the slim variant of a Debian root.

The profile is what debuerreotype's minimizing configuration gives the
official Debian images, under the same file names, so that what users do
with those (remove docker-clean to keep a cache mount's packages, say)
works the same here:

- /etc/apt/apt.conf.d/docker-clean: apt removes downloaded packages and its
  binary caches after every run (DPkg::Post-Invoke, APT::Update::Post-Invoke,
  Dir::Cache::pkgcache ""), so `apt-get install` leaves no cache in a layer;
- docker-gzip-indexes: package lists stay compressed on disk;
- docker-no-languages: no Translation files are downloaded;
- docker-autoremove-suggests: autoremove does not keep what is only
  suggested;
- /etc/dpkg/dpkg.cfg.d/docker-apt-speedup: dpkg's force-unsafe-io;
- /usr/sbin/policy-rc.d exiting 101: package installs start no services;
- every package marked automatically installed except the ones asked for
  (the recipe's include), so `apt-get autoremove` works and
  `apt-mark showmanual` lists only what a Dockerfile added;
- an empty /etc/machine-id (machine-id(5): each container gets its own).

The slim variant is debuerreotype's slimify: dpkg path-exclude rules for
documentation (copyright files kept), man pages, info, locales and lintian
overrides, in /etc/dpkg/dpkg.cfg.d/docker so that later installs stay slim;
here the rules are applied while the packages are extracted, exactly as
dpkg applies them (`PathFilter`), instead of deleting files afterwards.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass

from rootfs.backends.deb.version import compare

# debuerreotype's .slimify-excludes and .slimify-includes, in the order
# slimify writes them (each list sorted and unique).
SLIM_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/doc/kde/HTML/*/*",
    "/usr/share/gnome/help/*/*",
    "/usr/share/info/*",
    "/usr/share/linda/*",
    "/usr/share/lintian/overrides/*",
    "/usr/share/locale/*",
    "/usr/share/man/*",
    "/usr/share/omf/*/*-*.emf",
)
SLIM_INCLUDES = (
    "/usr/share/doc/*/copyright",
    "/usr/share/doc/kde/HTML/C/*",
    "/usr/share/gnome/help/*/C/*",
    "/usr/share/locale/all_languages",
    "/usr/share/locale/currency/*",
    "/usr/share/locale/l10n/*",
    "/usr/share/locale/languages",
    "/usr/share/locale/locale.alias",
    "/usr/share/omf/*/*-C.emf",
)

APT_CLEAN = '"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'

APT_FILES = {
    "etc/apt/apt.conf.d/docker-autoremove-suggests": (
        "# rootfs container profile: autoremove also takes what other packages\n"
        "# only suggest, so `apt-get purge --auto-remove` undoes an install.\n"
        'Apt::AutoRemove::SuggestsImportant "false";\n'
    ),
    "etc/apt/apt.conf.d/docker-clean": (
        "# rootfs container profile: apt cleans up after itself, as if\n"
        "# `apt-get clean` ran after every install, so no package cache ends up\n"
        "# in an image layer. Remove this file to keep downloaded packages.\n"
        f"DPkg::Post-Invoke {{ {APT_CLEAN} }};\n"
        f"APT::Update::Post-Invoke {{ {APT_CLEAN} }};\n"
        "\n"
        'Dir::Cache::pkgcache "";\n'
        'Dir::Cache::srcpkgcache "";\n'
    ),
    "etc/apt/apt.conf.d/docker-gzip-indexes": (
        "# rootfs container profile: package lists stay compressed on disk.\n"
        'Acquire::GzipIndexes "true";\n'
    ),
    "etc/apt/apt.conf.d/docker-no-languages": (
        "# rootfs container profile: no Translation files; delete this file and\n"
        "# run apt-get update to have them.\n"
        'Acquire::Languages "none";\n'
    ),
}
# Before apt 1.0.9.2 GzipIndexes applied to gzip-compressed lists only.
OLD_APT_GZIP = 'Acquire::CompressionTypes::Order:: "gz";\n'

DPKG_SPEEDUP = (
    "# rootfs container profile: no fsync after every unpacked file; a\n"
    "# container build that loses power is started again from scratch.\n"
    "force-unsafe-io\n"
)
POLICY_RC_D = (
    "#!/bin/sh\n"
    "# rootfs container profile: packages installed in a container start no\n"
    "# services (invoke-rc.d asks this script, and 101 means \"not allowed\").\n"
    "exit 101\n"
)
SLIM_HEADER = (
    "# rootfs slim variant: documentation, man pages, info, locales and\n"
    "# lintian overrides were left out of this image; these rules keep\n"
    "# later installs the same.\n"
)


def slim_config() -> str:
    lines = [SLIM_HEADER]
    lines += [f"path-exclude {p}\n" for p in SLIM_EXCLUDES]
    lines += [f"path-include {p}\n" for p in SLIM_INCLUDES]
    return "".join(lines)


def dpkg_rules(text: str) -> list[tuple[bool, str]]:
    """(include?, pattern) for every path-exclude/path-include line of a dpkg
    configuration text ("path-exclude=/x" or "path-exclude /x"), in order."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        for opt, include in (("path-exclude", False), ("path-include", True)):
            if line.startswith(opt) and len(line) > len(opt) and line[len(opt)] in "= \t":
                pattern = line[len(opt) + 1:].strip()
                if pattern:
                    rules.append((include, pattern))
    return rules


@dataclass(frozen=True)
class PathFilter:
    """dpkg's filters (src/main/filters.c): the last matching rule decides;
    an excluded directory or symlink is kept when an include pattern's
    fixed prefix (before its first wildcard) starts its path, so that the
    files included below it have a place to go."""

    rules: tuple[tuple[bool, str], ...]

    def __bool__(self) -> bool:
        return bool(self.rules)

    def skips(self, path: str, dir_or_link: bool) -> bool:
        """path as dpkg lists it: "/usr/share/doc/foo"."""
        skip = False
        for include, pattern in self.rules:
            if fnmatch.fnmatchcase(path, pattern):
                skip = not include
        if skip and dir_or_link:
            for include, pattern in self.rules:
                if not include:
                    continue
                cut = len(pattern)
                for i, c in enumerate(pattern):
                    if c in "*?[\\":
                        cut = i
                        break
                prefix = pattern[:cut].rstrip("/")
                if path.startswith(prefix):
                    return False
        return skip


def path_filter(settings) -> PathFilter:
    rules: list[tuple[bool, str]] = []
    for text in getattr(settings, "dpkgopt", ()):
        rules += dpkg_rules(text)
    if getattr(settings, "slim", False):
        rules += dpkg_rules(slim_config())
    return PathFilter(tuple(rules))


def apt_older_than(version: str, than: str) -> bool:
    return bool(version) and compare(version, than) < 0


def profile_files(apt_version: str, dpkg_version: str) -> dict[str, tuple[str, int]]:
    """path -> (content, mode) of the profile's configuration, for the apt
    and dpkg versions of the image ("" when the package is absent)."""
    out: dict[str, tuple[str, int]] = {"usr/sbin/policy-rc.d": (POLICY_RC_D, 0o755)}
    if dpkg_version and not apt_older_than(dpkg_version, "1.15.8.6~"):
        out["etc/dpkg/dpkg.cfg.d/docker-apt-speedup"] = (DPKG_SPEEDUP, 0o644)
    if apt_version:
        for path, text in APT_FILES.items():
            if path.endswith("gzip-indexes") and apt_older_than(apt_version, "1.0.9.2~"):
                text += OLD_APT_GZIP
            out[path] = (text, 0o644)
    return out


def extended_states(packages: list[tuple[str, str]], manual: set[str], native: str) -> str:
    """/var/lib/apt/extended_states marking every (name, architecture) but
    the manual ones automatically installed, as `apt-mark auto` writes it
    (apt files Architecture: all packages under the native architecture)."""
    out = []
    for name, arch in sorted(set(packages)):
        if name in manual:
            continue
        out.append(f"Package: {name}\nArchitecture: {native if arch == 'all' else arch}\nAuto-Installed: 1\n\n")
    return "".join(out)


def requested_names(requested, packages) -> set[str]:
    """The package names a request (`include` as written: names, name=ver,
    name/suite, name:arch, or a package file's path) stands for."""
    by_url = {p.url: p.name for p in packages}
    names = set()
    for entry in requested:
        if entry.startswith(("/", "./", "../")) or entry.endswith(".deb"):
            url = "file://" + os.path.abspath(entry)
            if url in by_url:
                names.add(by_url[url])
            continue
        for sep in ("=", "/", ":"):
            entry = entry.split(sep, 1)[0]
        names.add(entry)
    return names


def remove_slim_leftovers(ex) -> list[str]:
    """Delete what slimify deletes once the packages are configured: files
    maintainer scripts made under the excluded trees (base-files' info/dir)
    unless an include rule keeps them, then directories left empty and
    symlinks left dangling there, again and again until there are none.
    `ex` is the root's Extractor; returns the root-relative paths removed."""
    from rootfs.host.safepath import PathEscape, resolve_in_root

    root = ex.root
    removed: list[str] = []
    tops = sorted({os.path.dirname(p) for p in SLIM_EXCLUDES if p.endswith("/*") and "*" not in os.path.dirname(p)})
    for top in tops:
        try:
            base = resolve_in_root(root, top)
        except PathEscape:
            continue
        if not os.path.isdir(base) or os.path.islink(base):
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            for name in filenames:
                p = os.path.join(dirpath, name)
                rel = os.path.relpath(p, root)
                if os.path.islink(p) or any(fnmatch.fnmatchcase("/" + rel, inc) for inc in SLIM_INCLUDES):
                    continue
                if ex.remove(rel):
                    removed.append(rel)
        while True:
            found = []
            for dirpath, dirnames, filenames in os.walk(base, topdown=False):
                for name in dirnames + filenames:
                    p = os.path.join(dirpath, name)
                    rel = os.path.relpath(p, root)
                    st = os.lstat(p)
                    if stat.S_ISLNK(st.st_mode):
                        try:
                            dangling = not os.path.exists(resolve_in_root(root, rel))
                        except PathEscape:
                            dangling = True
                        if dangling:
                            found.append((rel, False))
                    elif stat.S_ISDIR(st.st_mode) and not os.listdir(p):
                        found.append((rel, True))
            if not found:
                break
            progress = False
            for rel, is_dir in found:
                if is_dir:
                    ex.remove_dir(rel)
                else:
                    ex.remove(rel)
                if not os.path.lexists(os.path.join(root, rel)):
                    removed.append(rel)
                    progress = True
            if not progress:
                break
    return removed


MAN_SECTIONS = tuple(f"usr/share/man/man{i}" for i in range(10))
