"""License names as packages state them -> SPDX license expressions.

Debian's copyright files use the copyright-format short names (`GPL-2+`,
`Expat`, `BSD-3-clause`), rpm's License tag either SPDX expressions (Fedora
since 38) or the older Callaway names (`GPLv2+`, `ASL 2.0`). A name we can
map with certainty becomes its SPDX id; anything else becomes a
`LicenseRef-` so the SBOM stays valid without claiming more than the
package said.
"""

from __future__ import annotations

import re

# SPDX license list ids we emit as themselves (compared case-insensitively).
# Only ids on the SPDX list: tests check every one against a validator.
SPDX_IDS = (
    "0BSD", "AFL-2.1", "AFL-3.0", "AGPL-3.0-only", "AGPL-3.0-or-later", "Apache-1.1", "Apache-2.0",
    "APSL-2.0", "Artistic-1.0", "Artistic-1.0-Perl", "Artistic-2.0", "Beerware", "BSD-1-Clause",
    "BSD-2-Clause", "BSD-3-Clause", "BSD-4-Clause", "BSD-Source-Code", "BSL-1.0", "bzip2-1.0.6",
    "CC-BY-3.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC0-1.0", "CDDL-1.0", "CDDL-1.1",
    "CPL-1.0", "curl", "ECL-2.0", "EPL-1.0", "EPL-2.0", "EUPL-1.2", "FSFAP", "FSFUL", "FSFULLR",
    "FTL", "GFDL-1.1-only", "GFDL-1.1-or-later", "GFDL-1.2-only", "GFDL-1.2-or-later",
    "GFDL-1.3-only", "GFDL-1.3-or-later", "GPL-1.0-only", "GPL-1.0-or-later", "GPL-2.0-only",
    "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later", "HPND", "ICU", "IJG", "ISC",
    "LGPL-2.0-only", "LGPL-2.0-or-later", "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only",
    "LGPL-3.0-or-later", "Libpng", "libtiff", "LPPL-1.3c", "MIT", "MIT-0", "MPL-1.1", "MPL-2.0",
    "MS-PL", "NCSA", "NTP", "OFL-1.1", "OLDAP-2.8", "OpenSSL", "PHP-3.01", "PostgreSQL", "PSF-2.0",
    "Python-2.0", "Qhull", "Ruby", "Sleepycat", "SSLeay-standalone", "TCL", "Unicode-DFS-2016",
    "Unicode-3.0", "Unlicense", "UPL-1.0", "Vim", "W3C", "WTFPL", "X11", "Xnet", "Zlib", "ZPL-2.1",
)
_BY_LOWER = {i.lower(): i for i in SPDX_IDS}

# Names that are not SPDX ids but denote one exactly.
ALIASES = {
    # Debian copyright-format short names
    "gpl-1": "GPL-1.0-only", "gpl-1+": "GPL-1.0-or-later",
    "gpl-2": "GPL-2.0-only", "gpl-2+": "GPL-2.0-or-later",
    "gpl-3": "GPL-3.0-only", "gpl-3+": "GPL-3.0-or-later",
    "lgpl-2": "LGPL-2.0-only", "lgpl-2+": "LGPL-2.0-or-later",
    "lgpl-2.1": "LGPL-2.1-only", "lgpl-2.1+": "LGPL-2.1-or-later",
    "lgpl-3": "LGPL-3.0-only", "lgpl-3+": "LGPL-3.0-or-later",
    "agpl-3": "AGPL-3.0-only", "agpl-3+": "AGPL-3.0-or-later",
    "gfdl-1.1": "GFDL-1.1-only", "gfdl-1.1+": "GFDL-1.1-or-later",
    "gfdl-1.2": "GFDL-1.2-only", "gfdl-1.2+": "GFDL-1.2-or-later",
    "gfdl-1.3": "GFDL-1.3-only", "gfdl-1.3+": "GFDL-1.3-or-later",
    "expat": "MIT", "zlib": "Zlib", "isc": "ISC", "apache-2": "Apache-2.0",
    "mpl-2": "MPL-2.0", "cc0": "CC0-1.0", "boost-1.0": "BSL-1.0",
    # SPDX's own deprecated ids
    "gpl-2.0": "GPL-2.0-only", "gpl-2.0+": "GPL-2.0-or-later", "gpl-3.0": "GPL-3.0-only",
    "gpl-3.0+": "GPL-3.0-or-later", "lgpl-2.0+": "LGPL-2.0-or-later",
    "lgpl-3.0+": "LGPL-3.0-or-later", "lgpl-2.0": "LGPL-2.0-only", "lgpl-3.0": "LGPL-3.0-only",
    # rpm's Callaway names
    "gplv1": "GPL-1.0-only", "gplv1+": "GPL-1.0-or-later", "gplv2": "GPL-2.0-only",
    "gplv2+": "GPL-2.0-or-later", "gplv3": "GPL-3.0-only", "gplv3+": "GPL-3.0-or-later",
    "lgplv2": "LGPL-2.0-only", "lgplv2+": "LGPL-2.0-or-later", "lgplv3": "LGPL-3.0-only",
    "lgplv3+": "LGPL-3.0-or-later", "agplv3": "AGPL-3.0-only", "agplv3+": "AGPL-3.0-or-later",
    "asl 2.0": "Apache-2.0", "asl 1.1": "Apache-1.1", "mplv2.0": "MPL-2.0", "mplv1.1": "MPL-1.1",
    "boost": "BSL-1.0", "ofl": "OFL-1.1",
}

