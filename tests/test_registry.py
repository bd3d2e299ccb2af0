"""`rootfs push` / `rootfs pull` against Debian's docker-registry on 127.0.0.1
(plain HTTP, basic auth, TLS + basic auth, bearer tokens), checked with skopeo, with a
logging / connection-resetting proxy in front where the wire is the
evidence (what was uploaded, what was mounted, what was retried)."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import needs_tool
from oci_images import build_test_images
from registry_server import PASSWORD, USER, Proxy, free_port, start_registry

pytestmark = [needs_tool("docker-registry", "skopeo", "umoci", "htpasswd", "openssl"), pytest.mark.timeout(300)]

MODES = ("plain", "basic", "tls", "token")


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    return build_test_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def registries(tmp_path_factory):
    started = {}

    def get(mode: str):
        if mode not in started:
            started[mode] = start_registry(tmp_path_factory.mktemp(f"registry-{mode}"), mode)
        return started[mode]

    yield get
    for reg in started.values():
        reg.stop()


@pytest.fixture
def env(tmp_path):
    """A clean HOME: no auth files, no blob memory from other tests
    (None unsets a variable for the run)."""
    (tmp_path / "home").mkdir()
    return {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "home" / "cache"),
            "REGISTRY_AUTH_FILE": None, "XDG_RUNTIME_DIR": None, "DOCKER_CONFIG": None, "XDG_CONFIG_HOME": None,
            **{v: None for v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")}}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def rootfs(env, *args: str) -> Run:
    """The command line, in-process (a fresh interpreter costs seconds on a
    loaded machine); test_cli_process runs one real process."""
    from typer.testing import CliRunner

    from rootfs.cli import app

    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def flags(reg) -> list[str]:
    """rootfs's options for this registry."""
    out = ["--ca-cert", str(reg.ca_cert)] if reg.mode == "tls" else ["--insecure"]
    if reg.creds:
        out += ["--creds", reg.creds]
    return out


