#!/bin/bash
#SBATCH --job-name=tfxr-cpu
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=32
#SBATCH --cpus-per-task=1
#SBATCH --hint=nomultithread
#SBATCH --time=12:00:00
#SBATCH --output=logs/%x-%j.out
##SBATCH --partition=cpu          # site-specific: uncomment and adapt
##SBATCH --account=my_project
##SBATCH --mem=0                  # all of each node's memory
#
# A CPU node, no GPU: one rank per physical core, each bound to its core (srun
# --cpu-bind=cores, or mpirun --map-by slot:PE=1 --bind-to core); set --ntasks-per-node to
# the node's cores (or `sbatch --ntasks-per-node=N`). One-core ranks beat one process on all
# cores on CPU nodes (BENCHMARKS.md). Settings, data kinds and site setup: README.md.
#   mkdir -p logs && DATA_DIR=/scratch/$USER/nih_tfrec sbatch job_submissions/slurm/train_cpu_node.sh [tfxr.train args]
# Site modules (better in job_submissions/slurm/site.sh), e.g.:
#   module load openmpi/4.1
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
tfxr_main 1 32 "$@" # nodes and ranks (cores) per node as in the #SBATCH header
