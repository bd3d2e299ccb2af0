"""The deb resolver on crafted indices: no HTTP, no .debs, just Packages text."""

from __future__ import annotations

import random

import pytest

from rootfs.backends.deb.index import Index, decompress_chunks, parse_stanza
from rootfs.backends.deb.relations import Alt, parse_provides, parse_relations
from rootfs.backends.deb.policy import Pool
from rootfs.backends.deb.resolver import Request, resolve_set, variant_request
from rootfs.backends.deb.version import satisfies
from rootfs.model.errors import ResolveError, VerifyError


def stanza(name, version="1.0", arch="amd64", **fields) -> str:
    lines = [f"Package: {name}", f"Version: {version}", f"Architecture: {arch}"]
    for key, value in fields.items():
        lines.append(f"{key.replace('_', '-').title().replace('Sha256', 'SHA256')}: {value}")
    lines += [
        f"Filename: pool/main/{name[0]}/{name}/{name}_{version.split(':')[-1]}_{arch}.deb",
        "Size: 100",
        f"SHA256: {'ab' * 32}",
        f"Description: {name}",
    ]
    return "\n".join(lines) + "\n"


def make_index(*stanzas: str, arch: str = "amd64") -> Index:
    idx = Index(arch, "http://mirror.invalid/")
    idx.add_text("\n".join(stanzas))
    return idx


def names(idx: Index, *roots: str, exclude=(), never=()) -> list[str]:
    res = resolve_set(idx, Request(tuple(roots), frozenset(exclude), frozenset(never)))
    return [p.name for p in res.packages]


# -- alternatives -------------------------------------------------------------


def test_alternative_prefers_a_package_already_chosen():
    idx = make_index(
        stanza("a", depends="x | y"),
        stanza("b", depends="y"),
        stanza("x"),
        stanza("y"),
    )
    assert names(idx, "a", "b") == ["a", "b", "y"]


def test_alternative_prefers_what_the_hard_closure_chose_even_when_found_later():
    # a's "x | y" is looked at only after b's hard chain a <- ... chose y.
    idx = make_index(
        stanza("a", depends="x | y, c"),
        stanza("c", depends="d"),
        stanza("d", depends="y"),
        stanza("x"),
        stanza("y"),
    )
    assert names(idx, "a") == ["a", "c", "d", "y"]


def test_alternative_takes_the_first_satisfiable_one():
    idx = make_index(
        stanza("a", depends="missing | old (>= 2) | good | other"),
        stanza("old", version="1.5"),
        stanza("good"),
        stanza("other"),
    )
    assert names(idx, "a") == ["a", "good"]


# -- virtual packages ---------------------------------------------------------


def test_virtual_package_goes_to_the_provider_with_the_best_priority():
    idx = make_index(
        stanza("app", depends="mail-transport-agent"),
        stanza("postfix", priority="optional", provides="mail-transport-agent"),
        stanza("exim4", priority="standard", provides="mail-transport-agent"),
    )
    assert names(idx, "app") == ["app", "exim4"]


def test_virtual_package_satisfied_by_a_chosen_provider():
    idx = make_index(
        stanza("app", depends="awk"),
        stanza("gawk", priority="optional", provides="awk"),
        stanza("mawk", priority="required", provides="awk"),
    )
    assert names(idx, "gawk", "app") == ["app", "gawk"]


def test_versioned_provides_satisfy_versioned_relations():
    idx = make_index(
        stanza("app", depends="libfoo-abi (>= 2)"),
        stanza("foo1", provides="libfoo-abi (= 1)"),
        stanza("foo3", provides="libfoo-abi (= 3), other"),
    )
    assert names(idx, "app") == ["app", "foo3"]


def test_unversioned_provides_never_satisfy_a_versioned_relation():
    idx = make_index(
        stanza("app", depends="libfoo-abi (>= 2)"),
        stanza("foo", provides="libfoo-abi"),
    )
    with pytest.raises(ResolveError, match=r'cannot satisfy "libfoo-abi \(>= 2\)" needed by app <- \(requested\)'):
        names(idx, "app")


