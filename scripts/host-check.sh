#!/usr/bin/env bash
# Set up dbc-accept in ./.venv with the node's own python3 (3.8 or newer; Ubuntu 20.04 has 3.8,
# 22.04 has 3.10) and run the host stage: `pytest -m host`. Installs no other Python. As root
# it installs the Debian/Ubuntu packages that are missing (and says which); otherwise it names
# them. PYTHON=/path/to/python3 picks another interpreter. Extra arguments go to pytest
# (e.g. --hosts ssh://root@node1, --snapshot DIR, -n auto).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "dbc-accept: $*" >&2; }

PY=${PYTHON:-$(command -v python3 2>/dev/null || true)}
if [ -z "$PY" ] || ! [ -x "$(command -v "$PY" 2>/dev/null || true)" ]; then
  say "no python3 on this node: sudo apt-get install python3 python3-venv (install guide (一))"
  exit 2
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 8))' 2>/dev/null; then
  say "$PY is Python $("$PY" -c 'import platform; print(platform.python_version())' 2>/dev/null ||
    echo '?'), 3.8 or newer is needed: run the node on Ubuntu 20.04 or 22.04 (install guide (一))"
  exit 2
fi

# What building and running the package needs, by Debian/Ubuntu package name.
missing=()
system_python=0
case "$(readlink -f "$(command -v "$PY")")" in /usr/bin/*) system_python=1 ;; esac
if [ "$system_python" = 1 ]; then
  "$PY" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  "$PY" -c 'import os, sys, sysconfig
sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    2>/dev/null || missing+=(python3-dev)
fi
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v pkg-config >/dev/null 2>&1 && ! pkg-config --exists libvirt 2>/dev/null &&
  missing+=(libvirt-dev)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v xfs_info >/dev/null 2>&1 || missing+=(xfsprogs)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]} (apt-get)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  else
    say "missing packages: ${missing[*]}; install them: sudo apt-get install ${missing[*]}"
    exit 2
  fi
fi

# The venv (DBC_ACCEPT_VENV, default ./.venv) is made again only when python3 changed.
VENV=${DBC_ACCEPT_VENV:-.venv}
version() { "$1" -c 'import platform; print(platform.python_version())'; }
if [ -x "$VENV/bin/python" ] && [ "$(version "$VENV/bin/python")" != "$(version "$PY")" ]; then
  say "$VENV has Python $(version "$VENV/bin/python"), making it again with $(version "$PY")"
  rm -rf "$VENV"
fi
stamp=$VENV/.dbc-accept-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing dbc-accept into $VENV with Python $(version "$PY") (once, about a minute)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  # Ubuntu 20.04's pip (20.0) cannot install a pyproject.toml project in place.
  log=$VENV/install.log
  if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
    "$VENV/bin/python" -m pip install -q -e '.[libvirt]'; } >"$log" 2>&1; then
    cat "$log" >&2
    say "installing into $VENV failed (the log above is in $log)"
    exit 1
  fi
  touch "$stamp"
fi
# no:cacheprovider: the host stage leaves no .pytest_cache behind on the node
exec "$VENV/bin/python" -m pytest -m host -p no:cacheprovider "$@"
