"""Recipes: what to build, read from recipes/NAME.toml and overridden by flags.

A distribution release is data: suite, components, keyring, variant and image
metadata. Adding a release means adding a recipe file, not code.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rootfs.model.errors import UsageError

RECIPES_DIR = Path(__file__).resolve().parent.parent.parent / "recipes"

BACKENDS = ("deb", "rpm")
DEB_VARIANTS = ("essential", "minbase", "buildd", "default")


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
    name: str
    backend: str
    distribution: str
    suite: str
    architecture: str
    description: str = ""
    # deb
    components: tuple[str, ...] = ("main",)
    variant: str = "minbase"
    mirror: str = ""
    keyring: str = ""
    merged_usr: bool = True
    origin: str = ""
    # rpm
    repos: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    gpgkey: str = ""
    weak_deps: bool = False
    # both
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    image: ImageConfig = field(default_factory=ImageConfig)
    path: Path | None = None

    def replace(self, **changes) -> "Recipe":
        return dataclasses.replace(self, **changes)


def host_architecture(backend: str) -> str:
    machine = platform.machine()
    if backend == "rpm":
        return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return {
        "x86_64": "amd64",
        "aarch64": "arm64",
        "armv7l": "armhf",
        "i686": "i386",
        "ppc64le": "ppc64el",
    }.get(machine, machine)


_TOP_KEYS = {
    "description": str,
    "backend": str,
    "distribution": str,
    "suite": str,
    "architecture": str,
    "components": list,
    "variant": str,
    "mirror": str,
    "keyring": str,
    "merged_usr": bool,
    "origin": str,
    "repos": list,
    "packages": list,
    "gpgkey": str,
    "weak_deps": bool,
    "include": list,
    "exclude": list,
    "image": dict,
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


def recipe_dirs() -> list[Path]:
    """$ROOTFS_RECIPES (colon-separated directories) first, then the
    recipes/ directory of this checkout."""
    extra = [Path(d) for d in os.environ.get("ROOTFS_RECIPES", "").split(":") if d]
    return extra + [RECIPES_DIR]


def recipe_names() -> list[str]:
    return sorted({p.stem for d in recipe_dirs() for p in d.glob("*.toml")})


def find_recipe(name_or_path: str) -> Path:
    """A recipe name from recipes/, or a path to a recipe file."""
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


def _check_types(table: dict, schema: dict, where: str) -> None:
    for key, value in table.items():
        if key not in schema:
            raise UsageError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(schema))})")
        expected = schema[key]
        # bool is a subclass of int but never of str/list/dict, so isinstance is exact here
        if not isinstance(value, expected):
            raise UsageError(
                f"{where}: key {key!r} must be a {expected.__name__}, not {type(value).__name__}"
            )
        if expected is list and not all(isinstance(v, str) for v in value):
            raise UsageError(f"{where}: key {key!r} must be a list of strings")
        if expected is dict and key != "image" and not all(isinstance(v, str) for v in value.values()):
            raise UsageError(f"{where}: key {key!r} must map names to strings")


def parse_recipe(text: str, name: str, path: Path | None = None) -> Recipe:
    where = str(path) if path else name
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{where}: not valid TOML: {exc}") from None
    _check_types(data, _TOP_KEYS, where)
    backend = data.get("backend", "")
    if backend not in BACKENDS:
        raise UsageError(f"{where}: backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if not data.get("suite") and backend == "deb":
        raise UsageError(f"{where}: a deb recipe needs a suite")
    image = data.get("image", {})
    _check_types(image, _IMAGE_KEYS, f"{where} [image]")
    variant = data.get("variant", "minbase")
    if backend == "deb" and variant not in DEB_VARIANTS:
        raise UsageError(f"{where}: unknown variant {variant!r} (known: {', '.join(DEB_VARIANTS)})")
    return Recipe(
        name=name,
        backend=backend,
        distribution=data.get("distribution", ""),
        suite=data.get("suite", ""),
        architecture=data.get("architecture") or host_architecture(backend),
        description=data.get("description", ""),
        components=tuple(data.get("components", ["main"])),
        variant=variant,
        mirror=data.get("mirror", ""),
        keyring=data.get("keyring", ""),
        merged_usr=data.get("merged_usr", True),
        origin=data.get("origin", ""),
        repos=tuple(data.get("repos", [])),
        packages=tuple(data.get("packages", [])),
        gpgkey=data.get("gpgkey", ""),
        weak_deps=data.get("weak_deps", False),
        include=tuple(data.get("include", [])),
        exclude=tuple(data.get("exclude", [])),
        image=ImageConfig(
            tag=image.get("tag", ""),
            cmd=tuple(image.get("cmd", [])),
            entrypoint=tuple(image.get("entrypoint", [])),
            env=tuple(sorted(image.get("env", {}).items())),
            labels=tuple(sorted(image.get("labels", {}).items())),
            annotations=tuple(sorted(image.get("annotations", {}).items())),
            workdir=image.get("workdir", ""),
            user=image.get("user", ""),
        ),
        path=path,
    )


def load_recipe(name_or_path: str) -> Recipe:
    path = find_recipe(name_or_path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read recipe {path}: {exc}") from None
    return parse_recipe(text, path.stem, path)


def split_list(value: str | None) -> tuple[str, ...]:
    """`--include a,b --include c` style values: comma or space separated."""
    if not value:
        return ()
    return tuple(p for p in value.replace(",", " ").split() if p)
