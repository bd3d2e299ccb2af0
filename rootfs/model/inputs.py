"""Everything that decides a build's artifacts, as one typed record.

`rootfs make` is up to date when this record is the one the previous build
had and its artifacts are still there; its digest is a pure function of the
fields, so it can also name an image's inputs elsewhere (an annotation, a
label). Where the artifacts were pushed is a publication, not an input:
the report keeps it beside the record (`BuildReport.pushed`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from rootfs import __version__
from rootfs.model.lock import Lock
from rootfs.model.recipe import Recipe, build_data
from rootfs.model.report import packages_digest

INPUTS_FORMAT = 1

# The manifest (and index) annotations that let a registry answer the
# up-to-date question an ephemeral CI runner cannot ask its empty output
# directory: the lock the image was built from, and its image inputs.
SBOM_ANNOTATION = "org.rootfs.sbom.digest"
LOCK_ANNOTATION = "org.rootfs.lock.digest"
INPUTS_ANNOTATION = "org.rootfs.inputs.digest"


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class BuildInputs:
    tool_version: str
    recipe: str  # the recipe's selection and backend section (not [image] or [customize])
    customize: str  # [customize] entries and every hook, as written
    image: str  # [image]: config, labels, annotations, user
    packages: str  # the resolved set (name, architecture, version, sha256 of each)
    files: tuple[tuple[str, str], ...]  # host files hooks and [customize] read: (what, content digest)
    formats: tuple[str, ...]
    tag: str
    layer_compression: str
    source_date_epoch: int
    sbom: bool

    def digest(self) -> str:
        return _digest({"format": INPUTS_FORMAT, **self.to_dict()})

    def image_digest(self) -> str:
        """The digest of the inputs that decide the image's bytes: all but
        the other formats written beside it and the tag, which lives in the
        layout's index.json, not in the manifest. So `-f oci` and
        `-f oci -f tar` push the same image, and the value is the same
        whichever registry it is pushed to."""
        d = self.to_dict()
        for key in ("formats", "tag"):
            d.pop(key)
        return _digest({"format": INPUTS_FORMAT, "image": True, **d})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["files"] = [list(f) for f in self.files]
        d["formats"] = list(self.formats)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BuildInputs | None:
        try:
            values = {f.name: d[f.name] for f in fields(cls)}
            values["files"] = tuple(tuple(x) for x in values["files"])
            values["formats"] = tuple(values["formats"])
            return cls(**values)
        except (KeyError, TypeError, ValueError):
            return None

    def changed_since(self, old: BuildInputs) -> str:
        """What differs from an earlier record, said for the report ("" when
        nothing does)."""
        if old.tool_version != self.tool_version:
            return f"rootfs changed ({old.tool_version} -> {self.tool_version})"
        if old.recipe != self.recipe:
            return "the recipe changed"
        if old.packages != self.packages:
            return "the resolved package set changed"
        if old.customize != self.customize:
            return "the customization (hooks, [customize]) changed"
        if old.files != self.files:
            was, now = dict(old.files), dict(self.files)
            what = sorted(k for k in was.keys() | now.keys() if was.get(k) != now.get(k))
            return f"a file the customization reads changed ({what[0].split(':', 1)[-1]})"
        if old.image != self.image:
            return "the image configuration changed"
        if sorted(old.formats) != sorted(self.formats):
            return "other formats were asked for"
        if old.tag != self.tag:
            return f"the tag changed ({old.tag or 'none'} -> {self.tag or 'none'})"
        if old.layer_compression != self.layer_compression:
            return f"the layer compression changed ({old.layer_compression} -> {self.layer_compression})"
        if old.source_date_epoch != self.source_date_epoch:
            return f"SOURCE_DATE_EPOCH changed ({old.source_date_epoch} -> {self.source_date_epoch})"
        if old.sbom != self.sbom:
            return "the SBOM was turned " + ("on" if self.sbom else "off")
        return ""


def selection_digest(recipe: Recipe, lock: Lock) -> str:
    """Digest of what a recipe selects (its sources, packages and backend
    section; not [image] or [customize]): BuildInputs.recipe."""
    selection = build_data(recipe)
    for key in ("image", "customize"):
        selection.pop(key, None)
    # Where the packages came from counts as the lock records it: a mirror
    # named on the command line and the same mirror found in the host's apt
    # configuration are one input, and make the same image.
    settings = selection.get("settings")
    if isinstance(settings, dict) and lock.sources:
        for key in ("mirror", "security_mirror"):
            settings.pop(key, None)
    selection["locked_sources"] = [[s.url, s.suite, list(s.components)] for s in lock.sources]
    return _digest(selection)


def build_inputs(recipe: Recipe, lock: Lock, *, files: list[tuple[str, str]], formats, tag: str,
                 layer_compression: str, source_date_epoch: int, sbom: bool) -> BuildInputs:
    return BuildInputs(
        tool_version=__version__,
        recipe=selection_digest(recipe, lock),
        customize=_digest(build_data(recipe.customize)),
        image=_digest(build_data(recipe.image)),
        packages=packages_digest(lock),
        files=tuple(sorted(files)),
        formats=tuple(sorted(formats)),
        tag=tag,
        layer_compression=layer_compression,
        source_date_epoch=source_date_epoch,
        sbom=sbom,
    )


def provenance_annotations(lock_digest: str, inputs: BuildInputs) -> dict[str, str]:
    """What an image carries to be recognised at a registry as this build's."""
    return {LOCK_ANNOTATION: "sha256:" + lock_digest, INPUTS_ANNOTATION: "sha256:" + inputs.image_digest()}