@functools.cache
def _private_mounts() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount --bind /tmp /mnt"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def skopeo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """skopeo with a private /var/lib (its blob-info cache) where the host
    allows a mount namespace, as containers.md shows."""
    varlib = tmp_path / "skopeo-varlib"
    varlib.mkdir(exist_ok=True)
    cmd = ["skopeo", "--tmpdir", str(varlib), *args]
    if _private_mounts():
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount --bind "$0" /var/lib && exec "$@"', str(varlib), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layout_digests_ok(layout: Path) -> int:
    """Every blob in the layout hashes to its name; returns how many."""
    n = 0
    for blob in (layout / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
        n += 1
    return n


@pytest.fixture
def proxy(registries):
    """The plain registry, seen through a request-logging proxy."""
    p = Proxy(registries("plain").host).start()
    yield p
    p.stop()


def proxied_push(env, images, proxy, tag: str, repo: str, *extra: str):
    return rootfs(env, "push", f"{images.layout}:{tag}", f"{proxy.host}/{repo}", "--insecure", *extra)


def uploaded_digests(proxy) -> set[str]:
    """Digests whose bytes crossed the wire (the PUT that closes an upload names it)."""
    from urllib.parse import parse_qs, urlsplit

    out = set()
    for e in proxy.log:
        if e.method == "PUT" and "/blobs/uploads/" in e.path and e.status == 201:
            out.update(parse_qs(urlsplit(e.path).query)["digest"])
    return out


# -- the three set-ups ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_push_is_served_back_identically(mode, registries, images, env, tmp_path):
    reg = registries(mode)
    ref = f"{reg.host}/rootfs/push-{mode}:2"
    r = rootfs(env, "push", f"{images.layout}:2", ref, *flags(reg))
    assert r.returncode == 0, r.stderr
    digest = r.stdout.strip()
    assert digest == images.manifest_digest("2")

    raw = skopeo(tmp_path, "inspect", "--raw", *reg.skopeo_flags(), f"docker://{ref}")
    assert raw.returncode == 0, raw.stderr
    assert sha256(raw.stdout.encode()) == digest
    info = json.loads(skopeo(tmp_path, "inspect", *reg.skopeo_flags(), f"docker://{ref}").stdout)
    assert info["Digest"] == digest
    assert info["Layers"] == [d["digest"] for d in images.manifest("2")["layers"]]

    # skopeo copy re-reads and checks every blob against its digest.
    back = tmp_path / "back"
    c = skopeo(tmp_path, "copy", *reg.skopeo_flags("src-"), f"docker://{ref}", f"oci:{back}:x")
    assert c.returncode == 0, c.stderr
    index = json.loads((back / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest


@pytest.mark.parametrize("mode", MODES)
def test_pull_gives_a_layout_with_matching_digests(mode, registries, images, env, tmp_path):
    reg = registries(mode)
    ref = f"{reg.host}/rootfs/pull-{mode}:1"
    # Pushed by skopeo, so the pull is checked against an independent writer.
    c = skopeo(tmp_path, "copy", *reg.skopeo_flags("dest-"), f"oci:{images.layout}:1", f"docker://{ref}")
    assert c.returncode == 0, c.stderr
    dest = tmp_path / "pulled"
    r = rootfs(env, "pull", ref, f"{dest}:mine", *flags(reg))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == images.manifest_digest("1")
    index = json.loads((dest / "index.json").read_text())
    assert [(m["digest"], m["annotations"]["org.opencontainers.image.ref.name"]) for m in index["manifests"]] \
        == [(images.manifest_digest("1"), "mine")]
    assert json.loads((dest / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    # manifest, config and the one layer, each named by its own digest
    assert layout_digests_ok(dest) == 3
    assert skopeo(tmp_path, "copy", f"oci:{dest}:mine", f"oci:{tmp_path / 'verify'}:v").returncode == 0


# -- what crosses the wire -------------------------------------------------------


def test_second_push_uploads_nothing(images, env, proxy):
    r = proxied_push(env, images, proxy, "2", "wire/again:2")
    assert r.returncode == 0, r.stderr
    m = images.manifest("2")
    assert uploaded_digests(proxy) == {m["config"]["digest"], *(d["digest"] for d in m["layers"])}
    proxy.clear()
    r = proxied_push(env, images, proxy, "2", "wire/again:2")
    assert r.returncode == 0, r.stderr
    assert proxy.uploads() == []
    assert [e.method for e in proxy.log if "/blobs/" in e.path] == ["HEAD"] * 3
    assert all(e.status == 200 for e in proxy.log if e.method == "HEAD")


def test_shared_base_layer_is_not_uploaded_again(images, env, proxy):
    assert proxied_push(env, images, proxy, "1", "wire/shared:1").returncode == 0
    proxy.clear()
    r = proxied_push(env, images, proxy, "2", "wire/shared:2")
    assert r.returncode == 0, r.stderr
    m2 = images.manifest("2")
    base, new = m2["layers"][0]["digest"], m2["layers"][1]["digest"]
    assert base == images.manifest("1")["layers"][0]["digest"]
    assert uploaded_digests(proxy) == {new, m2["config"]["digest"]}
    assert base not in uploaded_digests(proxy)


def test_push_to_another_repository_mounts(images, env, proxy, registries, tmp_path):
    assert proxied_push(env, images, proxy, "2", "wire/first:2").returncode == 0
    proxy.clear()
    r = proxied_push(env, images, proxy, "2", "other/second:2")
    assert r.returncode == 0, r.stderr
    assert proxy.uploads() == []
    mounts = [e for e in proxy.log if e.method == "POST" and "mount=" in e.path]
    assert len(mounts) == 3 and all(e.status == 201 and "from=wire%2Ffirst" in e.path for e in mounts)
    reg = registries("plain")
    info = json.loads(skopeo(tmp_path, "inspect", "--tls-verify=false", f"docker://{reg.host}/other/second:2").stdout)
    assert info["Digest"] == images.manifest_digest("2")


def test_large_blobs_go_in_chunks(images, env, proxy, registries, tmp_path):
    from rootfs.registry import RegistryOptions, push

    opts = RegistryOptions(insecure=True, chunk_size=256 << 10, cache_dir=tmp_path / "cache")
    base = images.manifest("1")["layers"][0]
    result = push(images.layout, "1", f"{proxy.host}/wire/chunked:1", opts)
    assert result.digest == images.manifest_digest("1")
    patches = [e for e in proxy.log if e.method == "PATCH"]
    assert len(patches) == -(-base["size"] // (256 << 10)) and all(e.status == 202 for e in patches)
    assert sum(e.length for e in patches) == base["size"]
    reg = registries("plain")
    c = skopeo(tmp_path, "copy", "--src-tls-verify=false", f"docker://{reg.host}/wire/chunked:1", f"oci:{tmp_path / 'c'}:1")
    assert c.returncode == 0, c.stderr


def test_oci_archive_and_index_push(images, env, registries, tmp_path):
    reg = registries("plain")
    r = rootfs(env, "push", str(images.oci_archive), f"{reg.host}/rootfs/archive:2", "--insecure")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == images.manifest_digest("2")

    # An image index naming the tag-2 manifest: the manifest goes first, by
    # digest, then the index under the tag.
    layout = tmp_path / "multi"
    shutil.copytree(images.layout, layout)
    entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": images.manifest_digest("2"),
             "size": len(images.blob(images.manifest_digest("2"))), "platform": {"architecture": "amd64", "os": "linux"}}
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [entry]}).encode()
    (layout / "blobs/sha256" / hashlib.sha256(index).hexdigest()).write_bytes(index)
    top = json.loads((layout / "index.json").read_text())
    top["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(index),
                             "size": len(index), "annotations": {"org.opencontainers.image.ref.name": "multi"}})
    (layout / "index.json").write_text(json.dumps(top))
    r = rootfs(env, "push", f"{layout}:multi", f"{reg.host}/rootfs/multi:m", "--insecure")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == sha256(index)
    raw = skopeo(tmp_path, "inspect", "--raw", "--tls-verify=false", f"docker://{reg.host}/rootfs/multi:m")
    assert raw.stdout.encode() == index
    # and it pulls back whole: index, manifest, config, layers
    r = rootfs(env, "pull", f"{reg.host}/rootfs/multi:m", f"{tmp_path / 'pulled'}:m", "--insecure")
    assert r.returncode == 0, r.stderr
    assert layout_digests_ok(tmp_path / "pulled") == 5


# -- refusals: one sentence and the documented exit code -------------------------------


def test_wrong_or_missing_credentials(images, env, registries):
    reg = registries("basic")
    r = rootfs(env, "push", f"{images.layout}:1", f"{reg.host}/auth/x:1", "--insecure", "--creds", f"{USER}:wrong")
    assert r.returncode == 10
    assert f"authentication to {reg.host} failed" in r.stderr and "Traceback" not in r.stderr
    r = rootfs(env, "push", f"{images.layout}:1", f"{reg.host}/auth/x:1", "--insecure")
    assert r.returncode == 10 and f"authentication to {reg.host} failed" in r.stderr


def test_credentials_from_auth_files(images, env, registries, tmp_path):
    reg = registries("basic")
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {reg.host: {"auth": token}}}))
    r = rootfs({**env, "REGISTRY_AUTH_FILE": str(auth)}, "push", f"{images.layout}:1", f"{reg.host}/auth/a:1", "--insecure")
    assert r.returncode == 0, r.stderr
    docker = Path(env["HOME"]) / ".docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps({"auths": {f"https://{reg.host}": {"auth": token}}}))
    r = rootfs(env, "pull", f"{reg.host}/auth/a:1", str(tmp_path / "p"), "--insecure")
    assert r.returncode == 0, r.stderr
    (docker / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": base64.b64encode(b"x:y").decode()}}}))
    r = rootfs(env, "pull", f"{reg.host}/auth/a:1", str(tmp_path / "q"), "--insecure")
    assert r.returncode == 10 and not (tmp_path / "q").exists()


def test_bearer_tokens_per_scope(images, env, registries, tmp_path):
    reg = registries("token")
    tokens = reg.token_server
    tokens.requests.clear()
    for repo in ("tok/first", "tok/second"):
        r = rootfs(env, "push", f"{images.layout}:2", f"{reg.host}/{repo}:2", "--insecure", "--creds", reg.creds)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == images.manifest_digest("2")
    # One token per scope set, fetched with the user's credentials; the
    # second push mounts, which needs pull on the source repository too.
    assert tokens.requests == [
        (USER, ["repository:tok/first:pull,push"]),
        (USER, ["repository:tok/second:pull,push"]),
        (USER, ["repository:tok/second:pull,push", "repository:tok/first:pull"]),
    ]
    info = json.loads(skopeo(tmp_path, "inspect", *reg.skopeo_flags(), f"docker://{reg.host}/tok/second:2").stdout)
    assert info["Digest"] == images.manifest_digest("2")
    r = rootfs(env, "push", f"{images.layout}:2", f"{reg.host}/tok/third:2", "--insecure", "--creds", f"{USER}:nope")
    assert r.returncode == 10 and f"authentication to {reg.host} failed" in r.stderr
    r = rootfs(env, "pull", f"{reg.host}/tok/first:2", str(tmp_path / "anon"), "--insecure")
    assert r.returncode == 10 and not (tmp_path / "anon").exists()


def test_packed_image_round_trip(images, env, registries, tmp_path):
    """What `rootfs make --push` does: the packer's OCI layout, pushed, pulled back."""
    from rootfs.pack import PackOptions, pack

    out = tmp_path / "packed"
    pack(images.tree, ["oci", "oci-archive"], out, PackOptions(source_date_epoch=1700000000, tag="rootfs/test:1"))
    reg = registries("plain")
    r = rootfs(env, "push", f"{out / 'oci'}:rootfs/test:1", f"{reg.host}/packed/img:1", "--insecure")
    assert r.returncode == 0, r.stderr
    digest = r.stdout.strip()
    index = json.loads((out / "oci" / "index.json").read_text())
    assert digest == index["manifests"][0]["digest"]
    r = rootfs(env, "push", str(out / "image.oci.tar"), f"{reg.host}/packed/archive:1", "--insecure")
    assert r.stdout.strip() == digest
    c = skopeo(tmp_path, "copy", "--src-tls-verify=false", f"docker://{reg.host}/packed/img:1", f"oci:{tmp_path / 'sk'}:1")
    assert c.returncode == 0, c.stderr
    r = rootfs(env, "pull", f"{reg.host}/packed/archive:1", f"{tmp_path / 'back'}:1", "--insecure")
    assert r.returncode == 0 and r.stdout.strip() == digest
    assert {p.name for p in (tmp_path / "back/blobs/sha256").iterdir()} == \
        {p.name for p in (out / "oci/blobs/sha256").iterdir()}