# -- versions -----------------------------------------------------------------


@pytest.mark.parametrize(
    "version, op, wanted, ok",
    [
        ("1.0", "<<", "1.0", False),
        ("1.0~rc1", "<<", "1.0", True),
        ("1.0", "<=", "1.0", True),
        ("1.0+b1", "<=", "1.0", False),
        ("1:0.5", "=", "1:0.5", True),
        ("1:0.5", ">=", "2.0", True),  # the epoch wins
        ("2.0", ">>", "2.0", False),
        ("2.0.1", ">>", "2.0", True),
        ("2.36-9+deb12u4", ">=", "2.36", True),
        ("1.0-1", "=", "1.0-2", False),
    ],
)
def test_version_relations_follow_debian_order(version, op, wanted, ok):
    assert satisfies(version, op, wanted) is ok


def test_only_the_candidate_can_satisfy_a_relation_as_with_apt():
    # apt installs candidates only: lib's candidate is 2.0, which app's
    # "lib (<< 2)" rules out, so the request fails naming it, as apt-get's
    # "Depends: lib (< 2) but 2.0 is to be installed" does; asking for
    # lib=1.5 makes that version the candidate.
    idx = make_index(
        stanza("app", depends="lib (<< 2)"),
        stanza("lib", version="2.0"),
        stanza("lib", version="1.5"),
        stanza("lib", version="1.0"),
    )
    with pytest.raises(ResolveError, match=r'"lib \(<< 2\)" needed by app.*the candidate is lib 2.0'):
        resolve_set(idx, Request(("app",)))
    pool = Pool.of(idx)
    res = resolve_set(pool, variant_request(pool, "essential", include=("app", "lib=1.5")))
    assert [(p.name, p.version) for p in res.packages] == [("app", "1.0"), ("lib", "1.5")]


def test_highest_version_is_chosen():
    idx = make_index(
        stanza("lib", version="1.2"),
        stanza("lib", version="1:0.1"),
        stanza("lib", version="1.10~beta"),
        stanza("lib", version="1.9"),
    )
    res = resolve_set(idx, Request(("lib",)))
    assert [p.version for p in res.packages] == ["1:0.1"]


def test_one_version_per_name_clash_is_reported():
    idx = make_index(
        stanza("a", depends="lib (>= 2)"),
        stanza("b", depends="lib (<< 2)"),
        stanza("lib", version="2.0"),
        stanza("lib", version="1.0"),
    )
    with pytest.raises(ResolveError, match=r'"lib \(<< 2\)" needed by b <- \(requested\) \(lib 2.0 is chosen\)'):
        names(idx, "a", "b")


# -- multi-arch and architectures ---------------------------------------------


def test_any_qualifier_needs_multi_arch_allowed():
    idx = make_index(
        stanza("tool", depends="python3:any"),
        stanza("python3", multi_arch="allowed"),
        stanza("other", depends="perl:any"),
        stanza("perl"),
    )
    assert names(idx, "tool") == ["python3", "tool"]
    with pytest.raises(ResolveError, match=r'"perl:any" needed by other'):
        names(idx, "other")


def test_native_qualifier_and_architecture_all():
    idx = make_index(
        stanza("tool", depends="libc6:amd64, data, foreign-only"),
        stanza("libc6", multi_arch="same"),
        stanza("data", arch="all", multi_arch="foreign"),
        stanza("foreign-only", arch="i386"),
        stanza("foreign-only", arch="amd64", version="0.9"),
    )
    res = resolve_set(idx, Request(("tool",)))
    assert [(p.name, p.architecture, p.version) for p in res.packages] == [
        ("data", "all", "1.0"),
        ("foreign-only", "amd64", "0.9"),
        ("libc6", "amd64", "1.0"),
        ("tool", "amd64", "1.0"),
    ]


