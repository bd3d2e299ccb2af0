"""What `rootfs history` and `rootfs inspect` show about an image.

Both read only the image: the config's history and metadata, the
manifest's layer descriptors, and for the package list the package
manager's own database read out of the layer streams (rootfs.inventory.pkgdb applies
whiteouts across layers; nothing is unpacked to disk). Sizes are the
layers' sizes as stored (compressed), the numbers a registry transfers.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass

from rootfs.image.reader import INDEX_TYPES, Image
from rootfs.model.errors import RootfsError, VerifyError


@dataclass
class HistoryRow:
    id: str | None  # the image (config) digest on the newest row, as docker shows it
    created: str | None  # RFC 3339 as in the config
    created_by: str
    size: int  # bytes of this row's layer; 0 for empty_layer entries
    comment: str
    author: str
    empty_layer: bool
    layer: str | None  # the layer digest this entry produced


def history(img: Image) -> list[HistoryRow]:
    """The config's history, newest first, each entry paired with the layer
    it produced (entries marked empty_layer produced none)."""
    layers = list(img.layers)
    rows: list[HistoryRow] = []
    for h in img.config.get("history") or []:
        if not isinstance(h, dict):
            continue
        empty = bool(h.get("empty_layer"))
        layer = None if empty or not layers else layers.pop(0)
        rows.append(HistoryRow(None, h.get("created"), h.get("created_by") or "", layer.size if layer else 0,
                               h.get("comment") or "", h.get("author") or "", empty,
                               layer.digest if layer else None))
    for layer in layers:  # layers the history does not account for
        rows.append(HistoryRow(None, None, "", layer.size, "", "", False, layer.digest))
    rows.reverse()
    if rows:
        rows[0].id = img.config_descriptor.digest
    return rows


def history_json(rows: list[HistoryRow]) -> list[dict]:
    return [asdict(r) for r in rows]


def parse_time(value: str | None) -> _dt.datetime | None:
    if not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Go writes nanoseconds; Python takes at most microseconds.
    if "." in text:
        head, _, frac = text.partition(".")
        digits = "".join(c for c in frac if c.isdigit())
        text = f"{head}.{digits[:6]}{frac[len(digits):]}"
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def human_time(value: str | None, now: _dt.datetime | None = None) -> str:
    """`3 hours ago`, in the steps docker's go-units uses."""
    t = parse_time(value)
    if t is None:
        return "N/A"
    now = now or _dt.datetime.now(_dt.timezone.utc)
    s = (now - t).total_seconds()
    if s < 0:
        return "in the future"
    hours = s / 3600
    if s < 1:
        text = "Less than a second"
    elif s < 60:
        text = f"{int(s)} second{'s' if int(s) != 1 else ''}"
    elif s < 120:
        text = "About a minute"
    elif s < 3600:
        text = f"{int(s // 60)} minutes"
    elif s < 7200:
        text = "About an hour"
    elif hours < 48:
        text = f"{int(hours)} hours"
    elif hours < 24 * 7 * 2:
        text = f"{int(hours // 24)} days"
    elif hours < 24 * 30 * 2:
        text = f"{int(hours // (24 * 7))} weeks"
    elif hours < 24 * 365 * 2:
        text = f"{int(hours // (24 * 30))} months"
    else:
        text = f"{int(hours // (24 * 365))} years"
    return text + " ago"


def human_size(n: int) -> str:
    """Decimal units with three significant digits, like docker: 1.1MB, 0B."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            break
        size /= 1000
    return f"{size:.3g}{unit}"


def history_table(rows: list[HistoryRow], *, no_trunc: bool = False) -> list[str]:
    head = ("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")
    table = []
    for r in rows:
        ident = r.id or "<missing>"
        if r.id and not no_trunc:
            ident = r.id.split(":", 1)[1][:12]
        by = " ".join(r.created_by.split()) if not no_trunc else r.created_by
        if not no_trunc and len(by) > 45:
            by = by[:44] + "…"
        table.append((ident, human_time(r.created), by, human_size(r.size), r.comment))
    widths = [max(len(x[i]) for x in [head, *table]) for i in range(len(head))]
    return ["   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *table]]


# -- inspect --------------------------------------------------------------------


def packages(img: Image) -> dict:
    """The installed packages, from the layers' package database."""
    from rootfs.inventory import pkgdb

    def layers():
        for layer in img.layers:
            with img.layer_tar(layer) as tar:
                yield tar

    try:
        db = pkgdb.read_layers(layers())
    except VerifyError:
        raise  # a tampered layer is not an image without packages
    except RootfsError as exc:
        return {"format": None, "count": 0, "packages": [], "note": str(exc), "os_release": {}}
    pkgs = [{"name": p.name, "version": p.version, "architecture": p.architecture} for p in db.packages]
    return {"format": db.format, "count": len(pkgs), "packages": pkgs, "os_release": dict(db.os_release)}


