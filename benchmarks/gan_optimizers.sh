#!/usr/bin/env bash
# Adam vs RMSProp for the DCGAN (docs/RESULTS.md): `python -m tfxr.gan compare-optimizers` on the
# training normals of the GAN-balancing experiment's 5 % variant, seeds 0-2 (each seed has its
# own cut of the data), the same budget and learning rates as the experiment's GAN, and the
# domain FID_tfxr[pneumonia_cnn] from that seed's unbalanced classifier (the `none` arm).
# Run benchmarks/gan_balancing.sh first; wall times are only meaningful on a quiet machine.
# Usage: benchmarks/gan_optimizers.sh GB_OUT [OUT]     (GB_OUT: gan_balancing.sh's OUT)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
GB=${1:?usage: benchmarks/gan_optimizers.sh GB_OUT [OUT]}
OUT=${2:-/tmp/tfxr-gan-optimizers}
export PYTHONPATH=${PYTHONPATH:-$PWD}
for seed in 0 1 2; do
  work=$GB/pneumoniamnist/pneumoniamnist-5/seed-$seed
  set -x
  "$PY" -m tfxr.gan compare-optimizers --data "$work/data" --out "$OUT/seed-$seed" --overwrite --epochs 150 --batch-size 16 \
      --loss hinge --g-lr 1e-3 --d-lr 4e-4 --set g_filters=32 --set d_filters=32 --sample-epochs 1,50,150 \
      --seed "$seed" --feature-model "$work/none/best.keras" --no-progress
  set +x
done
