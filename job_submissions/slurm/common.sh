# shellcheck shell=bash
# Shared body of the tfxr Slurm batch scripts in this folder (README.md explains the
# settings, the launchers and the site file once). Sourced, never run. A batch script
# sources it and calls
#   tfxr_main NODES GPUS_PER_NODE [TRAIN_ARG...]
# with the nodes and GPUs (= MPI ranks) per node its #SBATCH header asks for, then
# more tfxr.train arguments (after those in EXTRA_ARGS); tfxr_detect_main takes the same
# and trains the box detector (python -m tfxr.detect train) instead.

TFXR_REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

tfxr_die() {
    echo "tfxr job: error: $*" >&2
    exit 1
}

# tfxr_detect_main NODES GPUS_PER_NODE [DETECT_ARG...]: tfxr_main for the box detector.
tfxr_detect_main() { TFXR_TASK=detect tfxr_main "$@"; }

tfxr_posint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

# tfxr_manifest_format DIR: the "format" recorded in DIR/manifest.json (empty if none).
tfxr_manifest_format() {
    local manifest=$1/manifest.json
    [[ -f $manifest ]] || return 0
    grep -oE '"format"[[:space:]]*:[[:space:]]*"[a-z]+"' "$manifest" | head -n 1 | sed -E 's/.*"([a-z]+)"$/\1/'
}

