"""The packer: a root directory -> reproducible, import-ready artifacts.

    pack(root, formats, output, opts) -> list[Artifact]

One walk of the tree produces one uncompressed tar stream; every requested
format is a consumer of that stream (a file, a compressor, an OCI layer, a
`tar2sqfs` or `tar -x` process), so packing five formats costs one read of
the tree. Nothing is held in memory but a few 1 MiB chunks.

Output naming: with one format, OUTPUT is that artifact (a file; a directory
for `oci` and `dir`; "-" streams a tar or an oci- or docker-archive to
standard output). With
several, OUTPUT is a directory holding one artifact per format, named as in
ARTIFACT_NAMES. Without a format, OUTPUT's suffix names it (outputs.py).
Every artifact is written under a temporary name and renamed
into place, so a failure leaves the previous output untouched.

The tree itself is never modified: the reproducibility cleanup (clean.py) is
a filter on the stream.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rootfs.host.atomic import atomic_path
from rootfs.host.policy import DEFAULT as DEFAULT_POLICY
from rootfs.host.policy import Policy
from rootfs.model import arch as archmod
from rootfs.model.attrs import AttrRecord, load_for_root, sidecar_path
from rootfs.model.errors import OutputError, UsageError
from rootfs.model.recipe import ImageConfig
from rootfs.pack import compress, oci, tarstream, tree
from rootfs.pack.outputs import DIRECTORY_FORMATS, STREAMABLE

TAR_FORMATS = {"tar": None, "tar.gz": "gzip", "tar.zst": "zstd", "tar.xz": "xz"}
ARTIFACT_NAMES = {
    "tar": "rootfs.tar",
    "tar.gz": "rootfs.tar.gz",
    "tar.zst": "rootfs.tar.zst",
    "tar.xz": "rootfs.tar.xz",
    "oci": "oci",
    "oci-archive": "image.oci.tar",
    "docker-archive": "image.docker.tar",
    "ext2": "rootfs.ext2",
    "ext4": "rootfs.ext4",
    "squashfs": "rootfs.squashfs",
    "dir": "rootfs",
}
FORMATS = tuple(ARTIFACT_NAMES)


@dataclass
class PackOptions:
    # Mtimes are clamped to this and image `created` is set from it. The
    # environment's SOURCE_DATE_EPOCH overrides it; with neither, mtimes are
    # kept and `created` is the newest mtime in the tree.
    source_date_epoch: int | None = None
    attrs: AttrRecord | None = None  # None: ROOT.attrs.json beside the root, if any
    tag: str = ""  # NAME[:TAG]; default image.tag, else localhost/rootfs:latest
    image: ImageConfig = field(default_factory=ImageConfig)
    architecture: str = ""  # distribution spelling (amd64, aarch64...); "" = from the root's /bin/sh
    layer_compression: str = "gzip"  # OCI layers: gzip or zstd
    cleanup: bool = True  # leave out logs, caches, machine-id... (clean.py)
    keep_dev: bool = False  # pack /dev's contents too
    created_by: str = "rootfs pack"  # the config history entry
    log: Callable[[str], None] = lambda msg: None
    # What the image may hold (rootfs.host.policy), with the rules waived.
    policy: Policy = DEFAULT_POLICY
    # Every payload of this root went through the Extractor's policy in this
    # run (`make`, `build`): its device nodes and FIFOs came from scripts.
    nodes_checked: bool = False


@dataclass(frozen=True)
class Artifact:
    format: str
    path: Path | None  # None: written to standard output
    digest: str = ""  # "sha256:..." of the file; for oci (a directory) the manifest's
    size: int = 0


def source_date_epoch(default: int | None) -> int | None:
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is None or env == "":
        return default
    try:
        value = int(env)
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, not {env!r}") from None
    if value < 0:
        raise UsageError(f"SOURCE_DATE_EPOCH must not be negative, not {env!r}")
    return value


def check_formats(formats: list[str] | tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for f in formats:
        if f not in ARTIFACT_NAMES:
            raise OutputError(f"unknown format {f!r} (known: {', '.join(FORMATS)})")
        if f not in out:
            out.append(f)
    if not out:
        raise UsageError("name at least one --format")
    return out


def pack(root: os.PathLike | str, formats: list[str] | tuple[str, ...], output: os.PathLike | str,
         opts: PackOptions | None = None) -> list[Artifact]:
    opts = opts or PackOptions()
    formats = check_formats(formats)
    root = Path(root)
    job = _job(root, formats, opts)

    to_stdout = str(output) == "-"
    if to_stdout and (len(formats) != 1 or formats[0] not in STREAMABLE):
        raise UsageError(f"-o - streams exactly one of {', '.join(STREAMABLE)} to standard output")
    if to_stdout:
        return job.run({formats[0]: None}, Path(tempfile.gettempdir()))

    output = Path(output)
    _refuse_inside(root, output)
    if len(formats) == 1:
        fmt = formats[0]
        with atomic_path(output, directory=fmt in DIRECTORY_FORMATS) as tmp:
            arts = job.run({fmt: tmp}, tmp.parent)
            if fmt != "dir":
                os.chmod(tmp, 0o755 if fmt == "oci" else 0o644)
        if job.dir_record is not None:
            job.dir_record.save(sidecar_path(output))
        return [_renamed(a, tmp, output) for a in arts]
    with atomic_path(output, directory=True) as tmp:
        arts = job.run({f: tmp / ARTIFACT_NAMES[f] for f in formats}, tmp.parent)
        os.chmod(tmp, 0o755)
        if job.dir_record is not None:
            job.dir_record.save(sidecar_path(tmp / ARTIFACT_NAMES["dir"]))
    return [_renamed(a, tmp, output) for a in arts]


def pack_layer(root: os.PathLike | str, layer_path: Path, opts: PackOptions) -> oci.LayoutImage:
    """One platform of a multi-platform image: root's layer written to
    layer_path, with its config; write_index puts several in one index.
    The same bytes `pack` writes into a one-platform layout."""
    job = _job(Path(root), [], opts)
    job.run({"layer": Path(layer_path)}, Path(layer_path).parent)
    assert job.image is not None
    return job.image


INDEX_FORMATS = ("oci", "oci-archive")


def write_index(images: list[oci.LayoutImage], targets: dict[str, Path], tag: str,
                annotations: dict[str, str] | None = None) -> list[Artifact]:
    """The oci and/or oci-archive artifacts (format -> path, in a staging
    directory) of one image index holding every platform's image, with the
    index's own annotations. Each layer file is moved into the layout."""
    from rootfs.pack import archives

    bad = [f for f in targets if f not in INDEX_FORMATS]
    if bad:
        raise UsageError(f"an image of several platforms is written as oci or oci-archive, not {bad[0]}")
    tag = oci.parse_tag(tag or oci.DEFAULT_TAG)
    created = max(img.created for img in images)
    scratch = Path(tempfile.mkdtemp(prefix=".rootfs-index.", dir=next(iter(targets.values())).parent))
    try:
        layout = targets.get("oci") or scratch / "oci"
        layout.mkdir()
        digest = oci.write_layout(layout, images=images, tag=tag, annotations=annotations)
        os.chmod(layout, 0o755)
        arts = []
        for f in targets:
            if f == "oci":
                arts.append(Artifact("oci", layout, digest, 0))
            else:
                adigest, size = archives.oci_archive(layout, targets[f], created)
                os.chmod(targets[f], 0o644)
                arts.append(Artifact(f, targets[f], adigest, size))
        return arts
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _job(root: Path, formats: list[str], opts: PackOptions) -> _Job:
    """The packing job for root, every option checked before any work."""
    if not root.is_dir():
        raise OutputError(f"root {root} does not exist or is not a directory")
    if opts.layer_compression not in oci.MEDIA_LAYER:
        raise UsageError(f"unknown layer compression {opts.layer_compression!r} (known: gzip, zstd)")
    tag = oci.parse_tag(opts.tag or opts.image.tag or oci.DEFAULT_TAG)
    sde = source_date_epoch(opts.source_date_epoch)
    attrs = opts.attrs if opts.attrs is not None else load_for_root(root)
    arch = opts.architecture or archmod.detect(root)
    archmod.oci_platform(arch)  # an unknown name fails before any work
    return _Job(root, formats, tag, sde, attrs, arch, opts)


