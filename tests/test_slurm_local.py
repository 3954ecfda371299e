"""The Slurm batch scripts' real training command, run locally with -np 2 on tiny data."""
from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO, run, tfxr

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("script,fmt", [("tfrec_ngpu_1node.sh", "tfrecord"), ("raw_1gpu.sh", "raw")])
def test_slurm_script_trains_locally_with_two_ranks(tmp_path, script, fmt):
    data = tmp_path / "data"
    tfxr("tfxr.tfrecords", "write", "--source", "synthetic", "--num-images", "96", "--image-size", "48",
         "--shards", "2", "--format", fmt, "--out", str(data), "--quiet")
    out = tmp_path / "run"
    r = run(["bash", str(REPO / "job_submissions" / "slurm" / script), "--no-progress"],
            env={"NP": "2", "DATA_DIR": str(data), "OUT_DIR": str(out), "MODEL": "tb_cnn", "EPOCHS": "1",
                 "BATCH_SIZE": "8", "PYTHON": sys.executable, "SLURM_JOB_ID": ""})
    assert "-np 2" in r.stdout + r.stderr and "2 worker(s)" in r.stderr
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 1 and hist[0]["train_loss"] > 0
    assert (out / "best.keras").exists()