# tfxr_resolve_file PATH: PATH made absolute, relative to the current folder or else to the repo.
tfxr_resolve_file() {
    if [[ -f $1 ]]; then
        echo "$(cd "$(dirname "$1")" && pwd)/${1##*/}"
    elif [[ $1 != /* && -f $TFXR_REPO_DIR/$1 ]]; then
        echo "$TFXR_REPO_DIR/$1"
    else
        return 1
    fi
}

tfxr_main() {
    if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
        tfxr_die "bash >= 4.4 is required (this is $BASH_VERSION)"
    fi
    (($# >= 2)) || tfxr_die "tfxr_main needs NODES GPUS_PER_NODE"
    local nodes=$1 gpn=$2
    shift 2

    local site=${TFXR_SITE_ENV:-$TFXR_REPO_DIR/job_submissions/slurm/site.sh}
    if [[ -f $site ]]; then
        # shellcheck source=/dev/null
        source "$site"
    elif [[ -n ${TFXR_SITE_ENV:-} ]]; then
        tfxr_die "TFXR_SITE_ENV=$TFXR_SITE_ENV: no such file"
    fi

    local kind=${DATA_KIND:-tfrecord} what
    case $kind in
        tfrecord) what="TFRecord directory (tfrecords/write_tfrecords.sh)" ;;
        raw) what="raw index directory (FORMAT=raw tfrecords/write_tfrecords.sh)" ;;
        *) tfxr_die "DATA_KIND must be tfrecord or raw, got '$kind'" ;;
    esac
    [[ -n ${DATA_DIR:-} ]] || tfxr_die "DATA_DIR is not set. Point it at the $what, e.g.
    DATA_DIR=/scratch/\$USER/nih_${kind} DATA_KIND=$kind sbatch job_submissions/slurm/${0##*/}"
    [[ -d $DATA_DIR ]] || tfxr_die "DATA_DIR=$DATA_DIR is not a directory (expected the $what)"
    local data found
    data=$(cd "$DATA_DIR" && pwd)
    found=$(tfxr_manifest_format "$data")
    [[ -n $found ]] || tfxr_die "DATA_DIR=$data has no manifest.json (expected the $what)"
    [[ $found == "$kind" ]] || tfxr_die "DATA_DIR=$data holds '$found' data but DATA_KIND=$kind; set DATA_KIND=$found"

    local task=${TFXR_TASK:-train} config=""
    if [[ $task == train || -n ${CONFIG:-} ]]; then   # the detector needs no config file
        config=$(tfxr_resolve_file "${CONFIG:-configs/chexnet_nih.yaml}") ||
            tfxr_die "CONFIG=${CONFIG:-configs/chexnet_nih.yaml}: no such file (here or in $TFXR_REPO_DIR)"
    fi
    local out=${OUT_DIR:-$TFXR_REPO_DIR/runs/${SLURM_JOB_NAME:-tfxr}-${SLURM_JOB_ID:-local-$(date +%Y%m%d-%H%M%S)}}
    [[ $out == /* ]] || out=$PWD/$out

    # The config is the one source of truth; MODEL, EPOCHS, BATCH_SIZE override it when set.
    local -a py extra train launch overrides=()
    if [[ -n ${MODEL:-} && $task == detect ]]; then
        tfxr_die "MODEL=$MODEL: ${0##*/} trains the box detector; choose its backbone with EXTRA_ARGS='--backbone s'"
    elif [[ -n ${MODEL:-} ]]; then
        overrides+=(--model "$MODEL")
        # the CheXNet config asks for ImageNet weights, which only chexnet takes
        [[ $MODEL == chexnet ]] || overrides+=(--weights none)
    fi
    if [[ -n ${EPOCHS:-} ]]; then
        tfxr_posint "$EPOCHS" || tfxr_die "EPOCHS must be a positive integer, got '$EPOCHS'"
        overrides+=(--epochs "$EPOCHS")
    fi
    if [[ -n ${BATCH_SIZE:-} ]]; then
        tfxr_posint "$BATCH_SIZE" || tfxr_die "BATCH_SIZE must be a positive integer, got '$BATCH_SIZE'"
        overrides+=(--batch-size "$BATCH_SIZE")
    fi
    read -r -a py <<<"${PYTHON:-python}"
    read -r -a extra <<<"${EXTRA_ARGS:-}"
    if [[ $task == detect ]]; then
        train=(tfxr.detect train ${config:+--config "$config"} --data "$data" --out "$out")
    else
        train=(tfxr.train --config "$config" --data "$data" --out "$out")
    fi
    train+=("${overrides[@]}" "${extra[@]}" "$@")

    # Ranks find the package from the checkout even when it is not pip-installed.
    export PYTHONPATH="$TFXR_REPO_DIR${PYTHONPATH:+:$PYTHONPATH}"
    export NCCL_DEBUG=${NCCL_DEBUG:-INFO}

    # Every launcher line (mpirun here or in the allocation, srun --mpi=pmix) comes from
    # tfxr's one builder, python -m tfxr.launch; it prints the line it runs into the job log.
    local where
    if [[ -z ${SLURM_JOB_ID:-} ]]; then
        # Outside Slurm (a workstation, CI): NP ranks here.
        local np=${NP:-$((nodes * gpn))}
        tfxr_posint "$np" || tfxr_die "NP must be a positive integer, got '$np'"
        launch=("${py[@]}" -m tfxr.launch --np "$np" -- "${train[@]}")
        where="local run, $np rank(s)"
    else
        local ntasks=${SLURM_NTASKS:-$((nodes * gpn))} launcher=${LAUNCHER:-auto}
        case $launcher in
            auto | srun | mpirun) ;;
            *) tfxr_die "LAUNCHER must be auto, srun or mpirun, got '$launcher'" ;;
        esac
        # Slurm >= 22.05: srun no longer inherits --cpus-per-task from sbatch (the builder
        # passes it too; this covers steps the job itself starts).
        if [[ -n ${SLURM_CPUS_PER_TASK:-} ]]; then export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK; fi
        launch=("${py[@]}" -m tfxr.launch --launcher "$launcher" --np "$ntasks")
        if [[ -n ${MPIRUN:-} ]]; then launch+=(--mpirun "$MPIRUN"); fi
        launch+=(-- "${train[@]}")
        where="Slurm job $SLURM_JOB_ID, $ntasks task(s) on ${SLURM_JOB_NUM_NODES:-$nodes} node(s) ${SLURM_JOB_NODELIST:-}, launcher $launcher"
    fi

    if [[ ${DRY_RUN:-0} == 1 ]]; then
        # the launcher line the builder would run (needs PYTHON to be a real interpreter)
        cd "$TFXR_REPO_DIR" || tfxr_die "cannot cd to $TFXR_REPO_DIR"
        "${launch[@]:0:${#py[@]}+2}" --print "${launch[@]:${#py[@]}+2}"
        return
    fi

    mkdir -p -- "$out"
    {
        echo "[tfxr] $where"
        echo "[tfxr] host $(hostname), repo $TFXR_REPO_DIR"
        echo "[tfxr] data ($kind) $data"
        echo "[tfxr] config $config"
        echo "[tfxr] out $out"
        if command -v nvidia-smi >/dev/null; then nvidia-smi -L 2>/dev/null | sed 's/^/[tfxr] /'; fi
        echo "+ $(printf '%q ' "${launch[@]}")"
    } >&2
    cd "$TFXR_REPO_DIR" || tfxr_die "cannot cd to $TFXR_REPO_DIR"
    exec "${launch[@]}"
}
