"""The Slurm batch scripts' real training command, run locally with -np 2 on tiny data.

Outside Slurm the scripts start their ranks through tfxr's one mpirun builder,
``python -m tfxr.launch --np N -- tfxr.train ...``; the CheXNet config they use by
default needs ImageNet weights, so these runs pick the TB CNN config with ``CONFIG``.
"""
from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO, run, tfxr

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("script,fmt", [("train_1node.sh", "tfrecord"), ("train_1gpu.sh", "raw")])
def test_slurm_script_trains_locally_with_two_ranks(tmp_path, script, fmt):
    data = tmp_path / "data"
    shards = ["--shards", "2"] if fmt == "tfrecord" else []   # a raw index is one CSV per split
    tfxr("tfxr.tfrecords", "write", "--source", "synthetic", "--num-images", "96", "--image-size", "48",
         *shards, "--format", fmt, "--out", str(data), "--quiet")
    out = tmp_path / "run"
    r = run(["bash", str(REPO / "job_submissions" / "slurm" / script), "--no-progress"],
            env={"NP": "2", "DATA_DIR": str(data), "DATA_KIND": fmt, "OUT_DIR": str(out),
                 "CONFIG": "configs/tb_cnn.yaml", "EPOCHS": "1", "BATCH_SIZE": "8", "PYTHON": sys.executable,
                 "SLURM_JOB_ID": ""})
    assert "tfxr.launch --np 2" in r.stderr and "2 worker(s)" in r.stderr
    assert "[tfxr] launcher: mpirun -np 2 --oversubscribe" in r.stderr     # the builder's line, in the log
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 1 and hist[0]["train_loss"] > 0
    assert (out / "best.keras").exists()
    config = (out / "config.yaml").read_text()
    assert "model: tb_cnn" in config and "batch_size: 8" in config
