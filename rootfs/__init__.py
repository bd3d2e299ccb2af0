"""rootfs: minimal, verified, reproducible base images from distribution packages."""

__version__ = "0.1.0"
