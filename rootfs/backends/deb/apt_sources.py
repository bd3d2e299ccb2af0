"""The image's own apt sources: every source the lock was resolved from,
as the image's apt should see it.

Two forms, as the lock says (the recipe's `sources_format`): sources.list
lines (`deb URI SUITE COMPONENTS`), what older releases use, or one deb822
file /etc/apt/sources.list.d/DISTRIBUTION.sources, as Debian's official
images carry since bookworm, with the suites of one URI in one stanza and
`Signed-By` naming the keyring. A keyring is named only when the image
holds that file itself (the distribution's keyring package put it there);
apt would refuse a source whose keyring is missing. A source resolved at a
priority set by hand gets the same pin in /etc/apt/preferences.d, so apt
in the image keeps choosing what was built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rootfs.model.lock import Lock, LockSource

PREFERENCES = "etc/apt/preferences.d/rootfs.pref"


@dataclass(frozen=True)
class Entry:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str  # "" when the image does not hold the keyring


def _uri(src: LockSource) -> str:
    return src.image_url or src.url


def entries(lock: Lock, in_image: Callable[[str], bool]) -> list[Entry]:
    """The lock's deb sources, the suites of one URI, components and
    keyring together, in the lock's order."""
    grouped: dict[tuple[str, tuple[str, ...], str], list[str]] = {}
    for src in lock.sources:
        components = src.components or lock.components or ("main",)
        keyring = src.keyring if src.keyring.startswith("/") and in_image(src.keyring.lstrip("/")) else ""
        suites = grouped.setdefault((_uri(src), tuple(components), keyring), [])
        if src.suite not in suites:
            suites.append(src.suite)
    return [Entry(uri, tuple(suites), comps, kr) for (uri, comps, kr), suites in grouped.items()]


def one_line(items: list[Entry]) -> str:
    lines = []
    for e in items:
        options = f"[signed-by={e.signed_by}] " if e.signed_by else ""
        for suite in e.suites:
            lines.append(f"deb {options}{e.uri} {suite} {' '.join(e.components)}\n")
    return "".join(lines)


def deb822(items: list[Entry]) -> str:
    stanzas = []
    for e in items:
        fields = [("Types", "deb"), ("URIs", e.uri), ("Suites", " ".join(e.suites)),
                  ("Components", " ".join(e.components))]
        if e.signed_by:
            fields.append(("Signed-By", e.signed_by))
        stanzas.append("".join(f"{k}: {v}\n" for k, v in fields))
    return "\n".join(stanzas)


def sources_path(lock: Lock) -> str:
    if lock.sources_format == "deb822":
        return f"etc/apt/sources.list.d/{lock.distribution or 'rootfs'}.sources"
    return "etc/apt/sources.list"


def render(lock: Lock, in_image: Callable[[str], bool]) -> str:
    items = entries(lock, in_image)
    return deb822(items) if lock.sources_format == "deb822" else one_line(items)


def preferences(lock: Lock) -> str:
    """apt_preferences(5) pins for the sources resolved at a priority set
    by hand (LockSource.priority; 0 means apt's default for the Release)."""
    stanzas = []
    for src in lock.sources:
        if not src.priority:
            continue
        terms = [f"n={src.codename}" if src.codename else f"a={src.suite}"]
        terms += [f"{k}={v}" for k, v in (("o", src.origin), ("l", src.label)) if v]
        # apt splits the pin on commas and cannot quote them.
        terms = [t for t in terms if "," not in t]
        stanzas.append(f"Explanation: {_uri(src)} {src.suite}\nPackage: *\n"
                       f"Pin: release {','.join(terms)}\nPin-Priority: {src.priority}\n")
    return "\n".join(stanzas)
