#!/bin/bash
#SBATCH --job-name=tfxr-detector
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=8
#SBATCH --time=06:00:00
#SBATCH --output=logs/%x-%j.out
##SBATCH --partition=gpu          # site-specific: uncomment and adapt
##SBATCH --account=my_project
##SBATCH --mem=0                  # all of each node's memory
#
# The box detector (KerasCV YOLOv8, python -m tfxr.detect train) on 4 GPUs of one node, one
# rank per GPU (change --ntasks-per-node and --gres together). DATA_DIR: TFRecords with boxes
# (RSNA, NIH BBox_List_2017, VinDr-CXR, TBX11K, the phantoms); no config file needed (CONFIG
# optional); EPOCHS, BATCH_SIZE and EXTRA_ARGS (e.g. '--image-size 512 --backbone s') as for
# the classifier scripts; MODEL is refused. A CPU node: sbatch --gres=none --ntasks-per-node=CORES
# --cpus-per-task=1. Evaluate after: python -m tfxr.evaluate detection --detector OUT_DIR --data DATA_DIR.
#   mkdir -p logs && DATA_DIR=/scratch/$USER/rsna_tfrec sbatch job_submissions/slurm/train_detector.sh [tfxr.detect train args]
# Site modules (better in job_submissions/slurm/site.sh), e.g.:
#   module load cuda/12.5 cudnn/9.3 openmpi/4.1 nccl/2.21
set -euo pipefail
# sbatch runs a spooled copy of this file, so its own folder does not lead to the repo:
# try $TFXR_REPO_DIR, this file's folder (local runs), then where sbatch was called.
for TFXR_REPO_DIR in "${TFXR_REPO_DIR:-}" "$(dirname "$0")/../.." "${SLURM_SUBMIT_DIR:-}" "${SLURM_SUBMIT_DIR:-}/../.."; do
    [[ -f $TFXR_REPO_DIR/job_submissions/slurm/common.sh ]] && break
done
if [[ ! -f $TFXR_REPO_DIR/job_submissions/slurm/common.sh ]]; then
    echo "tfxr job: error: cannot find job_submissions/slurm/common.sh; submit from the tfxr repo root or set TFXR_REPO_DIR" >&2
    exit 1
fi
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$TFXR_REPO_DIR/job_submissions/slurm/common.sh"
tfxr_detect_main 1 4 "$@" # nodes and GPUs per node as in the #SBATCH header
