"""VinDr-CXR reader on the real train.csv (67,914 rows for 15,000 images, no images here),
with the three ways of combining the readers; a stand-in DICOM under a real image id."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import shared, tfxr
from tests.data.test_dicom import make_cr
from tfxr.data.sources import VINDR_LABELS, VinDrReader, fuse_boxes, read_vindr_table

BOXES = {"keep": 36096, "wbf": 22713, "agreement": 8824}   # measured on the real file


@pytest.fixture(scope="module")
def train_csv():
    return shared("vindr_cxr_metadata", "train.csv.gz")


@pytest.mark.parametrize("fusion", ["keep", "wbf", "agreement"])
def test_full_file_under_each_fusion(train_csv, fusion):
    raw = pd.read_csv(train_csv)
    assert len(raw) == 67914 and len(read_vindr_table(str(train_csv))) == 67914
    src = VinDrReader(None, str(train_csv), fusion=fusion, require_images=False).read()
    assert src.rejects == [] and len(src.items) == 15000 == raw.image_id.nunique()
    assert sum(len(it.boxes) for it in src.items) == BOXES[fusion]
    if fusion == "keep":
        assert BOXES["keep"] == int((raw.class_id != 14).sum())
    y = np.array([it.labels for it in src.items])
    findings = raw[raw.class_id != 14]
    if fusion != "agreement":   # positive when any reader marked the class
        expected = findings.groupby("class_id").image_id.nunique().reindex(range(14), fill_value=0)
    else:                       # positive when >= 2 readers marked it
        readers = findings.groupby(["image_id", "class_id"]).rad_id.nunique()
        expected = (readers[readers >= 2].reset_index().groupby("class_id").image_id.nunique()
                    .reindex(range(14), fill_value=0))
    assert y.sum(axis=0).astype(int).tolist() == expected.tolist()
    assert {it.split for it in src.items} == {"trainval"}


def test_weighted_box_fusion_and_agreement_on_a_known_case():
    readings = [("R1", (10.0, 10.0, 50.0, 50.0)), ("R2", (12.0, 12.0, 52.0, 52.0)), ("R3", (200.0, 200.0, 220.0, 220.0))]
    fused = fuse_boxes(readings, 0.4)
    assert fused[0] == ((11.0, 11.0, 51.0, 51.0), {"R1", "R2"})
    assert fused[1] == ((200.0, 200.0, 220.0, 220.0), {"R3"})


def test_boxes_are_divided_by_the_dicom_size(train_csv, tmp_path):
    """Stand-in image: a blank 12-bit DICOM (just larger than its boxes) under the real id of
    the first image with boxes; the real boxes are divided by the decoded size."""
    raw = pd.read_csv(train_csv)
    image_id = raw[raw.class_id != 14].image_id.iloc[0]
    rows = raw[raw.image_id == image_id]
    rows.to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "train").mkdir()
    height, width = int(rows.y_max.max()) + 101, int(rows.x_max.max()) + 57   # holds every real box
    make_cr(tmp_path / "train" / f"{image_id}.dicom", np.zeros((height, width), np.uint16))
    tfxr("tfxr.tfrecords", "write", "--source", "vindr", "--images", "train", "--labels", "train.csv",
         "--out", "out", "--image-size", "32", "--quiet", cwd=tmp_path)
    import tensorflow as tf

    from tfxr.data.records import feature_spec

    shard = next((tmp_path / "out").glob("*.tfrecord"))
    ex = tf.io.parse_single_example(next(iter(tf.data.TFRecordDataset(str(shard)))), feature_spec(14))
    got = sorted(zip(ex["bbox/label"].values.numpy().tolist(),
                     *(np.round(ex[f"bbox/{c}"].values.numpy(), 5).tolist() for c in ("xmin", "ymin", "xmax", "ymax"))))
    boxed = rows[rows.class_id != 14]
    expected = sorted(zip(boxed.class_id.tolist(), np.round(boxed.x_min / width, 5).tolist(),
                          np.round(boxed.y_min / height, 5).tolist(), np.round(boxed.x_max / width, 5).tolist(),
                          np.round(boxed.y_max / height, 5).tolist()))
    assert len(got) == len(expected) > 0
    np.testing.assert_allclose(np.array(got), np.array(expected), atol=2e-5)
    assert {VINDR_LABELS[k] for k, *_ in got} == set(boxed.class_name)
    assert ex["image/original_size"].values.numpy().tolist() == [height, width]
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sum(sum(s["boxes"].values()) for s in m["splits"].values()) == int((rows.class_id != 14).sum())


def test_views_keep_only_the_dicoms_whose_header_names_them(train_csv, tmp_path):
    """``--views PA``: a PA DICOM kept (its view in the record), an AP DICOM and a PNG copy
    (no header) left out and counted; without ``views`` all three kept and no view is read."""
    from PIL import Image

    raw = pd.read_csv(train_csv)
    ids = list(dict.fromkeys(raw.image_id))[:3]
    raw[raw.image_id.isin(ids)].to_csv(tmp_path / "train.csv", index=False)
    images = tmp_path / "train"
    images.mkdir()
    make_cr(images / f"{ids[0]}.dicom", np.zeros((64, 64), np.uint16), view="PA")
    make_cr(images / f"{ids[1]}.dicom", np.zeros((64, 64), np.uint16), view="AP")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(images / f"{ids[2]}.png")
    kept = VinDrReader(str(images), str(tmp_path / "train.csv"), views=("PA",)).read()
    assert [(it.image_id, it.view) for it in kept.items] == [(ids[0], "PA")] and kept.rejects == []
    assert kept.info["views"] == ["PA"] and kept.info["images_outside_views"] == 2
    every = VinDrReader(str(images), str(tmp_path / "train.csv")).read()
    assert [it.image_id for it in every.items] == ids and {it.view for it in every.items} == {None}
    assert "views" not in every.info
