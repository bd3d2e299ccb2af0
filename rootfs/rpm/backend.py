"""The rpm backend's two entry points (see rootfs.backend).

Imported lazily so that resolving never loads the installer and its tools.
"""


def resolve(recipe, opts, downloader):
    from rootfs.rpm.resolve import resolve as _resolve

    return _resolve(recipe, opts, downloader)


def install(lock, files, root, opts):
    from rootfs.rpm.install import install as _install

    return _install(lock, files, root, opts)
