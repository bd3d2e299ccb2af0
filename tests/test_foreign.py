"""Foreign architectures: a kernel that cannot run the build's binaries is
found before anything is downloaded (exit 7, with the fix in the message),
and with qemu-user registered a foreign root builds and runs."""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from binfmt import BINFMT, CONF, emulation, no_emulation
from conftest import _QuietHandler

from rootfs.host import binfmt
from rootfs.model import arch as archmod
from rootfs.model.errors import EmulationError, PrivilegeError

AMD64 = archmod.lookup("amd64")


def rootfs(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rootfs.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 600), **kw)


# -- handlers as the kernel prints them ---------------------------------------

def _unescape(field: str) -> bytes:
    return field.encode().decode("unicode_escape").encode("latin-1")


def kernel_entry(conf: str, enabled: bool = True, flags: str | None = None) -> tuple[str, str]:
    """(name, /proc/sys/fs/binfmt_misc/NAME text) of a binfmt.d line, the
    way the kernel shows it once registered."""
    _, name, kind, offset, magic, mask, interp, fl = conf.strip().split(":")
    assert kind == "M"
    fl = fl if flags is None else flags
    text = (f"{'enabled' if enabled else 'disabled'}\ninterpreter {interp}\nflags: {fl}\n"
            f"offset {offset or 0}\nmagic {_unescape(magic).hex()}\n")
    if mask:
        text += f"mask {_unescape(mask).hex()}\n"
    return name, text


def fake_binfmt(tmp_path: Path, *entries: tuple[str, str], status: str = "enabled") -> Path:
    root = tmp_path / "binfmt_misc"
    root.mkdir()
    (root / "register").write_text("")
    (root / "status").write_text(status + "\n")
    for name, text in entries:
        (root / name).write_text(text)
    return root


def conf(name: str) -> str:
    path = CONF / f"{name}.conf"
    if not path.exists():
        # qemu-user-static is in scripts/setup.sh: not a reason to skip
        raise AssertionError(f"{path} is missing: qemu-user-static is not installed")
    return path.read_text()


def test_elf_headers_match_qemu_handlers_for_their_own_architecture_only():
    """The header built from the table against qemu-user-static's own
    magics: each handler takes its architecture and no other."""
    pairs = {"arm64": "qemu-aarch64", "armhf": "qemu-arm", "ppc64el": "qemu-ppc64le", "ppc64": "qemu-ppc64",
             "s390x": "qemu-s390x", "riscv64": "qemu-riscv64", "mips64el": "qemu-mips64el", "mipsel": "qemu-mipsel",
             "i386": "qemu-i386", "loong64": "qemu-loongarch64"}
    handlers = {}
    for deb, name in pairs.items():
        if (CONF / f"{name}.conf").exists():
            handlers[deb] = binfmt.parse_handler(*kernel_entry(conf(name)))
    assert {"arm64", "armhf", "ppc64el", "s390x", "riscv64"} <= set(handlers)
    for deb, h in handlers.items():
        for other in handlers:
            a = archmod.lookup(other)
            for e_type in (binfmt.ET_DYN, binfmt.ET_EXEC):
                assert h.matches(binfmt.elf_header(a, e_type)) == (other == deb), (h.name, other, e_type)


def test_a_real_binary_header_matches(tmp_path):
    """The host's own /bin/sh against a handler made from its header: the
    header builder agrees with what the toolchain writes."""
    head = Path("/bin/sh").resolve().read_bytes()[:20]
    a = archmod.lookup(archmod.detect("/"))
    mask = b"\xff" * 7 + b"\x00" + b"\xff" * 8 + b"\xfe\xff\xff\xff"
    h = binfmt.Handler("self", True, "/x", "F", 0, head, mask)
    assert h.matches(binfmt.elf_header(a, binfmt.ET_DYN)) and h.matches(binfmt.elf_header(a, binfmt.ET_EXEC))


