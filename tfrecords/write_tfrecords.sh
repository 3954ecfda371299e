#!/usr/bin/env bash
# Thin HPC wrapper around the converter `python -m tfxr.tfrecords write`.
#
#   tfrecords/write_tfrecords.sh nih       RAW_DIR OUT_DIR [EXTRA...]
#   tfrecords/write_tfrecords.sh tb        RAW_DIR OUT_DIR [EXTRA...]
#   tfrecords/write_tfrecords.sh folder    RAW_DIR OUT_DIR [EXTRA...]
#   tfrecords/write_tfrecords.sh npz       FILE    OUT_DIR [EXTRA...]
#   tfrecords/write_tfrecords.sh synthetic N       OUT_DIR [EXTRA...]
#
# Presets:
#   nih        --images RAW_DIR/images --labels RAW_DIR/Data_Entry_2017*.csv (the _v2020
#              file when there are several), --bbox RAW_DIR/BBox_List_2017.csv if present,
#              and --split-list trainval=RAW_DIR/train_val_list.txt
#              --split-list test=RAW_DIR/test_list.txt when both lists are present.
#              This is the layout download_dataset.sh nih + extract_images.sh DIR DIR give.
#   tb         --images RAW_DIR/images (or RAW_DIR/CXR_png, the NLM zips' layout)
#              [--labels RAW_DIR/labels.csv if present]
#   folder     --images RAW_DIR
#   npz        --npz FILE
#   synthetic  --num-images N
# EXTRA arguments go to the converter unchanged, e.g. --workers 8 --seed 1 (for a raw index
# set FORMAT=raw: then no --shards is passed, which the converter refuses with --format raw).
#
# Environment:
#   PYTHON      Python to run (default: python)
#   IMAGE_SIZE  --image-size (default: 224)
#   SHARDS      --shards (default: 16)
#   FORMAT      adds --format FORMAT (tfrecord or raw) when set
#   NP          number of MPI ranks (default: 1). With NP > 1 the converter runs under
#               tfxr's one mpirun builder: PYTHON -m tfxr.distributed --np NP -- tfxr.tfrecords ...
#               (mpirun -np NP --oversubscribe --bind-to none, --allow-run-as-root as root)
#   DRY_RUN=1   print the command instead of running it
set -euo pipefail

PROG=${0##*/}
if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
    echo "$PROG: bash >= 4.4 is required (this is $BASH_VERSION)" >&2
    exit 1
fi
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { sed -n '2,32s/^# \{0,1\}//p' "$0"; }
die() { echo "$PROG: error: $*" >&2; exit 1; }
usage_error() { echo "$PROG: $*" >&2; echo >&2; usage >&2; exit 2; }

case ${1:-} in -h | --help) usage; exit 0 ;; esac
(($# >= 3)) || usage_error "expected a preset and two arguments"

PRESET=$1 SRC=$2 OUT=$3
shift 3
EXTRA=("$@")

PYTHON=${PYTHON:-python}
IMAGE_SIZE=${IMAGE_SIZE:-224}
SHARDS=${SHARDS:-16}
NP=${NP:-1}
for var in IMAGE_SIZE SHARDS NP; do
    [[ ${!var} =~ ^[1-9][0-9]*$ ]] || die "$var must be a positive integer, got '${!var}'"
done

need_dir() { [[ -d $1 ]] || die "$2: no such directory: $1"; }

ARGS=()
case $PRESET in
    nih)
        need_dir "$SRC" "RAW_DIR"
        need_dir "$SRC/images" "NIH images (run tfrecords/extract_images.sh first)"
        labels=""
        if [[ -f $SRC/Data_Entry_2017_v2020.csv ]]; then
            labels=$SRC/Data_Entry_2017_v2020.csv
        else
            for f in "$SRC"/Data_Entry_2017*.csv; do
                [[ -f $f ]] && { labels=$f; break; }
            done
        fi
        [[ -n $labels ]] || die "no $SRC/Data_Entry_2017*.csv (download_dataset.sh nih fetches Data_Entry_2017_v2020.csv)"
        ARGS+=(--source nih --images "$SRC/images" --labels "$labels")
        [[ -f $SRC/BBox_List_2017.csv ]] && ARGS+=(--bbox "$SRC/BBox_List_2017.csv")
        if [[ -f $SRC/train_val_list.txt && -f $SRC/test_list.txt ]]; then
            ARGS+=(--split-list "trainval=$SRC/train_val_list.txt" --split-list "test=$SRC/test_list.txt")
        elif [[ -f $SRC/train_val_list.txt || -f $SRC/test_list.txt ]]; then
            echo "$PROG: warning: only one of train_val_list.txt and test_list.txt is in $SRC; using neither" >&2
        fi
        ;;
    tb)
        need_dir "$SRC" "RAW_DIR"
        if [[ -d $SRC/images ]]; then
            images=$SRC/images
        elif [[ -d $SRC/CXR_png ]]; then
            images=$SRC/CXR_png
        else
            die "no $SRC/images (or $SRC/CXR_png) directory"
        fi
        ARGS+=(--source tb --images "$images")
        [[ -f $SRC/labels.csv ]] && ARGS+=(--labels "$SRC/labels.csv")
        ;;
    folder)
        need_dir "$SRC" "RAW_DIR"
        ARGS+=(--source folder --images "$SRC")
        ;;
    npz)
        [[ -f $SRC ]] || die "no such npz file: $SRC"
        ARGS+=(--source npz --npz "$SRC")
        ;;
    synthetic)
        [[ $SRC =~ ^[1-9][0-9]*$ ]] || die "synthetic needs a positive number of images, got '$SRC'"
        ARGS+=(--source synthetic --num-images "$SRC")
        ;;
    *) usage_error "unknown preset '$PRESET' (nih, tb, folder, npz, synthetic)" ;;
esac
ARGS+=(--out "$OUT" --image-size "$IMAGE_SIZE")
[[ ${FORMAT:-tfrecord} == raw ]] || ARGS+=(--shards "$SHARDS")  # raw writes one index per split
[[ -n ${FORMAT:-} ]] && ARGS+=(--format "$FORMAT")

read -r -a PY <<<"$PYTHON"
CMD=(tfxr.tfrecords write "${ARGS[@]}" "${EXTRA[@]}")
if ((NP > 1)); then
    CMD=("${PY[@]}" -m tfxr.distributed --np "$NP" -- "${CMD[@]}")
else
    CMD=("${PY[@]}" -m "${CMD[@]}")
fi

# Let `python -m tfxr...` find the package even when it is not pip-installed.
export PYTHONPATH="$REPO_DIR${PYTHONPATH:+:$PYTHONPATH}"

if [[ ${DRY_RUN:-0} == 1 ]]; then
    printf '%q ' "${CMD[@]}"
    echo
    exit 0
fi
printf '+ %s\n' "$(printf '%q ' "${CMD[@]}")" >&2
exec "${CMD[@]}"
