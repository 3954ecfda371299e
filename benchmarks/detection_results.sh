#!/usr/bin/env bash
# Supervised detector vs CAM boxes vs random boxes (issue 17; docs/RESULTS.md section 5):
# quality only (mAP@0.5, mAP@[.5:.95] by pycocotools, RSNA score, FROC, 95 % bootstrap CIs over
# images); no timings.  Sized to run in about 20 min on 2 quiet cores.
#   (a) tfxr's phantoms (lesion boxes known): 600 images at 128 px, patient-wise 70/10/20;
#   (b) the RSNA-layout sample of ../shared/data (222 NIH images as RSNA DICOMs, 29 with 37 boxes)
#       at 256 px, split 60/20/20 so that validation (where score cuts are chosen) has boxes too.
# For each: the detector (tfxr.detect train, 2 MPI ranks) and a tb_cnn classifier on the same
# records (its HiResCAM boxes), both scored on the TEST split with cuts chosen on VALIDATION;
# the validation mAP@0.5 of the detector's best epoch is read from its history.json, labelled.
# Then benchmarks/detection_results.py writes OUT/tables.md and OUT/detection_results.png.
# Usage: benchmarks/detection_results.sh [OUT]     (env: NP=2, SHARED=../shared/data, PYTHON, BOOT=200,
#        SETS="ph rsna": the data sets to run, e.g. SETS=rsna in a second shell beside SETS=ph)
# Restartable: a step whose final output exists is skipped (a training counts as done once it
# wrote final.*, not best.*, which an interrupted run leaves behind too).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
NP=${NP:-2}
OUT=${1:-/tmp/tfxr-detection}
SHARED=${SHARED:-../shared/data}
BOOT=${BOOT:-200}
SETS=${SETS:-ph rsna}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
mkdir -p "$OUT"
run() { echo "+ $*" | tee -a "$OUT/commands.txt"; "$@"; }
launch() { if [ "$NP" -gt 1 ]; then run "$PY" -m tfxr.launch --np "$NP" -- "$@"; else run "$PY" -m "$@"; fi; }

# (a) phantoms
if [[ " $SETS " == *" ph "* ]]; then
[ -f "$OUT/ph/manifest.json" ] || run "$PY" -m tfxr.tfrecords write --source phantoms --phantom-task tb \
    --prevalence 0.5 --num-images 600 --image-size 128 --shards 4 --seed 0 --out "$OUT/ph" --quiet
[ -f "$OUT/det-ph/final.weights.h5" ] || launch tfxr.detect train --data "$OUT/ph" --out "$OUT/det-ph" --overwrite \
    --epochs 25 --lr 0.003 --batch-size 8 --seed 0 --no-progress
[ -f "$OUT/cls-ph/final.keras" ] || launch tfxr.train --model tb_cnn --data "$OUT/ph" --out "$OUT/cls-ph" --overwrite \
    --epochs 15 --batch-size 16 --seed 0 --cache --no-progress --set early_stopping_patience=0
[ -f "$OUT/eval-ph/detection.json" ] || run "$PY" -m tfxr.evaluate detection --detector "$OUT/det-ph" \
    --data "$OUT/ph" --split test --threshold-split val --cam-model "$OUT/cls-ph" --bootstrap "$BOOT" \
    --overlays 6 --out "$OUT/eval-ph"
# the CAM boxes at lower heatmap cuts (how their fit changes; no intervals)
for cut in 0.2 0.1; do
  [ -f "$OUT/eval-ph-cam$cut/detection.json" ] || run "$PY" -m tfxr.evaluate detection --detector "$OUT/det-ph" \
      --data "$OUT/ph" --split test --threshold-split val --cam-model "$OUT/cls-ph" --cam-box-threshold "$cut" \
      --bootstrap 0 --overlays 6 --out "$OUT/eval-ph-cam$cut"
done
fi

# (b) the RSNA-layout sample
RSNA=$SHARED/rsna_pneumonia
if [[ " $SETS " != *" rsna "* ]]; then
  :
elif [ -d "$RSNA/sample_stage_2_train_images" ]; then
  [ -f "$OUT/rsna/manifest.json" ] || run "$PY" -m tfxr.tfrecords write --source rsna \
      --images "$RSNA/sample_stage_2_train_images" --labels "$RSNA/stage_2_train_labels.csv" \
      --missing-images skip --image-size 256 --shards 2 --split-fractions 0.6,0.2,0.2 --seed 0 \
      --out "$OUT/rsna" --quiet
  [ -f "$OUT/det-rsna/final.weights.h5" ] || launch tfxr.detect train --data "$OUT/rsna" --out "$OUT/det-rsna" \
      --overwrite --epochs 25 --lr 0.003 --batch-size 8 --seed 0 --no-progress
  [ -f "$OUT/cls-rsna/final.keras" ] || launch tfxr.train --model tb_cnn --data "$OUT/rsna" --out "$OUT/cls-rsna" \
      --overwrite --epochs 15 --batch-size 16 --seed 0 --cache --no-progress --set early_stopping_patience=0
  [ -f "$OUT/eval-rsna/detection.json" ] || run "$PY" -m tfxr.evaluate detection --detector "$OUT/det-rsna" \
      --data "$OUT/rsna" --split test --threshold-split val --cam-model "$OUT/cls-rsna" --bootstrap "$BOOT" \
      --overlays 6 --out "$OUT/eval-rsna"
else
  echo "detection_results: $RSNA/sample_stage_2_train_images not found: RSNA sample skipped" >&2
fi
run "$PY" benchmarks/detection_results.py "$OUT"
