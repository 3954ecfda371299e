# shellcheck shell=bash
# Shared body of the tfxr Slurm batch scripts in this folder. Sourced, never run.
#
# A batch script sources this file, then calls
#   tfxr_main KIND NODES GPUS_PER_NODE [TRAIN_ARG...]
#   KIND           tfrecord | raw (only changes messages: the training command is the
#                  same, tfxr.train reads either kind of DATA_DIR)
#   NODES          nodes the #SBATCH header asks for
#   GPUS_PER_NODE  GPUs (= MPI ranks) per node the #SBATCH header asks for
#   TRAIN_ARG      more tfxr.train arguments (after those in EXTRA_ARGS)
#
# Environment read by tfxr_main (see README.md):
#   DATA_DIR (required), OUT_DIR, MODEL (chexnet), EPOCHS (10), BATCH_SIZE (32),
#   EXTRA_ARGS, PYTHON (python), NP, LAUNCHER (auto|srun|mpirun), MPIRUN (mpirun),
#   DRY_RUN=1, TFXR_SITE_ENV.
#
# ----------------------------------------------------------------------------
# Interconnect and Horovod settings: which to change per site
# ----------------------------------------------------------------------------
# Put site settings (module loads, the exports below) in job_submissions/slurm/site.sh,
# or in a file named by $TFXR_SITE_ENV; tfxr_main sources it when present. The
# defaults below suit a node with NVIDIA GPUs and Open MPI; most sites need some of:
#
#   OMPI_MCA_pml=ucx          Open MPI point-to-point over UCX (InfiniBand/RoCE). The
#                             default on most IB builds; set it when Open MPI falls back
#                             to TCP (ob1) or warns about openib. Add OMPI_MCA_btl=^openib
#                             to silence the legacy openib BTL. Without IB, Horovod's docs
#                             use "-mca pml ob1 -mca btl ^openib" to force TCP instead.
#   UCX_TLS=rc,sm,self,cuda_copy,cuda_ipc
#                             UCX transports. 'rc' (reliable connected) is fine for a few
#                             nodes; use 'dc' (Mellanox dynamic connected) on large jobs,
#                             'tcp' where there is no RDMA. Ask your site which they tested.
#   UCX_NET_DEVICES=mlx5_0:1  the HCA port on the compute network (see `ibstat` or
#                             `ucx_info -d`); needed when nodes have several HCAs or an
#                             Ethernet-mode port that UCX would otherwise pick.
#   NCCL_IB_HCA=mlx5_0,mlx5_1 HCAs that NCCL uses for GPU traffic between nodes (prefix
#                             '^' to exclude, e.g. ^mlx5_2 for a storage NIC). Set
#                             NCCL_IB_DISABLE=1 on Ethernet-only clusters.
#   NCCL_SOCKET_IFNAME=ib0    the interface NCCL uses for bootstrap and its TCP fallback:
#                             must reach the other nodes (e.g. ib0, eth0; '^lo,docker0'
#                             excludes). Wrong values show up as hangs at start-up.
#   NCCL_DEBUG=INFO           (default here) NCCL prints the transports it chose; set WARN
#                             once the cluster is known to work.
#   HOROVOD_HIERARCHICAL_ALLREDUCE=1
#                             NCCL allreduce inside a node + MPI between nodes. Can help
#                             on multi-node jobs with a slow inter-node link; measure it.
#   HOROVOD_FUSION_THRESHOLD=134217728 (bytes; 128 MiB is Horovod's default since 0.21)
#   HOROVOD_CYCLE_TIME=1      (ms; Horovod's default since 0.21)
#                             Tensor Fusion: bigger buffers / longer cycles batch more
#                             small allreduces; try 64-256 MiB and 1-5 ms, or
#                             HOROVOD_AUTOTUNE=1 once.
# With srun every variable reaches the ranks (srun exports the whole environment). With
# mpirun, tfxr_main forwards each set HOROVOD_*, NCCL_*, UCX_*, TFXR_* and TensorFlow
# TF_{CPP,FORCE,ENABLE,GPU,XLA,...}_* variable with -x; Open MPI reads OMPI_MCA_* itself.
# ----------------------------------------------------------------------------

TFXR_REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

tfxr_die() {
    echo "tfxr job: error: $*" >&2
    exit 1
}

tfxr_posint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

# tfxr_mpirun_env: the -x options for mpirun (Horovod's documented set plus the
# variables that tune Horovod, NCCL, UCX and TensorFlow, when they are set).
tfxr_mpirun_env() {
    local v
    printf '%s\n' -x "NCCL_DEBUG=${NCCL_DEBUG:-INFO}"
    # -x of an unset variable only makes Open MPI warn.
    if [[ -n ${LD_LIBRARY_PATH+set} ]]; then printf '%s\n' -x LD_LIBRARY_PATH; fi
    printf '%s\n' -x PATH -x PYTHONPATH
    while IFS= read -r v; do
        [[ $v == NCCL_DEBUG ]] && continue
        printf '%s\n' -x "$v"
    done < <(compgen -e | grep -E '^(HOROVOD_|NCCL_|UCX_|TFXR_|TF_(CPP|FORCE|ENABLE|GPU|XLA|DETERMINISTIC|NUM|USE)_?)' | LC_ALL=C sort)
}