def test_packages_of_other_architectures_do_not_count():
    idx = make_index(stanza("app", depends="only-arm"), stanza("only-arm", arch="arm64"))
    with pytest.raises(ResolveError, match=r'"only-arm" needed by app'):
        names(idx, "app")


def test_architecture_restricted_relations():
    assert parse_relations("a [amd64], b [!amd64], c [i386 amd64] | d", "amd64") == [
        (Alt("a"),), (Alt("c"), Alt("d"))
    ]


# -- closure shapes -----------------------------------------------------------


def test_cycles_terminate_and_pre_depends_count():
    idx = make_index(
        stanza("a", depends="b"),
        stanza("b", pre_depends="c"),
        stanza("c", depends="a"),
        stanza("unrelated"),
    )
    assert names(idx, "a") == ["a", "b", "c"]


def test_unsatisfiable_request_names_the_chain():
    idx = make_index(
        stanza("baz", depends="bar"),
        stanza("bar", depends="libc6, libfoo (>= 2)"),
        stanza("libc6"),
        stanza("libfoo", version="1.5"),
    )
    with pytest.raises(ResolveError) as err:
        names(idx, "baz")
    assert str(err.value) == ('cannot satisfy "libfoo (>= 2)" needed by bar <- baz <- (requested): '
                              "the candidate is libfoo 1.5")


def test_unknown_requested_package():
    idx = make_index(stanza("a"))
    with pytest.raises(ResolveError, match='"nope" needed by \\(requested\\): no such package'):
        names(idx, "a", "nope")


def test_exclude_is_never_pulled_in_and_warns():
    idx = make_index(
        stanza("a", depends="b, c"),
        stanza("b"),
        stanza("c", depends="b"),
    )
    res = resolve_set(idx, Request(("a",), frozenset({"b"})))
    assert [p.name for p in res.packages] == ["a", "c"]
    assert any('"b" needed by a' in w and "excluded" in w for w in res.warnings)


def test_excluded_first_alternative_falls_to_the_next():
    idx = make_index(stanza("a", depends="b | c"), stanza("b"), stanza("c"))
    assert names(idx, "a", exclude={"b"}) == ["a", "c"]


def test_conflicts_in_the_set_are_an_error_but_self_conflicts_are_not():
    idx = make_index(
        stanza("a", depends="b, mta"),
        stanza("b", conflicts="c (<< 2)"),
        stanza("c", version="1.0"),
        stanza("mta", provides="mail-transport-agent", conflicts="mail-transport-agent"),
    )
    assert names(idx, "a") == ["a", "b", "mta"]
    with pytest.raises(ResolveError, match="b 1.0 conflicts with c 1.0"):
        names(idx, "a", "c")


def test_breaks_in_the_set_are_an_error():
    idx = make_index(stanza("a", breaks="b (<< 3)"), stanza("b", version="2"))
    with pytest.raises(ResolveError, match="a 1.0 breaks b 2"):
        names(idx, "a", "b")


# -- variants -----------------------------------------------------------------


def _variant_index() -> Index:
    return make_index(
        stanza("dash", priority="required", essential="yes", depends="libc6"),
        stanza("libc6", priority="optional"),
        stanza("mawk", priority="required", provides="awk"),
        stanza("init-system-helpers", priority="optional", depends="usrmerge | usr-is-merged"),
        stanza("usrmerge", priority="optional", depends="perl"),
        stanza("usr-is-merged", priority="optional"),
        stanza("perl", priority="standard"),
        stanza("apt", priority="important", depends="libapt, gpgv | gpgv2"),
        stanza("libapt", priority="optional"),
        stanza("gpgv", priority="optional"),
        stanza("build-essential", priority="optional", depends="gcc, awk"),
        stanza("gcc", priority="optional"),
        stanza("cron", priority="important", depends="init-system-helpers"),
        stanza("nano", priority="standard"),
    )


