#!/usr/bin/env bash
# The evaluator's numbers on tfxr's own phantoms (docs/RESULTS.md, "Evaluator"): a multi-label
# phantom set with lesion boxes, a tb_cnn trained on it, then
#   1. the classifier report on test,
#   2. the domain FID / classifier score (FID_tfxr[tb_cnn]: the trained classifier's penultimate
#      layer, offline) of uniform noise against the real training images, beside the
#      real-vs-real baseline (two disjoint halves of the real set),
#   3. Grad-CAM localization on test, thresholds chosen on val, against random boxes in the lungs.
# Usage: benchmarks/evaluator_phantoms.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-/tmp/tfxr-evaluator-phantoms}
export PYTHONPATH=${PYTHONPATH:-$PWD}
set -x
"$PY" -m tfxr.tfrecords write --source synthetic --synthetic-task multilabel --num-images 2000 --image-size 64 \
    --shards 4 --seed 0 --out "$OUT/data" --quiet
"$PY" -m tfxr.train --model tb_cnn --data "$OUT/data" --out "$OUT/run" --overwrite --epochs 20 --batch-size 32 --seed 0 \
    --no-progress
"$PY" -m tfxr.evaluate --model "$OUT/run" --data "$OUT/data" --split test --out "$OUT/eval-test"
"$PY" -m tfxr.evaluate gan --generated noise --real "$OUT/data" --split train --features tfxr \
    --feature-model "$OUT/run" --out "$OUT/gan-noise"
"$PY" -m tfxr.localize --model "$OUT/run" --data "$OUT/data" --split test --out "$OUT/localize-test"
