"""Sources: which apt repositories a deb recipe resolves against.

A source is what one entry of apt's sources says: URIs, suites,
components, a keyring (Signed-By) and, here, an optional apt pin
priority. Recipes list them as `[[deb.sources]]` tables; `--source` adds
them in apt's one-line form (`deb [signed-by=K] URI SUITE COMP...`), in
deb822 form (`Types: deb` / `URIs:` / `Suites:` / ...), or as a path to a
.list or .sources file, as mmdebstrap accepts.

Two URIs are placeholders that a run fills in: MIRROR, the distribution's
mirror (--mirror, the recipe's `mirror`, ROOTFS_MIRROR, the host's apt),
and SECURITY_MIRROR, its security mirror (--security-mirror,
`security_mirror`, ROOTFS_SECURITY_MIRROR, the host's apt). A release's
sources are data in its recipe file, never guessed from its name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rootfs.model.errors import UsageError

MIRROR = "@mirror"
SECURITY_MIRROR = "@security-mirror"
PLACEHOLDERS = (MIRROR, SECURITY_MIRROR)

# apt_preferences(5): priorities are signed 16-bit numbers.
PRIORITY_RANGE = (-32768, 32767)


@dataclass(frozen=True)
class SourceSpec:
    """One sources entry as written: URIs may be placeholders; empty
    components and signed_by mean the recipe's."""

    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...] = ()
    signed_by: str = ""
    priority: int | None = None  # None: apt's default for the Release (500, 100 or 1)
    updates: bool = False  # one of the release's update suites (left out by --no-updates)
    architectures: tuple[str, ...] = ()  # apt's arch= option; empty: every architecture
    where: str = ""  # where it was written, for messages


@dataclass(frozen=True)
class Repository:
    """One URI and one suite of a source, with everything filled in: what
    gets fetched, verified and ranked."""

    url: str  # ends with "/"
    suite: str
    components: tuple[str, ...]
    keyring: str
    priority: int | None = None
    role: str = ""  # "mirror" or "security-mirror" when the URI was a placeholder
    image_url: str = ""  # what the image's own sources name (default: url)
    where: str = ""

    @property
    def id(self) -> str:
        """How the lock names it: apt's way of naming a source ("URI SUITE")."""
        return f"{self.url} {self.suite}"


_TABLE_KEYS = {
    "uris": list,
    "suites": list,
    "components": list,
    "signed_by": str,
    "priority": int,
    "updates": bool,
    "architectures": list,
}


def _check_priority(value: int, where: str) -> int:
    lo, hi = PRIORITY_RANGE
    if not lo <= value <= hi:
        raise UsageError(f"{where}: priority {value} is outside apt's range {lo}..{hi}")
    if value == 0:
        # apt ignores a zero Pin-Priority; say what the user probably means.
        raise UsageError(f"{where}: priority 0 is not a pin apt accepts; "
                         "use a negative priority to never choose this source's packages")
    return value


def _check_uri(uri: str, where: str) -> str:
    if uri in PLACEHOLDERS:
        return uri
    if not uri.startswith(("http://", "https://", "file:/")):
        raise UsageError(f"{where}: {uri!r} is not an http://, https:// or file:// URL "
                         f"(or one of {', '.join(PLACEHOLDERS)})")
    return uri


def _check_suite(suite: str, where: str) -> str:
    if not suite or suite.startswith("/") or ".." in suite.split("/") or re.search(r"\s", suite):
        raise UsageError(f"{where}: {suite!r} is not a suite name")
    if suite.endswith("/"):
        raise UsageError(f"{where}: flat repositories (suite {suite!r}) are not supported; name a suite under dists/")
    return suite


