"""Recipes: what to build, read from recipes/NAME.toml and overridden by flags.

A distribution release is data: suite, sources, keyring, variant and image
metadata. Adding a release means adding a recipe file, not code. The keys
every recipe has are read here; each backend reads its own section ([deb],
[rpm]) into its own settings type.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rootfs.model.arch import host_architecture
from rootfs.model.customize import Customize
from rootfs.model.errors import UsageError

# Shipped in the package (a wheel carries them); recipes/ at the top of the
# checkout is a link here, for the Makefile and the README.
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"

BACKENDS = ("deb", "rpm")


@dataclass(frozen=True)
class ImageConfig:
    """What the packer writes into an image's config and annotations."""

    tag: str = ""
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    workdir: str = ""
    user: str = ""


@dataclass(frozen=True)
class Recipe:
    """What every recipe has; `settings` is the backend's own section
    ([deb] or [rpm]), parsed by the backend into its own type."""

    name: str
    backend: str
    distribution: str
    suite: str
    architecture: str
    settings: Any
    description: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    image: ImageConfig = field(default_factory=ImageConfig)
    customize: Customize = field(default_factory=Customize)
    path: Path | None = None

    def replace(self, **changes) -> Recipe:
        return dataclasses.replace(self, **changes)

    def with_settings(self, **changes) -> Recipe:
        return dataclasses.replace(self, settings=dataclasses.replace(self.settings, **changes))


_TOP_KEYS = {
    "description": str,
    "backend": str,
    "distribution": str,
    "suite": str,
    "architecture": str,
    "include": list,
    "exclude": list,
    "image": dict,
    "customize": dict,
    **{name: dict for name in BACKENDS},
}
_IMAGE_KEYS = {
    "tag": str,
    "cmd": list,
    "entrypoint": list,
    "env": dict,
    "labels": dict,
    "annotations": dict,
    "workdir": str,
    "user": str,
}


def settings_module(backend: str):
    """The backend's recipe section: SECTION_KEYS, parse(table, where, recipe)."""
    return importlib.import_module(f"rootfs.backends.{backend}.settings")


def build_data(part) -> dict:
    """A recipe (or a section of one) as plain data, without its
    description and what only names where it was read (its path, the places
    messages cite, the directory hooks start in): a recipe moved to another
    directory builds the same image."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("path", "where", "cwd")}
        if isinstance(value, (list, tuple)):
            return [strip(v) for v in value]
        return value

    data = strip(dataclasses.asdict(part))
    data.pop("description", None)
    return data


def recipe_dirs() -> list[Path]:
    """$ROOTFS_RECIPES (colon-separated directories) first, then the
    recipes shipped in the package."""
    extra = [Path(d) for d in os.environ.get("ROOTFS_RECIPES", "").split(":") if d]
    return extra + [RECIPES_DIR]


def recipe_names() -> list[str]:
    return sorted({p.stem for d in recipe_dirs() for p in d.glob("*.toml")})


def find_recipe(name_or_path: str) -> Path:
    """A recipe name (see recipe_dirs), or a path to a recipe file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or os.sep in name_or_path:
        if not candidate.is_file():
            raise UsageError(f"recipe file {name_or_path} does not exist")
        return candidate
    for d in recipe_dirs():
        path = d / f"{name_or_path}.toml"
        if path.is_file():
            return path
    known = ", ".join(recipe_names()) or "none"
    raise UsageError(f"unknown recipe {name_or_path!r}; known recipes: {known}")


def check_table(table: dict, schema: dict, where: str) -> None:
    """Every key known and of its type (str, bool, int, list of str, dict
    of str, dict for a sub-table, or [dict] for an array of tables)."""
    for key, value in table.items():
        if key not in schema:
            raise UsageError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(schema))})")
        expected = schema[key]
        if expected == [dict]:
            # an array of tables ([[section.key]]), each checked by its reader
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise UsageError(f"{where}: key {key!r} must be an array of tables ([[...{key}]])")
            continue
        # bool is a subclass of int, so an int key must not take true/false
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise UsageError(
                f"{where}: key {key!r} must be a {expected.__name__}, not {type(value).__name__}"
            )
        if expected is list and not all(isinstance(v, str) for v in value):
            raise UsageError(f"{where}: key {key!r} must be a list of strings")


def _string_map(table: dict, key: str, where: str) -> tuple[tuple[str, str], ...]:
    value = table.get(key, {})
    if not all(isinstance(v, str) for v in value.values()):
        raise UsageError(f"{where}: key {key!r} must map names to strings")
    return tuple(sorted(value.items()))


def parse_recipe(text: str, name: str, path: Path | None = None) -> Recipe:
    where = str(path) if path else name
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{where}: not valid TOML: {exc}") from None
    backend = data.get("backend", "")
    if backend not in BACKENDS:
        raise UsageError(f"{where}: backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    section = settings_module(backend)
    for key in data:
        if key not in _TOP_KEYS and key in section.SECTION_KEYS:
            raise UsageError(f"{where}: key {key!r} belongs in the [{backend}] section")
    check_table(data, _TOP_KEYS, where)
    other = [b for b in BACKENDS if b != backend and b in data]
    if other:
        raise UsageError(f"{where}: a {backend} recipe has no [{other[0]}] section")
    image = data.get("image", {})
    check_table(image, _IMAGE_KEYS, f"{where} [image]")
    base = path.parent if path else Path.cwd()
    from rootfs.model import customize as customize_section

    custom = customize_section.parse(data.get("customize", {}), f"{where} [customize]", base)
    env = _string_map(image, "env", f"{where} [image]")
    if custom.locale and "LANG" not in dict(env):
        # A container reads no /etc/default/locale: the image's
        # environment is where its programs find the locale.
        env = tuple(sorted(env + (("LANG", custom.locale),)))
    common = Recipe(
        name=name,
        backend=backend,
        distribution=data.get("distribution", ""),
        suite=data.get("suite", ""),
        architecture=data.get("architecture") or host_architecture(backend),
        settings=None,
        description=data.get("description", ""),
        include=tuple(local_paths(data.get("include", []), base)),
        exclude=tuple(data.get("exclude", [])),
        image=ImageConfig(
            tag=image.get("tag", ""),
            cmd=tuple(image.get("cmd", [])),
            entrypoint=tuple(image.get("entrypoint", [])),
            env=env,
            labels=_string_map(image, "labels", f"{where} [image]"),
            annotations=_string_map(image, "annotations", f"{where} [image]"),
            workdir=image.get("workdir", ""),
            user=image.get("user", ""),
        ),
        customize=custom,
        path=path,
    )
    table = data.get(backend, {})
    check_table(table, section.SECTION_KEYS, f"{where} [{backend}]")
    return common.replace(settings=section.parse(table, f"{where} [{backend}]", common))


def load_recipe(name_or_path: str) -> Recipe:
    path = find_recipe(name_or_path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read recipe {path}: {exc}") from None
    return parse_recipe(text, path.stem, path)


def is_local_package(entry: str) -> bool:
    """An --include entry naming a package file rather than a package, as
    mmdebstrap tells them apart."""
    return entry.startswith(("/", "./", "../")) or entry.endswith(".deb")


def local_paths(entries, base: Path) -> list[str]:
    """Package files named relative to `base` made absolute."""
    return [str((base / e).absolute()) if is_local_package(e) and not os.path.isabs(e) else e for e in entries]


def split_list(value: str | None) -> tuple[str, ...]:
    """`--include a,b --include c` style values: comma or space separated."""
    if not value:
        return ()
    return tuple(p for p in value.replace(",", " ").split() if p)
