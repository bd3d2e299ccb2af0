"""Modular repositories: which module streams are active, and what that
hides, as dnf 4 decides it.

A repository with `modules` metadata (modules.yaml: modulemd documents,
one per version and context of a stream, and modulemd-defaults naming
default streams and profiles) carries packages that belong to module
streams. A stream is active when it is enabled (the recipe's `modules`, or
a `@name:stream` request) or, for a module with none enabled, when it is
the default; a stream that an active one requires becomes active with it.
The packages of inactive streams are hidden, and so is every non-modular
package that has the name of a package of an active stream. CentOS Stream
9's AppStream, for one, ships nodejs 20 and php 8.2 only as non-default
streams, so `nodejs` there means the non-modular one until `nodejs:20` is
enabled.

dnf takes every version of an active stream (each version with the one
context whose requirements hold); so does this. A module a stream requires
but that no repository offers (`platform`, the distribution itself) counts
as met.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO

from rootfs.model.errors import ResolveError, UsageError, VerifyError


@dataclass(frozen=True)
class ModuleDoc:
    """One modulemd document: one version and context of a stream."""

    name: str
    stream: str
    version: int
    context: str
    artifacts: tuple[str, ...]  # NEVRAs, name-epoch:version-release.arch
    profiles: dict[str, tuple[str, ...]]
    # Alternatives, any one of which must hold: module -> acceptable streams
    # (empty: any; "-s": any but s).
    requires: tuple[dict[str, tuple[str, ...]], ...]

    @property
    def name_stream(self) -> str:
        return f"{self.name}:{self.stream}"


@dataclass
class Modules:
    docs: list[ModuleDoc] = field(default_factory=list)
    defaults: dict[str, str] = field(default_factory=dict)  # module -> default stream
    default_profiles: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    def merge(self, other: Modules) -> None:
        self.docs.extend(other.docs)
        self.docs.sort(key=_doc_order)
        for k, v in other.defaults.items():
            self.defaults.setdefault(k, v)
        for k, p in other.default_profiles.items():
            self.default_profiles.setdefault(k, p)

    def __bool__(self) -> bool:
        return bool(self.docs)

    def streams_of(self, name: str) -> list[str]:
        return list(dict.fromkeys(d.stream for d in self.docs if d.name == name))

    def stream_for(self, name: str, stream: str, enabled: dict[str, str], spec: str) -> str:
        """The stream `@name` or `@name:stream` means: the one given, else the
        enabled one, else the default, else the only one."""
        streams = self.streams_of(name)
        if stream:
            if stream not in streams:
                raise ResolveError(f"{spec}: module {name} has no stream {stream!r} "
                                   f"(streams: {', '.join(streams)})")
            return stream
        if name in enabled:
            return enabled[name]
        if name in self.defaults:
            return self.defaults[name]
        if len(streams) == 1:
            return streams[0]
        raise ResolveError(f"{spec} matches {len(streams)} streams of module {name} ({', '.join(streams)}), "
                           f"none of them enabled or default; name one, as in @{name}:{streams[0]}")

    # -- which documents are active --------------------------------------------------

    def active(self, enabled: dict[str, str]) -> list[ModuleDoc]:
        """The active documents: every version of each enabled stream, of each
        default stream of a module with none enabled, and of the streams
        those require."""
        known = {d.name for d in self.docs}
        for name, stream in enabled.items():
            if name not in known:
                raise UsageError(f"no repository has a module named {name!r} (enabling {name}:{stream})")
            if stream not in self.streams_of(name):
                raise UsageError(f"module {name} has no stream {stream!r} "
                                 f"(streams: {', '.join(self.streams_of(name))})")
        chosen: dict[str, str] = dict(enabled)
        required = set(enabled)
        for name, stream in self.defaults.items():
            if name not in chosen and name in known and stream in self.streams_of(name):
                chosen[name] = stream
        while True:
            docs, wanted = self._pick(chosen, known)
            added = {m: s for m, s in wanted.items() if m not in chosen}
            if not added:
                break
            chosen.update(added)
        by_stream: dict[str, list[ModuleDoc]] = {}
        for d in docs:
            by_stream.setdefault(d.name, []).append(d)
        for name in sorted(required):
            if name not in by_stream:
                raise ResolveError(f"module stream {name}:{chosen[name]} cannot be enabled: "
                                   f"{self._unmet(name, chosen[name], chosen, known)}")
        return docs

    def _pick(self, chosen: dict[str, str], known: set[str]) -> tuple[list[ModuleDoc], dict[str, str]]:
        """For each chosen stream, each version's first context whose
        requirements the chosen streams meet; and the streams those
        requirements name that are not chosen yet."""
        out: list[ModuleDoc] = []
        wanted: dict[str, str] = {}
        taken: set[tuple[str, int]] = set()
        for d in self.docs:
            if chosen.get(d.name) != d.stream or (d.name, d.version) in taken:
                continue
            alt = self._holds(d, chosen, known, wanted)
            if alt:
                out.append(d)
                taken.add((d.name, d.version))
        return out, wanted

    def _holds(self, d: ModuleDoc, chosen: dict[str, str], known: set[str], wanted: dict[str, str]) -> bool:
        if not d.requires:
            return True
        for alternative in d.requires:
            missing = {}
            ok = True
            for mod, streams in alternative.items():
                if mod not in known:
                    continue
                if mod in chosen:
                    if not _stream_ok(chosen[mod], streams):
                        ok = False
                        break
                    continue
                offered = [s for s in self.streams_of(mod) if _stream_ok(s, streams)]
                if not offered:
                    ok = False
                    break
                missing[mod] = offered[0]
            if ok:
                for mod, s in missing.items():
                    wanted.setdefault(mod, s)
                return not missing
        return False

    def _unmet(self, name: str, stream: str, chosen: dict[str, str], known: set[str]) -> str:
        reasons = []
        for d in self.docs:
            if d.name == name and d.stream == stream:
                for alternative in d.requires:
                    for mod, streams in alternative.items():
                        if mod in known and not any(_stream_ok(s, streams) for s in
                                                    ([chosen[mod]] if mod in chosen else self.streams_of(mod))):
                            reasons.append(f"it requires {mod}:{','.join(streams) or '*'}")
        return "; ".join(dict.fromkeys(reasons)) or "its requirements are not met"

    # -- what the active set hides -----------------------------------------------------

    def hidden(self, active: list[ModuleDoc]) -> tuple[set[str], set[str]]:
        """(NEVRAs of inactive streams, names that active streams take over)."""
        include = {a for d in active for a in d.artifacts}
        exclude = {a for d in self.docs for a in d.artifacts} - include
        names = {nevra_name(a) for a in include if not a.endswith((".src", ".nosrc"))}
        return exclude, names

    def modular(self) -> set[str]:
        return {a for d in self.docs for a in d.artifacts}


def _stream_ok(stream: str, accepted: tuple[str, ...]) -> bool:
    if not accepted:
        return True
    positive = [s for s in accepted if not s.startswith("-")]
    if any(s[1:] == stream for s in accepted if s.startswith("-")):
        return False
    return not positive or stream in positive


def nevra_name(nevra: str) -> str:
    # name-epoch:version-release.arch: the name ends before the last two dashes.
    return nevra.rsplit("-", 2)[0]


def nevra_key(name: str, evr: str, arch: str) -> str:
    """A package's NEVRA as modulemd artifacts spell it (the epoch always given)."""
    return f"{name}-{evr if ':' in evr else '0:' + evr}.{arch}"


