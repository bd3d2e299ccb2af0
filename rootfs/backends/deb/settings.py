"""The [deb] section of a recipe: how apt repositories are used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rootfs.backends.deb.sources import MIRROR, SourceSpec, spec_from_table
from rootfs.model.errors import UsageError

VARIANTS = ("essential", "minbase", "buildd", "default")

# mmdebstrap's variant names that mean one of rootfs's sets (mmdebstrap(1)):
# "required" installs Essential:yes, apt and Priority:required, which is
# debootstrap's minbase; "important", "debootstrap" and "-" add
# Priority:important, which is debootstrap's default variant.
VARIANT_ALIASES = {"required": "minbase", "important": "default", "debootstrap": "default", "-": "default"}

# mmdebstrap's names for sets rootfs does not build, with what to use instead.
VARIANTS_REFUSED = {
    "extract": "mmdebstrap's extract variant only unpacks the --include packages; rootfs always installs "
               "a working root (use --mode extract to skip the maintainer scripts)",
    "custom": "mmdebstrap's custom variant installs only the --include packages, without the Essential set; "
              "rootfs always starts from a variant (essential is the smallest)",
    "apt": "mmdebstrap's apt variant (Essential:yes plus apt) is not one of rootfs's sets; "
           "use --variant essential --include apt",
    "standard": "mmdebstrap's standard variant (adding Priority:standard) is not one of rootfs's sets; "
                "use --variant default and --include the standard packages you want",
}

SOURCES_FORMATS = ("list", "deb822")


@dataclass(frozen=True)
class DebSettings:
    variant: str = "minbase"
    components: tuple[str, ...] = ("main",)
    mirror: str = ""
    keyring: str = ""
    merged_usr: bool = True
    origin: str = ""  # the Origin of the host's apt source to use as the mirror
    # mmdebstrap's --aptopt and --dpkgopt, each as the text appended to the
    # image's /etc/apt/apt.conf.d/99mmdebstrap or /etc/dpkg/dpkg.cfg.d/99mmdebstrap
    aptopt: tuple[str, ...] = ()
    dpkgopt: tuple[str, ...] = ()
    container: bool = False  # the container profile (rootfs.backends.deb.profile)
    slim: bool = False  # leave documentation, man pages, locales and info out, now and later
    security_mirror: str = ""
    # The recipe's sources; empty means one: the mirror, the recipe's suite.
    sources: tuple[SourceSpec, ...] = ()
    # Sources added on the command line (--source), after the recipe's.
    added_sources: tuple[SourceSpec, ...] = ()
    # False: the release as it shipped, without its update suites.
    updates: bool = True
    # What the image's own apt sources name instead of the build's mirrors.
    image_mirror: str = ""
    image_security_mirror: str = ""
    # How the image lists its sources: sources.list lines, or deb822
    # /etc/apt/sources.list.d/DISTRIBUTION.sources with Signed-By.
    sources_format: str = "list"


SECTION_KEYS = {
    "variant": str,
    "components": list,
    "mirror": str,
    "keyring": str,
    "merged_usr": bool,
    "origin": str,
    "aptopt": list,
    "dpkgopt": list,
    "container": bool,
    "slim": bool,
    "security_mirror": str,
    "sources": [dict],
    "updates": bool,
    "image_mirror": str,
    "image_security_mirror": str,
    "sources_format": str,
}


def check_variant(variant: str, where: str = "") -> str:
    """rootfs's name for a variant; mmdebstrap's names for the same sets
    are accepted, the others refused with what to do instead."""
    prefix = f"{where}: " if where else ""
    if variant in VARIANTS:
        return variant
    if variant in VARIANT_ALIASES:
        return VARIANT_ALIASES[variant]
    if variant in VARIANTS_REFUSED:
        raise UsageError(f"{prefix}variant {variant!r}: {VARIANTS_REFUSED[variant]}")
    known = ", ".join(VARIANTS + tuple(VARIANT_ALIASES))
    raise UsageError(f"{prefix}unknown variant {variant!r} (known: {known})")


def check_sources_format(value: str, where: str) -> str:
    if value not in SOURCES_FORMATS:
        raise UsageError(f"{where}: sources_format must be one of {', '.join(SOURCES_FORMATS)}, not {value!r}")
    return value


def default_sources(suite: str) -> tuple[SourceSpec, ...]:
    return (SourceSpec(uris=(MIRROR,), suites=(suite,), where="the recipe's suite"),)


def parse(table: dict, where: str, recipe) -> DebSettings:
    if not recipe.suite:
        raise UsageError(f"{recipe.path or recipe.name}: a deb recipe needs a suite")
    sources = tuple(spec_from_table(t, f"{where} sources[{i}]") for i, t in enumerate(table.get("sources", [])))
    return DebSettings(
        variant=check_variant(table.get("variant", "minbase"), where),
        components=tuple(table.get("components", ["main"])),
        mirror=table.get("mirror", ""),
        keyring=table.get("keyring", ""),
        merged_usr=table.get("merged_usr", True),
        origin=table.get("origin", ""),
        aptopt=tuple(option_text(o, base_of(recipe), True) for o in table.get("aptopt", [])),
        dpkgopt=tuple(option_text(o, base_of(recipe), False) for o in table.get("dpkgopt", [])),
        container=table.get("container", False),
        slim=table.get("slim", False),
        security_mirror=table.get("security_mirror", ""),
        sources=sources or default_sources(recipe.suite),
        updates=table.get("updates", True),
        image_mirror=table.get("image_mirror", ""),
        image_security_mirror=table.get("image_security_mirror", ""),
        sources_format=check_sources_format(table.get("sources_format", "list"), where),
    )


def base_of(recipe) -> Path:
    return recipe.path.parent if recipe.path else Path.cwd()


def option_text(option: str, base: Path, semicolon: bool) -> str:
    """One --aptopt/--dpkgopt value as the text mmdebstrap appends to its
    99mmdebstrap file: a readable file verbatim (read now, so that the
    recipe's digest covers its content), else the option with a ";" (apt
    only) and a newline added when missing."""
    path = base / option
    if "\n" not in option and path.is_file():
        try:
            return path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read option file {option}: {exc}") from None
    if semicolon and not option.endswith(";"):
        option += ";"
    return option if option.endswith("\n") else option + "\n"


def active_sources(settings: DebSettings) -> list[SourceSpec]:
    """The sources this run uses: the recipe's (without its update suites
    when updates are off), then the command line's."""
    recipe = [s for s in settings.sources if settings.updates or not s.updates]
    return recipe + list(settings.added_sources)
