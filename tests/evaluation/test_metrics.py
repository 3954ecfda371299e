"""tfxr.evaluation.metrics against values computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tfxr.evaluation import metrics

# The classic 4-image example: AUROC 0.75 (3 of 4 positive/negative pairs ordered right).
Y4 = np.array([[0], [0], [1], [1]], float)
P4 = np.array([[0.1], [0.4], [0.35], [0.8]])


def test_auroc_and_auprc_hand_values():
    assert metrics.auroc_per_label(Y4, P4) == [pytest.approx(0.75)]
    # ranked: 0.8 (+) P=1 R=.5, 0.4 (-), 0.35 (+) P=2/3 R=1 -> AP = .5*1 + .5*2/3
    assert metrics.auprc_per_label(Y4, P4) == [pytest.approx(0.5 + 0.5 * 2 / 3)]


def test_undefined_labels_are_nan_and_left_out_of_the_mean():
    y = np.array([[0, 1, 1], [1, 1, 0], [0, 1, 1], [1, 1, 0]], float)   # label 1: no negative
    p = np.array([[0.2, 0.9, 0.8], [0.7, 0.8, 0.1], [0.1, 0.7, 0.6], [0.9, 0.6, 0.3]])
    aucs = metrics.auroc_per_label(y, p)
    assert aucs[0] == 1.0 and math.isnan(aucs[1]) and aucs[2] == 1.0
    assert math.isnan(metrics.auprc_per_label(y, p)[1])
    assert metrics.defined_mean(aucs) == (1.0, 2)
    assert metrics.is_defined(y[:, 0]) and not metrics.is_defined(y[:, 1])
    assert metrics.youden_threshold(y[:, 1], p[:, 1]) == 0.5


def test_threshold_metrics_hand_values():
    y = np.array([1, 1, 1, 0, 0])
    p = np.array([0.9, 0.6, 0.2, 0.7, 0.1])
    r = metrics.threshold_metrics(y, p, 0.5)   # TP 2, FN 1, FP 1, TN 1
    assert (r["tp"], r["fn"], r["fp"], r["tn"]) == (2, 1, 1, 1)
    assert r["sensitivity"] == pytest.approx(2 / 3)
    assert r["specificity"] == pytest.approx(1 / 2)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert r["accuracy"] == pytest.approx(3 / 5)
    none = metrics.threshold_metrics(y, p, 0.95)   # nothing called positive: precision undefined
    assert none["tp"] == 0 and math.isnan(none["precision"]) and none["f1"] == 0.0


def test_youden_threshold_hand_value():
    # thresholds 0.8 (sens .5, spec 1, J .5), 0.4 (.5, .5, 0), 0.35 (1, .5, .5): the first max wins
    assert metrics.youden_threshold(Y4[:, 0], P4[:, 0]) == pytest.approx(0.8)


def test_wilson_interval_hand_value():
    # 8 of 10: centre (0.8 + z^2/20) / (1 + z^2/10), half-width z sqrt(.016 + z^2/400) / (1 + z^2/10)
    lo, hi = metrics.wilson_ci(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert all(math.isnan(v) for v in metrics.wilson_ci(0, 0))


def _pair_auroc(y, p):
    """AUROC as the fraction of (positive, negative) pairs ordered right, ties 1/2 (by hand)."""
    pos, neg = p[y == 1], p[y == 0]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def test_bootstrap_ci_matches_a_hand_resampling():
    rng = np.random.default_rng(3)
    y = (rng.random(40) < 0.4).astype(float)
    p = np.clip(0.3 * y + rng.random(40) * 0.7, 0, 1)
    lo, hi = metrics.bootstrap_auroc_ci(y[:, None], p[:, None], n=200, seed=5)[0]
    draws, replay = [], np.random.default_rng(5)
    for _ in range(200):
        idx = replay.integers(0, 40, 40)
        if 0 < y[idx].sum() < 40:
            draws.append(_pair_auroc(y[idx], p[idx]))
    assert lo == pytest.approx(np.quantile(draws, 0.025))
    assert hi == pytest.approx(np.quantile(draws, 0.975))
    assert lo < _pair_auroc(y, p) < hi
    perfect = metrics.bootstrap_auroc_ci(np.array([[0], [1]] * 10, float), np.array([[0.1], [0.9]] * 10), 50)
    assert perfect == [(1.0, 1.0)]


def test_plot_roc_writes_png(tmp_path):
    out = metrics.plot_roc(Y4, P4, ["x"], str(tmp_path / "roc.png"))
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
