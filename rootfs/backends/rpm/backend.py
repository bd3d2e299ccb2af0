"""The rpm backend's entry points (see rootfs.backends).

Imported lazily so that resolving never loads the installer and its tools.
"""


def resolve(recipe, opts, downloader):
    from rootfs.backends.rpm.resolve import resolve as _resolve

    return _resolve(recipe, opts, downloader)


def install(lock, files, root, opts):
    from rootfs.backends.rpm.install import install as _install

    return _install(lock, files, root, opts)


def locked(lock, recipe, sources_given, opts):
    """An rpm lock is built as it was written: its packages' URLs name the
    repositories they came from, and no option here moves them."""
    from rootfs.model.errors import UsageError

    if sources_given:
        raise UsageError("--locked with new sources is not supported for rpm locks")
    return lock, {}
