"""Gradient accumulation (``--set accumulate_steps=K``): K micro-batches of B per allreduce equal
one batch of K*B (single process and under mpirun -np 2), and the allreduces per epoch drop by K."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from tests.conftest import ONE_THREAD, load_arrays, tfxr
from tfxr.gan import main as gan_main
from tfxr.train import main as train_main

def _check_equal(out, world):
    k4, k1 = load_arrays(out / f"weights-k4-w{world}-0.npz"), load_arrays(out / f"weights-k1-w{world}-0.npz")
    for a, b in zip(k4, k1):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)
    init = load_arrays(out / f"weights-init-w{world}-0.npz")
    assert max(np.abs(a - b).max() for a, b in zip(k4, init)) > 1e-3   # training moved the weights


@pytest.mark.parametrize("np_", [1, pytest.param(2, marks=pytest.mark.mpi)])
def test_k_micro_batches_equal_one_batch_of_k_times_the_size(synthetic_tfrec, tmp_path, np_):
    # both K in one process (each its own Trainer, the same seed)
    r = tfxr("tests.mpi_scripts.accumulate_check", str(synthetic_tfrec), str(tmp_path), "4,1", np=np_, env=ONE_THREAD)
    for k in (4, 1):
        # 3 updates either way: K=4 ran 12 micro-batches, so 12 / 4 allreduces
        assert f"k {k} world {np_} allreduces 3" in r.stdout, r.stdout
    _check_equal(tmp_path, np_)
    if np_ == 2:   # both ranks hold the same weights
        for a, b in zip(load_arrays(tmp_path / "weights-k4-w2-0.npz"), load_arrays(tmp_path / "weights-k4-w2-1.npz")):
            np.testing.assert_array_equal(a, b)


@pytest.mark.mpi
def test_train_counts_allreduces_and_scales_the_learning_rate(synthetic_tfrec, tmp_path):
    """``tfxr.train`` under mpirun -np 2 with K=4.  K=1's count under two ranks (one allreduce per
    step, from the same history.json) is tests/benchmark/test_suites.py's
    test_suite_smoke_of_gradient_accumulation, and lr x workers at K=1 is tests/test_train.py's
    test_two_rank_cli_run_rank0_writes_everything_once."""
    k, out = 4, tmp_path / "k4"
    tfxr("tfxr.train", "--data", str(synthetic_tfrec), "--epochs", "1", "--batch-size", "4", "--val-split", "",
         "--no-progress", "--set", "steps_per_epoch=10", "--lr", "0.001", "--out", str(out),
         "--set", f"accumulate_steps={k}", np=2, cwd=tmp_path)
    (epoch,) = json.loads((out / "history.json").read_text())
    # 10 micro-batches per epoch: K=4 rounds the epoch down to 8 and allreduces 2 times
    assert epoch["allreduces"] == 2
    resolved = yaml.safe_load((out / "config.yaml").read_text())["_resolved"]
    assert resolved["effective_batch"] == 4 * 2 * k
    assert resolved["base_lr"] == pytest.approx(0.001 * 2 * k)     # lr scaled by the effective batch


def test_too_few_batches_to_accumulate_stops_before_writing(synthetic_tfrec, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)              # in-process: the same run_main path as the CLI
    code = train_main(["--data", str(synthetic_tfrec), "--out", "run", "--set", "steps_per_epoch=3",
                       "--set", "accumulate_steps=4"])
    err = capsys.readouterr().err
    assert code == 2 and "tfxr: error: accumulate_steps=4: an epoch has only 3 batch(es)" in err, err[-2000:]
    assert "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("np_", [1, pytest.param(2, marks=pytest.mark.mpi)])
def test_gan_k_micro_batches_equal_one_batch_of_k_times_the_size(tmp_path, np_):
    """The GAN (no batch norm, no dropout): both networks' updates from K=4 micro-batches of 4
    equal those of one batch of 16; 12 micro-batches allreduce 3 times."""
    r = tfxr("tests.mpi_scripts.gan_accumulate_check", str(tmp_path), "4,1", np=np_, env=ONE_THREAD)
    for k in (4, 1):
        assert f"k {k} world {np_} allreduces 3" in r.stdout, r.stdout
    k4, k1 = (load_arrays(tmp_path / f"gan-k{k}-w{np_}-0.npz") for k in (4, 1))
    for a, b in zip(k4, k1):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)
    init = load_arrays(tmp_path / f"gan-init-w{np_}-0.npz")
    assert len(k4) == len(k1) == len(init) > 0
    assert max(np.abs(a - b).max() for a, b in zip(k4, init)) > 1e-3   # training moved the weights
    if np_ == 2:
        for a, b in zip(k4, load_arrays(tmp_path / "gan-k4-w2-1.npz")):
            np.testing.assert_array_equal(a, b)


def test_gan_train_counts_allreduces_per_epoch(synthetic_tfrec, tmp_path):
    """In-process (the subject is the count the run writes, not the command line)."""
    common = ["train", "--data", str(synthetic_tfrec), "--epochs", "1", "--batch-size", "4", "--no-progress",
              "--set", "steps_per_epoch=10", "--set", "g_filters=8", "--set", "d_filters=8"]
    for k in (1, 4):
        out = tmp_path / f"k{k}"
        assert gan_main([*common, "--out", str(out), "--set", f"accumulate_steps={k}"]) == 0
        (epoch,) = json.loads((out / "history.json").read_text())
        assert epoch["allreduces"] == {1: 10, 4: 2}[k]      # K=4: the epoch rounded down to 8 micro-batches


def test_detector_k2_equals_one_batch_in_two_micro_batches(synthetic_tfrec, tmp_path):
    """Batch norm sees each micro-batch alone both ways: K=2 on batches of 4 = ``micro_batches=2``
    on batches of 8 (one update, its loss the mean of the two parts')."""
    # both modes in one process (each its own DetectorTrainer, the same seed)
    r = tfxr("tests.mpi_scripts.detector_accumulate_check", str(synthetic_tfrec), str(tmp_path), "k2,micro2",
             env=ONE_THREAD)
    for mode in ("k2", "micro2"):     # 6 calls vs 3, both 3 allreduces
        assert f"{mode} world 1 allreduces 3" in r.stdout, r.stdout
    k2, micro2 = (load_arrays(tmp_path / f"det-{m}.npz") for m in ("k2", "micro2"))
    for a, b in zip(k2, micro2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
