#!/bin/bash
# Horovod elastic's host discovery script for a Slurm job: prints one "host:slots" line per
# node of the job (`horovodrun --host-discovery-script`, which runs it every second).
#   slots per node: $TFXR_SLOTS_PER_NODE, else the job's tasks per node
#   ($SLURM_NTASKS_PER_NODE, or the first count of $SLURM_TASKS_PER_NODE, e.g. "2(x3)" -> 2), else 1
#   the nodes: `scontrol show hostnames "$SLURM_JOB_NODELIST"`
# A site that drains or returns nodes inside a running job (or lists spare nodes in a file)
# edits this script to print the nodes that are up: a node that disappears from the list is
# removed from the job, one that appears joins it at the next commit (docs/SCALING.md).
set -euo pipefail
if [[ -z ${SLURM_JOB_NODELIST:-} ]]; then
    echo "discover_hosts.sh: error: SLURM_JOB_NODELIST is not set (run inside a Slurm job)" >&2
    exit 1
fi
slots=${TFXR_SLOTS_PER_NODE:-${SLURM_NTASKS_PER_NODE:-}}
if [[ -z $slots ]]; then
    slots=${SLURM_TASKS_PER_NODE:-1}
    slots=${slots%%(*}
    slots=${slots%%,*}
fi
if ! [[ $slots =~ ^[1-9][0-9]*$ ]]; then
    echo "discover_hosts.sh: error: slots per node must be a positive integer, got '$slots'" >&2
    exit 1
fi
scontrol show hostnames "$SLURM_JOB_NODELIST" | sed "s/\$/:$slots/"
