"""The classifier trainer (tfxr.training.classifier) in the run scaffold: typed config,
the history format, epoch times, early stopping, and a diverging run stopped in-process."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tfxr.configs import TrainConfig
from tfxr.data.pipeline import DataConfig
from tfxr.errors import TrainingDiverged
from tfxr.training.classifier import Trainer, class_weights, weighted_bce


def _cfg(data, out, **kw):
    base = dict(model="tb_cnn", data=str(data), out=str(out), epochs=2, steps_per_epoch=2, progress=False,
                pipeline=DataConfig(batch_size=8, deterministic=True))
    return TrainConfig(**{**base, **kw})


def test_history_keeps_its_format_and_epoch_time_includes_validation(synthetic_tfrec, tmp_path, capsys):
    trainer = Trainer(_cfg(synthetic_tfrec, tmp_path / "run", early_stopping_patience=1, plateau_patience=0))
    state = trainer.fit()
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history == json.loads(json.dumps(state["history"]))
    assert list(history[0]) == ["epoch", "train_loss", "lr", "allreduces", "images_per_s", "epoch_time_s", "val_loss",
                                "val_auroc", "val_mean_auroc", "val_accuracy"]
    for record in history:
        training_seconds = trainer.steps * trainer.global_batch / record["images_per_s"]
        assert record["epoch_time_s"] > training_seconds > 0     # the whole epoch, validation included
        assert math.isfinite(record["train_loss"]) and 0 <= record["val_accuracy"] <= 1
    err = capsys.readouterr().err
    assert err.count("tfxr: epoch 1: loss") == 1 and "tb_cnn:" in err and "steps/epoch" in err
    if len(history) == 1:                                       # patience 1: epoch 2 did not improve
        assert "early stopping after epoch" in err
    assert (tmp_path / "run" / "best.keras").exists() and (tmp_path / "run" / "final.keras").exists()


def test_a_huge_learning_rate_stops_with_exit_3_and_no_model(synthetic_tfrec, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(_cfg(synthetic_tfrec, out, epochs=3, val_split="", optimizer="sgd", lr=1e30))
    with pytest.raises(TrainingDiverged, match="training diverged in epoch 1") as stopped:
        trainer.fit()
    assert stopped.value.exit_code == 3
    assert not (out / "best.keras").exists() and not (out / "final.keras").exists()
    assert not (out / "history.json").exists() and not list((out / "checkpoints").glob("*.index"))
    assert (out / "config.yaml").exists()                       # what was asked for, kept for diagnosis


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
