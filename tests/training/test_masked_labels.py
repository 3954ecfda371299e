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


def test_evaluation_prevalence_and_accuracy_interval_count_known_labels_only():
    """A masked label is not a negative: prevalence and the accuracy interval are over the
    images whose label is known (2 positives of 4 known, not of 6 images)."""
    from tfxr.evaluation.classifier import classifier_metrics
    from tfxr.evaluation.metrics import wilson_ci

    y = np.array([[1.0], [0.0], [np.nan], [1.0], [0.0], [np.nan]])
    p = np.array([[0.9], [0.1], [0.0], [0.7], [0.3], [1.0]])
    r = classifier_metrics(y, p, ["Edema"], [0.5], bootstrap=0)["labels"]["Edema"]
    assert (r["positives"], r["labelled"], r["prevalence"]) == (2, 4, 0.5)
    assert r["accuracy_ci95"] == list(wilson_ci(4, 4))


def test_class_weights_leave_masked_labels_out():
    """From a manifest with masked labels: N is the known labels per label, not the images."""
    from tfxr.data.pipeline import training_label_counts
    from tfxr.training.classifier import class_weights

    manifest = {"label_names": ["Edema", "Fracture"],
                "splits": {"train": {"count": 10, "label_counts": {"Edema": 2, "Fracture": 5},
                                     "label_masked": {"Edema": 4, "Fracture": 0}}}}
    positives, known = training_label_counts(manifest)
    assert positives.tolist() == [2, 5] and known.tolist() == [6, 10]
    w_pos, w_neg = class_weights(positives, known, "balanced")
    np.testing.assert_allclose(w_pos, [6 / 4, 10 / 10])
    np.testing.assert_allclose(w_neg, [6 / 8, 10 / 10])
