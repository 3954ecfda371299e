#!/usr/bin/env bash
# TB CNN on the small real TB set (../shared/data/tb_cxr, 114 images): one run per split seed,
# each split patient-wise 70/10/20, trained on 2 MPI ranks (python -m tfxr.distributed --np 2,
# tfxr's one mpirun builder) for a fixed 40 epochs and the final model evaluated on its test
# split.  With ~12 validation images, validation AUROC is too noisy to pick an epoch or cut
# the learning rate (tried: it picks epoch 1), so no early stopping, no plateau schedule and
# no model selection.
# Usage: benchmarks/tb_seeds.sh [OUT] [SEEDS...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-/tmp/tfxr-tb}; shift || true
SEEDS=${*:-0 1 2 3 4}
DATA=${TB_DATA:-../shared/data/tb_cxr}
for s in $SEEDS; do
  "$PY" -m tfxr.tfrecords write --source tb --images "$DATA/images" --labels "$DATA/labels.csv" \
      --image-size 128 --shards 2 --seed "$s" --out "$OUT/data-$s" --quiet
  "$PY" -m tfxr.distributed --np 2 -- tfxr.train --model tb_cnn --data "$OUT/data-$s" --out "$OUT/run-$s" --overwrite --epochs 40 \
      --batch-size 8 --cache --no-progress --seed "$s" --set plateau_patience=0 --set early_stopping_patience=0
  "$PY" -m tfxr.evaluate --model "$OUT/run-$s/final.keras" --out "$OUT/run-$s/eval-test" --data "$OUT/data-$s" --split test --set bootstrap=2000
done
"$PY" - "$OUT" $SEEDS <<'PYEOF'
import json, sys, numpy as np
out, seeds = sys.argv[1], sys.argv[2:]
aucs = []
for s in seeds:
    m = json.load(open(f"{out}/run-{s}/eval-test/metrics.json"))["labels"]["Tuberculosis"]
    aucs.append(m["auroc"])
    print(f"seed {s}: test AUROC {m['auroc']:.3f} (95% CI {m['auroc_ci95'][0]:.3f}-{m['auroc_ci95'][1]:.3f}), "
          f"sens {m['at_0.5']['sensitivity']:.2f} spec {m['at_0.5']['specificity']:.2f} at 0.5, n+ {m['positives']}")
print(f"mean test AUROC over {len(aucs)} splits: {np.mean(aucs):.3f} +- {np.std(aucs, ddof=1):.3f} (sd)")
PYEOF
