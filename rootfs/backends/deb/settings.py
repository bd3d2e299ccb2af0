"""The [deb] section of a recipe: how apt repositories are used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rootfs.model.errors import UsageError

VARIANTS = ("essential", "minbase", "buildd", "default")


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
}


def check_variant(variant: str, where: str = "") -> str:
    if variant not in VARIANTS:
        prefix = f"{where}: " if where else ""
        raise UsageError(f"{prefix}unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
    return variant


def parse(table: dict, where: str, recipe) -> DebSettings:
    if not recipe.suite:
        raise UsageError(f"{recipe.path or recipe.name}: a deb recipe needs a suite")
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
