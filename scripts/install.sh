#!/usr/bin/env bash
# Idempotent set-up of everything tfxr needs: OpenMPI (Debian), a .venv with the pinned
# Python stack, and Horovod built from source against that TensorFlow with MPI + Gloo.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}

log() { echo "[install] $*"; }

# 1. OpenMPI from Debian packages (mpirun + headers for the Horovod build).
if ! command -v mpirun >/dev/null 2>&1 || ! dpkg -s libopenmpi-dev >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing OpenMPI (openmpi-bin libopenmpi-dev)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openmpi-bin libopenmpi-dev cmake g++ >/dev/null
fi

# 1b. Ruby's erb (Debian package 'ruby' provides /usr/bin/erb): the tests render the Open
#     OnDemand app's ERB templates with it (job_submissions/ood, tests/test_ood.py).
if ! command -v erb >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing Ruby's erb (ruby) for the Open OnDemand template tests"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ruby >/dev/null
fi

# 1c. A one-node Slurm for the tests (tests/slurm_cluster.py starts private daemons):
#     Debian's slurm-wlm (slurmctld, slurmd, sbatch, srun with the PMIx plugin) and munge.
if ! command -v sbatch >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    log "installing Slurm and munge (slurm-wlm munge) for the Slurm tests"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# 2. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade "pip==25.1.1" "setuptools==75.8.0" "wheel==0.45.1"

# 3. The pinned Python stack (TensorFlow first: Horovod compiles against it).
log "installing the pinned Python stack"
"$PY" -m pip install -q -e '.[dev]'

# 4. Horovod, built against that TensorFlow, with MPI and Gloo, CPU ops.
if ! "$PY" -c "import horovod.tensorflow as h; assert h.mpi_built() and h.gloo_built()" >/dev/null 2>&1; then
    log "building horovod against $("$PY" -c 'import tensorflow as tf; print(tf.__version__)') (about 3 minutes on 2 cores)"
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 \
    HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
    MAKEFLAGS="-j$(nproc)" CMAKE_POLICY_VERSION_MINIMUM=3.5 \
        "$PY" -m pip install -q --no-build-isolation -e '.[dev,horovod]'
fi
"$PY" -c "import horovod, horovod.tensorflow as h; assert h.mpi_built() and h.gloo_built(); print('[install] horovod', horovod.__version__, 'MPI+Gloo OK')"