def inspect(img: Image, *, with_packages: bool = True) -> dict:
    cfg = img.config
    c = cfg.get("config") or {}
    diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
    info = {
        "image": str(img.path),
        "kind": img.kind,
        "tag": img.tag,
        "digest": img.descriptor.digest,
        "media_type": img.descriptor.media_type,
        "index_digest": img.root.digest if img.root.media_type in INDEX_TYPES else None,
        "platforms": _platforms(img),
        "config_digest": img.config_descriptor.digest,
        "created": cfg.get("created"),
        "author": cfg.get("author"),
        "architecture": cfg.get("architecture"),
        "variant": cfg.get("variant"),
        "os": cfg.get("os"),
        "config": {
            "user": c.get("User"),
            "env": list(c.get("Env") or []),
            "entrypoint": c.get("Entrypoint"),
            "cmd": c.get("Cmd"),
            "working_dir": c.get("WorkingDir"),
            "labels": dict(c.get("Labels") or {}),
            "exposed_ports": sorted(c.get("ExposedPorts") or {}),
            "volumes": sorted(c.get("Volumes") or {}),
            "stop_signal": c.get("StopSignal"),
        },
        "annotations": img.annotations,
        "layers": [
            {"digest": d.digest, "media_type": d.media_type, "size": d.size,
             "diff_id": diff_ids[i] if i < len(diff_ids) else None}
            for i, d in enumerate(img.layers)
        ],
        "size": sum(d.size for d in img.layers),
    }
    if with_packages:
        info["packages"] = packages(img)
    return info


def _platforms(img) -> list[str]:
    """The platforms of the index the image came from (os/arch[/variant]),
    in its order; [] for an image without an index."""
    if img.root.media_type not in INDEX_TYPES:
        return []
    try:
        entries = json.loads(img.root_bytes).get("manifests") or []
    except (ValueError, AttributeError):
        return []
    out = []
    for e in entries:
        p = e.get("platform") if isinstance(e, dict) else None
        if isinstance(p, dict):
            out.append("/".join(str(p[k]) for k in ("os", "architecture", "variant") if p.get(k)))
    return out


def inspect_text(info: dict) -> list[str]:
    c = info["config"]
    out = [
        f"Image:         {info['image']}" + (f":{info['tag']}" if info["tag"] else "") + f" ({info['kind']})",
        f"Digest:        {info['digest']}",
    ]
    if info["index_digest"]:
        out.append(f"Index:         {info['index_digest']}")
    if len(info.get("platforms") or []) > 1:
        out.append(f"Platforms:     {', '.join(info['platforms'])} (--platform picks one)")
    out += [
        f"Config:        {info['config_digest']}",
        f"Created:       {info['created'] or 'N/A'}",
        f"Platform:      {info['os']}/{info['architecture']}" + (f"/{info['variant']}" if info["variant"] else ""),
    ]
    if info["author"]:
        out.append(f"Author:        {info['author']}")
    if c["user"]:
        out.append(f"User:          {c['user']}")
    if c["entrypoint"]:
        out.append(f"Entrypoint:    {json.dumps(c['entrypoint'])}")
    if c["cmd"]:
        out.append(f"Cmd:           {json.dumps(c['cmd'])}")
    if c["working_dir"]:
        out.append(f"WorkingDir:    {c['working_dir']}")
    for title, values in (("Env", c["env"]), ("Labels", [f"{k}={v}" for k, v in sorted(c["labels"].items())]),
                          ("Annotations", [f"{k}={v}" for k, v in sorted(info["annotations"].items())]),
                          ("ExposedPorts", c["exposed_ports"]), ("Volumes", c["volumes"])):
        if values:
            out.append(f"{title}:")
            out += [f"  {v}" for v in values]
    out.append(f"Layers:        {len(info['layers'])} ({human_size(info['size'])})")
    out += [f"  {d['digest']}  {human_size(d['size']):>8}  {d['media_type']}" for d in info["layers"]]
    p = info.get("packages")
    if p is not None:
        if p["format"]:
            name = p["os_release"].get("PRETTY_NAME")
            out.append(f"Packages:      {p['count']} ({p['format']})" + (f", {name}" if name else ""))
            out += [f"  {x['name']} {x['version']} {x['architecture']}" for x in p["packages"]]
        else:
            out.append(f"Packages:      unknown ({p['note']})")
    return out