@pytest.mark.parametrize(
    "variant, expected",
    [
        ("essential", ["dash", "libc6"]),
        ("minbase", ["apt", "dash", "gpgv", "libapt", "libc6", "mawk"]),
        ("buildd", ["apt", "build-essential", "dash", "gcc", "gpgv", "libapt", "libc6", "mawk"]),
        ("default", ["apt", "cron", "dash", "gpgv", "init-system-helpers", "libapt", "libc6", "mawk", "usr-is-merged"]),
    ],
)
def test_variants(variant, expected):
    idx = _variant_index()
    res = resolve_set(idx, variant_request(idx, variant))
    assert [p.name for p in res.packages] == expected


def test_usrmerge_is_never_a_dependency_but_include_and_exclude_apply():
    idx = _variant_index()
    req = variant_request(idx, "minbase", include=("cron", "nano"), exclude=("gpgv",))
    res = resolve_set(idx, req)
    got = [p.name for p in res.packages]
    assert "usrmerge" not in got and "perl" not in got and "gpgv" not in got
    assert {"cron", "nano", "init-system-helpers", "usr-is-merged"} <= set(got)
    assert any("gpgv" in w for w in res.warnings)


def test_resolution_is_deterministic_whatever_the_index_order():
    stanzas = [
        stanza("a", depends="v, x | y"),
        stanza("p1", provides="v"),
        stanza("p2", provides="v"),
        stanza("x", depends="z | y"),
        stanza("y"),
        stanza("z"),
        stanza("b", depends="y | x"),
    ]
    results = set()
    for seed in range(8):
        shuffled = stanzas[:]
        random.Random(seed).shuffle(shuffled)
        idx = make_index(*shuffled)
        results.add(tuple(names(idx, "b", "a")))
        results.add(tuple(names(idx, "a", "b")))
    # a (first by name) defers "x | y" before b defers "y | x": x wins, then z.
    assert results == {("a", "b", "p1", "x", "z")}


# -- the index parser ---------------------------------------------------------


def test_parse_stanza_fields_and_continuations():
    p = parse_stanza(
        b"Package: foo\nVersion: 1:2.0-1\nArchitecture: amd64\nEssential: yes\nPriority: required\n"
        b"Depends: a,\n b (>= 1)\nSource: foo-src (2.0-1)\nSize: 42\nSHA256: cd\nFilename: pool/f.deb\n"
        b"Description: x\n long text\n",
        "http://mirror.invalid/",
    )
    assert (p.name, p.version, p.essential, p.priority, p.size) == ("foo", "1:2.0-1", True, "required", 42)
    assert p.depends == "a, b (>= 1)"
    assert p.source_name == "foo-src" and p.url == "http://mirror.invalid/pool/f.deb"


def test_index_splits_streams_at_any_chunk_boundary():
    text = "\n".join(stanza(f"p{i}", provides=f"v{i % 3}") for i in range(50)).encode()
    whole = Index("amd64")
    whole.add([text])
    for size in (1, 7, 100, 1000):
        idx = Index("amd64")
        idx.add(text[i:i + size] for i in range(0, len(text), size))
        assert idx.names() == whole.names() and idx.stanzas == 50
        assert sorted(p.name for p, _ in idx.providers("v1")) == sorted(p.name for p, _ in whole.providers("v1"))


def test_stanza_without_package_first_and_extra_blank_lines():
    idx = make_index("\nProvides: v\nVersion: 2\nPackage: late\nArchitecture: all\n\n\n\n" + stanza("b"))
    assert idx.names() == ["b", "late"] and idx.packages("late")[0].version == "2"
    assert [p.name for p, _ in idx.providers("v")] == ["late"]


def test_provides_parsing():
    assert parse_provides("a, b (= 1.0), c:any (=2)") == [("a", ""), ("b", "1.0"), ("c", "2")]


