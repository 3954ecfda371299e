#!/usr/bin/env bash
# The GAN-balancing experiment of docs/RESULTS.md, all of it: PneumoniaMNIST with the minority
# class (normal) cut to 5 % and 10 % of the training split and the full split, and the small TB
# set; six arms (none, cw, oversample, augment, gan, gan_cw), 5 seeds each, the same classifier
# and budget per arm; test = the official val split, thresholds chosen on validation.
# Usage: benchmarks/gan_balancing.sh [OUT] [extra args for benchmarks/gan_balancing.py run]
#   e.g. the slice that docs/RESULTS.md reports:
#   benchmarks/gan_balancing.sh /tmp/gb-slice --variants 5 --seeds 0 1 2 --gan-epochs 150 --clf-epochs 12
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-/tmp/tfxr-gan-balancing}; shift || true
export PYTHONPATH=${PYTHONPATH:-$PWD}
if [ "$#" -gt 0 ]; then
  "$PY" benchmarks/gan_balancing.py run --out "$OUT/pneumoniamnist" "$@"
  exit 0
fi
"$PY" benchmarks/gan_balancing.py run --out "$OUT/pneumoniamnist" --dataset pneumoniamnist \
    --variants 5 10 100 --seeds 0 1 2 3 4 --gan-epochs 150 --clf-epochs 20
"$PY" benchmarks/gan_balancing.py run --out "$OUT/tb" --dataset tb --variants all \
    --seeds 0 1 2 3 4 --gan-epochs 300 --clf-epochs 40 --batch-size 8
