#!/usr/bin/env bash
# Set up dbc-accept in ./.venv (once) and run the host stage: `pytest -m host`.
# Extra arguments go to pytest (e.g. --hosts=ssh://root@node1, --snapshot DIR, -n auto).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=""
for cand in python3.13 python3.12 python3.11 python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    PY=$(command -v "$cand"); break
  fi
done
if [ -z "$PY" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "dbc-accept: installing Python 3.11 (apt-get)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11 python3.11-venv >/dev/null
  PY=$(command -v python3.11 || true)
fi
if [ -z "$PY" ]; then
  echo "dbc-accept: needs Python 3.11 or newer (Ubuntu 20.04: add the deadsnakes PPA, then apt-get install python3.11 python3.11-venv)" >&2
  exit 2
fi

need_pkgs=()
[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && {
  pkg-config --exists libvirt 2>/dev/null || need_pkgs+=(libvirt-dev pkg-config gcc)
  "$PY" -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=("$(basename "$PY")-venv")
  command -v xfs_info >/dev/null || need_pkgs+=(xfsprogs)
}
if [ ${#need_pkgs[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

stamp=.venv/.dbc-accept-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[libvirt]'
  touch "$stamp"
fi
exec .venv/bin/python -m pytest -m host "$@"
