"""Run one fuzz target under atheris (libFuzzer, coverage-guided).

    python fuzz/run.py TARGET [libFuzzer options...]    e.g. -max_total_time=60 -seed=1 -runs=100000

The target's seeds (fuzz/targets.py) are written into a fresh corpus
directory (in a scratch directory removed at the end), to which what the fuzzer finds is added. A crash -- any
exception but one of rootfs's own errors with a documented exit code --
stops the run with the input saved as crash-* under fuzz/crashes/ (or
-artifact_prefix) and the traceback on stderr. libFuzzer's last line says
how many inputs ran: `Done N runs in S second(s)`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__" and "ROOTFS_FUZZ_WORK" not in os.environ:
    # libFuzzer ends the process without running Python's exit handlers:
    # the fuzzer runs as a child with a scratch directory of its own as
    # TMPDIR, which this parent removes however the child ends.
    work = tempfile.mkdtemp(prefix="rootfs-fuzz.")
    try:
        rc = subprocess.call([sys.executable, __file__, *sys.argv[1:]],
                             env={**os.environ, "ROOTFS_FUZZ_WORK": work, "TMPDIR": work})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(rc)

import atheris  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

with atheris.instrument_imports(include=["rootfs"]):
    import rootfs.backends.deb.debfile  # noqa: F401
    import rootfs.backends.deb.index  # noqa: F401
    import rootfs.backends.deb.relations  # noqa: F401
    import rootfs.backends.deb.release  # noqa: F401
    import rootfs.backends.rpm.header  # noqa: F401
    import rootfs.backends.rpm.modules  # noqa: F401
    import rootfs.backends.rpm.payload  # noqa: F401
    import rootfs.backends.rpm.comps  # noqa: F401
    import rootfs.backends.rpm.filelists  # noqa: F401
    import rootfs.backends.rpm.repomd  # noqa: F401
    import rootfs.backends.rpm.resolve  # noqa: F401
    import rootfs.backends.rpm.solver  # noqa: F401
    import rootfs.host.safepath  # noqa: F401
    import rootfs.host.unpacker  # noqa: F401
    import rootfs.image.info  # noqa: F401
    import rootfs.image.reader  # noqa: F401
    import rootfs.inventory.pkgdb  # noqa: F401
    import rootfs.net.openpgp  # noqa: F401
    import rootfs.registry.auth  # noqa: F401
    import rootfs.registry.client  # noqa: F401
    import rootfs.registry.transfer  # noqa: F401

import targets  # noqa: E402  (fuzz/ is on sys.path as the script's directory)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
        sys.exit(f"usage: run.py TARGET [libFuzzer options]; targets: {' '.join(sorted(targets.TARGETS))}")
    name = sys.argv[1]
    one = targets.guarded(targets.TARGETS[name])
    def test_one_input(data: bytes) -> None:
        one(data)

    corpus = Path(tempfile.mkdtemp(prefix=f"rootfs-fuzz-{name}."))
    for i, seed in enumerate(targets.seeds(name)):
        (corpus / f"seed-{i}").write_bytes(seed)
    crashes = HERE / "crashes"
    crashes.mkdir(exist_ok=True)
    args = [sys.argv[0], *sys.argv[2:]]
    if not any(a.startswith("-artifact_prefix=") for a in args):
        args.append(f"-artifact_prefix={crashes}/{name}-")
    if not any(a.startswith("-max_len=") for a in args):
        args.append("-max_len=65536")
    args.append(str(corpus))
    os.environ.setdefault("ROOTFS_TIMEOUT", "60")
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
