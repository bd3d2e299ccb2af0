"""The command line: commands and their options, nothing else.

Every command turns a RootfsError into one sentence on stderr and its
documented exit code (rootfs.model.errors); only bugs print tracebacks.
"""

from __future__ import annotations

# Each module registers its commands; help lists them in this order.
from rootfs.cli import appliance, build, cache, images  # noqa: F401, I001
from rootfs.cli.app import app, main

__all__ = ["app", "main"]
