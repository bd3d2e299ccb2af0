"""filelists.xml, scanned for the few paths the solver asks about.

A distribution's filelists.xml names millions of files, and file
dependencies name a few hundred of them, so the stream is decoded a
megabyte at a time, cut into <package> blocks with str.find and searched
with one regular expression per block; only the wanted paths are kept.
Its integrity was checked against repomd.xml before it gets here.
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Callable, Iterator
from typing import IO

from rootfs.model.errors import VerifyError

CHUNK = 1 << 20

_ATTR = re.compile(r'([\w:]+)="([^"]*)"')
_FILE = re.compile(r"<file(?: [^>]*)?>([^<]*)</file>")


def _text(value: str) -> str:
    return html.unescape(value) if "&" in value else value


def _blocks(stream: IO[bytes], where: str) -> Iterator[tuple[str, str]]:
    """(opening tag's attributes, body) of each <package ...>...</package> block."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    buf = ""
    seen_root = False
    try:
        while True:
            chunk = stream.read(CHUNK)
            buf += decoder.decode(chunk, final=not chunk)
            if not seen_root and buf.lstrip():
                if not buf.lstrip().startswith("<"):
                    raise VerifyError(f"{where} is not XML")
                seen_root = True
            pos = 0
            while True:
                i = buf.find("<package ", pos)
                if i < 0:
                    break
                j = buf.find("</package>", i)
                if j < 0:
                    break
                k = buf.find(">", i)
                yield buf[i + 9:k], buf[k + 1:j]
                pos = j + 10
            buf = buf[pos:]
            if not chunk:
                break
    except (OSError, EOFError, ValueError) as exc:  # a damaged compressed stream
        raise VerifyError(f"{where} cannot be read: {exc}") from None
    except Exception as exc:  # zstandard and friends have their own error types
        if type(exc).__module__.startswith("zstandard"):
            raise VerifyError(f"{where} cannot be read: {exc}") from None
        raise
    if "<package" in buf:
        raise VerifyError(f"{where} is truncated (an unfinished <package>)")
    if not seen_root:
        raise VerifyError(f"{where} is empty")


def scan_filelists(stream: IO[bytes], wanted: Callable[[str], bool] | set[str],
                   where: str = "filelists.xml") -> Iterator[tuple[str, str, str, str]]:
    """Yield (pkgid, name, arch, path) for each listed file that is wanted."""
    test = wanted.__contains__ if isinstance(wanted, (set, frozenset, dict)) else wanted
    for head, body in _blocks(stream, where):
        hits = [p for p in _FILE.findall(body) if test(_text(p))]
        if hits:
            a = {k: _text(v) for k, v in _ATTR.findall(head)}
            for path in hits:
                yield a.get("pkgid", ""), a.get("name", ""), a.get("arch", ""), _text(path)
