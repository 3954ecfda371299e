#!/bin/bash
#SBATCH --job-name=tfxr-2x4gpu
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=logs/%x-%j.out
##SBATCH --partition=gpu          # site-specific: uncomment and adapt
##SBATCH --account=my_project
##SBATCH --mem=0                  # all of each node's memory
#
# 2 nodes x 4 GPUs, one rank per GPU; DATA_DIR must be on a file system every node reads.
# Trains CheXNet from configs/chexnet_nih.yaml; settings, data kinds and site setup: README.md.
#   mkdir -p logs && DATA_DIR=/scratch/$USER/nih_tfrec sbatch job_submissions/slurm/train_multinode.sh [tfxr.train args]
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
tfxr_main 2 4 "$@" # nodes and GPUs per node as in the #SBATCH header
