#!/usr/bin/env bash
# Set up everything the project's own tests need on a fresh Debian/Ubuntu machine, then run
# them: system packages, ./.venv, a libvirtd started by hand (TCP 16509 on 127.0.0.1, no auth,
# as a DBC node runs it), the small cached Debian guest image, then ruff, mypy and
# `pytest selftests`. Run as root. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "selftest: run as root (it installs packages and starts libvirtd)" >&2
  exit 2
fi

step() { printf '\n=== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

step "system packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils ovmf \
  libvirt-dev pkg-config gcc dnsmasq-base iptables iproute2 debootstrap \
  openssh-client openssh-server util-linux xfsprogs kmod pciutils procps \
  ca-certificates chromium >/dev/null

step "python environment"
PY=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev,libvirt]'
# CPU build: the probes' logic is tested on the CPU.
.venv/bin/python -m pip install -q 'torch==2.13.0'

step "libvirtd"
scripts/start-libvirtd.sh

step "guest image"
eval "$(scripts/build-guest-image.sh)"
export DBC_CI_IMAGE DBC_CI_KERNEL DBC_CI_INITRD DBC_CI_CMDLINE

step "node image (the node in miniature, selftests marked node)"
eval "$(scripts/build-node-image.sh)"
export DBC_NODE_DIR DBC_NODE_KEY

step "lint and types"
.venv/bin/ruff check .
.venv/bin/mypy

step "the node's own Pythons: 3.8 (Ubuntu 20.04) and 3.10 (22.04)"
scripts/selftest-pythons.sh 3.8 3.10

step "pytest selftests"
# -rs: every skipped selftest with its reason, above the closing count.
exec .venv/bin/python -m pytest selftests -q -rs "$@"
