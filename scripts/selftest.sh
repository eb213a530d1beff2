#!/usr/bin/env bash
# Set up everything the project's own tests need on a fresh Debian/Ubuntu machine, then run
# them: system packages, ./.venv, a libvirtd started by hand (TCP 16509 on 127.0.0.1, no auth,
# as a DBC node runs it), the small cached Debian guest image, then ruff, mypy and
# `pytest selftests` (the node-in-miniature selftests in the background, beside the rest).
# Run as root. Extra arguments go to one `pytest selftests` run instead.
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

lint_and_types() {
  step "lint and types"
  .venv/bin/ruff check .
  .venv/bin/mypy
}

if [ $# -gt 0 ]; then
  step "node image (the node in miniature, selftests marked node)"
  eval "$(scripts/build-node-image.sh)"
  export DBC_NODE_DIR DBC_NODE_KEY
  lint_and_types
  step "pytest selftests $*"
  exec .venv/bin/python -m pytest selftests -q -rs "$@"
fi

# The node in miniature runs in the background: its image (about ten minutes the first time,
# mostly the Debian mirror) beside lint, types and the node's Pythons, then its selftests
# (about twenty minutes under software emulation, one core most of the time) beside the main
# `pytest selftests`, which leaves the second core idle for much of its time. The Pythons'
# two pytest workers have both cores to themselves. Its output comes after the rest's; either
# failing fails the whole. `set -m`: its own process group, where SIGINT is not ignored (a
# background job of a script ignores it), so that the EXIT trap's SIGINT lets pytest stop the
# nodes it started.
step "the node in miniature, in the background: its image now, its selftests after the Pythons"
node_tmp=$(mktemp -d -t dbc-accept-node-selftests.XXXXXX)
node_log=$node_tmp/log
set -m
(
  eval "$(scripts/build-node-image.sh)"
  export DBC_NODE_DIR DBC_NODE_KEY
  while [ ! -e "$node_tmp/go" ]; do sleep 2; done
  # -s: the nodes' timings (boot, host runs, VM stages, script, reboot) as they come
  exec .venv/bin/python -m pytest selftests -m node -q -rs -s --durations=15 -p no:cacheprovider
) >"$node_log" 2>&1 &
node_pid=$!
set +m
trap 'kill -INT -- -"$node_pid" 2>/dev/null || true' EXIT
echo "selftest: node selftests started (pid $node_pid, output in $node_log)"

lint_and_types

rc=0
step "the node's own Pythons: 3.8 (Ubuntu 20.04) and 3.10 (22.04)"
scripts/selftest-pythons.sh 3.8 3.10 || rc=1

step "pytest selftests -m 'not node' (the node selftests start beside it)"
touch "$node_tmp/go"
# -rs: every skipped selftest with its reason, above the closing count.
.venv/bin/python -m pytest selftests -q -rs -m "not node" || rc=1

step "pytest selftests -m node (waiting for the background run)"
node_rc=0
wait "$node_pid" || node_rc=$?
trap - EXIT
cat "$node_log"
rm -rf "$node_tmp"
[ "$node_rc" = 0 ] || { echo "selftest: the node selftests failed (exit $node_rc)" >&2; rc=1; }
step "done: $([ "$rc" = 0 ] && echo passed || echo FAILED)"
exit "$rc"
