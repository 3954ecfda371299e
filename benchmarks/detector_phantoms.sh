#!/usr/bin/env bash
# The detector (KerasCV YOLOv8, tfxr/models/detector.py) against the CAM boxes of a classifier
# and random boxes: on the phantoms (boxes known) and on the RSNA sample (222 images, 29 with
# 37 boxes: tiny, wide uncertainty), plus the training speed at np=1 and np=2.  The quality
# tables of docs/RESULTS.md (with bootstrap CIs, smaller sizes) come from
# benchmarks/detection_results.sh; this larger run and its images/s need an idle node:
#   bash benchmarks/detector_phantoms.sh OUT
set -euo pipefail
OUT=${1:-bench_detector}
PY=${PYTHON:-python}
NP=${NP:-2}
mkdir -p "$OUT" && cd "$OUT"
# phantoms
$PY -m tfxr.tfrecords write --source synthetic --num-images 2000 --synthetic-task tb --prevalence 0.5 \
    --image-size 256 --shards 8 --out ph --quiet
$PY -m tfxr.distributed --np "$NP" -- tfxr.detect train --data ph --out det --epochs 40 --batch-size 8 --no-progress
$PY -m tfxr.distributed --np "$NP" -- tfxr.train --model tb_cnn --data ph --out cls --epochs 12 --no-progress
$PY -m tfxr.distributed --np "$NP" -- tfxr.evaluate detection --detector det --data ph --split test \
    --cam-model cls --out eval-ph
# training speed, np=1 and np=2 (images/s in each history.json)
$PY -m tfxr.detect train --data ph --out speed1 --epochs 2 --steps-per-epoch 50 --val-split '' --no-progress
$PY -m tfxr.distributed --np 2 -- tfxr.detect train --data ph --out speed2 --epochs 2 --steps-per-epoch 50 \
    --val-split '' --no-progress
# the RSNA sample (needs ../shared/data; written with the rsna source of tfxr.tfrecords)
RSNA=${RSNA:-../../shared/data/rsna_pneumonia}
if [ -d "$RSNA" ]; then
    $PY -m tfxr.tfrecords write --source rsna --images "$RSNA/sample_stage_2_train_images" \
        --labels "$RSNA/stage_2_train_labels.csv" --image-size 256 --out rsna --quiet
    $PY -m tfxr.distributed --np "$NP" -- tfxr.detect train --data rsna --out det-rsna --epochs 40 --batch-size 8 \
        --no-progress
    $PY -m tfxr.evaluate detection --detector det-rsna --data rsna --split test --out eval-rsna
fi