def parse_modules(stream: IO[bytes], where: str) -> Modules:
    """The modulemd and modulemd-defaults documents of one modules.yaml."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        docs = [d for d in yaml.load_all(stream, Loader=loader) if isinstance(d, dict)]
    except yaml.YAMLError as exc:
        raise VerifyError(f"{where} is not valid YAML: {exc}") from None
    out = Modules()

    def mapping(value, what: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise VerifyError(f"{where}: {what} is not a mapping")
        return value

    def seq(value, what: str) -> list | tuple:
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            raise VerifyError(f"{where}: {what} is not a list")
        return value

    for doc in docs:
        data = doc.get("data") or {}
        if not isinstance(data, dict):
            continue
        if doc.get("document") == "modulemd-defaults":
            module = str(data.get("module"))
            if data.get("stream") is not None:
                out.defaults[module] = str(data["stream"])
            for stream, names in mapping(data.get("profiles"), f"the defaults of {module:.80}: profiles").items():
                out.default_profiles[(module, str(stream))] = tuple(str(n) for n in seq(names, "a profile"))
        elif doc.get("document") == "modulemd":
            name = f"module {str(data.get('name')):.80}"
            profiles = {str(k): tuple(str(r) for r in seq(mapping(v, f"{name}: a profile").get("rpms"),
                                                          f"{name}: a profile's rpms"))
                        for k, v in mapping(data.get("profiles"), f"{name}: profiles").items()}
            requires = tuple(
                {str(m): tuple(str(s) for s in seq(streams, f"{name}: required streams"))
                 for m, streams in mapping(dep.get("requires"), f"{name}: requires").items()}
                for dep in seq(data.get("dependencies"), f"{name}: dependencies") if isinstance(dep, dict))
            try:
                version = int(data.get("version") or 0)
            except (TypeError, ValueError):
                raise VerifyError(f"{where}: {name} has a version that is not a number") from None
            out.docs.append(ModuleDoc(
                name=str(data.get("name")), stream=str(data.get("stream")),
                version=version, context=str(data.get("context") or ""),
                artifacts=tuple(str(r) for r in seq(mapping(data.get("artifacts"), f"{name}: artifacts").get("rpms"),
                                                    f"{name}: artifacts")),
                profiles=profiles, requires=requires))
    out.docs.sort(key=_doc_order)
    return out


def _doc_order(d: ModuleDoc) -> tuple:
    # Newest version first, as dnf's module solver prefers it.
    return (d.name, d.stream, -d.version, d.context)
