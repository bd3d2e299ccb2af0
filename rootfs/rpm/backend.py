"""The rpm backend's two entry points (see rootfs.backend)."""

from rootfs.rpm.install import install
from rootfs.rpm.resolve import resolve

__all__ = ["install", "resolve"]
