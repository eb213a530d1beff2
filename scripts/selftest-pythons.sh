#!/usr/bin/env bash
# The node's own Pythons: for each version given (default 3.8 = Ubuntu 20.04, 3.10 = 22.04),
# set up ./.venv-pyX.Y with scripts/host-check.sh (the README's first command, as an owner runs
# it), replay the host stage on every project snapshot in both option forms, then run the
# selftests that need no libvirtd, VM or torch. Interpreters: $PYENV_ROOT (pyenv), else
# pythonX.Y on the PATH; a missing one fails and says how to get it.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local found=""
  for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python"$1"; do
    [ -x "$cand" ] && found=$cand
  done
  [ -n "$found" ] || found=$(command -v "python$1" 2>/dev/null || true)
  echo "$found"
}

for version in "${@:-3.8 3.10}"; do
  for v in $version; do
    py=$(find_python "$v")
    if [ -z "$py" ]; then
      echo "selftest: no Python $v here: install it (pyenv install $v, or the distribution's" \
        "python$v and python$v-venv), then run again" >&2
      exit 1
    fi
    venv=.venv-py$v
    echo "--- Python $v ($py)"
    for snap in selftests/data/snapshots/*/; do
      PYTHON=$py DBC_ACCEPT_VENV=$venv scripts/host-check.sh --snapshot "${snap%/}" \
        --no-report -q | tail -n 1
    done
    "$venv/bin/python" -m pip install -q -e '.[dev,libvirt]'
    # Two workers, one file each: half of the wall time is waiting (subprocesses, sockets).
    DBC_SELFTEST_PORTABLE=1 "$venv/bin/python" -m pytest selftests -q -rs -p no:cacheprovider \
      -n 2 --dist loadfile
  done
done
