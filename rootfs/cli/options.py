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
MirrorOpt = Annotated[Optional[str], typer.Option("--mirror", help="Repository URL (default: recipe, ROOTFS_MIRROR, host apt).")]
VariantOpt = Annotated[Optional[str], typer.Option("--variant", help="essential, minbase, buildd or default.")]
IncludeOpt = Annotated[Optional[list[str]], typer.Option("--include", help="Extra packages (comma separated, repeatable).")]
ExcludeOpt = Annotated[Optional[list[str]], typer.Option("--exclude", help="Packages to leave out (comma separated, repeatable).")]
ComponentsOpt = Annotated[Optional[str], typer.Option("--components", help="Archive components, comma separated.")]
ArchOpt = Annotated[Optional[str], typer.Option("--arch", help="Target architecture (default: the host's).")]
KeyringOpt = Annotated[Optional[Path], typer.Option("--keyring", help="Keyring to verify the repository with.")]
NoGpgOpt = Annotated[bool, typer.Option("--no-check-gpg", help="DANGEROUS: accept unsigned or badly signed metadata.")]
IgnoreValidOpt = Annotated[bool, typer.Option("--ignore-valid-until", help="Accept an expired Release (snapshot mirrors).")]
RepoOpt = Annotated[Optional[list[str]], typer.Option("--repo", help="rpm-md repository URL (repeatable).")]
GpgKeyOpt = Annotated[Optional[Path], typer.Option("--gpgkey", help="rpm: the key packages must be signed with (and repomd.xml, with --repo-gpgcheck).")]
RepoGpgcheckOpt = Annotated[bool, typer.Option("--repo-gpgcheck", help="rpm: check repomd.xml's signature too (dnf's repo_gpgcheck).")]
WeakDepsOpt = Annotated[Optional[bool], typer.Option("--weak-deps/--no-weak-deps", help="rpm: install Recommends/Supplements.")]
NoDepsOpt = Annotated[bool, typer.Option("--nodeps", help="rpm: exactly the named packages, none of their dependencies.")]
ModuleOpt = Annotated[Optional[list[str]], typer.Option("--module", help="rpm: enable a module stream NAME:STREAM (repeatable).")]


def selection_from(recipe, *, mirror=None, variant=None, include=None, exclude=None, components=None,
               arch=None, keyring=None, repo=None, packages=(), weak_deps=None, nodeps=False, modules=None):
    from rootfs.pipeline.stages import Selection, apply_selection

    if keyring is not None and not keyring.is_file():
        raise UsageError(f"keyring {keyring} does not exist")
    sel = Selection(
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
    )
    return apply_selection(recipe, sel)


ArtifactFormatOpt = Annotated[Optional[list[str]], typer.Option(
    "--format", "-f", help="tar, tar.gz, tar.zst, tar.xz, oci, oci-archive, docker-archive, ext2, ext4, squashfs, dir (repeatable).")]
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
