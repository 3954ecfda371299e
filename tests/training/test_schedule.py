"""Warm-up, reduce-on-plateau and early stopping: decisions on hand-made histories."""
from __future__ import annotations

import math

import pytest

from tfxr.training.schedule import PlateauPolicy, WarmupSchedule


def test_warmup_ramps_from_lr_to_lr_times_workers():
    s = WarmupSchedule(base_lr=0.4, workers=4, warmup_epochs=1, min_lr=0)
    lrs = [s.lr(step, steps_per_epoch=4) for step in range(6)]
    assert lrs == pytest.approx([0.175, 0.25, 0.325, 0.4, 0.4, 0.4])    # 0.1 + 0.3 * (step+1)/4
    assert s.lr(10, 4, multiplier=0.1) == pytest.approx(0.04)
    assert WarmupSchedule(0.1, 1, 5).lr(0, 10) == pytest.approx(0.1)     # one worker: no ramp
    assert WarmupSchedule(0.1, 2, 0).lr(0, 10) == pytest.approx(0.1)     # warm-up off
    assert WarmupSchedule(0.1, 1, 0, min_lr=0.05).lr(0, 10, multiplier=1e-3) == 0.05


def _run(policy, aucs, losses=None):
    state, decisions = {}, []
    for epoch, auc in enumerate(aucs, 1):
        record = {"epoch": epoch, "val_mean_auroc": auc, "val_loss": (losses or [0.5] * len(aucs))[epoch - 1]}
        decisions.append(policy.update(state, record))
    return state, decisions


def test_plateau_reduces_lr_and_early_stopping_stops():
    policy = PlateauPolicy("auroc", factor=0.1, patience=1, stop_patience=3)
    state, decisions = _run(policy, [0.70, 0.80, 0.79, 0.80, 0.78])
    assert [d.improved for d in decisions] == [True, True, False, False, False]
    assert [d.stop for d in decisions] == [False, False, False, False, True]
    assert state["best_epoch"] == 2 and state["best"] == 0.80
    assert state["lr_multiplier"] == pytest.approx(1e-3)                # three epochs without improvement


def test_patience_zero_means_never_and_loss_monitor_prefers_lower():
    state, decisions = _run(PlateauPolicy("auroc", patience=0, stop_patience=0), [0.9, 0.5, 0.5, 0.5])
    assert state["lr_multiplier"] == 1.0 and not any(d.stop for d in decisions)
    state, decisions = _run(PlateauPolicy("loss", patience=2), [0.5] * 4, losses=[0.6, 0.4, 0.5, 0.45])
    assert [d.improved for d in decisions] == [True, True, False, False] and state["best_epoch"] == 2
    assert state["lr_multiplier"] == pytest.approx(0.1)


def test_nan_auroc_falls_back_to_loss_and_no_validation_decides_nothing():
    policy = PlateauPolicy("auroc")
    assert policy.score({"epoch": 1, "val_mean_auroc": math.nan, "val_loss": 0.3}) == -0.3
    state = {}
    decision = policy.update(state, {"epoch": 1, "train_loss": 0.3})
    assert not decision.improved and not decision.stop and state["best"] is None
