"""rpm trust as dnf's defaults, and the digests `rpm -K` and rpm's
installer check: each case asserts the exit code, the one sentence said,
and that nothing was written outside the target.

The tampered packages are real RPMs (tests/rpmrepo.py) rewritten by
tests/rpmcraft.py: as rpm before 4.14 wrote them, as RPM v3, with stripped
07070X payloads; "resealed" means every digest was remade to fit the
change, which is what anyone who can change a package but does not hold
the signing key can do, so only the per-file digests in the header (or a
signature) can still tell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import rpmcraft
import rpmrepo
from conftest import needs_root, needs_tool
from test_rpm_payloads import appliance, built, matrix, rootfs, setup_rpm  # noqa: F401 (fixtures)

pytestmark = needs_tool("rpmbuild", "createrepo_c", "rpm")


def refused(p: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    """Exit code code, one `rootfs: error:` sentence naming phrases, no traceback."""
    assert p.returncode == code, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("rootfs: error:")]
    assert len(errors) == 1 and "Traceback" not in p.stderr, p.stderr
    text = " ".join(p.stderr.split())
    for phrase in phrases:
        assert phrase in text, p.stderr


def nothing_written(tmp_path: Path, keep: set[str]) -> None:
    """The output was not made, no staging directory was left beside it,
    and none of the matrix packages' paths appeared on the host."""
    assert set(os.listdir(tmp_path)) <= keep, os.listdir(tmp_path)
    for host in ("/usr/share/fx-mx", "/opt/fx-mx-dirs", "/usr/libexec/fx-mx", "/etc/fx-mx"):
        assert not os.path.lexists(host), host


def build(appl: Path, out: Path, mode: str = "extract") -> subprocess.CompletedProcess:
    return rootfs("build", appl, "-f", "chroot" if mode == "root" else "tar", "--mode", mode, "-o", out)


def craft(src: Path, dest: Path, *steps) -> Path:
    pkg = rpmcraft.Package.read(src)
    for step in steps:
        pkg = step(pkg)
    return pkg.write(dest)


def change_content(pkg: rpmcraft.Package, needle: bytes = b"plain = 1") -> rpmcraft.Package:
    """One byte of one file's contents flipped inside the (uncompressed)
    payload, every digest resealed."""
    cpio = bytearray(pkg.uncompressed())
    i = cpio.index(needle)
    cpio[i] ^= 0x01
    pkg.set_uncompressed(bytes(cpio))
    return pkg.reseal(payload_digest=pkg.header.get(rpmcraft.PAYLOADDIGEST) is not None,
                      sha256=pkg.sig.get(rpmcraft.SIG_SHA256) is not None)


# -- one flipped byte ------------------------------------------------------------------

MODES = ["extract", pytest.param("root", marks=needs_root())]


class TestOneFlippedByte:
    """The flips that installed with exit 0 before: one byte of a package
    as rpm before 4.14 wrote it (only SIZE, MD5 and SHA1 to check it by),
    and of a package with a stripped 07070X payload."""

    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("comp", ["gzip", "plain"])
    def test_pre_414_package(self, matrix, setup_rpm, tmp_path, comp, mode):
        bad = craft(matrix.legacy[comp], tmp_path / "pre414.rpm", rpmcraft.to_pre_414)
        rpmcraft.flip_byte(bad, 100)
        appl = appliance([setup_rpm, bad], tmp_path / "appl")
        refused(build(appl, tmp_path / "out", mode), 4, "pre414.rpm", "do not match their MD5 digest")
        nothing_written(tmp_path, {"appl", "pre414.rpm"})

    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("comp", ["xz", "plain"])
    def test_stripped_package(self, matrix, setup_rpm, tmp_path, comp, mode):
        bad = craft(matrix.packages[("files", comp)], tmp_path / "stripped.rpm", rpmcraft.to_stripped)
        rpmcraft.flip_byte(bad, 100)
        appl = appliance([setup_rpm, bad], tmp_path / "appl")
        refused(build(appl, tmp_path / "out", mode), 4, "stripped.rpm", "the payload does not match its SHA256 digest")
        nothing_written(tmp_path, {"appl", "stripped.rpm"})

    def test_v3_package(self, matrix, setup_rpm, tmp_path):
        bad = craft(matrix.legacy["gzip"], tmp_path / "v3.rpm", rpmcraft.to_v3)
        rpmcraft.flip_byte(bad, 100)
        appl = appliance([setup_rpm, bad], tmp_path / "appl")
        refused(build(appl, tmp_path / "out"), 4, "v3.rpm", "do not match their MD5 digest")
        nothing_written(tmp_path, {"appl", "v3.rpm"})

    def test_refused_at_prepare_too(self, matrix, setup_rpm, tmp_path):
        """A repository made from the changed package (so primary.xml's
        sha256 fits it): prepare refuses it and writes no appliance."""
        (tmp_path / "src").mkdir()
        bad = craft(matrix.legacy["gzip"], tmp_path / "src" / "pre414.rpm", rpmcraft.to_pre_414)
        rpmcraft.flip_byte(bad, 100)
        repo = rpmrepo.make_repo(tmp_path / "repo", [setup_rpm, bad])
        p = rootfs("prepare", "--repo", repo.as_uri(), "--no-check-gpg", "--cache-dir", tmp_path / "cache",
                   "fx-mx-files-legacy-gzip", "-o", tmp_path / "appl")
        refused(p, 4, "do not match their MD5 digest")
        assert not (tmp_path / "appl").exists()


