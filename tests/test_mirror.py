"""Mirror precedence and discovery from apt's configuration."""

from pathlib import Path

import pytest

from rootfs.backends.deb.mirror import choose_mirror, host_mirror
from rootfs.model.errors import UsageError


def apt_tree(tmp_path: Path) -> tuple[Path, Path]:
    etc, lists = tmp_path / "etc", tmp_path / "lists"
    (etc / "sources.list.d").mkdir(parents=True)
    lists.mkdir()
    (etc / "sources.list").write_text(
        "# a comment\n"
        "deb [arch=amd64] http://mirror.invalid/other stable main\n"
    )
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/security-stuff\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nEnabled: no\nURIs: http://disabled.invalid/debian\nSuites: bookworm\n"
    )
    (lists / "mirror.invalid_other_dists_stable_InRelease").write_text(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Ubuntu\nLabel: Ubuntu\n"
    )
    (lists / "mirror.invalid_debian_dists_bookworm_InRelease").write_text(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\nSuite: oldstable\n"
    )
    return etc, lists


def test_host_mirror_matches_the_release_origin_and_skips_security(tmp_path):
    etc, lists = apt_tree(tmp_path)
    assert host_mirror("debian", "Debian", etc, lists) == "http://mirror.invalid/debian"
    assert host_mirror("ubuntu", "Ubuntu", etc, lists) == "http://mirror.invalid/other"
    assert host_mirror("fedora", "Fedora", etc, lists) is None


def test_host_mirror_falls_back_to_the_uri_path_without_lists(tmp_path):
    etc, _ = apt_tree(tmp_path)
    assert host_mirror("debian", "Debian", etc, tmp_path / "no-lists") == "http://mirror.invalid/debian"


def test_precedence_flag_recipe_environment(monkeypatch):
    monkeypatch.setenv("ROOTFS_MIRROR", "http://env.invalid/debian")
    assert choose_mirror("http://flag.invalid/d", "http://recipe.invalid/d", "debian") == "http://flag.invalid/d/"
    assert choose_mirror(None, "http://recipe.invalid/d", "debian") == "http://recipe.invalid/d/"
    assert choose_mirror(None, "", "debian") == "http://env.invalid/debian/"


def test_no_mirror_anywhere_is_a_usage_error(monkeypatch):
    monkeypatch.delenv("ROOTFS_MIRROR", raising=False)
    with pytest.raises(UsageError, match="no mirror"):
        choose_mirror(None, "", "no-such-distribution", "NoSuchOrigin")

