#!/usr/bin/env bash
# Accuracy against the number of workers (issue 18, docs/RESULTS.md section 6): test AUROC after a
# fixed number of epochs for effective workers 1, 2, 4, 8, 16 (2 MPI ranks x accumulate_steps;
# 1 = one process), with and without lr scaling + warm-up, 3 seeds, on PneumoniaMNIST (official
# val = test, validation carved from train) and on tfxr's phantoms.  Restartable: finished cells
# are skipped.  Writes OUT/results.{csv,json}, OUT/table.md and OUT/accuracy_vs_workers.png.
# Usage: benchmarks/accuracy_vs_workers.sh [OUT] [options of benchmarks/accuracy_vs_workers.py run]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-/tmp/tfxr-accuracy-vs-workers}; shift || true
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
"$PY" benchmarks/accuracy_vs_workers.py run --out "$OUT" --python "$PY" --shared "${SHARED:-../shared/data}" "$@"
"$PY" benchmarks/accuracy_vs_workers.py summarize --out "$OUT" "$@"
