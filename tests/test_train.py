"""python -m tfxr.train: config, loss, schedule, checkpoints and resume, rank-0-only outputs."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from tests.conftest import tfxr
from tfxr.config import ConfigError, parse_config
from tfxr.train import TrainConfig, Trainer, class_weights, weighted_bce


def _npz(path):
    with np.load(path) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


def test_config_precedence_yaml_flags_set(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("model: chexnet\nepochs: 7\nlr: 0.01\naugment:\n  flip: false\n  gamma: 0.5\n")
    cfg, _ = parse_config(TrainConfig, ["--config", str(y), "--epochs", "3", "--set", "lr=0.5",
                                        "--set", "augment.noise_std=0", "--no-progress"], "t")
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.progress) == ("chexnet", 3, 0.5, False)
    assert (cfg.augment.flip, cfg.augment.gamma, cfg.augment.noise_std) == (False, 0.5, 0.0)
    with pytest.raises(ConfigError, match="unknown key 'augment.flop'"):
        parse_config(TrainConfig, ["--set", "augment.flop=1"], "t")
    with pytest.raises(ConfigError, match="epochs: cannot use 'many' as int"):
        parse_config(TrainConfig, ["--set", "epochs=many"], "t")
    y.write_text("modle: x\n")
    with pytest.raises(ConfigError, match="unknown config key"):
        parse_config(TrainConfig, ["--config", str(y)], "t")


def test_weighted_bce_matches_hand_computation():
    y = np.array([[1, 0], [0, 0], [1, 1]], np.float32)
    p = np.array([[0.9, 0.2], [0.3, 0.1], [0.6, 0.7]], np.float32)
    wp, wn = class_weights(np.array([2.0, 1.0]), 3, "balanced")
    np.testing.assert_allclose(wp, [3 / 4, 3 / 2])
    np.testing.assert_allclose(wn, [3 / 2, 3 / 4])
    expect = -(wp * y * np.log(p) + wn * (1 - y) * np.log(1 - p)).mean()
    assert float(weighted_bce(wp, wn)(y, p)) == pytest.approx(expect, rel=1e-5)
    wp1, wn1 = class_weights(np.array([2.0]), 3, "none")
    assert wp1.tolist() == [1.0] and wn1.tolist() == [1.0]


def test_plateau_and_early_stopping_logic():
    t = object.__new__(Trainer)
    t.cfg = TrainConfig(plateau_factor=0.1, plateau_patience=1, early_stopping_patience=3)
    t.rank = 1  # no file writes
    t.state = {"best": None, "best_epoch": None, "since_best": 0, "plateau_wait": 0, "lr_multiplier": 1.0,
               "history": []}
    stops = [t._after_epoch({"epoch": e + 1, "val_loss": 0.5, "val_mean_auroc": a})
             for e, a in enumerate([0.70, 0.80, 0.79, 0.80, 0.78])]
    assert stops == [False, False, False, False, True]
    assert t.state["best_epoch"] == 2 and t.state["lr_multiplier"] == pytest.approx(1e-3)


def _train(data, out, *extra, np_=1):
    return tfxr("tfxr.train", "--model", "tb_cnn", "--data", str(data), "--out", str(out), "--batch-size", "16",
                "--deterministic", "--no-progress", "--set", "early_stopping_patience=0", *extra, np=np_)


def test_resume_equals_uninterrupted_run(synthetic_tfrec, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    _train(synthetic_tfrec, full, "--epochs", "3")
    _train(synthetic_tfrec, part, "--epochs", "2")
    r = _train(synthetic_tfrec, part, "--epochs", "3", "--resume")
    assert "resumed from" in r.stderr and "epoch-0002" in r.stderr
    a = _npz(full / "checkpoints" / "epoch-0003" / "model.npz")
    b = _npz(part / "checkpoints" / "epoch-0003" / "model.npz")
    oa = _npz(full / "checkpoints" / "epoch-0003" / "optimizer.npz")
    ob = _npz(part / "checkpoints" / "epoch-0003" / "optimizer.npz")
    for x, y in zip(a + oa, b + ob):
        np.testing.assert_array_equal(x, y)
    ha = json.loads((full / "history.json").read_text())
    hb = json.loads((part / "history.json").read_text())
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    assert [h["lr"] for h in ha] == [h["lr"] for h in hb]
    # the run did train: weights moved away from the first epoch's
    first = _npz(tmp_path / "part" / "checkpoints" / "epoch-0002" / "model.npz")
    assert any(not np.array_equal(x, y) for x, y in zip(first, b))


@pytest.mark.mpi
def test_two_rank_cli_run_rank0_writes_everything_once(synthetic_tfrec, tmp_path):
    out = tmp_path / "run"
    r = _train(synthetic_tfrec, out, "--epochs", "2", "--set", "warmup_epochs=1", np_=2)
    assert r.stderr.count("epoch 2:") == 1                    # one log line per epoch (rank 0)
    files = sorted(os.listdir(out))
    assert files == ["best.keras", "checkpoints", "config.yaml", "final.keras", "history.json", "tensorboard"]
    events = [f for _, _, fs in os.walk(out / "tensorboard") for f in fs]
    assert len(events) == 1
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 2 and all(0 <= h["val_mean_auroc"] <= 1 for h in hist)
    import yaml

    resolved = yaml.safe_load((out / "config.yaml").read_text())["_resolved"]
    assert resolved["workers"] == 2 and resolved["base_lr"] == pytest.approx(2e-3)
    assert hist[-1]["lr"] == pytest.approx(2e-3)              # warm-up reached lr x workers


def test_cli_errors_are_clear(tmp_path):
    r = tfxr("tfxr.train", "--data", str(tmp_path), check=False)
    assert r.returncode == 2 and "no manifest" in r.stderr and "Traceback" not in r.stderr
    r = tfxr("tfxr.train", "--model", "resnet9000", "--data", str(tmp_path), check=False)
    assert r.returncode == 2 and "'resnet9000': unknown" in r.stderr and "Traceback" not in r.stderr


def test_bad_weights_file_is_a_clear_cli_error(synthetic_tfrec, tmp_path):
    r = tfxr("tfxr.train", "--model", "chexnet", "--weights", str(tmp_path / "nope.weights.h5"), "--data",
             str(synthetic_tfrec), "--out", str(tmp_path / "o"), "--epochs", "1", check=False)
    assert r.returncode == 2 and "nope.weights.h5" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_writes_metrics_and_roc(synthetic_tfrec, tmp_path):
    out = tmp_path / "run"
    _train(synthetic_tfrec, out, "--epochs", "1")
    r = tfxr("tfxr.evaluate", "--model", str(out), "--data", str(synthetic_tfrec), "--split", "test",
             "--set", "bootstrap=50")
    m = json.loads((out / "eval-test" / "metrics.json").read_text())
    assert (out / "eval-test" / "roc.png").stat().st_size > 1000
    assert m["images"] == json.loads((synthetic_tfrec / "manifest.json").read_text())["splits"]["test"]["count"]
    tb = m["labels"]["Tuberculosis"]
    assert 0 <= tb["auroc"] <= 1 and tb["auroc_ci95"][0] <= tb["auroc"] <= tb["auroc_ci95"][1]
    assert "mean AUROC" in r.stdout
    assert not math.isnan(tb["at_youden"]["sensitivity"])
    # under mpirun -np 2 each rank predicts half; the gathered result is the same evaluation
    tfxr("tfxr.evaluate", "--model", str(out), "--data", str(synthetic_tfrec), "--split", "test",
         "--set", "bootstrap=50", "--out", str(tmp_path / "ev2"), np=2)
    m2 = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    assert m2["images"] == m["images"]
    assert m2["labels"]["Tuberculosis"]["auroc"] == pytest.approx(tb["auroc"], abs=1e-9)
    rows = lambda p: sorted((p / "predictions.csv").read_text().splitlines())  # noqa: E731
    assert rows(tmp_path / "ev2") == rows(out / "eval-test")


@pytest.mark.slow
def test_tb_cnn_learns_the_synthetic_phantoms(tmp_path):
    """The built-in default data is learnable: loss goes down, validation AUROC well above chance."""
    data = tmp_path / "data"
    tfxr("tfxr.tfrecords", "write", "--source", "synthetic", "--num-images", "900", "--image-size", "64",
         "--shards", "2", "--seed", "5", "--out", str(data), "--quiet")
    out = tmp_path / "run"
    tfxr("tfxr.train", "--model", "tb_cnn", "--data", str(data), "--out", str(out), "--epochs", "12",
         "--batch-size", "32", "--cache", "--deterministic", "--no-progress", "--set", "lr=0.002",
         "--set", "early_stopping_patience=0", "--set", "plateau_patience=0")
    hist = json.loads((out / "history.json").read_text())
    losses = [h["train_loss"] for h in hist]
    assert np.mean(losses[-3:]) < losses[0] - 0.05
    assert max(h["val_mean_auroc"] for h in hist) > 0.8


def test_mixed_precision_run(synthetic_tfrec, tmp_path):
    """bf16 mixed precision on CPU trains and writes a float32-output model."""
    out = tmp_path / "mp"
    _train(synthetic_tfrec, out, "--epochs", "1", "--set", "mixed_precision=true")
    from tfxr.evaluate import load_model

    m = load_model(str(out / "final.keras"))
    assert m.get_layer("conv1_16").dtype_policy.name == "mixed_bfloat16"
    assert m.output.dtype == "float32"
    assert json.loads((out / "history.json").read_text())[0]["train_loss"] > 0


@pytest.mark.parametrize("name", ["chexnet_nih", "tb_cnn", "pneumoniamnist"])
def test_shipped_configs_parse(name):
    from tests.conftest import REPO

    cfg, _ = parse_config(TrainConfig, ["--config", str(REPO / "configs" / f"{name}.yaml")], "t")
    assert cfg.model in ("chexnet", "tb_cnn", "pneumonia_cnn") and cfg.epochs > 0