class TestResealed:
    """Digests remade to fit a change: the header's per-file digest is what
    is left, checked as each file is written (as rpm's installer does)."""

    @pytest.mark.parametrize("mode", MODES)
    def test_pre_414_md5_file_digest(self, matrix, setup_rpm, tmp_path, mode):
        bad = craft(matrix.legacy["plain"], tmp_path / "pre414.rpm", rpmcraft.to_pre_414, change_content)
        assert subprocess.run(["rpm", "-K", str(bad)], capture_output=True).returncode == 0  # rpm -K passes it
        appl = appliance([setup_rpm, bad], tmp_path / "appl")
        refused(build(appl, tmp_path / "out", mode), 4, "/etc/fx-mx/plain.conf does not match its MD5 digest")
        nothing_written(tmp_path, {"appl", "pre414.rpm"})

    @pytest.mark.parametrize("mode", MODES)
    def test_stripped_sha256_file_digest(self, matrix, setup_rpm, tmp_path, mode):
        bad = craft(matrix.packages[("files", "plain")], tmp_path / "stripped.rpm", rpmcraft.to_stripped,
                    change_content)
        appl = appliance([setup_rpm, bad], tmp_path / "appl")
        refused(build(appl, tmp_path / "out", mode), 4, "/etc/fx-mx/plain.conf does not match its SHA256 digest")
        nothing_written(tmp_path, {"appl", "stripped.rpm"})

    @pytest.mark.parametrize("comp", ["gzip", "xz", "lzma", "bzip2", "zstd"])
    def test_corrupt_compressed_payload(self, matrix, setup_rpm, tmp_path, comp):
        """Compressed bytes that no longer decompress, digests resealed:
        one sentence and exit 4, not a traceback. gzip's CRC (its last
        eight bytes but four), xz's and bzip2's block checks make the
        decoder itself refuse; legacy lzma and the zstd frames rpm writes
        carry no check, so garbage they decode to is caught by the per-file
        digests instead."""
        def corrupt(pkg):
            data = bytearray(pkg.payload)
            data[len(data) - 8 if comp == "gzip" else len(data) // 2] ^= 0xFF
            pkg.payload = bytes(data)
            pkg.header.drop(rpmcraft.PAYLOADDIGESTALT)  # it covers the uncompressed bytes there are none of
            return pkg.reseal()

        bad = craft(matrix.packages[("files", comp)], tmp_path / "corrupt.rpm", corrupt)
        appl = appliance([setup_rpm, bad], tmp_path / "appl")
        p = build(appl, tmp_path / "out")
        refused(p, 4, "corrupt.rpm")
        said = " ".join(p.stderr.split())
        if comp in ("gzip", "xz", "bzip2"):
            assert f"the {comp} payload is corrupt" in said, said
        else:
            assert f"the {comp} payload is corrupt" in said or "digest in the header" in said, said
        nothing_written(tmp_path, {"appl", "corrupt.rpm"})


def test_header_path_climbing_out_is_refused(matrix, setup_rpm, tmp_path):
    """A header whose directory names climb with `..` (resealed, so every
    digest fits): refused as a hostile package, nothing lands outside."""
    escape = tmp_path / "escaped"

    def climb(pkg):
        dirs = pkg.header.strings(rpmcraft.DIRNAMES)
        dirs[-1] = b"/.." * 12 + os.fsencode(escape) + b"/"
        pkg.header.put_strings(rpmcraft.DIRNAMES, dirs)
        return pkg.reseal()

    bad = craft(matrix.packages[("files", "plain")], tmp_path / "climb.rpm", climb)
    appl = appliance([setup_rpm, bad], tmp_path / "appl")
    refused(build(appl, tmp_path / "out"), 6, "refused", "'..'")
    assert not escape.exists()
    nothing_written(tmp_path, {"appl", "climb.rpm"})


# -- the repository: keys, signatures, checksums ----------------------------------------

class TestDnfDefaults:
    def test_no_key_is_refused_unless_no_check_gpg(self, built, tmp_path):
        repo = rpmrepo.make_repo(tmp_path / "repo", built.fx)
        p = rootfs("resolve", "--repo", repo.as_uri(), "fx-libc")
        refused(p, 2, "names no gpgkey", "--gpgkey FILE", "--no-check-gpg")
        p = rootfs("resolve", "--repo", repo.as_uri(), "--no-check-gpg", "fx-libc")
        assert p.returncode == 0, p.stderr
        assert "NOT checking the signatures" in " ".join(p.stderr.split())
        # A lock made that way says so again when it is installed.
        appl = tmp_path / "appl"
        p = rootfs("prepare", "--repo", repo.as_uri(), "--no-check-gpg", "--cache-dir", tmp_path / "c", "fx-setup",
                   "-o", appl)
        assert p.returncode == 0, p.stderr
        p = build(appl, tmp_path / "t.tar")
        assert p.returncode == 0 and "NOT checking the signatures of the packages" in " ".join(p.stderr.split())
        # A recipe without gpgkey, through `rootfs make`.
        recipe = tmp_path / "r.toml"
        recipe.write_text(f'backend = "rpm"\narchitecture = "x86_64"\n[rpm]\nrepos = ["{repo.as_uri()}"]\n'
                          'packages = ["fx-setup"]\n')
        p = rootfs("make", recipe, "-f", "tar", "--mode", "extract", "--cache-dir", tmp_path / "c", "-o",
                   tmp_path / "m.tar")
        refused(p, 2, "names no gpgkey")
        assert not (tmp_path / "m.tar").exists()

    @pytest.mark.parametrize("weak", ["md5", "sha1"])
    def test_weak_repomd_checksums_refused(self, built, tmp_path, weak):
        repo = rpmrepo.make_repo(tmp_path / "repo", built.fx, repomd_checksum=weak)
        assert 'checksum type="sha256"' not in (repo / "repodata/repomd.xml").read_text()
        p = rootfs("resolve", "--repo", repo.as_uri(), "--no-check-gpg", "fx-libc")
        refused(p, 4, "primary", "checksum", "sha256, sha384 or sha512")

    def test_signed_packages_unsigned_repomd_as_dnf(self, built, tmp_path, gpg_key, other_gpg_key):
        """Packages signed, repomd.xml not (as Fedora and CentOS publish
        them): accepted with the key, as dnf's gpgcheck=1 repo_gpgcheck=0;
        with --repo-gpgcheck the missing repomd.xml.asc is refused."""
        signed = tmp_path / "signed"
        signed.mkdir()
        for r in built.fx:
            shutil.copy2(r, signed / r.name)
        rpmrepo.sign_rpms(sorted(signed.iterdir()), gpg_key)
        repo = rpmrepo.make_repo(tmp_path / "repo", sorted(signed.iterdir()))
        p = rootfs("prepare", "--repo", repo.as_uri(), "--gpgkey", gpg_key.armored, "--cache-dir", tmp_path / "c",
                   "fx-libc", "-o", tmp_path / "appl")
        assert p.returncode == 0, p.stderr
        p = build(tmp_path / "appl", tmp_path / "t.tar")
        assert p.returncode == 0 and "NOT checking" not in p.stderr, p.stderr
        p = rootfs("resolve", "--repo", repo.as_uri(), "--gpgkey", gpg_key.armored, "--repo-gpgcheck", "fx-libc")
        refused(p, 4, "repomd.xml is not signed", "repo_gpgcheck")
        # Signed by another key: refused with --repo-gpgcheck, whatever the packages.
        other = rpmrepo.make_repo(tmp_path / "other", sorted(signed.iterdir()), key=other_gpg_key)
        p = rootfs("resolve", "--repo", other.as_uri(), "--gpgkey", gpg_key.armored, "--repo-gpgcheck", "fx-libc")
        assert p.returncode == 4, p.stderr
        # The packages signed by the wrong key: refused at prepare, nothing written.
        p = rootfs("prepare", "--repo", repo.as_uri(), "--gpgkey", other_gpg_key.armored, "--cache-dir",
                   tmp_path / "c", "fx-libc", "-o", tmp_path / "appl2")
        refused(p, 4, "signature check failed")
        assert not (tmp_path / "appl2").exists()


# -- scriptlets see what dpkg's maintainer scripts see ------------------------------------

@needs_root()
def test_scriptlets_get_a_minimal_dev_and_read_only_sys(built, tmp_path):
    hostsh = next(p for p in built.scripted if p.name.startswith("fx-hostsh-"))
    appl = appliance([hostsh, built.envcheck], tmp_path / "appl")
    p = build(appl, tmp_path / "out", "root")
    assert p.returncode == 0, p.stderr
    env = (tmp_path / "out/var/lib/fx/env").read_text().splitlines()
    devs = {line.split()[1] for line in env if line.startswith("dev ")}
    assert devs == {f"/dev/{n}" for n in ("console", "fd", "full", "null", "ptmx", "pts", "random", "shm",
                                           "stderr", "stdin", "stdout", "tty", "urandom", "zero", "pts/ptmx")}, devs
    assert "sys read-only" in env, env
    mounts = {line.split()[1]: line.split()[2:] for line in env if line.startswith("mount ")}
    assert mounts["/dev"][0] == "tmpfs" and mounts["/sys"] == ["sysfs", "ro"], mounts
    # Nothing of it stays: no mounts, and the mount points the root lacked are gone.
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()
    assert not (tmp_path / "out/sys").exists() and not (tmp_path / "out/dev").exists()