def test_usable_handler_is_accepted(tmp_path):
    root = fake_binfmt(tmp_path, kernel_entry(conf("qemu-aarch64"), flags="OCF"))
    assert binfmt.problem("arm64", root, AMD64) == ""
    assert binfmt.problem("aarch64", root, AMD64) == ""  # rpm's spelling
    # The handler's interpreter lives in a set-up container (as CI actions
    # register them): with F the kernel holds it open, so that is enough.
    name, text = kernel_entry(conf("qemu-aarch64"), flags="POCF")
    (root / name).write_text(text.replace("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "/nonexistent/qemu-aarch64"))
    assert binfmt.problem("arm64", root, AMD64) == ""
    # ...and it does not make armhf runnable
    assert "no binfmt_misc handler runs armhf" in binfmt.problem("armhf", root, AMD64)


def test_rootless_builds_only_the_hosts_own_architecture(tmp_path):
    root = fake_binfmt(tmp_path, kernel_entry(conf("qemu-aarch64")))
    binfmt.check_runnable("arm64", True, root, host=AMD64)
    for arch in ("arm64", "i386"):
        with pytest.raises(EmulationError, match="rootless build runs the host's fakeroot"):
            binfmt.check_runnable(arch, True, root, rootless=True, host=AMD64)
    binfmt.check_runnable("amd64", True, root, rootless=True, host=AMD64)
    binfmt.check_runnable("arm64", False, root, rootless=True, host=AMD64)


def test_native_architectures_need_no_handler(tmp_path):
    missing = tmp_path / "none"
    assert binfmt.problem("amd64", missing, AMD64) == ""
    assert binfmt.problem("i386", missing, AMD64) == ""
    assert binfmt.problem("armhf", missing, archmod.lookup("arm64")) == ""
    assert binfmt.problem("amd64", missing, archmod.lookup("arm64")) != ""
    binfmt.check_runnable("arm64", configures=False, root=missing)  # extract runs nothing
    binfmt.check_runnable("noarch", configures=True, root=missing)


@pytest.mark.parametrize("case", ["unmounted", "disabled", "handler-off", "no-fix-binary", "none", "static-only"])
def test_each_missing_piece_names_its_fix(tmp_path, case):
    entry = kernel_entry(conf("qemu-aarch64"))
    if case == "unmounted":
        root = tmp_path / "empty"
        root.mkdir()
        want = ["binfmt_misc is not mounted", "mount -t binfmt_misc", "apt-get install qemu-user-static"]
    elif case == "disabled":
        root = fake_binfmt(tmp_path, entry, status="disabled")
        want = ["binfmt_misc is disabled", "status"]
    elif case == "handler-off":
        root = fake_binfmt(tmp_path, kernel_entry(conf("qemu-aarch64"), enabled=False))
        want = ["qemu-aarch64 is disabled", "update-binfmts --enable qemu-aarch64"]
    elif case == "no-fix-binary":
        root = fake_binfmt(tmp_path, kernel_entry(conf("qemu-aarch64"), flags="OC"))
        want = ["lacks the F (fix-binary) flag", "qemu-user-static"]
    elif case == "static-only":
        # every bit of e_type compared: ET_EXEC only, PIE programs would not start
        name, text = kernel_entry(conf("qemu-aarch64"))
        root = fake_binfmt(tmp_path, (name, text.replace("fffffffffffffffffeffffff", "ffffffffffffffffffffffff")))
        want = ["does not match position-independent (ET_DYN) arm64 programs"]
    else:
        root = fake_binfmt(tmp_path, kernel_entry(conf("qemu-arm")))
        want = ["no binfmt_misc handler runs arm64", "apt-get install qemu-user-static", "systemd-binfmt",
                "update-binfmts"]
    why = binfmt.problem("arm64", root, AMD64)
    for w in want:
        assert w in why, (w, why)
    assert "--mode extract" in why and "\n" not in why
    with pytest.raises(EmulationError) as exc:
        binfmt.check_runnable("arm64", True, root, host=AMD64)
    assert isinstance(exc.value, PrivilegeError) and exc.value.exit_code == 7


# -- the real kernel, and the pipeline ----------------------------------------

class _Counting(_QuietHandler):
    def do_GET(self):  # noqa: N802
        self.server.requests.append(self.path)
        super().do_GET()

    def do_HEAD(self):  # noqa: N802
        self.server.requests.append(self.path)
        super().do_HEAD()


@pytest.fixture
def counting_serve():
    servers = []

    def start(root: Path):
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Counting, directory=str(root)))
        httpd.daemon_threads = True
        httpd.requests = []
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}", httpd.requests

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def names_fix(stderr: str) -> bool:
    """no_emulation leaves binfmt_misc unmounted or the handler switched
    off, as the machine had it: either fix is the right one to name."""
    return "apt-get install qemu-user-static" in stderr or "update-binfmts --enable" in stderr


def _foreign() -> str:
    return "riscv64" if archmod.host_arch().deb == "arm64" else "arm64"


