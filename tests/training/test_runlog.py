"""RunLog: config.yaml, history.json, TensorBoard scalars and console lines, rank 0 only."""
from __future__ import annotations

import json
import math

import yaml

from tfxr.training.runlog import RunLog


def test_rank0_writes_config_history_and_tensorboard(tmp_path, capsys):
    out = tmp_path / "run"
    log = RunLog(str(out), enabled=True)
    log.start({"model": "tb_cnn", "lr": 0.01})
    history = [{"epoch": 1, "train_loss": 0.5, "val_auroc": {"TB": 0.75}, "val_mean_auroc": math.nan}]
    log.epoch(history, "epoch 1: loss 0.5000")
    history.append({"epoch": 2, "train_loss": 0.25, "val_auroc": {"TB": 0.875}, "val_mean_auroc": 0.875})
    log.epoch(history, "epoch 2: loss 0.2500")
    log.close()
    assert yaml.safe_load((out / "config.yaml").read_text()) == {"model": "tb_cnn", "lr": 0.01}
    saved = json.loads((out / "history.json").read_text())
    assert [h["train_loss"] for h in saved] == [0.5, 0.25] and math.isnan(saved[0]["val_mean_auroc"])
    assert capsys.readouterr().err.splitlines() == ["tfxr: epoch 1: loss 0.5000", "tfxr: epoch 2: loss 0.2500"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])
    assert {"train_loss", "val_auroc/TB", "val_mean_auroc"} <= tags
    import tensorflow as tf

    losses = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("train_loss")]
    assert [e.step for e in events.Tensors("train_loss")] == [1, 2] and losses == [0.5, 0.25]


def test_other_ranks_write_nothing(tmp_path, capsys):
    log = RunLog(str(tmp_path / "run"), enabled=False)
    log.start({"a": 1})
    log.epoch([{"epoch": 1, "train_loss": 0.1}], "epoch 1")
    assert not (tmp_path / "run").exists() and capsys.readouterr().err == ""
