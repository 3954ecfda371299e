"""CheXpert reader on the real train.csv (223,414 rows, no images here) under each
uncertainty policy; images are stand-ins drawn under real file names (said so below)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import shared, tfxr
from tfxr.data.pipeline import training_label_counts
from tfxr.data.sources import CHEXPERT_LABELS, CheXpertReader
from tfxr.training.classifier import class_weights

#: uncertain (-1) labels per observation in train.csv, measured (CHEXPERT_LABELS order)
UNCERTAIN = [0, 12403, 8087, 5598, 1488, 12984, 27742, 18770, 33739, 3145, 11628, 2653, 642, 1079]
POSITIVE = [22381, 10798, 27000, 105581, 9186, 52246, 14783, 6039, 33376, 19448, 86187, 3523, 9040, 116001]


@pytest.fixture(scope="module")
def train_csv():
    return shared("chexpert_metadata", "train.csv.gz")


@pytest.mark.parametrize("policy", ["ones", "zeros", "ignore"])
def test_uncertainty_policies_on_the_full_file(train_csv, policy):
    raw = pd.read_csv(train_csv)
    assert len(raw) == 223414
    uncertain = [(raw[c] == -1).sum() for c in CHEXPERT_LABELS]
    positive = [(raw[c] == 1).sum() for c in CHEXPERT_LABELS]
    assert uncertain == UNCERTAIN and positive == POSITIVE          # pandas agrees with the literals
    src = CheXpertReader(None, [str(train_csv)], policy, frontal_only=False, require_images=False).read()
    assert src.rejects == [] and len(src.items) == 223414
    y = np.array([it.labels for it in src.items])
    masked, ones = np.isnan(y).sum(axis=0), np.nansum(y, axis=0)
    if policy == "ignore":
        assert masked.tolist() == UNCERTAIN and ones.tolist() == POSITIVE
    else:
        assert masked.tolist() == [0] * 14
        assert ones.tolist() == ([p + u for p, u in zip(POSITIVE, UNCERTAIN)] if policy == "ones" else POSITIVE)
    patients = raw["Path"].str.extract(r"(patient\d+)")[0]
    assert len({it.patient_id for it in src.items}) == patients.nunique() == 64540
    assert {it.split for it in src.items} == {"train"}


def test_frontal_only_by_default_and_views(train_csv):
    raw = pd.read_csv(train_csv)
    src = CheXpertReader(None, [str(train_csv)], require_images=False).read()
    assert len(src.items) == (raw["Frontal/Lateral"] == "Frontal").sum() == 191027
    pa = CheXpertReader(None, [str(train_csv)], views=("PA",), require_images=False).read()
    assert len(pa.items) == ((raw["Frontal/Lateral"] == "Frontal") & (raw["AP/PA"] == "PA")).sum()


def test_conversion_with_stand_in_images_under_real_names(train_csv, tmp_path):
    """Stand-in images: CheXpert's images are not here, so flat grey JPEGs are drawn under the
    real paths of the first 12 rows of the real train.csv (and a valid.csv made of 4 of them)."""
    raw = pd.read_csv(train_csv, nrows=12, dtype=str, keep_default_na=False)
    root = tmp_path / "CheXpert-v1.0-small"
    for k, path in enumerate(raw["Path"]):
        f = tmp_path / path
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 32), 20 * k, np.uint8)).save(f)
    raw.iloc[:8].to_csv(tmp_path / "train.csv", index=False)
    raw.iloc[8:].assign(Path=raw["Path"].iloc[8:].str.replace("/train/", "/train/")).to_csv(
        tmp_path / "valid.csv", index=False)
    tfxr("tfxr.tfrecords", "write", "--source", "chexpert", "--images", root.name, "--labels", "train.csv",
         "--labels", "valid.csv", "--uncertainty", "ignore", "--all-views", "--out", "out",
         "--image-size", "16", "--quiet", "--demographics", cwd=tmp_path)
    import json

    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["splits"]["train"]["count"] == 8 and m["splits"]["val"]["count"] == 4
    assert m["source"]["uncertainty"] == "ignore"
    expected = {c: int((raw.iloc[:8][c] == "-1.0").sum()) for c in CHEXPERT_LABELS}
    assert m["splits"]["train"].get("label_masked", {c: 0 for c in CHEXPERT_LABELS}) == expected
    assert not math.isnan(m["splits"]["train"]["prevalence"]["Cardiomegaly"])
    # a masked (NaN) label is unknown, not negative: prevalence is over the images whose label is known
    train = raw.iloc[:8]
    positives = {c: int((train[c] == "1.0").sum()) for c in CHEXPERT_LABELS}
    assert m["splits"]["train"]["label_counts"] == positives
    assert any(expected.values())                          # the 8 rows do hold uncertain labels
    for c in CHEXPERT_LABELS:
        known = 8 - expected[c]
        assert m["splits"]["train"]["prevalence"][c] == pytest.approx(positives[c] / known if known else 0.0)
    # the class weights training draws from it count known negatives only
    positives_t, known_t = training_label_counts(m)
    assert known_t.tolist() == [8 - expected[c] for c in CHEXPERT_LABELS]
    w_pos, w_neg = class_weights(positives_t, known_t, "balanced")
    c = next(c for c in CHEXPERT_LABELS if expected[c] and 0 < positives[c] < 8 - expected[c])
    j = CHEXPERT_LABELS.index(c)
    negatives = 8 - expected[c] - positives[c]
    assert (w_pos[j], w_neg[j]) == pytest.approx(((8 - expected[c]) / (2 * positives[c]),
                                                  (8 - expected[c]) / (2 * negatives)))
    stats = tfxr("tfxr.data.stats", "out", cwd=tmp_path, check=False)   # exit 3: this valid.csv shares a patient
    assert stats.returncode == 3 and "patient overlap: train&val 1" in stats.stdout
    stats = stats.stdout
    row = next(ln for ln in stats.splitlines() if ln.startswith(c + " ") and "masked" not in ln)
    assert float(row.split()[-2]) == pytest.approx(100 * positives[c] / (8 - expected[c]), abs=0.01)