def _renamed(a: Artifact, tmp: Path, final: Path) -> Artifact:
    if a.path is None:
        return a
    rel = a.path.relative_to(tmp) if a.path != tmp else Path()
    return Artifact(a.format, final / rel if str(rel) != "." else final, a.digest, a.size)


def _refuse_inside(root: Path, output: Path) -> None:
    r = root.resolve()
    o = output.absolute().resolve()
    if o == r or r in o.parents:
        raise UsageError(f"output {output} is inside the root {root}: it would pack itself")


class _Job:
    def __init__(self, root: Path, formats: list[str], tag: str, sde: int | None,
                 attrs: AttrRecord | None, arch: str, opts: PackOptions):
        self.root, self.formats, self.tag, self.sde = root, formats, tag, sde
        self.attrs, self.arch, self.opts = attrs, arch, opts
        self.newest = 0
        self.dir_record: AttrRecord | None = None
        self.image: oci.LayoutImage | None = None

    def run(self, targets: dict[str, Path | None], scratch_parent: Path) -> list[Artifact]:
        work = Path(tempfile.mkdtemp(prefix=".rootfs-pack.", dir=scratch_parent))
        try:
            return self._run(targets, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _run(self, targets: dict[str, Path | None], work: Path) -> list[Artifact]:
        from rootfs.pack import archives, ext, fsimage

        opts = self.opts
        sinks: list[compress.Sink] = []
        files: dict[str, compress.HashSink] = {}
        procs: list[fsimage.ProcSink] = []
        fmts = set(targets)

        # The uncompressed stream's digest is the layers' diff_id and the
        # .tar's own digest: hash it once.
        raw_path: Path | None = None
        if "tar" in targets:
            t = targets["tar"]
            diff = compress.HashSink(compress.FileSink(t) if t is not None else compress.FileSink(fd=1))
            files["tar"] = diff
            raw_path = t
            sinks.append(compress.Threaded(diff))
        elif fmts & {"oci", "oci-archive", "docker-archive", "layer"}:
            diff = compress.HashSink()
            sinks.append(compress.Threaded(diff))
        if "docker-archive" in fmts and raw_path is None:
            raw_path = work / "layer.tar"
            sinks.append(compress.Threaded(compress.FileSink(raw_path)))
        for f, kind in TAR_FORMATS.items():
            if kind is None or f not in targets:
                continue
            t = targets[f]
            hs = compress.HashSink(compress.FileSink(t) if t is not None else compress.FileSink(fd=1))
            files[f] = hs
            sinks.append(compress.Threaded(compress.compressor(kind, hs)))
        layer_sink = None
        layer_path = targets.get("layer") or work / "layer.blob"
        if fmts & {"oci", "oci-archive", "layer"}:
            layer_sink = compress.HashSink(compress.FileSink(layer_path))
            sinks.append(compress.Threaded(compress.compressor(opts.layer_compression, layer_sink)))
        if "squashfs" in targets:
            p = fsimage.squashfs_sink(targets["squashfs"], self.sde)
            procs.append(p)
            sinks.append(compress.Threaded(p))
        extractors: dict[str, object] = {}
        for f in ("ext2", "ext4"):
            if f in targets:
                (work / f).mkdir()
                extractors[f] = ext.ExtScript(work / f)
        if "dir" in targets:
            targets["dir"].mkdir(exist_ok=True)
            extractors["dir"] = fsimage.Extractor(targets["dir"])

        def seen(e: tree.Entry) -> None:
            if e.mtime > self.newest:
                self.newest = e.mtime
            for x in extractors.values():
                x(e)

        unames, gnames = tree.owner_names(self.root)
        tee = compress.Tee(sinks)
        try:
            tarstream.write_stream(_walk(self.root, self.attrs, self.sde, opts), tee.write, unames, gnames,
                                   on_entry=seen)
        except BaseException:
            for p in procs:
                p.kill()
            try:
                tee.close()
            except BaseException:
                pass
            raise
        tee.close()
        if "dir" in extractors:
            extractors["dir"].finish()

        created = self.sde if self.sde is not None else self.newest
        arts: list[Artifact] = []
        for f in self.formats:
            if f in files:
                arts.append(Artifact(f, targets[f], files[f].digest, files[f].size))
        if layer_sink is not None:
            platform = archmod.oci_platform(self.arch)
            layer = oci.Layer(layer_path, layer_sink.digest, layer_sink.size, diff.digest,
                              oci.MEDIA_LAYER[opts.layer_compression])
            config = oci.image_config(arch=self.arch, created=created, diff_id=diff.digest,
                                      image=opts.image, created_by=opts.created_by)
            self.image = oci.LayoutImage(layer, config, dict(opts.image.annotations), platform, created)
        if layer_sink is not None and fmts & {"oci", "oci-archive"}:
            layout = targets.get("oci") or work / "oci"
            layout.mkdir(exist_ok=True)
            mdigest = oci.write_layout(layout, images=[self.image], tag=self.tag)
            if "oci" in targets:
                arts.append(Artifact("oci", layout, mdigest, 0))
            if "oci-archive" in targets:
                digest, size = archives.oci_archive(layout, targets["oci-archive"], created)
                arts.append(Artifact("oci-archive", targets["oci-archive"], digest, size))
        if "docker-archive" in targets:
            config = oci.image_config(arch=self.arch, created=created, diff_id=diff.digest,
                                      image=opts.image, created_by=opts.created_by)
            digest, size = archives.docker_archive(raw_path, diff.digest, config, self.tag,
                                                    targets["docker-archive"], created)
            arts.append(Artifact("docker-archive", targets["docker-archive"], digest, size))
        for f in ("ext2", "ext4"):
            if f in targets:
                ext.build(f, extractors[f], targets[f], created)
                arts.append(_file_artifact(f, targets[f]))
        if "squashfs" in targets:
            arts.append(_file_artifact("squashfs", targets["squashfs"]))
        if "dir" in targets:
            if extractors["dir"].missing:
                # Not root: the copy cannot hold other owners or devices, so
                # it carries the record the next pack reads them from.
                self.dir_record = fsimage.record_of(extractors["dir"].every)
                # Nodes made by the configure stage stay marked so in the
                # copy's record (rootfs.host.policy); waived ones do not.
                made = self.attrs.scripted if self.attrs is not None else set()
                for key, attr in self.dir_record.items():
                    if stat.S_IFMT(attr.mode) in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO) \
                            and (opts.nodes_checked or key in made):
                        self.dir_record.scripted.add(key)
            arts.append(Artifact("dir", targets["dir"]))
        order = {f: i for i, f in enumerate(self.formats)}
        return sorted(arts, key=lambda a: order[a.format])


def _walk(root: Path, attrs: AttrRecord | None, sde: int | None, opts: PackOptions):
    entries = tree.walk(root, attrs=attrs, clamp=sde, keep_dev=opts.keep_dev, cleanup=opts.cleanup)
    return tree.checked(entries, opts.policy, attrs=attrs, nodes_checked=opts.nodes_checked, keep_dev=opts.keep_dev)


def _file_artifact(fmt: str, path: Path) -> Artifact:
    import hashlib

    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return Artifact(fmt, path, "sha256:" + h.hexdigest(), size)
