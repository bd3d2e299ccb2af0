"""The deb backend's two entry points (see rootfs.backend)."""

from rootfs.deb.install import install
from rootfs.deb.resolve import resolve

__all__ = ["install", "resolve"]
