#!/usr/bin/env bash
# Localization on the NIH ChestX-ray14 sample in ../shared/data (621 images, of which only 12
# carry one of NIH's BBox_List_2017 boxes): write TFRecords with the boxes, train a classifier
# on the train split, evaluate it on test, then score its Grad-CAM boxes on test.  As in NIH's
# official split (its test list holds every boxed image), the patients with a boxed image form
# the test split (lists written below); train and val are carved patient-wise from the rest.
# (All 621 images are in CheXNet's test list, so those lists cannot split the sample.)  No
# other split has boxes to choose the heatmap cut on, so it is fixed in advance
# (--box-threshold 0.5).
# A dozen boxes and a model trained on ~430 images: the numbers show
# the path works on real NIH data, not how well a CheXNet localizes (see docs/RESULTS.md).
# Usage: benchmarks/nih_sample_localization.sh [OUT]
#   MODEL=chexnet WEIGHTS=PATH/densenet121_imagenet.h5 IMAGE_SIZE=224 for the CheXNet run
#   (ImageNet weights cannot be downloaded on the machine these numbers come from).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-/tmp/tfxr-nih-sample-localization}
SHARED=${TFXR_SHARED_DATA:-../shared/data}
MODEL=${MODEL:-tb_cnn}; WEIGHTS=${WEIGHTS:-none}; IMAGE_SIZE=${IMAGE_SIZE:-224}; EPOCHS=${EPOCHS:-15}
SAMPLE=$SHARED/nih_chestxray14_sample; META=$SHARED/nih_chestxray14_metadata
export PYTHONPATH=${PYTHONPATH:-$PWD}
mkdir -p "$OUT"
"$PY" - "$SAMPLE/Data_Entry_2017_sample.csv" "$META/BBox_List_2017.csv.gz" "$OUT" <<'PYEOF'
import sys, pandas as pd
sample, boxes, out = pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2]), sys.argv[3]
boxed_patients = set(sample.loc[sample["Image Index"].isin(boxes["Image Index"]), "Patient ID"])
test = sample["Patient ID"].isin(boxed_patients)
sample.loc[test, "Image Index"].to_csv(f"{out}/test_list.txt", index=False, header=False)
sample.loc[~test, "Image Index"].to_csv(f"{out}/train_val_list.txt", index=False, header=False)
print(f"test: {test.sum()} images of the {len(boxed_patients)} patients with a boxed image; "
      f"train+val: {(~test).sum()} images")
PYEOF
set -x
"$PY" -m tfxr.tfrecords write --source nih --images "$SAMPLE/images" --labels "$SAMPLE/Data_Entry_2017_sample.csv" \
    --bbox "$META/BBox_List_2017.csv.gz" --split-list "trainval=$OUT/train_val_list.txt" \
    --split-list "test=$OUT/test_list.txt" --image-size "$IMAGE_SIZE" --shards 2 --seed 0 --out "$OUT/data" --quiet
WEIGHT_ARGS=(); [ "$MODEL" = chexnet ] && WEIGHT_ARGS=(--weights "$WEIGHTS")
"$PY" -m tfxr.train --model "$MODEL" "${WEIGHT_ARGS[@]}" --data "$OUT/data" --out "$OUT/run" --overwrite \
    --epochs "$EPOCHS" --batch-size 16 --seed 0 --no-progress
"$PY" -m tfxr.evaluate --model "$OUT/run" --data "$OUT/data" --split test --out "$OUT/eval-test"
"$PY" -m tfxr.localize --model "$OUT/run" --data "$OUT/data" --split test --box-threshold 0.5 \
    --overlays 12 --out "$OUT/localize-test"