tfxr_main() {
    if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
        tfxr_die "bash >= 4.4 is required (this is $BASH_VERSION)"
    fi
    (($# >= 3)) || tfxr_die "tfxr_main needs KIND NODES GPUS_PER_NODE"
    local kind=$1 nodes=$2 gpn=$3
    shift 3
    local what="TFRecord directory (tfrecords/write_tfrecords.sh)"
    [[ $kind == raw ]] && what="raw index directory (tfrecords/write_tfrecords.sh ... --format raw)"

    local site=${TFXR_SITE_ENV:-$TFXR_REPO_DIR/job_submissions/slurm/site.sh}
    if [[ -f $site ]]; then
        # shellcheck source=/dev/null
        source "$site"
    elif [[ -n ${TFXR_SITE_ENV:-} ]]; then
        tfxr_die "TFXR_SITE_ENV=$TFXR_SITE_ENV: no such file"
    fi

    [[ -n ${DATA_DIR:-} ]] || tfxr_die "DATA_DIR is not set. Point it at the $what, e.g.
    DATA_DIR=/scratch/\$USER/nih_${kind} sbatch job_submissions/slurm/${0##*/}"
    [[ -d $DATA_DIR ]] || tfxr_die "DATA_DIR=$DATA_DIR is not a directory (expected the $what)"
    local data out
    data=$(cd "$DATA_DIR" && pwd)
    out=${OUT_DIR:-$TFXR_REPO_DIR/runs/${SLURM_JOB_NAME:-tfxr-$kind}-${SLURM_JOB_ID:-local-$(date +%Y%m%d-%H%M%S)}}
    [[ $out == /* ]] || out=$PWD/$out

    local epochs=${EPOCHS:-10} batch=${BATCH_SIZE:-32}
    tfxr_posint "$epochs" || tfxr_die "EPOCHS must be a positive integer, got '$epochs'"
    tfxr_posint "$batch" || tfxr_die "BATCH_SIZE must be a positive integer, got '$batch'"
    local -a py extra train launch
    read -r -a py <<<"${PYTHON:-python}"
    read -r -a extra <<<"${EXTRA_ARGS:-}"
    train=("${py[@]}" -m tfxr.train --model "${MODEL:-chexnet}" --data "$data" --out "$out"
        --epochs "$epochs" --batch-size "$batch" "${extra[@]}" "$@")

    # Ranks find the package from the checkout even when it is not pip-installed.
    export PYTHONPATH="$TFXR_REPO_DIR${PYTHONPATH:+:$PYTHONPATH}"
    export NCCL_DEBUG=${NCCL_DEBUG:-INFO}
    local -a mpirun
    read -r -a mpirun <<<"${MPIRUN:-mpirun}"
    local -a mpienv asroot=()
    mapfile -t mpienv < <(tfxr_mpirun_env)
    # Open MPI refuses to run as root unless told; the flag is Open MPI's own.
    if (($(id -u) == 0)); then asroot=(--allow-run-as-root); fi

    local where
    if [[ -z ${SLURM_JOB_ID:-} ]]; then
        # Outside Slurm (a workstation, CI): NP ranks on this machine.
        local np=${NP:-$((nodes * gpn))}
        tfxr_posint "$np" || tfxr_die "NP must be a positive integer, got '$np'"
        launch=("${mpirun[@]}" "${asroot[@]}" --oversubscribe -np "$np"
            -bind-to none -map-by slot "${mpienv[@]}" "${train[@]}")
        where="local run, $np rank(s)"
    else
        local ntasks=${SLURM_NTASKS:-$((nodes * gpn))} launcher=${LAUNCHER:-auto}
        if [[ $launcher == auto ]]; then
            launcher=mpirun
            if command -v srun >/dev/null; then
                local mpi_types
                mpi_types=$(srun --mpi=list 2>&1 || true)
                # "pmix", or only a versioned "pmix_v4": srun --mpi=pmix takes either.
                if grep -qE '(^|[[:space:]:])pmix' <<<"$mpi_types"; then launcher=srun; fi
            fi
        fi
        case $launcher in
            srun)
                # Slurm >= 22.05: srun no longer inherits --cpus-per-task from sbatch.
                if [[ -n ${SLURM_CPUS_PER_TASK:-} ]]; then export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK; fi
                launch=(srun --mpi=pmix --kill-on-bad-exit=1 "${train[@]}")
                ;;
            mpirun)
                # Open MPI built with Slurm support reads the allocation (nodes, slots).
                launch=("${mpirun[@]}" "${asroot[@]}" -np "$ntasks"
                    -bind-to none -map-by slot "${mpienv[@]}" "${train[@]}")
                ;;
            *) tfxr_die "LAUNCHER must be auto, srun or mpirun, got '$launcher'" ;;
        esac
        where="Slurm job $SLURM_JOB_ID, $ntasks task(s) on ${SLURM_JOB_NUM_NODES:-$nodes} node(s) ${SLURM_JOB_NODELIST:-}, via $launcher"
    fi

    if [[ ${DRY_RUN:-0} == 1 ]]; then
        printf '%q ' "${launch[@]}"
        echo
        return 0
    fi

    mkdir -p -- "$out"
    {
        echo "[tfxr] $where"
        echo "[tfxr] host $(hostname), repo $TFXR_REPO_DIR"
        echo "[tfxr] data ($kind) $data"
        echo "[tfxr] out $out"
        if command -v nvidia-smi >/dev/null; then nvidia-smi -L 2>/dev/null | sed 's/^/[tfxr] /'; fi
        echo "+ $(printf '%q ' "${launch[@]}")"
    } >&2
    cd "$TFXR_REPO_DIR" || tfxr_die "cannot cd to $TFXR_REPO_DIR"
    exec "${launch[@]}"
}
