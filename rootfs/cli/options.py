"""Options several commands share, and the checks that turn them into
the pipeline's inputs."""


from pathlib import Path
from typing import Annotated, Optional

import typer

from rootfs.backends import Mode
from rootfs.model.errors import UsageError
from rootfs.model.recipe import split_list
from rootfs.net.fetch import default_cache_dir

# Options shared by the commands that select packages.
MirrorOpt = Annotated[Optional[list[str]], typer.Option("--mirror", help="The distribution's mirror (default: recipe, ROOTFS_MIRROR, host apt).")]
SecurityMirrorOpt = Annotated[Optional[str], typer.Option("--security-mirror", help="The distribution's security mirror (default: recipe, ROOTFS_SECURITY_MIRROR, host apt).")]
SourceOpt = Annotated[Optional[list[str]], typer.Option("--source", help="Another apt source: 'deb [signed-by=K] URI SUITE COMP...', a deb822 stanza, or a .list/.sources file (repeatable).")]
NoUpdatesOpt = Annotated[bool, typer.Option("--no-updates", help="The release as it shipped: leave out the recipe's update and security suites.")]
ImageMirrorOpt = Annotated[Optional[str], typer.Option("--image-mirror", help="The mirror the image's own apt sources name (default: the one built from).")]
ImageSecurityMirrorOpt = Annotated[Optional[str], typer.Option("--image-security-mirror", help="The security mirror the image's own apt sources name.")]
VariantOpt = Annotated[Optional[str], typer.Option("--variant", help="essential, minbase, buildd or default.")]
IncludeOpt = Annotated[Optional[list[str]], typer.Option("--include", help="Extra packages (comma separated, repeatable).")]
ExcludeOpt = Annotated[Optional[list[str]], typer.Option("--exclude", help="Packages to leave out (comma separated, repeatable).")]
ComponentsOpt = Annotated[Optional[str], typer.Option("--components", help="Archive components, comma separated.")]
ArchOpt = Annotated[Optional[str], typer.Option("--arch", help="Target architecture (default: the host's).")]
ArchesOpt = Annotated[Optional[list[str]], typer.Option("--arch", help="Target architecture(s): comma separated or repeated, several make one multi-platform image (default: the host's).")]
ImagePlatformOpt = Annotated[Optional[str], typer.Option("--platform", help="The platform to read of a multi-platform image: linux/arm64, linux/arm/v7, linux/386... (default: the host's, else the first).")]
PlatformOpt = Annotated[Optional[list[str]], typer.Option("--platform", help="Target platform in the OCI spelling, linux/ARCH[/VARIANT] (linux/arm64/v8, linux/arm/v7, linux/386; repeatable).")]
KeyringOpt = Annotated[Optional[Path], typer.Option("--keyring", help="Keyring (file, .asc or directory) to verify the recipe's sources with.")]
NoGpgOpt = Annotated[bool, typer.Option("--no-check-gpg", help="DANGEROUS: accept unsigned or badly signed metadata.")]
IgnoreValidOpt = Annotated[bool, typer.Option("--ignore-valid-until", help="Accept an expired Release (snapshot mirrors).")]
RepoOpt = Annotated[Optional[list[str]], typer.Option("--repo", help="rpm-md repository URL (repeatable).")]
GpgKeyOpt = Annotated[Optional[Path], typer.Option("--gpgkey", help="rpm: the key packages must be signed with (and repomd.xml, with --repo-gpgcheck).")]
RepoGpgcheckOpt = Annotated[bool, typer.Option("--repo-gpgcheck", help="rpm: check repomd.xml's signature too (dnf's repo_gpgcheck).")]
WeakDepsOpt = Annotated[Optional[bool], typer.Option("--weak-deps/--no-weak-deps", help="rpm: install Recommends/Supplements.")]
NoDepsOpt = Annotated[bool, typer.Option("--nodeps", help="rpm: exactly the named packages, none of their dependencies.")]
ModuleOpt = Annotated[Optional[list[str]], typer.Option("--module", help="rpm: enable a module stream NAME:STREAM (repeatable).")]


def architectures_of(recipe, arch, platform) -> tuple[str, ...]:
    """--arch and --platform as the recipe's backend spells them ((): the recipe's own)."""
    from rootfs.model.arch import architectures

    return architectures(arch, platform, recipe.backend)


def selection_from(recipe, **options):
    """The recipe with the command line's selection options applied."""
    from rootfs.pipeline.stages import apply_selection

    return apply_selection(recipe, selection(**options))


