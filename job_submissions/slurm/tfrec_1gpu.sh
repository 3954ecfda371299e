#!/bin/bash
#SBATCH --job-name=tfxr-tfrec-1gpu
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=12:00:00
#SBATCH --output=logs/%x-%j.out
##SBATCH --partition=gpu          # site-specific: uncomment and adapt
##SBATCH --account=my_project
##SBATCH --mem=0                  # all of each node's memory
#
# Train on TFRecords with 1 GPU (1 rank).
# DATA_DIR: a TFRecord directory written by tfrecords/write_tfrecords.sh.
#
#   mkdir -p logs     # Slurm does not create the --output directory
#   DATA_DIR=/path/to/data EPOCHS=30 sbatch job_submissions/slurm/tfrec_1gpu.sh
#
# Submit from the repo root (or from this folder). Environment: DATA_DIR (required),
# OUT_DIR, MODEL, EPOCHS, BATCH_SIZE, EXTRA_ARGS, PYTHON, LAUNCHER, DRY_RUN; see README.md.
# Arguments after the script name are added to the tfxr.train command.
# Outside Slurm (no SLURM_JOB_ID) it runs here with NP ranks (default 1) under
# mpirun --oversubscribe, e.g.: NP=2 DATA_DIR=/tmp/data bash job_submissions/slurm/tfrec_1gpu.sh
#
# Site-specific environment (examples; better kept in job_submissions/slurm/site.sh):
#   module purge
#   module load cuda/12.5 cudnn/9.3 openmpi/4.1 nccl/2.21
#   source /path/to/tfxr/.venv/bin/activate

set -euo pipefail
# sbatch runs a copy of this file from its spool directory, so under Slurm its own
# location does not lead to the repo: try $TFXR_REPO_DIR, this file's folder (local
# runs), then $SLURM_SUBMIT_DIR (repo root or this folder). See README.md.
for _repo in "${TFXR_REPO_DIR:-}" "$(dirname "${BASH_SOURCE[0]}")/../.." \
    "${SLURM_SUBMIT_DIR:-}" "${SLURM_SUBMIT_DIR:-}/../.."; do
    [[ -n $_repo && -f $_repo/job_submissions/slurm/common.sh ]] && break
done
if [[ ! -f $_repo/job_submissions/slurm/common.sh ]]; then
    echo "tfxr job: error: cannot find job_submissions/slurm/common.sh; submit from the tfxr repo root or set TFXR_REPO_DIR" >&2
    exit 1
fi
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$_repo/job_submissions/slurm/common.sh"
# data kind, nodes, GPUs per node (as in the #SBATCH header), then extra tfxr.train arguments
tfxr_main tfrecord 1 1 "$@"
