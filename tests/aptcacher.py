"""apt-cacher-ng on 127.0.0.1 for the tests: its own configuration, cache
and log in a directory of the test's (never the system service's), and its
transfer log read back as the evidence of what came from the mirror.

The log has one line per finished transfer, `TIME|I|BYTES|CLIENT|PATH` for
bytes fetched from upstream and `TIME|O|BYTES|CLIENT|PATH` for bytes served
to a client, PATH being the URL without its scheme. apt-cacher-ng 3.7
cannot bind a port above 32767 ("Error resolving address for binding"),
so the port is picked below that.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Transfer:
    direction: str  # "I" from upstream, "O" to a client
    size: int
    path: str


def _free_low_port() -> int:
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32768")


class AptCacher:
    def __init__(self, base: Path):
        self.base = base
        self.cache, self.logs, self.conf = base / "cache", base / "log", base / "conf"
        for d in (self.cache, self.logs, self.conf):
            d.mkdir(parents=True, exist_ok=True)
        # No Remap lines: every URL is cached under its own host and path.
        (self.conf / "acng.conf").write_text(
            f"CacheDir: {self.cache}\nLogDir: {self.logs}\nSupportDir: /usr/lib/apt-cacher-ng\n"
            "VerboseLog: 1\nExThreshold: 4\n")
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> AptCacher:
        self.port = self.port or _free_low_port()
        out = open(self.base / "stderr", "ab")
        self.proc = subprocess.Popen(["apt-cacher-ng", "-c", str(self.conf), "ForeGround=1", "BindAddress=127.0.0.1",
                                      f"Port={self.port}"], stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        out.close()
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"apt-cacher-ng did not start: {(self.base / 'stderr').read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stopped, its log complete (it writes the last lines on the way out)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def transfers(self) -> list[Transfer]:
        log = self.logs / "apt-cacher.log"
        out = []
        for line in log.read_text().splitlines() if log.exists() else []:
            parts = line.split("|")
            if len(parts) >= 5 and parts[1] in ("I", "O"):
                out.append(Transfer(parts[1], int(parts[2]), parts[4]))
        return out

    def counts(self, direction: str, suffix: str = "") -> Counter:
        return Counter(t.path for t in self.transfers() if t.direction == direction and t.path.endswith(suffix))
