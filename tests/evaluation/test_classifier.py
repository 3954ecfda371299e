"""Classifier report: undefined labels, means that say what they average, CheXNet order."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from tfxr.evaluation import classifier


def test_chexnet_order_puts_nih_findings_first_in_paper_order():
    names = ["Effusion", "extra", "Atelectasis", "pneumonia", "Cardiomegaly"]
    assert classifier.chexnet_order(names) == ["Atelectasis", "Cardiomegaly", "Effusion", "pneumonia", "extra"]


def _result(y, p, names, thresholds=None):
    res = classifier.classifier_metrics(y, p, names, thresholds or [0.5] * len(names), bootstrap=50)
    return {"model": "/runs/x/best.keras", "data": "/d", "split": "test", "threshold_split": "val",
            "config": {"bootstrap": 50, "seed": 0}, **res}


def test_undefined_label_is_reported_and_left_out_of_the_mean():
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], float)     # 'Hernia': no positive image
    p = np.array([[0.9, 0.2], [0.1, 0.3], [0.6, 0.1], [0.4, 0.2]])
    res = _result(y, p, ["Effusion", "Hernia"], thresholds=[0.5, 0.25])
    assert res["mean_auroc"] == 1.0 and res["mean_over_labels"] == 1
    assert res["undefined_labels"] == ["Hernia"]
    hernia = res["labels"]["Hernia"]
    assert not hernia["defined"] and math.isnan(hernia["auroc"]) and hernia["positives"] == 0
    assert hernia["at_val_threshold"]["threshold"] == 0.25 and hernia["at_val_threshold"]["fp"] == 1
    eff = res["labels"]["Effusion"]
    assert eff["positives"] == 2 and eff["prevalence"] == 0.5 and eff["auprc"] == 1.0
    assert eff["at_0.5"]["precision"] == 1.0 and eff["at_0.5"]["f1"] == 1.0
    text = classifier.markdown_report(res)
    assert "| Hernia | 0 (0.0%) | undefined |" in text
    assert "mean** over 1 of 2 labels" in text
    assert "left out of the means): Hernia" in text
    assert "CheXNet (published)" not in text      # only for NIH's 14 findings
    table = classifier.format_table(res)
    assert "(over 1 of 2 labels)" in table and "undefined" in table


def test_published_chexnet_column_for_the_14_nih_findings():
    from tfxr.models import CHEXNET_LABELS

    rng = np.random.default_rng(0)
    y = (rng.random((60, 14)) < 0.5).astype(float)
    p = np.clip(y * 0.3 + rng.random((60, 14)) * 0.7, 0, 1)
    text = classifier.markdown_report(_result(y, p, list(reversed(CHEXNET_LABELS))))
    rows = re.findall(r"^\| (\w+) \| \d+ \(", text, flags=re.M)
    assert rows == list(CHEXNET_LABELS)
    assert "| 0.809 |" in text and "Rajpurkar" in text      # Atelectasis 0.8094 as published


def test_predict_split_orders_by_image_id_whatever_the_rank_split(phantom_data):
    from tfxr.data.pipeline import DataConfig
    from tfxr.data.records import read_manifest

    manifest = read_manifest(str(phantom_data))
    fake = lambda x: np.asarray(x).mean(axis=(1, 2, 3))[:, None].repeat(4, axis=1)  # noqa: E731
    p, y, ids = classifier.predict_split(fake, str(phantom_data), "val", DataConfig(batch_size=7),
                                         manifest)
    assert ids == sorted(ids) and len(ids) == manifest["splits"]["val"]["count"]
    assert p.shape == y.shape == (len(ids), 4)
    assert pytest.approx(y.sum(axis=0)) == [manifest["splits"]["val"]["label_counts"][n]
                                            for n in manifest["label_names"]]
