"""End to end on the real RSNA sample (222 DICOMs, 29 of them with 37 RSNA boxes):
``tfrecords write --source rsna`` -> ``stats`` (box counts) -> ``train`` -> ``evaluate`` -> ``localize``,
then ``predict`` on raw files (DICOM and PNG copies) against ``evaluate``'s numbers,
and the RSNA model scored across data sets on an NIH subset (shared label: Pneumonia).
Small on purpose: 64 px, 2 epochs of the TB CNN.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from tests.conftest import ONE_THREAD, shared, tfxr
from tfxr.data.imageio import read_dicom

@pytest.fixture(scope="module")
def rsna(tmp_path_factory):
    images = shared("rsna_pneumonia", "sample_stage_2_train_images")
    labels = shared("rsna_pneumonia", "stage_2_train_labels.csv")
    work = tmp_path_factory.mktemp("rsna")
    (work / "images").symlink_to(images)
    (work / "labels.csv").symlink_to(labels)
    w = tfxr("tfxr.tfrecords", "write", "--source", "rsna", "--images", "images", "--labels", "labels.csv",
             "--missing-images", "skip", "--views", "PA,AP", "--out", "tfrec", "--image-size", "64",
             "--shards", "2", "--workers", "2", "--quiet", cwd=work)
    tfxr("tfxr.train", "--model", "tb_cnn", "--data", "tfrec", "--out", "run", "--epochs", "2",
         "--batch-size", "16", "--deterministic", "--no-progress", cwd=work, env=ONE_THREAD)
    tfxr("tfxr.evaluate", "--model", "run", "--data", "tfrec", "--bootstrap", "50", cwd=work, env=ONE_THREAD)
    return work, w


def test_write_and_stats_count_rsna_boxes(rsna):
    work, w = rsna
    m = json.loads((work / "tfrec" / "manifest.json").read_text())
    splits = m["splits"].values()
    assert sum(s["count"] for s in splits) == 222 and m["rejected"] == []
    assert sum(s["boxes"]["Pneumonia"] for s in splits) == 37
    assert sum(s["images_with_boxes"] for s in splits) == 29
    assert sum(s["label_counts"]["Pneumonia"] for s in splits) == 29       # Target 1 <=> boxes
    assert m["source"]["label_rows_without_image_skipped"] == 26684 - 222   # patients without a DICOM here
    r = tfxr("tfxr.data.stats", "tfrec", cwd=work)
    boxes = next(line for line in r.stdout.splitlines() if line.startswith("Pneumonia boxes")).split()[2:]
    assert sum(map(int, boxes)) == 37


def test_no_header_identifier_reaches_the_output(rsna):
    work, _ = rsna
    ds = pydicom.dcmread(sorted((work / "images").glob("*.dcm"))[0], stop_before_pixels=True)
    uids = [ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID]
    blobs = [p.read_bytes() for p in (work / "tfrec").rglob("*") if p.is_file()]
    for uid in uids:
        assert not any(str(uid).encode() in b for b in blobs), uid
    # RSNA's PatientName is its patientId, the set's own key (image id and patient key): kept by design
    assert str(ds.PatientName) == ds.PatientID


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_on_raw_dicom_and_png_equals_evaluate(rsna, tmp_path):
    work, _ = rsna
    evaluated = {r["image_id"]: float(r["p_Pneumonia"]) for r in _rows(work / "run" / "eval-test" / "predictions.csv")}
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for k, image_id in enumerate(sorted(evaluated)[:12]):
        src = work / "images" / image_id
        if k % 2:   # a PNG of the decoded pixels: the same image in another format
            Image.fromarray(read_dicom(str(src))[0], "L").save(mixed / (image_id[:-4] + ".png"))
        else:
            shutil.copy(src, mixed / image_id)
    (mixed / "broken.dcm").write_bytes(b"DICM" * 10)
    r = tfxr("tfxr.predict", "--model", str(work / "run"), "mixed", "--out", "preds.csv", "--heatmaps", "hm",
             "--batch-size", "5", cwd=tmp_path, env=ONE_THREAD)
    assert "broken.dcm" in r.stderr and "1 unreadable skipped" in r.stderr
    rows = _rows(tmp_path / "preds.csv")
    assert len(rows) == 12
    thresholds = json.loads((work / "run" / "eval-test" / "metrics.json").read_text())
    thr = thresholds["labels"]["Pneumonia"]["at_val_threshold"]["threshold"]
    for row in rows:
        image_id = Path(row["path"]).stem + ".dcm"
        assert float(row["p_Pneumonia"]) == pytest.approx(evaluated[image_id], abs=2e-6)
        assert float(row["threshold_Pneumonia"]) == pytest.approx(thr, abs=1e-6)
        assert int(row["positive_Pneumonia"]) == int(float(row["p_Pneumonia"]) >= thr)
    assert len(list((tmp_path / "hm").glob("*.png"))) == 12


def test_cross_dataset_evaluation_on_nih_scores_the_shared_label(rsna, tmp_path):
    work, _ = rsna
    nih_csv = shared("nih_chestxray14_sample", "Data_Entry_2017_sample.csv")
    lines = nih_csv.read_text().splitlines()
    (tmp_path / "labels.csv").write_text("\n".join(lines[:81]) + "\n")      # 80 NIH rows
    (tmp_path / "images").symlink_to(shared("nih_chestxray14_sample", "images"))
    tfxr("tfxr.tfrecords", "write", "--source", "nih", "--images", "images", "--labels", "labels.csv",
         "--out", "nih", "--image-size", "64", "--shards", "1", "--max-rejects", "-1", "--quiet", cwd=tmp_path)
    r = tfxr("tfxr.evaluate", "--model", str(work / "run"), "--data", "nih", "--bootstrap", "20",
             "--out", "cross", cwd=tmp_path, env=ONE_THREAD)
    m = json.loads((tmp_path / "cross" / "metrics.json").read_text())
    assert list(m["labels"]) == ["Pneumonia"]
    cross = m["cross_dataset"]
    assert cross["model_source"] == "rsna" and cross["data_source"] == "nih"
    assert cross["shared"] == [{"model": "Pneumonia", "data": "Pneumonia", "vocabulary": "Pneumonia"}]
    assert len(cross["left_out"]) == 13 and "Effusion (data label the model does not predict)" in cross["left_out"]
    assert "left out" in r.stderr and "Effusion" in r.stderr
    assert "Left out:" in (tmp_path / "cross" / "report.md").read_text()
    y = np.array([float(x["y_Pneumonia"]) for x in _rows(tmp_path / "cross" / "predictions.csv")])
    assert len(y) == m["images"]


def test_localize_scores_against_rsna_boxes(rsna):
    work, _ = rsna
    m = json.loads((work / "tfrec" / "manifest.json").read_text())
    tfxr("tfxr.localize", "--model", "run", "--data", "tfrec", "--out", "loc", "--overlays", "2", cwd=work,
         env=ONE_THREAD)
    loc = json.loads((work / "loc" / "localization.json").read_text())
    assert loc["boxes"] == m["splits"]["test"]["boxes"]["Pneumonia"]
    assert loc["images"] == m["splits"]["test"]["images_with_boxes"]
    assert len(list((work / "loc" / "overlays").glob("*.png"))) == 2
