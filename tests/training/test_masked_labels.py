"""Unknown labels (NaN, e.g. CheXpert's uncertain label under 'ignore') are masked out of the
training loss and of AUROC / thresholds."""
import math

import numpy as np
import pytest

from tfxr.evaluation.metrics import auroc_per_label, threshold_metrics, youden_threshold
from tfxr.training.classifier import weighted_bce


def test_weighted_bce_ignores_nan_labels():
    loss = weighted_bce(np.array([2.0, 1.0]), np.array([0.5, 1.0]))
    y = np.array([[1.0, np.nan], [0.0, 1.0], [np.nan, 0.0]], np.float32)
    p = np.array([[0.8, 0.3], [0.4, 0.9], [0.99, 0.2]], np.float32)
    known = [-2.0 * math.log(0.8), -0.5 * math.log(0.6), -1.0 * math.log(0.9), -1.0 * math.log(0.8)]
    assert float(loss(y, p)) == pytest.approx(np.mean(known), rel=1e-5)
    full = np.array([[1.0, 0.0]], np.float32)
    assert float(loss(full, p[:1])) == pytest.approx(np.mean([-2 * math.log(0.8), -math.log(0.7)]), rel=1e-5)


def test_auroc_and_thresholds_skip_nan_labels():
    y = np.array([[1.0], [0.0], [np.nan], [1.0], [0.0], [np.nan]])
    p = np.array([[0.9], [0.1], [0.0], [0.7], [0.3], [1.0]])
    assert auroc_per_label(y, p) == [1.0]
    assert threshold_metrics(y[:, 0], p[:, 0], 0.5)["accuracy"] == 1.0
    assert youden_threshold(y[:, 0], p[:, 0]) == pytest.approx(0.7)
