"""The repository key, kept with the lock so that installing from the lock
later (offline, on another machine) still checks package signatures."""

from __future__ import annotations

import base64
from pathlib import Path

from rootfs.model.errors import UsageError


def armored_key(path: str) -> str:
    """The key file as ASCII armour (rpmkeys imports nothing else)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the gpgkey {path}: {exc.strerror}") from None
    if b"-----BEGIN PGP PUBLIC KEY BLOCK-----" in data:
        return data.decode("ascii", "replace")
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    body = base64.b64encode(data).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    checksum = base64.b64encode((crc & 0xFFFFFF).to_bytes(3, "big")).decode()
    return "\n".join(["-----BEGIN PGP PUBLIC KEY BLOCK-----", "", *lines, "=" + checksum,
                      "-----END PGP PUBLIC KEY BLOCK-----", ""])