def test_no_emulator_is_exit_7_before_any_download(tmp_path, gpg_key, counting_serve):
    """A signed arm64 repository on 127.0.0.1: with the handler switched off,
    make refuses in root and rootless mode with no request made and nothing
    cached; --mode extract (no scripts) builds from the same repository."""
    from debrepo import Pkg, build_repo, write_recipe

    arch = _foreign()
    pkgs = [Pkg("base-files", architecture=arch, priority="required", essential=True,
                files={"etc/os-release": b"ID=test\n"}),
            Pkg("apt", architecture=arch, priority="important", files={"usr/bin/apt": b"#!/bin/sh\n"})]
    repo = build_repo(tmp_path / "repo", pkgs, key=gpg_key, suite="stable", architectures=(arch,))
    url, requests = counting_serve(repo.path)
    recipe = write_recipe(tmp_path, repo, variant="minbase")
    cache = tmp_path / "cache"
    with no_emulation(arch):
        for mode in ("root", "rootless"):
            p = rootfs("make", recipe, "--mirror", url + "/", "--mode", mode, "--cache-dir", cache, "-f", "tar",
                       "-o", tmp_path / f"{mode}.tar")
            assert p.returncode == 7, (mode, p.returncode, p.stderr)
            if mode == "root":
                assert f"cannot run {arch} programs" in p.stderr and names_fix(p.stderr), p.stderr
            else:
                assert "fakeroot" in p.stderr and "build as root" in p.stderr, p.stderr
            assert requests == [], requests
            assert not (tmp_path / f"{mode}.tar").exists()
            assert not cache.exists() or not any(p for p in cache.rglob("*") if p.is_file())
        # one build of several platforms: refused if any of them cannot run
        both = f"{archmod.host_arch().deb},{arch}"
        p = rootfs("make", recipe, "--mirror", url + "/", "--arch", both, "--cache-dir", cache, "-f", "oci",
                   "-o", tmp_path / "both")
        assert p.returncode == 7 and f"cannot run {arch} programs" in p.stderr, p.stderr
        assert requests == [] and not (tmp_path / "both").exists()
        p = rootfs("make", recipe, "--mirror", url + "/", "--mode", "extract", "--cache-dir", cache, "-f", "tar",
                   "-o", tmp_path / "extract.tar")
    assert p.returncode == 0, p.stderr
    assert any(r.endswith("InRelease") for r in requests) and any(r.endswith(".deb") for r in requests), requests


def test_rpm_scriptlets_need_the_emulator_too(tmp_path, counting_serve):
    """The rpm backend runs scriptlets: an aarch64 recipe is refused before
    its repository is asked for repomd.xml."""
    arch = archmod.lookup(_foreign()).rpm
    (tmp_path / "empty").mkdir()
    url, requests = counting_serve(tmp_path / "empty")
    recipe = tmp_path / "fx.toml"
    recipe.write_text(f'backend = "rpm"\ndistribution = "fixture"\narchitecture = "{arch}"\n[rpm]\n'
                      f'repos = ["{url}/"]\npackages = ["fx-libc"]\n')
    with no_emulation(_foreign()):
        p = rootfs("make", "--no-check-gpg", recipe, "--mode", "root", "-f", "tar", "--cache-dir",
                   tmp_path / "c", "-o", tmp_path / "out.tar")
        assert p.returncode == 7 and names_fix(p.stderr), p.stderr
        assert requests == []
        # the control: extract mode goes on to ask the (empty) repository
        p = rootfs("make", "--no-check-gpg", recipe, "--mode", "extract", "-f", "tar", "--cache-dir",
                   tmp_path / "c", "-o", tmp_path / "out.tar")
    assert p.returncode != 0 and p.returncode != 7 and requests, (p.returncode, p.stderr)


def test_the_real_kernel_with_and_without_emulation():
    arch = _foreign()
    with emulation(arch):
        assert binfmt.problem(arch) == ""
        with no_emulation(arch):
            assert binfmt.problem(arch) != ""
        assert binfmt.problem(arch) == ""
    assert BINFMT.is_dir()


def test_rpm_appliance_build_checks_before_installing(tmp_path):
    """`rootfs build` installs offline from an appliance: a foreign one is
    refused before anything is written, and --mode extract goes ahead."""
    from rootfs.model.lock import Lock

    arch = archmod.lookup(_foreign()).rpm
    appl = tmp_path / "appl"
    (appl / "packages").mkdir(parents=True)
    Lock(backend="rpm", recipe="appl", distribution="fixture", suite="", architecture=arch).write(appl / "lock.json")
    with no_emulation(_foreign()):
        p = rootfs("build", appl, "--mode", "root", "-o", tmp_path / "out.tar")
        assert p.returncode == 7 and names_fix(p.stderr), p.stderr
        assert not (tmp_path / "out.tar").exists()
        p = rootfs("build", appl, "--mode", "extract", "-o", tmp_path / "out.tar")
    assert p.returncode == 0 and (tmp_path / "out.tar").exists(), p.stderr