def spec_from_table(table: dict, where: str) -> SourceSpec:
    """A `[[deb.sources]]` table."""
    from rootfs.model.recipe import check_table

    check_table(table, _TABLE_KEYS, where)
    for key in ("uris", "suites"):
        if not table.get(key):
            raise UsageError(f"{where}: a source needs {key!r}")
    priority = table.get("priority")
    return SourceSpec(
        uris=tuple(_check_uri(u, where) for u in table["uris"]),
        suites=tuple(_check_suite(s, where) for s in table["suites"]),
        components=tuple(table.get("components", ())),
        signed_by=table.get("signed_by", ""),
        priority=None if priority is None else _check_priority(priority, where),
        updates=table.get("updates", False),
        architectures=tuple(table.get("architectures", ())),
        where=where,
    )


# -- apt's own formats ---------------------------------------------------------

_ONE_LINE = re.compile(r"^\s*(?P<type>deb(?:-src)?)\s+(?:\[(?P<options>[^\]]*)\]\s+)?(?P<rest>.*)$")


def _options(text: str, where: str) -> dict[str, str]:
    out = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"{where}: cannot read the option {item!r} (key=value expected)")
        out[key.lower().rstrip("+-")] = value
    return out


def _from_fields(fields: dict[str, str], where: str) -> SourceSpec | None:
    """A source from apt's option names (one-line options or deb822 fields,
    lower-cased); None for deb-src only or disabled entries."""
    types = fields.get("types", "deb").split()
    if "deb" not in types or fields.get("enabled", "yes").lower() in ("no", "false", "0"):
        return None
    if fields.get("trusted", "no").lower() in ("yes", "true", "1"):
        raise UsageError(f"{where}: trusted=yes (no signature check) is not accepted; "
                         "pass --no-check-gpg to skip signature checks, loudly")
    uris = fields.get("uris", "").split()
    suites = fields.get("suites", "").split()
    if not uris or not suites:
        raise UsageError(f"{where}: a source needs a URI and a suite")
    signed_by = fields.get("signed-by", "").strip()
    if "\n" in signed_by or signed_by.startswith("-----BEGIN"):
        raise UsageError(f"{where}: an inline Signed-By key is not supported; put the key in a file and name it")
    if signed_by and not signed_by.startswith(("/", ".")) and re.fullmatch(r"[0-9A-Fa-f!, ]+", signed_by):
        raise UsageError(f"{where}: Signed-By by fingerprint is not supported; name a keyring file or directory")
    priority = None
    if "priority" in fields:
        try:
            priority = _check_priority(int(fields["priority"]), where)
        except ValueError:
            raise UsageError(f"{where}: priority {fields['priority']!r} is not a number") from None
    arches = tuple(a for a in re.split(r"[\s,]+", fields.get("architectures", fields.get("arch", ""))) if a)
    return SourceSpec(
        uris=tuple(_check_uri(u, where) for u in uris),
        suites=tuple(_check_suite(s, where) for s in suites),
        components=tuple(fields.get("components", "").split()),
        signed_by=signed_by,
        priority=priority,
        architectures=arches,
        where=where,
    )


