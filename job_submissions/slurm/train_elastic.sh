#!/bin/bash
#SBATCH --job-name=tfxr-elastic
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=32
#SBATCH --cpus-per-task=1
#SBATCH --hint=nomultithread
#SBATCH --no-kill
#SBATCH --time=12:00:00
#SBATCH --output=logs/%x-%j.out
##SBATCH --gres=gpu:4             # GPU nodes: and --ntasks-per-node=4 (one worker per GPU)
# --no-kill: a failed node does not end the job (Slurm's default); the other workers go on.
##SBATCH --partition=cpu          # site-specific: uncomment and adapt
##SBATCH --account=my_project
#
# Elastic training (Horovod elastic, Gloo): the job survives the loss of workers. horovodrun
# --gloo --min-np MIN_NP --max-np <tasks> --host-discovery-script discover_hosts.sh starts one
# worker per slot the discovery script lists (`scontrol show hostnames "$SLURM_JOB_NODELIST"`,
# tasks per node slots each; it reaches other nodes over ssh) and tfxr.train runs with
# --set elastic=true: a lost worker rolls every worker back to the last commit (each epoch, and
# every N steps with --set elastic_commit_steps=N) and the rest go on; a node the script lists
# again joins at the next commit. The learning rate
# follows the live number of workers. Settings as for the other scripts (README.md), plus
# MIN_NP (default 1). Outside Slurm it runs NP ranks here like the other scripts (not elastic).
# docs/SCALING.md explains the Slurm side.
# Site modules (better in job_submissions/slurm/site.sh), e.g.:
#   module load openmpi/4.1
#   mkdir -p logs && DATA_DIR=/scratch/$USER/nih_tfrec sbatch job_submissions/slurm/train_elastic.sh [tfxr.train args]
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
tfxr_main 2 32 --elastic "$@" # nodes and workers (cores) per node as in the #SBATCH header