def test_through_an_http_proxy(images, env, registries, tmp_path):
    """HTTP_PROXY is honoured (requests in absolute form), NO_PROXY bypasses it."""
    reg = registries("plain")
    p = Proxy(reg.host).start()
    try:
        proxied = {**env, "http_proxy": f"http://{p.host}", "no_proxy": "", "HTTP_PROXY": None, "NO_PROXY": None}
        r = rootfs(proxied, "push", f"{images.layout}:1", f"{reg.host}/proxied/x:1", "--insecure")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == images.manifest_digest("1")
        assert any(e.path == f"http://{reg.host}/v2/proxied/x/manifests/1" and e.status == 201 for e in p.log)
        p.clear()
        r = rootfs({**proxied, "no_proxy": "127.0.0.1"}, "pull", f"{reg.host}/proxied/x:1", str(tmp_path / "o"),
                   "--insecure")
        assert r.returncode == 0, r.stderr
        assert p.log == []
    finally:
        p.stop()


def test_tls_needs_the_ca_and_plain_http_needs_insecure(images, env, registries):
    tls, plain = registries("tls"), registries("plain")
    image = f"{images.layout}:1"
    r = rootfs(env, "push", image, f"{tls.host}/t/x:1", "--creds", tls.creds)
    assert r.returncode == 4 and "not trusted" in r.stderr and "--ca-cert" in r.stderr
    r = rootfs(env, "push", image, f"{tls.host}/t/x:1", "--creds", tls.creds, "--cert-dir", str(tls.cert_dir))
    assert r.returncode == 0, r.stderr  # the CA from a certs.d directory, as podman/skopeo take it
    r = rootfs(env, "push", image, f"{tls.host}/t/x:1", "--creds", tls.creds, "--insecure")
    assert r.returncode == 10 and "TLS" in r.stderr
    # 127.0.0.1 is not implied insecure
    r = rootfs(env, "push", image, f"{plain.host}/t/x:1")
    assert r.returncode == 10 and "--insecure" in r.stderr
    r = rootfs(env, "push", image, f"http://{plain.host}/t/x:1")
    assert r.returncode == 2 and "--insecure" in r.stderr


