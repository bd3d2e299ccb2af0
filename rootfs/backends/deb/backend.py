"""The deb backend's entry points (see rootfs.backends).

Imported lazily so that resolving never loads the installer and its tools.
"""


def resolve(recipe, opts, downloader):
    from rootfs.backends.deb.resolve import resolve as _resolve

    return _resolve(recipe, opts, downloader)


def install(lock, files, root, opts):
    from rootfs.backends.deb.install import install as _install

    return _install(lock, files, root, opts)


def locked(lock, recipe, sources_given, opts):
    from rootfs.backends.deb.resolve import locked as _locked

    return _locked(lock, recipe, sources_given, opts)
