"""The [deb] section of a recipe: how apt repositories are used."""

from __future__ import annotations

from dataclasses import dataclass

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


SECTION_KEYS = {
    "variant": str,
    "components": list,
    "mirror": str,
    "keyring": str,
    "merged_usr": bool,
    "origin": str,
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
    )
