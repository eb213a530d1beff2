#!/usr/bin/env bash
# The in-guest GPU verdicts on this machine (--guest local), clean and under interference
# planted on purpose, in at most 150 s: the unit+integration suite with a short burn, the
# GEMM burn three times (TFLOP/s per precision), then a process holding most of GPU 0's
# memory, one computing on it all the time, one computing 30% of the time, and
# --expect-gpus one more than the machine has. Which test failed, when and what it said, and
# the burn's figures go to $OUT (default ./gpu-verdicts-out): summary.json, summary.txt,
# logs/. Needs python3 with torch (CUDA), pytest and this project importable (installed, or
# run from a checkout: this script puts the checkout first on PYTHONPATH).
# Options (scripts/gpu_verdicts.py --help): --budget S, --stress-seconds S, --burn-runs N,
# --profile P (default runpod), --only STAGES, --cpu-check (the same logic without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import pytest, torch' 2>/dev/null; then
  echo "gpu-verdicts: $PY needs pytest and torch" >&2
  exit 2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" scripts/gpu_verdicts.py "$@"
