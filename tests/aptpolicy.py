"""apt's own answer: the candidate versions apt chooses from a set of
sources, computed with apt itself on a scratch configuration (nothing of
the host's apt setup is read or changed).

    from aptpolicy import AptSource, apt_candidates

    cands = apt_candidates(tmp_path, [AptSource(url, "bookworm", ("main",), keyring)],
                           ["libc6", "zlib1g"], pins=[("n=bookworm-updates", 100)])
    cands["libc6"]  # "2.36-9+deb12u7", or None when apt has no candidate
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AptSource:
    url: str
    suite: str
    components: tuple[str, ...]
    keyring: str | Path


def have_apt() -> bool:
    return shutil.which("apt-get") is not None and shutil.which("apt-cache") is not None


def _config(root: Path, arch: str) -> Path:
    for d in ("etc/apt/sources.list.d", "etc/apt/preferences.d", "etc/apt/apt.conf.d",
              "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/lib/dpkg"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").write_text("")
    conf = root / "apt.conf"
    conf.write_text("\n".join([
        f'Dir "{root}/";',
        f'Dir::Etc::Parts "{root}/etc/apt/apt.conf.d";',
        f'Dir::State::status "{root}/var/lib/dpkg/status";',
        f'APT::Architecture "{arch}";',
        f'APT::Architectures "{arch}";',
        'Acquire::Languages "none";',
        # The choice is what is compared, not the dates: snapshot mirrors
        # and test repositories have old Releases.
        'Acquire::Check-Valid-Until "false";',
        'APT::Sandbox::User "root";',
        "",
    ]))
    # The scratch tree must be readable by apt's methods.
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o755)
    return conf


def apt_candidates(tmp: Path, sources: list[AptSource], names: list[str], *, arch: str = "amd64",
                   pins: list[tuple[str, int]] = (), timeout: float = 600) -> dict[str, str | None]:
    """{name: apt's candidate version or None} for names, after `apt-get
    update` over sources; pins are (release expression, priority) as in
    apt_preferences(5), e.g. ("n=bookworm-backports", 500)."""
    root = Path(tmp) / "apt-scratch"
    conf = _config(root, arch)
    stanzas = [f"Types: deb\nURIs: {s.url}\nSuites: {s.suite}\nComponents: {' '.join(s.components)}\n"
               f"Signed-By: {s.keyring}\n" for s in sources]
    (root / "etc/apt/sources.list.d/scratch.sources").write_text("\n".join(stanzas))
    if pins:
        (root / "etc/apt/preferences.d/scratch.pref").write_text("\n".join(
            f"Package: *\nPin: release {expr}\nPin-Priority: {prio}\n" for expr, prio in pins))
    env = {**os.environ, "APT_CONFIG": str(conf), "LC_ALL": "C"}
    update = subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=timeout)
    if update.returncode != 0 or "\nErr:" in "\n" + update.stdout:
        raise AssertionError(f"apt-get update failed: {update.stdout[-1500:]}{update.stderr[-1500:]}")
    out: dict[str, str | None] = {n: None for n in names}
    policy = subprocess.run(["apt-cache", "policy", *names], env=env, capture_output=True, text=True,
                            timeout=timeout, check=True).stdout
    current = None
    for line in policy.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1]
        elif current is not None and line.strip().startswith("Candidate:"):
            value = line.split(":", 1)[1].strip()
            out[current] = None if value == "(none)" else value
    return out
