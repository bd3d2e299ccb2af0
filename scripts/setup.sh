#!/bin/sh
# Install what rootfs needs on a Debian 12 machine (as root), then a virtual
# environment in .venv with rootfs and its test tools. Safe to run again: it
# installs only what is missing.
set -eu
cd "$(dirname "$0")/.."

# Tools rootfs calls at run time, and the ones the tests use to check its
# output for real (dpkg inside targets, rpm/createrepo_c/dnf as the rpm oracle,
# skopeo/umoci/podman/docker-registry to import and push images; pigz is the
# floor the benchmarks hold the gzip layer against; qemu-user-static runs
# foreign-architecture maintainer scripts in the tests and arch-test is what
# mmdebstrap needs for them in bench/foreign.py; apt-cacher-ng shares
# downloads between builds).
DEBS="python3 python3-venv gpgv gnupg debian-archive-keyring dpkg-dev debootstrap
mmdebstrap libarchive13 zstd xz-utils bzip2 e2fsprogs squashfs-tools squashfs-tools-ng
fakeroot uidmap util-linux libcap2-bin rpm createrepo-c dnf graphviz skopeo umoci
podman runc docker-registry oci-image-tool apache2-utils openssl curl ca-certificates
debuerreotype wget pigz qemu-user-static apt-cacher-ng arch-test"

missing=""
for p in $DEBS; do
  dpkg-query -W -f '${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages:$missing (run as root to install them)" >&2
    exit 1
  fi
  echo "setup: installing$missing"
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $missing >/dev/null
fi

# Debian's own python3: a virtual environment made from it is usable by
# every user (the rootless tests run rootfs as an unprivileged user), which
# one made from an interpreter under /root would not be.
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv .venv
fi
stamp=.venv/.rootfs-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi
