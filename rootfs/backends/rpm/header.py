"""Reading an .rpm file: lead, signature header, main header, payload.

The header is the truth about a package's files (modes, owners, links,
capabilities, flags, digests); the payload only carries their bytes. This
module reads headers itself (the format is small and stable) so that every
array the installer needs is at hand with its real type, the header's raw
bytes are kept for the digests that cover them, and names that are not
UTF-8 survive (decoded with surrogateescape, so os functions give back the
original bytes).

rpmfile (PyPI) is not used: it decodes payload names as strict UTF-8 (a
non-UTF-8 name raises), reads only the `070701` cpio form (not rpm's
stripped `07070X`), reads a whole zstd payload into memory, keeps neither
the raw header bytes nor the lead, and checks no digest; what would remain
of it is the tag parser below.

Packages are read as rpm 4.18 reads them:

- the lead must be version 3 or 4 with a header-style signature (type 5);
- version 3 packages (no immutable header region, one OLDFILENAMES array
  instead of DIRNAMES/BASENAMES) are converted on the fly, as rpm's
  `headerConvert(HEADERCONV_RETROFIT_V3)` does, instead of refused: rpm
  4.18 still installs them, and so do we;
- a source package (lead type 1, a SOURCEPACKAGE tag, or rpm's heuristic
  for headers that have neither SOURCERPM nor SOURCEPACKAGE) is refused by
  the installer, since it holds sources, not a root's files;
- digests are checked as `rpm -K` does (check_digests): every digest the
  package carries must match, and a package that carries none is refused.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rootfs.model.errors import VerifyError

LEAD_MAGIC = b"\xed\xab\xee\xdb"
HEADER_MAGIC = b"\x8e\xad\xe8\x01"
LEAD_SIZE = 96
LEAD_BINARY, LEAD_SOURCE = 0, 1
SIGTYPE_HEADERSIG = 5

# Tags (rpmtag.h).
HEADERIMMUTABLE = 63
NAME, VERSION, RELEASE, EPOCH, ARCH = 1000, 1001, 1002, 1003, 1022
PREIN, POSTIN, PREUN, POSTUN = 1023, 1024, 1025, 1026
OLDFILENAMES = 1027
FILESIZES, FILEMODES, FILERDEVS, FILEMTIMES, FILEDIGESTS, FILELINKTOS, FILEFLAGS = 1028, 1030, 1033, 1034, 1035, 1036, 1037
FILEUSERNAME, FILEGROUPNAME = 1039, 1040
SOURCERPM = 1044
PROVIDENAME, REQUIREFLAGS, REQUIRENAME, REQUIREVERSION = 1047, 1048, 1049, 1050
CONFLICTFLAGS, CONFLICTNAME, CONFLICTVERSION = 1053, 1054, 1055
TRIGGERSCRIPTS, TRIGGERNAME, TRIGGERVERSION, TRIGGERFLAGS, TRIGGERINDEX = 1065, 1066, 1067, 1068, 1069
PREINPROG, POSTINPROG, PREUNPROG, POSTUNPROG = 1085, 1086, 1087, 1088
OBSOLETENAME = 1090
TRIGGERSCRIPTPROG = 1092
FILEDEVICES, FILEINODES = 1095, 1096
SOURCEPACKAGE = 1106
PROVIDEFLAGS, PROVIDEVERSION = 1112, 1113
DIRINDEXES, BASENAMES, DIRNAMES = 1116, 1117, 1118
PAYLOADFORMAT, PAYLOADCOMPRESSOR, PAYLOADFLAGS = 1124, 1125, 1126
PRETRANS, POSTTRANS, PRETRANSPROG, POSTTRANSPROG = 1151, 1152, 1153, 1154
LONGFILESIZES = 5008
FILECAPS = 5010
FILEDIGESTALGO = 5011
PAYLOADDIGEST, PAYLOADDIGESTALGO = 5092, 5093
# Signature header tags.
SIG_SIZE, SIG_MD5, SIG_SHA1, SIG_SHA256, SIG_LONGSIZE = 1000, 1004, 269, 273, 270
SIG_PGP, SIG_GPG, SIG_RSA, SIG_DSA = 1002, 1005, 268, 267

# File flags.
FILE_CONFIG = 1 << 0
FILE_GHOST = 1 << 6

# PGPHASHALGO values, as FILEDIGESTALGO and PAYLOADDIGESTALGO use them.
DIGEST_ALGOS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}


@dataclass
class Header:
    tags: dict[int, object]
    raw: bytes  # the header's bytes, magic included (what SHA1 and SHA256 cover)

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
            if not 0 <= off <= dl:
                raise ValueError(off)
            if typ in (6, 8, 9):  # STRING, STRING_ARRAY, I18NSTRING
                vals = []
                for _ in range(count):
                    s, off = _string(store, off)
                    vals.append(s)
                tags[tag] = vals[0] if typ == 6 and vals else vals
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


def retrofit_v3(h: Header) -> None:
    """A version 3 header's flat file list (OLDFILENAMES) as the
    DIRNAMES/DIRINDEXES/BASENAMES triple, as rpm's compressFilelist makes
    it: one directory entry per distinct dirname, in first-seen order."""
    names = h.list(OLDFILENAMES)
    if not names or h.get(BASENAMES) is not None:
        return
    if not all(isinstance(n, str) for n in names):
        raise VerifyError("an rpm v3 header's file names are not strings")
    dirs: dict[str, int] = {}
    basenames, indexes = [], []
    for name in names:
        d, _, base = name.rpartition("/")
        d += "/"
        indexes.append(dirs.setdefault(d, len(dirs)))
        basenames.append(base)
    h.tags[DIRNAMES] = list(dirs)
    h.tags[DIRINDEXES] = indexes
    h.tags[BASENAMES] = basenames


@dataclass
class RpmFile:
    path: Path
    signature: Header
    header: Header
    payload_offset: int
    lead_major: int = 4
    lead_type: int = LEAD_BINARY
    v3: bool = False  # an RPM v3 header (no immutable region), read through retrofit_v3

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

    @property
    def is_source(self) -> bool:
        """Whether this is a source package, decided as rpm 4.18 does."""
        h = self.header
        if self.lead_type == LEAD_SOURCE or SOURCEPACKAGE in h.tags:
            return True
        if SOURCERPM in h.tags:
            return False
        dirnames = h.list(DIRNAMES)
        return len(dirnames) == 1 and dirnames[0] == ""

    def _payload_hashes(self, hashes: list) -> None:
        with open(self.path, "rb") as f:
            f.seek(self.payload_offset)
            while chunk := f.read(1 << 20):
                for h in hashes:
                    h.update(chunk)

    def check_digests(self) -> None:
        """Every digest the package carries, as `rpm -K` checks them: the
        header's SHA256 and SHA1 and the header+payload size and MD5 (from
        the signature header; MD5 and SHA1 are all that packages built
        before rpm 4.14 carry), and the payload's digest (from the main
        header). A package with none of them is refused, as rpm 4.18 does
        by default (%_pkgverify_level digest)."""
        name = self.path.name
        sig, raw = self.signature, self.header.raw
        size = os.path.getsize(self.path) - (self.payload_offset - len(raw))
        want_size = sig.get(SIG_LONGSIZE) or sig.get(SIG_SIZE)
        if want_size and want_size[0] != size:
            raise VerifyError(f"{name}: its header and payload are {size} bytes, not the {want_size[0]} "
                              "its signature header says (truncated or changed)")
        checked = 0
        for tag, algo in ((SIG_SHA256, "sha256"), (SIG_SHA1, "sha1")):
            want = sig.get(tag)
            if isinstance(want, str):
                if hashlib.new(algo, raw).hexdigest() != want:
                    raise VerifyError(f"{name}: the header does not match its {algo.upper()} digest")
                checked += 1
        digests = self.header.list(PAYLOADDIGEST)
        algo = DIGEST_ALGOS.get(self.header.int(PAYLOADDIGESTALGO, 8))
        if digests and algo is None:
            raise VerifyError(f"{name}: its payload digest uses an unknown algorithm "
                              f"({self.header.int(PAYLOADDIGESTALGO)})")
        md5 = sig.get(SIG_MD5)
        payload = hashlib.new(algo) if digests and algo else None
        whole = hashlib.md5(raw) if isinstance(md5, bytes) else None
        hashes = [h for h in (payload, whole) if h is not None]
        if hashes:
            self._payload_hashes(hashes)
        if payload is not None:
            if payload.hexdigest() != digests[0]:
                raise VerifyError(f"{name}: the payload does not match its {algo.upper()} digest")
            checked += 1
        if whole is not None:
            if whole.digest() != md5:
                raise VerifyError(f"{name}: the header and payload do not match their MD5 digest")
            checked += 1
        if not checked:
            raise VerifyError(f"{name} carries no digest to check it by (rpm refuses such packages)")


def open_rpm(path: Path) -> RpmFile:
    what = Path(path).name
    try:
        with open(path, "rb") as f:
            lead = _read_exact(f, LEAD_SIZE, what)
            if lead[:4] != LEAD_MAGIC:
                raise VerifyError(f"{what} is not an rpm package (bad lead)")
            major, ltype, sigtype = lead[4], struct.unpack(">H", lead[6:8])[0], struct.unpack(">H", lead[78:80])[0]
            if major not in (3, 4):
                raise VerifyError(f"{what} is an RPM v{major} package, which rpm 4.18 does not read (only v3 and v4)")
            if sigtype != SIGTYPE_HEADERSIG:
                raise VerifyError(f"{what} has a signature of the pre-RPM v3 type {sigtype}, which rpm 4.18 does not read")
            sig = read_header(f, what)
            pad = (8 - (len(sig.raw) % 8)) % 8
            _read_exact(f, pad, what)
            hdr = read_header(f, what)
            rpm = RpmFile(Path(path), sig, hdr, f.tell(), major, ltype, HEADERIMMUTABLE not in hdr.tags)
    except OSError as exc:
        raise VerifyError(f"cannot read {path}: {exc.strerror}") from None
    if rpm.v3 or OLDFILENAMES in hdr.tags:
        retrofit_v3(hdr)
    return rpm
