"""Registry references: `HOST[:PORT]/NAME[:TAG|@DIGEST]`.

A reference must name its registry host: there is no default registry,
so an image can never be pushed somewhere the user did not spell out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rootfs.model.errors import UsageError

# The distribution spec's grammar for repository names and tags.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?")

USAGE = "expected HOST[:PORT]/NAME[:TAG] or HOST[:PORT]/NAME@DIGEST"


@dataclass(frozen=True)
class Reference:
    host: str  # as written, with the port: the key for credentials too
    name: str
    tag: str | None = None
    digest: str | None = None
    scheme: str | None = None  # only when the user wrote http:// or https://

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if given, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        s = f"{self.host}/{self.name}"
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def parse_reference(ref: str) -> Reference:
    text = ref.strip()
    scheme = None
    for prefix in ("docker://", "http://", "https://"):
        if text.startswith(prefix):
            scheme = None if prefix == "docker://" else prefix[:-3]
            text = text[len(prefix):]
            break
    host, slash, rest = text.partition("/")
    if not slash or not rest:
        raise UsageError(f"registry reference {ref!r} names no repository ({USAGE})")
    if not _HOST.fullmatch(host) or not ("." in host or ":" in host or host == "localhost"):
        raise UsageError(f"registry reference {ref!r} does not start with a registry host ({USAGE})")
    digest = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise UsageError(f"registry reference {ref!r} has a malformed digest ({USAGE})")
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, _, tag = rest.rpartition(":")
        if not _TAG.fullmatch(tag):
            raise UsageError(f"registry reference {ref!r} has an invalid tag {tag!r}")
    if not _NAME.fullmatch(rest) or len(rest) > 255:
        raise UsageError(f"registry reference {ref!r} has an invalid repository name {rest!r} "
                         "(lower-case letters, digits, and . _ - / separators)")
    return Reference(host, rest, tag, digest, scheme)
