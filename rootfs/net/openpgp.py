"""OpenPGP signature checks through gpgv, shared by the deb and rpm backends.

gpgv treats every key in the keyrings it is given as trusted and nothing
else, which is exactly apt's model. It only reads binary keyrings, so
ASCII-armoured ones (.asc, as apt and rpm ship them) are dearmoured here
first; a keyring may also be a directory of key files, as apt's
trusted.gpg.d is. For clearsigned files we hand back the text gpgv says was signed,
never the raw input: anything outside the signed block is an attacker's.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from pathlib import Path

from rootfs.host.run import run as host_run
from rootfs.model.errors import PrivilegeError, UsageError, VerifyError

_ARMOR_BEGIN = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
_ARMOR_END = b"-----END PGP PUBLIC KEY BLOCK-----"


def dearmor(data: bytes) -> bytes:
    """Binary key material from one or more armoured public key blocks;
    binary input is returned unchanged."""
    if _ARMOR_BEGIN not in data:
        return data
    out = bytearray()
    for block in data.split(_ARMOR_BEGIN)[1:]:
        body = block.split(_ARMOR_END, 1)[0]
        # Header lines ("Version: ...") hold a colon, which base64 never does;
        # the checksum line starts with "=", which a base64 line cannot.
        payload = b"".join(
            ln.strip() for ln in body.splitlines() if ln.strip() and b":" not in ln and not ln.startswith(b"=")
        )
        try:
            out += base64.b64decode(payload, validate=False)
        except ValueError:
            raise UsageError("keyring holds an armoured block that is not valid base64") from None
    return bytes(out)


def _read_key_file(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"keyring {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read keyring {path}: {exc.strerror}") from None
    return dearmor(data)


def keyring_files(keyring: str | Path) -> list[tuple[Path, bytes]]:
    """The binary key material of a keyring as apt reads one: a file
    (binary or ASCII-armoured .asc), or a directory of *.gpg and *.asc
    files, as /etc/apt/trusted.gpg.d is."""
    path = Path(keyring)
    if path.is_dir():
        try:
            names = sorted(p for p in path.iterdir() if p.suffix in (".gpg", ".asc") and p.is_file())
        except OSError as exc:
            raise UsageError(f"cannot read keyring directory {path}: {exc.strerror}") from None
        if not names:
            raise UsageError(f"keyring directory {path} holds no .gpg or .asc key files")
        return [(p, _read_key_file(p)) for p in names]
    return [(path, _read_key_file(path))]


def check_keyring(keyring: str | Path) -> None:
    """UsageError unless keyring is a readable key file or directory."""
    keyring_files(keyring)


def _status(lines: list[str]) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for line in lines:
        words = line.split()
        if len(words) > 1 and words[0] == "[GNUPG:]":
            out.setdefault(words[1], []).append(words[2:])
    return out


def _good_signature(status: dict[str, list[list[str]]]) -> bool:
    """At least one signature good and valid, from a key in the keyring
    (GOODSIG by a key id whose VALIDSIG names its fingerprint), and none
    bad. As apt: signatures by keys that are not in the keyring are
    ignored when another key's signature is good."""
    if "BADSIG" in status:
        return False
    valid = {args[0].upper() for args in status.get("VALIDSIG", []) if args}
    for args in status.get("GOODSIG", []):
        keyid = args[0].upper() if args else ""
        if keyid and any(fpr.endswith(keyid) for fpr in valid):
            return True
    return False


def _gpgv(tmp: Path, keyring: str | Path, args: list[str], what: str) -> None:
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise PrivilegeError("gpgv is not installed; it is needed to check signatures (or pass --no-check-gpg)")
    keyrings = []
    for i, (_, data) in enumerate(keyring_files(keyring)):
        kr = tmp / f"keyring-{i}.gpg"
        kr.write_bytes(data)
        keyrings += ["--keyring", str(kr)]
    home = tmp / "home"
    home.mkdir(mode=0o700)
    proc = host_run([gpgv, "--homedir", str(home), *keyrings, "--status-fd", "1", *args],
                    what=f"gpgv checking {what}")
    status = _status(proc.stdout.decode(errors="replace").splitlines())
    # gpgv exits non-zero when any one signature cannot be checked; apt
    # accepts a file that one keyring key signed well, and so do we.
    if _good_signature(status):
        return
    if "BADSIG" in status:
        raise VerifyError(f"{what} has a bad signature (it was changed after signing)")
    if "EXPKEYSIG" in status or "REVKEYSIG" in status:
        raise VerifyError(f"{what} is signed by an expired or revoked key")
    if "NO_PUBKEY" in status or "ERRSIG" in status:
        raise VerifyError(f"{what} is signed by a key that is not in the keyring {keyring}")
    if "NODATA" in status or not status:
        raise VerifyError(f"{what} carries no OpenPGP signature")
    raise VerifyError(f"{what} failed signature verification against {keyring}")


_SIGNED = b"-----BEGIN PGP SIGNED MESSAGE-----"
_SIG_BEGIN = b"-----BEGIN PGP SIGNATURE-----"
_SIG_END = b"-----END PGP SIGNATURE-----"


def _check_clearsigned_shape(data: bytes, what: str) -> None:
    """Exactly one signed message and nothing around it, as apt insists:
    gpgv accepts text outside the message (and several messages), which
    a careless reader could take for signed content."""
    if _SIGNED not in data:
        raise VerifyError(f"{what} is not a clearsigned message")
    if data.count(_SIGNED) != 1 or data.count(_SIG_BEGIN) != 1 or data.count(_SIG_END) != 1:
        raise VerifyError(f"{what} holds more than one signed message")
    start = data.index(_SIGNED)
    end = data.index(_SIG_END) + len(_SIG_END)
    if data[:start].strip() or data[end:].strip():
        raise VerifyError(f"{what} has text outside its signed message")


def verify_clearsigned(data: bytes, keyring: str | Path, what: str = "the signed file") -> bytes:
    """The signed text of a clearsigned message, after checking it against
    keyring; VerifyError when it is unsigned, badly signed or signed by
    another key."""
    _check_clearsigned_shape(data, what)
    with tempfile.TemporaryDirectory(prefix="rootfs-gpg.") as t:
        tmp = Path(t)
        src = tmp / "signed"
        src.write_bytes(data)
        out = tmp / "out"
        _gpgv(tmp, keyring, ["--output", str(out), str(src)], what)
        return out.read_bytes()


def verify_detached(data: bytes, sig: bytes, keyring: str | Path, what: str = "the signed file") -> None:
    """Check a detached (binary or armoured) signature over data."""
    with tempfile.TemporaryDirectory(prefix="rootfs-gpg.") as t:
        tmp = Path(t)
        (tmp / "data").write_bytes(data)
        (tmp / "sig").write_bytes(sig)
        _gpgv(tmp, keyring, [str(tmp / "sig"), str(tmp / "data")], what)
