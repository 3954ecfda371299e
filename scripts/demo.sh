#!/usr/bin/env bash
# `make demo`: the main job end to end on the built-in synthetic data, no downloads.
#   1. draw TB-like chest-radiograph phantoms and write them as sharded TFRecords
#   2. train the TB CNN data-parallel with Horovod on $NP ranks (tfxr's one mpirun builder)
#   3. evaluate it on the held-out test split (AUROC table, ROC curve PNG)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
NP=${NP:-2}
OUT=${OUT:-demo_out}
IMAGES=${IMAGES:-1600}
EPOCHS=${EPOCHS:-12}

echo "== 1/3 synthetic data -> $OUT/data (TFRecords, 128 px)"
"$PYTHON" -m tfxr.tfrecords write --source synthetic --num-images "$IMAGES" --image-size 128 \
    --shards 4 --workers 2 --out "$OUT/data"
"$PYTHON" -m tfxr.data.stats "$OUT/data" --grid "$OUT/data_samples.png"

echo "== 2/3 train tb_cnn with Horovod on $NP ranks: $("$PYTHON" -m tfxr.distributed --np "$NP" --print -- tfxr.train)"
"$PYTHON" -m tfxr.distributed --np "$NP" -- tfxr.train --model tb_cnn --data "$OUT/data" --out "$OUT/run" --overwrite \
    --epochs "$EPOCHS" --batch-size 32 --cache --set plateau_patience=2 --set early_stopping_patience=4

echo "== 3/3 evaluate on the test split"
"$PYTHON" -m tfxr.evaluate --model "$OUT/run" --data "$OUT/data" --split test
echo "demo done: $OUT/data_samples.png (sample images), $OUT/run (model, history.json, TensorBoard logs),"
echo "           $OUT/run/eval-test/roc.png and metrics.json"
