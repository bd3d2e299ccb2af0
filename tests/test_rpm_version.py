"""rpm version order, dependency ranges, rich dependencies and file
capabilities, checked against the real rpm where rpm has an answer."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess

import pytest

from rootfs.backends.rpm.caps import parse_caps, xattr_value
from rootfs.backends.rpm.deps import Dep, atoms, parse_dep_string, parse_rich
from rootfs.backends.rpm.version import (
    EQUAL,
    EVR,
    GREATER,
    LESS,
    evrcmp,
    parse_evr,
    ranges_overlap,
    vercmp,
)
from rootfs.model.errors import InstallError, ResolveError

SYSTEM_PYTHON = "/usr/bin/python3"


def _rpm_python() -> bool:
    return shutil.which(SYSTEM_PYTHON) is not None and subprocess.run(
        [SYSTEM_PYTHON, "-c", "import rpm"], capture_output=True).returncode == 0


def _generated_pairs(n: int) -> list[tuple[str, str]]:
    # No "-" or ":" (they split an EVR before rpmvercmp sees it) and no
    # empty strings, which rpm refuses as versions.
    rng = random.Random(1234)
    alphabet = ["0", "1", "2", "9", "10", "007", "a", "b", "Z", "rc", "alpha", ".", "_", "+", "~", "^", "~~", "^^", "~1", "^1"]
    pairs = []
    for _ in range(n):
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5)))
        b = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5)))
        pairs.append((a, b))
        # Near neighbours compare in the interesting places.
        pairs.append((a, a + rng.choice(alphabet)))
    return pairs


KNOWN = [
    ("1.0", "1.0", 0), ("1.0", "2.0", -1), ("2.0", "1.0", 1), ("2.0.1", "2.0.1a", -1), ("5.5p1", "5.5p10", -1),
    ("10xyz", "10.1xyz", -1), ("xyz10", "xyz10.1", -1), ("1.0", "1.0~rc1", 1), ("1.0~rc1", "1.0~rc2", -1),
    ("1.0~rc1~git123", "1.0~rc1", -1), ("1.0^", "1.0", 1), ("1.0^git1", "1.0", 1), ("1.0^git1", "1.01", -1),
    ("1.0^git1", "1.0^git2", -1), ("1.0^git1~pre", "1.0^git1", -1), ("001", "1", 0), ("1.0a", "1.0", 1),
    ("a", "1", -1), ("1.1.a", "1.1", 1), ("2_0", "2.0", 0), ("1.1~rc1", "1.0", 1), ("1.1~rc1", "1.1", -1),
]


@pytest.mark.parametrize("a,b,want", KNOWN)
def test_vercmp_known_cases(a, b, want):
    assert vercmp(a, b) == want
    assert vercmp(b, a) == -want


@pytest.mark.skipif(not _rpm_python(), reason="the rpm Python module (python3-rpm) is not installed")
def test_vercmp_matches_rpm_on_generated_pairs():
    pairs = _generated_pairs(3000)
    code = (
        "import json, sys, rpm\n"
        "pairs = json.load(sys.stdin)\n"
        "print(json.dumps([rpm.labelCompare(('0', a, '1'), ('0', b, '1')) for a, b in pairs]))\n"
    )
    proc = subprocess.run([SYSTEM_PYTHON, "-c", code], input=json.dumps(pairs), capture_output=True, text=True, check=True)
    want = json.loads(proc.stdout)
    got = [vercmp(a, b) for a, b in pairs]
    mismatches = [(a, b, g, w) for (a, b), g, w in zip(pairs, got, want) if g != w]
    assert not mismatches, mismatches[:10]
    assert len(set(want)) == 3  # the pairs exercise all three outcomes


@pytest.mark.skipif(not _rpm_python(), reason="the rpm Python module (python3-rpm) is not installed")
def test_evr_order_matches_rpm_with_epochs_and_releases():
    rng = random.Random(99)
    evrs = [(str(rng.choice([0, 0, 1, 2])), rng.choice(["1.0", "1.0~rc1", "1.0^g1", "2", "1.10", "1.9"]),
             rng.choice(["1", "1.fc39", "2.el9", "1~beta"])) for _ in range(400)]
    pairs = list(zip(evrs, reversed(evrs)))
    code = ("import json, sys, rpm\n"
            "print(json.dumps([rpm.labelCompare(tuple(a), tuple(b)) for a, b in json.load(sys.stdin)]))\n")
    proc = subprocess.run([SYSTEM_PYTHON, "-c", code], input=json.dumps(pairs), capture_output=True, text=True, check=True)
    got = [evrcmp(EVR(*a), EVR(*b)) for a, b in pairs]
    assert got == json.loads(proc.stdout)


def test_parse_evr_and_ranges():
    assert parse_evr("2:9.0.2081-1.fx1") == EVR("2", "9.0.2081", "1.fx1")
    assert parse_evr("1.0") == EVR("", "1.0", "")
    # nano's `Conflicts: fx-editor-vim < 1:10` does not hit vim 2:9.0.2081 ...
    vim = EVR("2", "9.0.2081", "1.fx1")
    assert not ranges_overlap(LESS, parse_evr("1:10"), EQUAL, vim)
    # ... but would if the epoch were dropped.
    assert ranges_overlap(LESS, parse_evr("10"), EQUAL, EVR("0", "9.0.2081", "1.fx1"))
    # A requirement without a release matches any release of that version.
    assert ranges_overlap(EQUAL, parse_evr("2.36"), EQUAL, EVR("0", "2.36", "9.fx1"))
    assert ranges_overlap(GREATER | EQUAL, parse_evr("2.36"), EQUAL, EVR("0", "2.36", "9.fx1"))
    assert not ranges_overlap(GREATER | EQUAL, parse_evr("2.36"), EQUAL, EVR("0", "2.35", "1"))
    assert ranges_overlap(GREATER | EQUAL, parse_evr("1.0"), EQUAL, EVR("0", "1.1~rc1", "1"))
    assert ranges_overlap(0, None, EQUAL, EVR("0", "1", "1"))  # unversioned meets everything


def test_rich_dependencies_parse():
    assert parse_rich("(fx-coreutils or fx-coreutils-single)") == (
        "or", [("atom", Dep("fx-coreutils")), ("atom", Dep("fx-coreutils-single"))])
    node = parse_rich("(foo >= 1.0 if (bar and libx.so.1()(64bit)) else baz)")
    assert node[0] == "if" and node[3] == ("atom", Dep("baz"))
    assert node[1] == ("atom", Dep("foo", GREATER | EQUAL, EVR("", "1.0", "")))
    assert [d.name for d in atoms(node)] == ["foo", "bar", "libx.so.1()(64bit)", "baz"]
    assert parse_rich("(a unless b)")[0] == "unless"
    assert parse_rich("(a with b)")[0] == "with"
    assert parse_rich("(a without b)")[0] == "without"
    assert parse_rich("(a and b and c)") == ("and", [("atom", Dep("a")), ("atom", Dep("b")), ("atom", Dep("c"))])
    with pytest.raises(ResolveError, match="parentheses"):
        parse_rich("(a and b or c)")
    with pytest.raises(ResolveError):
        parse_rich("(a and b")
    with pytest.raises(ResolveError):
        parse_dep_string("foo >= ")


def test_capabilities_text_to_xattr():
    # The bytes setcap writes for cap_net_raw=ep (revision 2, effective).
    assert xattr_value("cap_net_raw=ep") == struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
    assert xattr_value("cap_net_bind_service,cap_net_admin+ep") == struct.pack(
        "<IIIII", 0x02000001, (1 << 10) | (1 << 12), 0, 0, 0)
    assert xattr_value("cap_sys_admin=p") == struct.pack("<IIIII", 0x02000000, 1 << 21, 0, 0, 0)
    # Capabilities above 31 go into the second word.
    assert xattr_value("cap_bpf=ei") == struct.pack("<IIIII", 0x02000001, 0, 0, 0, 1 << (39 - 32))
    eff, perm, inh = parse_caps("cap_chown,cap_kill=ep cap_kill-e")
    assert (eff, perm, inh) == (1, 1 | 1 << 5, 0)
    with pytest.raises(InstallError):
        xattr_value("cap_nonsense=ep")


@pytest.mark.skipif(shutil.which("setcap") is None or shutil.which("getcap") is None, reason="libcap2-bin missing")
def test_capability_bytes_match_setcap(tmp_path):
    import os

    f = tmp_path / "f"
    f.write_text("x")
    for text in ("cap_net_raw=ep", "cap_net_admin,cap_sys_time+p", "cap_setuid=eip"):
        if subprocess.run(["setcap", text, str(f)], capture_output=True).returncode != 0:
            pytest.skip("setcap cannot set capabilities here")
        assert os.getxattr(f, "security.capability") == xattr_value(text), text