_OPS = {"and": "AND", "or": "OR"}


def license_id(term: str, refs: dict[str, str] | None = None) -> str:
    """The SPDX id for one license name, or a LicenseRef- for it (noted in
    refs as LicenseRef -> the name the package used)."""
    term = " ".join(term.split())
    low = term.lower()
    if low in ALIASES:
        return ALIASES[low]
    if low in _BY_LOWER:
        return _BY_LOWER[low]
    return license_ref(term, refs)


def license_ref(term: str, refs: dict[str, str] | None = None) -> str:
    # Lower case: SPDX matches license ids case-insensitively, so `Artistic`
    # and `artistic` in two packages must not become two distinct refs.
    ref = "LicenseRef-" + (re.sub(r"[^a-z0-9.]+", "-", term.lower().replace("+", "-plus")).strip("-") or "unknown")
    if refs is not None:
        refs.setdefault(ref, term)
    return ref


def _tokens(text: str) -> list[str]:
    """Parentheses, operators, and license names (which may hold spaces:
    `ASL 2.0`, `GPL-2+ with OpenSSL exception`)."""
    out: list[str] = []
    words: list[str] = []
    for tok in re.findall(r"\(|\)|[^\s()]+", text):
        if tok in ("(", ")") or tok.lower() in _OPS:
            if words:
                out.append(" ".join(words))
                words = []
            out.append(_OPS.get(tok.lower(), tok))
        else:
            words.append(tok)
    if words:
        out.append(" ".join(words))
    return out


def _segment(text: str, refs: dict[str, str] | None) -> str:
    toks = _tokens(text)
    depth = 0
    for t in toks:
        depth += (t == "(") - (t == ")")
        if depth < 0:
            return license_ref(text, refs)
    if depth or not toks or toks[0] in ("AND", "OR", ")") or toks[-1] in ("AND", "OR", "("):
        return license_ref(text, refs)
    out: list[str] = []
    for prev, t in zip([None, *toks], toks):
        is_term = t not in ("(", ")", "AND", "OR")
        prev_term = prev is not None and prev not in ("(", "AND", "OR")
        if (is_term or t == "(") and prev_term:
            return license_ref(text, refs)  # two names without an operator
        if (t in ("AND", "OR") and prev in ("(", "AND", "OR")) or (t == ")" and prev in ("(", "AND", "OR")):
            return license_ref(text, refs)
        out.append(license_id(t, refs) if is_term else t)
    return " ".join(out).replace("( ", "(").replace(" )", ")")


def to_spdx(text: str, refs: dict[str, str] | None = None) -> str:
    """An SPDX expression for a license statement, or "" for none.

    Operators and parentheses are kept (AND binding tighter than OR, as in
    SPDX); DEP-5 commas group (`A or B, and C` = `(A OR B) AND C`)."""
    text = " ".join(text.split())
    if not text:
        return ""
    expr = ""
    for i, seg in enumerate(p.strip() for p in text.split(",")):
        if not seg:
            continue
        op = "AND"
        first, _, rest = seg.partition(" ")
        if i and first.lower() in _OPS:
            op, seg = _OPS[first.lower()], rest
        part = _segment(seg, refs)
        expr = part if not expr else f"{wrap(expr)} {op} {wrap(part)}"
    return expr


def wrap(expr: str) -> str:
    return f"({expr})" if " " in expr and not (expr.startswith("(") and _balanced_outer(expr)) else expr


def _balanced_outer(expr: str) -> bool:
    """Whether the first parenthesis closes at the very end."""
    depth = 0
    for i, c in enumerate(expr):
        depth += (c == "(") - (c == ")")
        if depth == 0:
            return i == len(expr) - 1
    return False


def conjoin(exprs: list[str]) -> str:
    """Several statements that all apply (one per copyright paragraph)."""
    unique = sorted(set(e for e in exprs if e))
    if len(unique) <= 1:
        return unique[0] if unique else ""
    return " AND ".join(wrap(e) for e in unique)
