"""The shipped Slurm scripts, submitted to a real one-node Slurm (tests/slurm_cluster.py) with sbatch.

Each job trains the TB CNN on tiny phantoms with 2 Horovod workers on this host's 2 CPUs; the
test checks the job's history.json, the worker count and the launcher line in the job log.
"""
from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO, tfxr

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

# script, extra sbatch options (the GPU scripts' headers ask for GPUs and more tasks than this host has)
JOBS = {
    "train_1node.sh": ["--ntasks-per-node=2", "--cpus-per-task=1", "--gres=none"],
    "train_multinode.sh": ["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--gres=none"],
    "train_cpu_node.sh": ["--ntasks-per-node=2"],
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("slurm-data") / "tfrec"
    tfxr("tfxr.tfrecords", "write", "--source", "synthetic", "--num-images", "80", "--image-size", "32",
         "--shards", "2", "--out", str(out), "--quiet")
    return out


@pytest.mark.parametrize("script", sorted(JOBS))
def test_shipped_script_trains_under_slurm(slurm_cluster, tiny_data, tmp_path, script):
    out = tmp_path / "run"
    log = tmp_path / "job.log"
    r = slurm_cluster.sbatch(*JOBS[script], f"--output={log}", f"job_submissions/slurm/{script}",
                             "--no-progress", "--set", "steps_per_epoch=2", "--val-split", "",
                             cwd=REPO, env={"DATA_DIR": str(tiny_data), "CONFIG": "configs/tb_cnn.yaml",
                                            "EPOCHS": "1", "BATCH_SIZE": "8", "OUT_DIR": str(out),
                                            "PYTHON": sys.executable})
    text = log.read_text() if log.exists() else ""
    assert r.returncode == 0, f"{r.stdout}{r.stderr}\n--- job log\n{text[-4000:]}"
    assert "Slurm job" in text and "2 task(s) on 1 node(s)" in text
    launcher = [line for line in text.splitlines() if line.startswith("[tfxr] launcher: ")]
    assert len(launcher) == 1, text[-3000:]
    # Debian's Slurm has the PMIx plugin and Debian's Open MPI is built with PMIx: srun is used
    assert launcher[0].startswith("[tfxr] launcher: srun --mpi=pmix --kill-on-bad-exit=1 --ntasks=2 "
                                  "--cpus-per-task=1 --cpu-bind=cores "), launcher[0]
    assert "2 worker(s) x batch 8" in text
    hist = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in hist] == [1] and hist[0]["train_loss"] > 0 and hist[0]["allreduces"] == 2
    assert (out / "final.keras").exists()


def test_the_discovery_script_lists_this_node(slurm_cluster):
    assert slurm_cluster.hostnames() == [slurm_cluster.node]


def test_the_shipped_discovery_script_prints_the_job_nodes(slurm_cluster, tmp_path):
    """discover_hosts.sh inside a job: `scontrol show hostnames "$SLURM_JOB_NODELIST"` with the
    job's tasks per node as slots (what horovodrun --host-discovery-script reads)."""
    log = tmp_path / "job.log"
    r = slurm_cluster.sbatch("--ntasks-per-node=2", f"--output={log}", "--wrap",
                             f"bash {REPO}/job_submissions/slurm/discover_hosts.sh", cwd=tmp_path)
    assert r.returncode == 0, f"{r.stdout}{r.stderr}{log.read_text() if log.exists() else ''}"
    assert log.read_text().split() == [f"{slurm_cluster.node}:2"]


def test_elastic_script_trains_under_slurm(slurm_cluster, tiny_data, tmp_path):
    """train_elastic.sh under a real Slurm: horovodrun elastic (Gloo) with 2 workers found by the
    discovery script from `scontrol show hostnames`, tfxr.train with elastic=true."""
    out = tmp_path / "run"
    log = tmp_path / "job.log"
    r = slurm_cluster.sbatch("--nodes=1", "--ntasks-per-node=2", f"--output={log}",
                             "job_submissions/slurm/train_elastic.sh", "--no-progress", "--set", "steps_per_epoch=2",
                             "--val-split", "", cwd=REPO,
                             env={"DATA_DIR": str(tiny_data), "CONFIG": "configs/tb_cnn.yaml", "EPOCHS": "2",
                                  "BATCH_SIZE": "8", "OUT_DIR": str(out), "PYTHON": sys.executable,
                                  "NICS": "lo", "PYTHONUNBUFFERED": "1"})   # one node: name its interface
    text = log.read_text() if log.exists() else ""
    assert r.returncode == 0, f"{r.stdout}{r.stderr}\n--- job log\n{text[-4000:]}"
    assert "launcher elastic" in text
    launcher = [line for line in text.splitlines() if line.startswith("[tfxr] launcher: ")]
    assert len(launcher) == 1 and " --gloo -np 2 --min-np 1 --max-np 2 --host-discovery-script " in launcher[0] \
        and launcher[0].split("--host-discovery-script ")[1].startswith(
            f"{REPO}/job_submissions/slurm/discover_hosts.sh --network-interfaces lo "), launcher
    assert "2 worker(s) x batch 8" in text
    hist = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in hist] == [1, 2] and [e["world"] for e in hist] == [2, 2]
    assert all(e["allreduces"] == 2 for e in hist) and (out / "final.keras").exists()
