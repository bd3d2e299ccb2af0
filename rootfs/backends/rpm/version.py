"""rpm's version order (rpmvercmp) and the EVR range test behind every
Requires/Provides/Conflicts/Obsoletes match.

This follows rpm 4.18's rpmvercmp() byte for byte: segments of ASCII digits
or ASCII letters, everything else a separator; `~` sorts before anything
(even the end), `^` after the end but before anything else; numbers beat
letters; a longer number (leading zeros stripped) is bigger.
"""

from __future__ import annotations

from typing import NamedTuple

# Dependency sense flags as rpm stores them (rpmds.h).
LESS = 2
GREATER = 4
EQUAL = 8
_CMP = LESS | GREATER | EQUAL

FLAG_NAMES = {"LT": LESS, "GT": GREATER, "EQ": EQUAL, "LE": LESS | EQUAL, "GE": GREATER | EQUAL}
OPERATORS = {"<": LESS, ">": GREATER, "=": EQUAL, "==": EQUAL, "<=": LESS | EQUAL, ">=": GREATER | EQUAL,
             "=<": LESS | EQUAL, "=>": GREATER | EQUAL}
_OP_TEXT = {LESS: "<", GREATER: ">", EQUAL: "=", LESS | EQUAL: "<=", GREATER | EQUAL: ">="}


def _isdigit(c: str) -> bool:
    return "0" <= c <= "9"


def _isalpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def vercmp(a: str, b: str) -> int:
    """-1, 0 or 1, exactly as rpm's rpmvercmp(a, b)."""
    if a == b:
        return 0
    i = j = 0
    la, lb = len(a), len(b)
    while i < la or j < lb:
        while i < la and not (_isdigit(a[i]) or _isalpha(a[i]) or a[i] in "~^"):
            i += 1
        while j < lb and not (_isdigit(b[j]) or _isalpha(b[j]) or b[j] in "~^"):
            j += 1
        ca = a[i] if i < la else ""
        cb = b[j] if j < lb else ""
        if ca == "~" or cb == "~":
            if ca != "~":
                return 1
            if cb != "~":
                return -1
            i += 1
            j += 1
            continue
        if ca == "^" or cb == "^":
            if not ca:
                return -1
            if not cb:
                return 1
            if ca != "^":
                return 1
            if cb != "^":
                return -1
            i += 1
            j += 1
            continue
        if not (ca and cb):
            break
        si, sj = i, j
        if _isdigit(ca):
            while i < la and _isdigit(a[i]):
                i += 1
            while j < lb and _isdigit(b[j]):
                j += 1
            isnum = True
        else:
            while i < la and _isalpha(a[i]):
                i += 1
            while j < lb and _isalpha(b[j]):
                j += 1
            isnum = False
        sa, sb = a[si:i], b[sj:j]
        if not sa:
            return -1  # cannot happen: ca starts a segment
        if not sb:
            return 1 if isnum else -1
        if isnum:
            sa = sa.lstrip("0")
            sb = sb.lstrip("0")
            if len(sa) != len(sb):
                return 1 if len(sa) > len(sb) else -1
        if sa != sb:
            return 1 if sa > sb else -1
    a_end, b_end = i >= la, j >= lb
    if a_end and b_end:
        return 0
    return -1 if a_end else 1


class EVR(NamedTuple):
    epoch: str  # "" when not given (a dependency without epoch)
    version: str
    release: str  # "" when not given

    def __str__(self) -> str:
        s = f"{self.epoch}:" if self.epoch not in ("", "0") else ""  # as rpm and dnf print them
        s += self.version
        if self.release:
            s += f"-{self.release}"
        return s

    def full(self) -> str:
        """epoch:version-release with an explicit epoch, as the lock writes it."""
        s = f"{self.epoch or '0'}:{self.version}"
        return f"{s}-{self.release}" if self.release else s


def parse_evr(text: str) -> EVR:
    """`[epoch:]version[-release]` as rpm splits it."""
    epoch = ""
    rest = text
    colon = text.find(":")
    if colon >= 0 and text[:colon].isdigit():
        epoch, rest = text[:colon], text[colon + 1:]
    version, sep, release = rest.rpartition("-")
    if not sep:
        version, release = rest, ""
    return EVR(epoch, version, release)


def evrcmp(a: EVR, b: EVR) -> int:
    """rpmverCmp: a missing epoch is 0; releases count only when both have one."""
    rc = vercmp(a.epoch or "0", b.epoch or "0")
    if rc:
        return rc
    rc = vercmp(a.version, b.version)
    if rc:
        return rc
    if a.release and b.release:
        return vercmp(a.release, b.release)
    return 0


def ranges_overlap(a_flags: int, a_evr: EVR | None, b_flags: int, b_evr: EVR | None) -> bool:
    """rpmdsCompare: do the ranges `a_flags a_evr` and `b_flags b_evr` meet?
    An unversioned side meets everything."""
    a_flags &= _CMP
    b_flags &= _CMP
    if not a_flags or not b_flags or a_evr is None or b_evr is None:
        return True
    sense = evrcmp(a_evr, b_evr)
    if sense < 0:
        return bool(a_flags & GREATER or b_flags & LESS)
    if sense > 0:
        return bool(a_flags & LESS or b_flags & GREATER)
    return bool(
        (a_flags & EQUAL and b_flags & EQUAL)
        or (a_flags & LESS and b_flags & LESS)
        or (a_flags & GREATER and b_flags & GREATER)
    )


def op_text(flags: int) -> str:
    return _OP_TEXT.get(flags & _CMP, "")