def parse_one_line(text: str, where: str) -> list[SourceSpec]:
    """sources.list lines: `deb [opt=value ...] URI SUITE [COMPONENT...]`."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        here = f"{where} line {n}" if "\n" in text.strip() else where
        m = _ONE_LINE.match(line)
        if m is None:
            raise UsageError(f"{here}: not an apt source line (deb URI SUITE COMPONENT...): {line!r}")
        words = m["rest"].split()
        if len(words) < 2:
            raise UsageError(f"{here}: a source line needs a URI and a suite: {line!r}")
        fields = _options(m["options"] or "", here)
        fields["types"] = m["type"]
        fields["uris"], fields["suites"] = words[0], words[1]
        fields["components"] = " ".join(words[2:])
        spec = _from_fields(fields, here)
        if spec is not None:
            out.append(spec)
    return out


def parse_deb822(text: str, where: str) -> list[SourceSpec]:
    """deb822 stanzas (`.sources` files)."""
    out = []
    stanzas = [s for s in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")) if s.strip()]
    for n, stanza in enumerate(stanzas, 1):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[:1] in " \t":
                if key is None:
                    raise UsageError(f"{where}: a continuation line before any field: {line.strip()!r}")
                fields[key] += "\n" + line.strip()
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise UsageError(f"{where}: not a deb822 field: {line.strip()!r}")
            key = name.strip().lower()
            fields[key] = value.strip()
        if not fields:
            continue
        if "types" not in fields:
            raise UsageError(f"{where}: a deb822 source needs a Types field")
        for k in ("uris", "suites", "components", "types"):
            if k in fields:
                fields[k] = " ".join(fields[k].split())
        spec = _from_fields(fields, f"{where} stanza {n}" if len(stanzas) > 1 else where)
        if spec is not None:
            out.append(spec)
    return out


def parse_source_option(value: str) -> list[SourceSpec]:
    """One `--source` value: a one-line entry, a deb822 stanza, or a path to
    a .list / .sources file."""
    where = f"--source {value.splitlines()[0][:60]!r}" if value.strip() else "--source"
    text = value.strip()
    if not text:
        raise UsageError("--source needs a value (an apt source line, a deb822 stanza or a file)")
    if text.endswith((".list", ".sources")) and "\n" not in text and not text.startswith("deb"):
        path = Path(text)
        try:
            content = path.read_text()
        except OSError as exc:
            raise UsageError(f"--source {text}: cannot read it: {exc.strerror}") from None
        specs = parse_deb822(content, text) if text.endswith(".sources") else parse_one_line(content, text)
    elif re.match(r"^\s*deb(-src)?\s", text):
        specs = parse_one_line(text, where)
    elif re.match(r"^[A-Za-z-]+:", text):
        specs = parse_deb822(text, where)
    else:
        raise UsageError(f"{where}: not an apt source line (deb URI SUITE COMPONENT...), a deb822 stanza, "
                         "or a .list/.sources file")
    if not specs:
        raise UsageError(f"{where}: names no enabled deb source")
    return specs


# -- from specs to repositories ------------------------------------------------


@dataclass(frozen=True)
class Mirrors:
    """What the placeholders stand for in this run; "" when not needed or
    not known (then naming one is an error)."""

    mirror: str = ""
    security: str = ""
    image_mirror: str = ""
    image_security: str = ""
    missing_security: str = ""  # why there is no security mirror, said when one is needed


def uses(specs: list[SourceSpec], placeholder: str) -> bool:
    return any(placeholder in s.uris for s in specs)


def repositories(specs: list[SourceSpec], mirrors: Mirrors, *, default_components: tuple[str, ...],
                 default_keyring: str, architecture: str) -> list[Repository]:
    """Every (URI, suite) of specs, placeholders filled in, in order, each
    once (a later duplicate is dropped, as apt warns and ignores it)."""
    out: list[Repository] = []
    seen: set[tuple[str, str]] = set()
    for spec in specs:
        if spec.architectures and architecture not in spec.architectures:
            continue
        for uri in spec.uris:
            role = ""
            url = uri
            image_url = ""
            if uri == MIRROR:
                role, url, image_url = "mirror", mirrors.mirror, mirrors.image_mirror
            elif uri == SECURITY_MIRROR:
                role, url, image_url = "security-mirror", mirrors.security, mirrors.image_security
                if not url:
                    raise UsageError(mirrors.missing_security or f"{spec.where}: no security mirror is known")
            url = url.rstrip("/") + "/"
            image_url = (image_url.rstrip("/") + "/") if image_url else url
            for suite in spec.suites:
                if (url, suite) in seen:
                    continue
                seen.add((url, suite))
                out.append(Repository(
                    url=url, suite=suite,
                    components=spec.components or default_components,
                    keyring=spec.signed_by or default_keyring,
                    priority=spec.priority, role=role, image_url=image_url, where=spec.where,
                ))
    return out

