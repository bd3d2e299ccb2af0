"""Reading an .rpm file: lead, signature header, main header, payload.

The header is the truth about a package's files (modes, owners, links,
capabilities, flags); the payload only carries their bytes. This module
reads headers itself (the format is small and stable) so that every array
the installer needs is at hand, with its real type.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rootfs.model.errors import VerifyError

LEAD_MAGIC = b"\xed\xab\xee\xdb"
HEADER_MAGIC = b"\x8e\xad\xe8\x01"

# Tags (rpmtag.h).
NAME, VERSION, RELEASE, EPOCH, ARCH = 1000, 1001, 1002, 1003, 1022
PREIN, POSTIN, PREUN, POSTUN = 1023, 1024, 1025, 1026
FILESIZES, FILEMODES, FILERDEVS, FILEMTIMES, FILEDIGESTS, FILELINKTOS, FILEFLAGS = 1028, 1030, 1033, 1034, 1035, 1036, 1037
FILEUSERNAME, FILEGROUPNAME = 1039, 1040
PROVIDENAME, REQUIREFLAGS, REQUIRENAME, REQUIREVERSION = 1047, 1048, 1049, 1050
CONFLICTFLAGS, CONFLICTNAME, CONFLICTVERSION = 1053, 1054, 1055
TRIGGERSCRIPTS, TRIGGERNAME, TRIGGERVERSION, TRIGGERFLAGS, TRIGGERINDEX = 1065, 1066, 1067, 1068, 1069
PREINPROG, POSTINPROG, PREUNPROG, POSTUNPROG = 1085, 1086, 1087, 1088
OBSOLETENAME = 1090
TRIGGERSCRIPTPROG = 1092
FILEDEVICES, FILEINODES = 1095, 1096
PROVIDEFLAGS, PROVIDEVERSION = 1112, 1113
DIRINDEXES, BASENAMES, DIRNAMES = 1116, 1117, 1118
PAYLOADFORMAT, PAYLOADCOMPRESSOR, PAYLOADFLAGS = 1124, 1125, 1126
PRETRANS, POSTTRANS, PRETRANSPROG, POSTTRANSPROG = 1151, 1152, 1153, 1154
LONGFILESIZES = 5008
FILECAPS = 5010
PAYLOADDIGEST, PAYLOADDIGESTALGO = 5092, 5093
# Signature header tags.
SIG_SIZE, SIG_MD5, SIG_SHA1, SIG_SHA256 = 1000, 1004, 269, 273
SIG_PGP, SIG_GPG, SIG_RSA, SIG_DSA = 1002, 1005, 268, 267

# File flags.
FILE_CONFIG = 1 << 0
FILE_GHOST = 1 << 6

_DIGEST_ALGOS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}


@dataclass
class Header:
    tags: dict[int, object]
    raw: bytes  # the header's bytes, magic included (what SHA256 covers)

    def get(self, tag: int, default=None):
        return self.tags.get(tag, default)

    def str(self, tag: int) -> str:
        v = self.tags.get(tag, "")
        if isinstance(v, list):
            return v[0] if v else ""
        return v if isinstance(v, str) else str(v)

    def list(self, tag: int) -> list:
        v = self.tags.get(tag)
        if v is None:
            return []
        return v if isinstance(v, list) else [v]

    def int(self, tag: int, default: int = 0) -> int:
        v = self.tags.get(tag)
        if isinstance(v, list):
            return v[0] if v else default
        return default if v is None else int(v)  # type: ignore[arg-type]


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise VerifyError(f"{what} is truncated")
    return data


def _string(store: bytes, off: int) -> tuple[str, int]:
    end = store.index(b"\0", off)
    return store[off:end].decode("utf-8", "surrogateescape"), end + 1


def read_header(f: BinaryIO, what: str) -> Header:
    pre = _read_exact(f, 16, what)
    if pre[:4] != HEADER_MAGIC:
        raise VerifyError(f"{what} is not an rpm package (bad header magic)")
    il, dl = struct.unpack(">II", pre[8:16])
    if il > 0x10000 or dl > 0x10000000:
        raise VerifyError(f"{what} has an implausible header size")
    index = _read_exact(f, il * 16, what)
    store = _read_exact(f, dl, what)
    tags: dict[int, object] = {}
    try:
        for i in range(il):
            tag, typ, off, count = struct.unpack_from(">iIiI", index, i * 16)
            if typ in (6, 8, 9):  # STRING, STRING_ARRAY, I18NSTRING
                vals = []
                for _ in range(count):
                    s, off = _string(store, off)
                    vals.append(s)
                tags[tag] = vals[0] if typ == 6 else vals
            elif typ == 7:  # BIN
                tags[tag] = store[off:off + count]
            elif typ in (2, 1):
                tags[tag] = list(store[off:off + count])
            elif typ == 3:
                tags[tag] = list(struct.unpack_from(f">{count}H", store, off))
            elif typ == 4:
                tags[tag] = list(struct.unpack_from(f">{count}I", store, off))
            elif typ == 5:
                tags[tag] = list(struct.unpack_from(f">{count}Q", store, off))
    except (ValueError, struct.error, IndexError):
        raise VerifyError(f"{what} has a corrupt header") from None
    return Header(tags, pre + index + store)


@dataclass
class RpmFile:
    path: Path
    signature: Header
    header: Header
    payload_offset: int

    @property
    def nevra(self) -> str:
        h = self.header
        e = h.get(EPOCH)
        epoch = f"{e[0]}:" if e else ""
        return f"{h.str(NAME)}-{epoch}{h.str(VERSION)}-{h.str(RELEASE)}.{h.str(ARCH)}"

    @property
    def name(self) -> str:
        return self.header.str(NAME)

    @property
    def signed(self) -> bool:
        return any(t in self.signature.tags for t in (SIG_PGP, SIG_GPG, SIG_RSA, SIG_DSA))

    def check_digests(self) -> None:
        """The header's SHA256 (from the signature header) and the payload's
        digest (from the main header), where the package carries them."""
        want = self.signature.get(SIG_SHA256)
        if isinstance(want, str) and hashlib.sha256(self.header.raw).hexdigest() != want:
            raise VerifyError(f"{self.path.name}: the header does not match its SHA256 digest")
        digests = self.header.list(PAYLOADDIGEST)
        algo = _DIGEST_ALGOS.get(self.header.int(PAYLOADDIGESTALGO, 8))
        if digests and algo:
            h = hashlib.new(algo)
            with open(self.path, "rb") as f:
                f.seek(self.payload_offset)
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            if h.hexdigest() != digests[0]:
                raise VerifyError(f"{self.path.name}: the payload does not match its {algo} digest")


def open_rpm(path: Path) -> RpmFile:
    what = Path(path).name
    try:
        with open(path, "rb") as f:
            lead = _read_exact(f, 96, what)
            if lead[:4] != LEAD_MAGIC:
                raise VerifyError(f"{what} is not an rpm package (bad lead)")
            sig = read_header(f, what)
            pad = (8 - (len(sig.raw) % 8)) % 8
            _read_exact(f, pad, what)
            hdr = read_header(f, what)
            return RpmFile(Path(path), sig, hdr, f.tell())
    except OSError as exc:
        raise VerifyError(f"cannot read {path}: {exc.strerror}") from None