@pytest.mark.parametrize("bad", ["no-host-here", "localhost/UPPER:1", "127.0.0.1:5000/x:bad tag",
                                 "127.0.0.1:5000/", "registry/name:1", "127.0.0.1:5000/x@sha256:abc"])
def test_malformed_references_are_usage_errors(bad):
    from rootfs.model.errors import UsageError
    from rootfs.registry import parse_reference

    with pytest.raises(UsageError):
        parse_reference(bad)


def test_references_parse():
    from rootfs.registry import parse_reference

    r = parse_reference("127.0.0.1:5000/a/b-c:v1.2")
    assert (r.host, r.name, r.tag, r.digest, r.reference) == ("127.0.0.1:5000", "a/b-c", "v1.2", None, "v1.2")
    d = "sha256:" + "0" * 64
    r = parse_reference(f"localhost/x@{d}")
    assert (r.host, r.name, r.tag, r.reference) == ("localhost", "x", None, d)
    assert parse_reference("reg.example:443/x").reference == "latest"


def test_cli_process(images, env, tmp_path):
    """One real process: exit code and a one-line message on stderr."""
    e = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    r = subprocess.run([sys.executable, "-m", "rootfs.cli", "push", f"{images.layout}:1", "no-host-here", "--insecure"],
                       env=e, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("rootfs: error: ") and r.stderr.count("\n") == 1
    assert r.stdout == ""


def test_bad_reference_and_image_on_the_command_line(images, env, tmp_path):
    r = rootfs(env, "push", f"{images.layout}:nosuchtag", "127.0.0.1:5000/x:1", "--insecure")
    assert r.returncode == 2 and "no tag 'nosuchtag'" in r.stderr and "tags: 1, 2" in r.stderr


def test_unreachable_registry(images, env, tmp_path):
    port = free_port()
    r = rootfs(env, "push", f"{images.layout}:1", f"127.0.0.1:{port}/x/y:1", "--insecure", "--retries", "1")
    assert r.returncode == 5 and "cannot reach the registry" in r.stderr
    r = rootfs(env, "pull", f"127.0.0.1:{port}/x/y:1", str(tmp_path / "out"), "--insecure", "--retries", "0")
    assert r.returncode == 5 and not (tmp_path / "out").exists()


def test_resets_mid_upload_are_retried(images, env, registries, tmp_path):
    reg = registries("plain")
    p = Proxy(reg.host, reset_uploads=2).start()
    try:
        r = rootfs(env, "push", f"{images.layout}:2", f"{p.host}/flaky/a:2", "--insecure")
        assert r.returncode == 0, r.stderr
    finally:
        p.stop()
    resets = [e for e in p.log if e.status is None]
    assert len(resets) == 2
    # each reset blob was started again with a fresh upload session
    assert len([e for e in p.log if e.method == "POST"]) == 3 + 2
    info = json.loads(skopeo(tmp_path, "inspect", "--tls-verify=false", f"docker://{reg.host}/flaky/a:2").stdout)
    assert info["Digest"] == images.manifest_digest("2")


def test_persistent_resets_fail_cleanly_then_a_retry_completes(images, env, registries, tmp_path):
    reg = registries("plain")
    p = Proxy(reg.host, reset_uploads=1000).start()
    try:
        r = rootfs(env, "push", f"{images.layout}:2", f"{p.host}/flaky/b:2", "--insecure", "--retries", "1")
    finally:
        p.stop()
    assert r.returncode == 5 and "kept failing" in r.stderr and "Traceback" not in r.stderr
    tags = skopeo(tmp_path, "list-tags", "--tls-verify=false", f"docker://{reg.host}/flaky/b")
    assert "2" not in json.loads(tags.stdout or '{"Tags": []}').get("Tags", [])
    r = rootfs(env, "push", f"{images.layout}:2", f"{reg.host}/flaky/b:2", "--insecure")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == images.manifest_digest("2")


def test_5xx_and_download_resets_are_retried(images, env, registries, tmp_path):
    reg = registries("plain")
    p = Proxy(reg.host, unavailable=2).start()
    try:
        r = rootfs(env, "push", f"{images.layout}:2", f"{p.host}/flaky/c:2", "--insecure")
        assert r.returncode == 0, r.stderr
        assert [e.status for e in p.log[:3]] == [503, 503, 200]
        p.clear()
        p.reset_downloads = 2
        r = rootfs(env, "pull", f"{p.host}/flaky/c:2", str(tmp_path / "out"), "--insecure")
        assert r.returncode == 0, r.stderr
    finally:
        p.stop()
    assert len([e for e in p.log if e.status is None]) == 2
    assert r.stdout.strip() == images.manifest_digest("2")
    assert layout_digests_ok(tmp_path / "out") == 4


def test_a_stale_mount_hint_falls_back_to_uploading(images, env, proxy):
    """The blob memory names a repository that does not hold the blobs: the
    registry answers the mount with an upload session, which is used."""
    cache = Path(env["XDG_CACHE_HOME"]) / "rootfs"
    cache.mkdir(parents=True)
    m = images.manifest("1")
    digests = [m["config"]["digest"]] + [d["digest"] for d in m["layers"]]
    (cache / "registry-blobs.json").write_text(json.dumps({proxy.host: {d: ["ghost/repo"] for d in digests}}))
    r = proxied_push(env, images, proxy, "1", "wire/stale:1")
    assert r.returncode == 0, r.stderr
    mounts = [e for e in proxy.log if e.method == "POST" and "mount=" in e.path]
    assert len(mounts) == 2 and all(e.status == 202 for e in mounts)
    assert [e.method for e in proxy.log if e.method == "POST"] == ["POST", "POST"]  # no second session
    assert uploaded_digests(proxy) == set(digests)
    memory = json.loads((cache / "registry-blobs.json").read_text())[proxy.host]
    assert all(memory[d] == ["wire/stale", "ghost/repo"] for d in digests)


def test_push_refuses_a_damaged_layout(images, env, registries, tmp_path):
    reg = registries("plain")
    layout = tmp_path / "damaged"
    shutil.copytree(images.layout, layout)
    layer = layout / "blobs/sha256" / images.manifest("1")["layers"][0]["digest"].split(":")[1]
    layer.chmod(0o644)
    data = layer.read_bytes()
    layer.write_bytes(data[:-10])  # shorter than its descriptor
    r = rootfs(env, "push", f"{layout}:1", f"{reg.host}/damaged/x:1", "--insecure")
    assert r.returncode == 4 and "descriptor says" in r.stderr
    layer.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # right size, wrong bytes: the registry refuses it
    r = rootfs(env, "push", f"{layout}:1", f"{reg.host}/damaged/x:1", "--insecure")
    assert r.returncode == 4 and "does not match its digest" in r.stderr
    tags = skopeo(tmp_path, "list-tags", "--tls-verify=false", f"docker://{reg.host}/damaged/x")
    assert tags.returncode != 0 or json.loads(tags.stdout)["Tags"] in (None, [])


def test_pull_refuses_a_corrupted_blob(images, env, registries, tmp_path):
    reg = registries("plain")
    ref = f"{reg.host}/corrupt/x:2"
    assert rootfs(env, "push", f"{images.layout}:2", ref, "--insecure").returncode == 0
    layer = images.manifest("2")["layers"][1]["digest"].split(":")[1]
    data = reg.root / "data/docker/registry/v2/blobs/sha256" / layer[:2] / layer / "data"
    original = data.read_bytes()
    data.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        dest = tmp_path / "out"
        r = rootfs(env, "pull", ref, str(dest), "--insecure")
        assert r.returncode == 4 and "does not match its digest" in r.stderr
        assert not dest.exists() and not list(tmp_path.glob(".out.*"))
    finally:
        data.write_bytes(original)
