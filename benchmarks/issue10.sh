#!/usr/bin/env bash
# Issue 10's measurements, for a QUIET machine (nothing else running; numbers taken while
# other work shares the cores are meaningless).  From the checkout, after `make install`:
#   benchmarks/issue10.sh [OUT]          (default OUT=benchmarks/results)
# 1. `python -m tfxr.benchmark suite`: every ratio target side by side in one run
#    (tb_cnn 128 px loop vs model-only, np=2 vs the independent bound and vs the best
#    single process for tb_cnn and DenseNet121 128 px, DenseNet121 224 px FLOP fraction,
#    oneDNN on/off, bf16, XLA): OUT/suite.{json,md}, OUT/scaling_*.png.
# 2. `make demo` after install, timed, and its test AUROC: OUT/demo.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-benchmarks/results}
mkdir -p "$OUT"
uptime
"$PY" -m tfxr.benchmark --out "$OUT" suite

rm -rf demo_out
start=$(date +%s.%N)
make demo >"$OUT/demo.log" 2>&1
end=$(date +%s.%N)
auroc=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["mean_auroc"])' \
        demo_out/run/eval-test/metrics.json 2>/dev/null || echo "see $OUT/demo.log")
seconds=$("$PY" -c "print(f'{$end - $start:.1f}')")
echo "make demo: $seconds s wall, test mean AUROC $auroc ($(date -u +%FT%TZ))" | tee "$OUT/demo.txt"
