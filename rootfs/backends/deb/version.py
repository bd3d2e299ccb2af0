"""Debian version order (python-debian's implementation), cached: the
resolver compares the same few versions over and over."""

from __future__ import annotations

import functools

from debian.debian_support import version_compare


@functools.lru_cache(maxsize=65536)
def compare(a: str, b: str) -> int:
    """<0, 0 or >0 as a sorts before, equal to or after b in Debian order."""
    if a == b:
        return 0
    return version_compare(a, b)


sort_key = functools.cmp_to_key(compare)


def satisfies(version: str, op: str, wanted: str) -> bool:
    """Whether `version` meets the relation `(op wanted)`."""
    c = compare(version, wanted)
    if op == ">=":
        return c >= 0
    if op == "<=":
        return c <= 0
    if op == ">>":
        return c > 0
    if op == "<<":
        return c < 0
    if op == "=":
        return c == 0
    # "<" and ">" are the obsolete spellings of <= and >= (Policy 7.1).
    if op == "<":
        return c <= 0
    if op == ">":
        return c >= 0
    raise ValueError(f"unknown version relation {op!r}")
