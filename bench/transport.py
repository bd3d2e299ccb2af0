#!/usr/bin/env python3
"""HTTP transport benchmark: rootfs's own transport (rootfs.net.http, under
the Downloader and the registry client) against urllib3, on 127.0.0.1.

    python bench/transport.py [--runs 5] [--big-mb 200] [--small 1000]

Python's http.server (HTTP/1.1, buffered) in another process
serves one large random file and many small ones. Alternately, --runs
times, each client:

- big: streams the large file to disk while hashing it (sha256), as a
  package download does: rootfs's Downloader.download against a urllib3
  PoolManager stream (preload_content=False, read in 1 MiB chunks);
- small: fetches every small file over kept-alive connections, as index and
  registry requests do: Downloader.get_bytes against PoolManager.request.

It prints the medians of wall and CPU seconds and the ratios urllib3/rootfs.
urllib3 is a peer here, not a dependency: `pip install urllib3` first.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from rootfs.net.fetch import Downloader  # noqa: E402

CHUNK = 1 << 20
# http.server's handler, buffered (headers and a small body leave in one
# segment, as a real server sends them) and quiet, in its own process.
SERVER = """
import functools, http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])),
                                functools.partial(H, directory=sys.argv[1])).serve_forever()
"""


def cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(fn) -> tuple[float, float]:
    w, c = time.monotonic(), cpu()
    fn()
    return time.monotonic() - w, cpu() - c


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--big-mb", type=int, default=200)
    ap.add_argument("--small", type=int, default=1000)
    args = ap.parse_args()
    try:
        import urllib3
    except ImportError:
        print("urllib3 is not installed (pip install urllib3): nothing to compare with")
        return 1

    with tempfile.TemporaryDirectory(prefix="rootfs-bench-http.") as tmp:
        root = Path(tmp) / "www"
        (root / "small").mkdir(parents=True)
        big = root / "big.bin"
        with open(big, "wb") as f:
            for _ in range(args.big_mb):
                f.write(os.urandom(CHUNK))
        digest = hashlib.sha256(big.read_bytes()).hexdigest()
        for i in range(args.small):
            (root / "small" / str(i)).write_bytes(os.urandom(4096))
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(root), str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            dest = Path(tmp) / "out.bin"

            def ours_big() -> None:
                d = Downloader()
                d.download(f"{base}/big.bin", dest, size=big.stat().st_size, sha256=digest)
                d.close()

            def urllib3_big() -> None:
                pool = urllib3.PoolManager(retries=urllib3.Retry(3), timeout=30.0)
                h = hashlib.sha256()
                r = pool.request("GET", f"{base}/big.bin", preload_content=False)
                with open(dest, "wb") as f:
                    for chunk in r.stream(CHUNK):
                        h.update(chunk)
                        f.write(chunk)
                r.release_conn()
                assert h.hexdigest() == digest
                pool.clear()

            def ours_small() -> None:
                d = Downloader()
                for i in range(args.small):
                    assert len(d.get_bytes(f"{base}/small/{i}")) == 4096
                d.close()

            def urllib3_small() -> None:
                pool = urllib3.PoolManager(retries=urllib3.Retry(3), timeout=30.0)
                for i in range(args.small):
                    assert len(pool.request("GET", f"{base}/small/{i}").data) == 4096
                pool.clear()

            cases = {"big rootfs": ours_big, "big urllib3": urllib3_big,
                     "small rootfs": ours_small, "small urllib3": urllib3_small}
            results: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
            for n in range(args.runs):
                order = list(cases) if n % 2 == 0 else list(reversed(cases))  # alternate
                for name in order:
                    results[name].append(timed(cases[name]))
        finally:
            server.terminate()
            server.wait()

    print(f"{args.big_mb} MB file (streamed to disk, sha256), {args.small} files of 4 KiB (keep-alive), "
          f"medians of {args.runs} runs")
    print(f"{'case':<15} {'wall s':>8} {'cpu s':>8}")
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in results.items()}
    for k, (w, c) in med.items():
        print(f"{k:<15} {w:8.3f} {c:8.3f}")
    for kind in ("big", "small"):
        ow, oc = med[f"{kind} rootfs"]
        uw, uc = med[f"{kind} urllib3"]
        print(f"{kind}: urllib3/rootfs wall {uw / ow:.2f}, cpu {uc / oc:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
