"""OCI distribution client: `rootfs push`, `rootfs pull`, `rootfs make --push`.

Why a small client of our own, on the HTTP transport the fetcher uses too
(rootfs.net.http, which says why that is http.client), rather than a library:

- python-dxf, the best-kept Python registry client, is built on requests
  (two more dependencies), hashes every blob before it uploads it (a second
  full read of each layer) and speaks Docker schema 2 first; its OCI index
  support and cross-repository mount are add-ons. The protocol subset a
  pusher needs is small (HEAD, POST, PATCH, PUT, GET and the token dance),
  and owning it lets every failure map onto rootfs's exit codes with one
  clear sentence instead of a library's exception zoo.
- Blobs stream from the OCI layout, or straight out of an oci-archive, to
  the socket in 1 MiB blocks (no temporary files, no second hashing pass:
  the digest is already the blob's name in the layout and the registry
  checks it on the final PUT). Blobs up to 16 MiB go in one PUT (one round
  trip after the POST); larger ones in 16 MiB PATCH chunks, so a reset costs
  at most a restart of that blob's upload, never of the whole push.
- Layers and config upload in parallel (3 connections, keep-alive); the
  manifests follow in dependency order (children of an index first), the
  tag last, so a tag never names an incomplete image.
- Blobs already in the repository are skipped after a HEAD. Blobs pushed to
  or pulled from another repository of the same registry are mounted
  (`POST ?mount=&from=`), which the registry does without any upload; the
  repositories holding each blob are remembered in a small hint file in the
  cache directory (registry/memory.py), because annotations in the image
  cannot know where its layers went after it was built.
- Authentication: anonymous, basic (when the registry challenges with
  Basic) and bearer tokens from the WWW-Authenticate challenge (realm,
  service, scope, with the credentials as basic auth to the token service),
  cached per scope. Credentials: --creds, the containers auth.json files,
  docker's config.json (registry/auth.py).
- TLS uses the system CAs plus `--ca-cert FILE`; plain HTTP only with
  `--insecure`, never implied, not even for 127.0.0.1.
- Retries with backoff on resets, timeouts, 5xx and 429; a failed upload
  restarts that blob's upload session from a fresh POST.
- Pull verifies every blob (size and digest) while it streams to a
  temporary file, renamed into blobs/ only when it matches; a new layout is
  built under a temporary name and renamed into place as a whole.

A second push of the same image is two HEADs and a manifest PUT.
"""

from __future__ import annotations

from pathlib import Path

from rootfs.image.reader import open_image
from rootfs.registry.auth import Credentials, parse_creds
from rootfs.registry.client import RegistryOptions
from rootfs.registry.ref import Reference, parse_reference
from rootfs.registry.transfer import PushResult, pull_image, push_image, push_index

PushOptions = RegistryOptions

__all__ = ["Credentials", "PushOptions", "PushResult", "Reference", "RegistryOptions",
           "parse_creds", "parse_reference", "pull", "push", "push_index", "push_spec"]


def push(layout_dir: str | Path, tag: str | None, ref: str, opts: RegistryOptions) -> PushResult:
    """Push the image tagged TAG in the OCI layout (or oci-archive) at
    layout_dir to REF; the pushed digest is result.digest."""
    spec = f"{layout_dir}:{tag}" if tag else str(layout_dir)
    return push_spec(spec, ref, opts)


def push_spec(image: str, ref: str, opts: RegistryOptions) -> PushResult:
    """Push IMAGE (`DIR[:TAG]`, an oci-archive or a docker-archive) to REF."""
    r = parse_reference(ref)
    with open_image(image) as img:
        return push_image(img, r, opts)


def pull(ref: str, dest: str, opts: RegistryOptions, platform: str | None = None) -> tuple[Path, str, str]:
    """Pull REF into the OCI layout `DIR[:TAG]`; -> (dir, tag, digest).
    `platform` picks one image of an index (the whole index without it)."""
    return pull_image(ref, dest, opts, platform)