@pytest.mark.parametrize("ext", ["", ".xz", ".gz", ".bz2", ".zst"])
def test_every_compression_decompresses(ext):
    import bz2
    import gzip
    import lzma

    import zstandard

    text = ("".join(stanza(f"p{i}") + "\n" for i in range(200))).encode()
    blob = {"": lambda b: b, ".xz": lzma.compress, ".gz": gzip.compress, ".bz2": bz2.compress,
            ".zst": lambda b: zstandard.ZstdCompressor().compress(b)}[ext](text)
    assert b"".join(decompress_chunks(blob, ext)) == text


@pytest.mark.parametrize("ext", [".xz", ".gz", ".bz2", ".zst"])
def test_corrupt_compressed_index_is_a_verify_error(ext):
    with pytest.raises(VerifyError, match="not valid"):
        b"".join(decompress_chunks(b"this is not compressed at all" * 10, ext, "main/Packages" + ext))


def test_multi_frame_zstd_index_is_read_whole():
    import zstandard

    one = "".join(stanza(f"a{i}") + "\n" for i in range(20)).encode()
    two = "".join(stanza(f"b{i}") + "\n" for i in range(20)).encode()
    blob = zstandard.ZstdCompressor().compress(one) + zstandard.ZstdCompressor().compress(two)
    idx = Index("amd64")
    idx.add(decompress_chunks(blob, ".zst"))
    assert idx.stanzas == 40


@pytest.mark.parametrize("ext", [".gz", ".bz2"])
def test_multi_member_index_is_read_whole(ext):
    import bz2
    import gzip

    compress = {".gz": gzip.compress, ".bz2": bz2.compress}[ext]
    one = "".join(stanza(f"a{i}") + "\n" for i in range(20)).encode()
    two = "".join(stanza(f"b{i}") + "\n" for i in range(20)).encode()
    assert b"".join(decompress_chunks(compress(one) + compress(two), ext)) == one + two


def test_truncated_gzip_index_is_a_verify_error():
    import gzip

    blob = gzip.compress(b"Package: a\nVersion: 1\n" * 100)
    with pytest.raises(VerifyError, match="ends early"):
        b"".join(decompress_chunks(blob[: len(blob) // 2], ".gz", "Packages.gz"))


def test_https_mirror_adds_what_apt_needs_for_it():
    new_apt = make_index(
        stanza("apt", priority="important", provides="apt-transport-https (= 2.6.1)"),
        stanza("apt-transport-https", priority="optional", depends="apt"),
        stanza("ca-certificates", priority="optional"),
    )
    assert names(new_apt, *variant_request(new_apt, "minbase").roots) == ["apt"]
    assert names(new_apt, *variant_request(new_apt, "minbase", https=True).roots) == ["apt", "ca-certificates"]
    old_apt = make_index(
        stanza("apt", priority="important"),
        stanza("apt-transport-https", priority="optional", depends="apt"),
        stanza("ca-certificates", priority="optional"),
    )
    assert names(old_apt, *variant_request(old_apt, "minbase", https=True).roots) == [
        "apt", "apt-transport-https", "ca-certificates"
    ]


def test_gzip_index_reads_the_same_with_zlib_and_isa_l(monkeypatch):
    import gzip
    import zlib

    import rootfs.decompress as decompress_module
    from rootfs.backends.deb.index import decompress_index

    text = "".join(f"Package: p{i}\nVersion: {i}\nArchitecture: amd64\n\n" for i in range(2000)).encode()
    data = gzip.compress(text)
    fast = decompress_index(data, ".gz", "x", len(text))
    monkeypatch.setattr(decompress_module, "_inflate", zlib)
    assert decompress_index(data, ".gz", "x", len(text)) == fast == text
    with pytest.raises(VerifyError, match="not valid gzip data"):
        decompress_index(data[:-20], ".gz", "x", len(text))