def selection(*, mirror=None, variant=None, include=None, exclude=None, components=None,
              arch=None, keyring=None, repo=None, packages=(), weak_deps=None, nodeps=False, modules=None,
              source=None, security_mirror=None, no_updates=False, image_mirror=None, image_security_mirror=None):
    """The command line's selection options, checked."""
    from rootfs.pipeline.stages import Selection

    if isinstance(mirror, (list, tuple)):
        if len(mirror) > 1:
            raise UsageError("--mirror names the distribution's mirror once; add other repositories with --source")
        mirror = mirror[0] if mirror else None
    if keyring is not None:
        from rootfs.net.openpgp import check_keyring

        check_keyring(keyring)
    return Selection(
        mirror=mirror,
        variant=variant,
        include=tuple(x for v in include or () for x in split_list(v)),
        exclude=tuple(x for v in exclude or () for x in split_list(v)),
        components=split_list(components),
        arch=arch,
        keyring=str(keyring) if keyring else None,
        repos=tuple(repo or ()),
        packages=tuple(packages),
        weak_deps=weak_deps,
        nodeps=nodeps or None,
        modules=tuple(x for v in modules or () for x in split_list(v)),
        sources=tuple(source or ()),
        security_mirror=security_mirror,
        updates=False if no_updates else None,
        image_mirror=image_mirror,
        image_security_mirror=image_security_mirror,
    )


AllowOpt = Annotated[Optional[list[str]], typer.Option(
    "--allow", metavar="RULE", help="Waive a payload/image rule: setid-writable, device, fifo or socket (repeatable, or comma separated).")]


def check_allow(values):
    from rootfs.host.policy import Policy

    return Policy.allowing(values)


ArtifactFormatOpt = Annotated[Optional[list[str]], typer.Option(
    "--format", "-f", help="tar, tar.gz, tar.zst, tar.xz, oci, oci-archive, docker-archive, ext2, ext4, squashfs, dir (repeatable; default: from -o's suffix, else dir).")]
TagOpt = Annotated[Optional[str], typer.Option("--tag", help="Image NAME[:TAG] (default: the recipe's).")]


def check_mode(mode: str | None) -> Mode:
    return Mode.parse(mode)



CredsOpt = Annotated[Optional[str], typer.Option("--creds", help="USER:PASSWORD for the registry (default: auth.json / docker config.json).")]
CaCertOpt = Annotated[Optional[Path], typer.Option("--ca-cert", help="Trust this CA (PEM) besides the system CAs.")]
InsecureOpt = Annotated[bool, typer.Option("--insecure", help="Plain HTTP, no TLS (never implied, not even for 127.0.0.1).")]
RetriesOpt = Annotated[int, typer.Option("--retries", min=0, max=20, help="Attempts after a reset, timeout or 5xx.")]
FormatOpt = Annotated[str, typer.Option("--format", help="table or json.")]


CertDirOpt = Annotated[Optional[Path], typer.Option("--cert-dir", help="certs.d-style directory: *.crt CAs, *.cert/*.key client certificates.")]


def registry_options(creds, ca_cert, insecure, retries, cache_dir=None, cert_dir=None):
    from rootfs.registry import RegistryOptions, parse_creds

    if ca_cert is not None and not ca_cert.is_file():
        raise UsageError(f"CA certificate {ca_cert} does not exist")
    if cert_dir is not None and not cert_dir.is_dir():
        raise UsageError(f"certificate directory {cert_dir} does not exist")
    if (ca_cert is not None or cert_dir is not None) and insecure:
        raise UsageError("--ca-cert/--cert-dir are for TLS and --insecure turns TLS off; pass one of them")
    return RegistryOptions(creds=parse_creds(creds) if creds is not None else None, ca_cert=ca_cert,
                           cert_dir=cert_dir, insecure=insecure, retries=retries,
                           cache_dir=cache_dir or default_cache_dir())


def check_table_format(fmt: str) -> None:
    if fmt not in ("table", "json"):
        raise UsageError(f"unknown --format {fmt!r} (known: table, json)")


CacheDirOpt = Annotated[Optional[Path], typer.Option("--cache-dir", help="Package cache (default: XDG cache).")]


# Hooks as mmdebstrap has them (see rootfs.pipeline.hooks).
HOOK_OPTIONS = ("--setup-hook", "--extract-hook", "--essential-hook", "--customize-hook", "--hook-dir")
SetupHookOpt = Annotated[Optional[list[str]], typer.Option("--setup-hook", help="Run COMMAND with the empty root as $1, before any package (repeatable).")]
ExtractHookOpt = Annotated[Optional[list[str]], typer.Option("--extract-hook", help="Run COMMAND after the packages are extracted, before any is configured.")]
EssentialHookOpt = Annotated[Optional[list[str]], typer.Option("--essential-hook", help="Run COMMAND after the essential packages are configured.")]
CustomizeHookOpt = Annotated[Optional[list[str]], typer.Option("--customize-hook", help="Run COMMAND after everything is installed (copy-in, tar-out, ... special hooks too).")]
HookDirOpt = Annotated[Optional[list[str]], typer.Option("--hook-dir", "--hook-directory", help="Run the setup*, extract*, essential*, customize* executables of DIR.")]
AptOptOpt = Annotated[Optional[list[str]], typer.Option("--aptopt", help="deb: an apt option (or a file) for the image's /etc/apt/apt.conf.d/99mmdebstrap.")]
DpkgOptOpt = Annotated[Optional[list[str]], typer.Option("--dpkgopt", help="deb: a dpkg option (or a file) for /etc/dpkg/dpkg.cfg.d/99mmdebstrap; path-exclude applies while building.")]
SlimOpt = Annotated[bool, typer.Option("--slim", help="deb: leave out documentation, man pages, locales and info, now and in later installs.")]
ContainerProfileOpt = Annotated[Optional[bool], typer.Option("--container-profile/--no-container-profile", help="deb: apt and dpkg set up for containers, as the official Debian images (default: the recipe's).")]


def hooks_in_order(argv: list[str], given: dict[str, list[str]], cwd: str) -> list:
    """The hooks of the command line in the order they were given (the
    order matters within a point, and --hook-dir scripts take their place
    among the --*-hook options as mmdebstrap's do). Typer hands each option
    its values in order; the command line says how they interleave."""
    from rootfs.model.customize import Hook, check_hook, hook_dir

    sequence = []
    for i, word in enumerate(argv):
        for opt in HOOK_OPTIONS + ("--hook-directory",):
            if word == opt or word.startswith(opt + "="):
                sequence.append("--hook-dir" if opt == "--hook-directory" else opt)
    counts = {opt: len(given.get(opt) or []) for opt in HOOK_OPTIONS}
    if any(sequence.count(opt) != n for opt, n in counts.items()):
        sequence = [opt for opt in HOOK_OPTIONS for _ in range(counts[opt])]
    taken = {opt: 0 for opt in HOOK_OPTIONS}
    hooks = []
    for opt in sequence:
        value = (given.get(opt) or [])[taken[opt]]
        taken[opt] += 1
        if opt == "--hook-dir":
            from rootfs import ui

            hooks.extend(hook_dir(value, cwd, warn=ui.warn))
        else:
            hooks.append(check_hook(Hook(opt[2:].split("-")[0], value, cwd)))
    return hooks


def customize_from(recipe, *, hooks=(), aptopt=None, dpkgopt=None, slim=False, container=None):
    """The recipe with the command line's hooks and deb options; an option
    the recipe's backend has no use for is refused, not ignored."""
    from dataclasses import fields
    from pathlib import Path as _Path

    out = recipe
    if hooks:
        out = out.replace(customize=out.customize.with_hooks(hooks))
    changes: dict = {}
    if aptopt or dpkgopt:
        from rootfs.backends.deb.settings import option_text

        if aptopt:
            changes["aptopt"] = ("--aptopt", getattr(recipe.settings, "aptopt", ())
                                 + tuple(option_text(o, _Path.cwd(), True) for o in aptopt))
        if dpkgopt:
            changes["dpkgopt"] = ("--dpkgopt", getattr(recipe.settings, "dpkgopt", ())
                                  + tuple(option_text(o, _Path.cwd(), False) for o in dpkgopt))
    if slim:
        changes["slim"] = ("--slim", True)
    if container is not None:
        changes["container"] = ("--container-profile" if container else "--no-container-profile", container)
    known = {f.name for f in fields(recipe.settings)}
    for key, (option, _) in changes.items():
        if key not in known:
            raise UsageError(f"{option} does not apply to {recipe.backend} recipes")
    if changes:
        out = out.with_settings(**{k: v for k, (_, v) in changes.items()})
    return out
