"""RSNA reader on the real label file at full scale, and on the real DICOM sample."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import shared
from tfxr.data.sources import RSNAReader, read_rsna_labels
from tfxr.data.types import normalise_boxes


def test_full_label_file_counts():
    labels = shared("rsna_pneumonia", "stage_2_train_labels.csv")
    raw = pd.read_csv(labels)
    assert len(raw) == 30227 and len(read_rsna_labels(str(labels))) == 30227
    src = RSNAReader(None, str(labels), require_images=False).read()
    assert src.rejects == []
    assert len(src.items) == 26684 == raw["patientId"].nunique()
    assert len({it.patient_id for it in src.items}) == 26684
    assert sum(len(it.boxes) for it in src.items) == 9555 == int(raw["Target"].sum())
    assert sum(1 for it in src.items if it.boxes) == 6012 == raw.loc[raw.Target == 1, "patientId"].nunique()
    assert sum(it.labels[0] for it in src.items) == 6012
    # one box, from RSNA's 1024-px space to fractions of the image (valid at any stored size)
    first = raw[raw.Target == 1].iloc[0]
    item = next(it for it in src.items if it.patient_id == first.patientId)
    b = normalise_boxes(item.boxes, item.box_space, (512, 512))[0]
    assert (b.xmin, b.ymin) == pytest.approx((first.x / 1024, first.y / 1024))
    assert (b.xmax, b.ymax) == pytest.approx(((first.x + first.width) / 1024, (first.y + first.height) / 1024))


def test_sample_views_from_the_dicom_headers():
    images = shared("rsna_pneumonia", "sample_stage_2_train_images")
    labels = shared("rsna_pneumonia", "stage_2_train_labels.csv")
    headers = pd.read_csv(shared("rsna_pneumonia", "stage_2_train_images_dicom_headers.csv.gz"))
    ids = {p.stem for p in images.glob("*.dcm")}
    expected = headers[headers.PatientID.isin(ids)].ViewPosition.value_counts().to_dict()
    everything = RSNAReader(str(images), str(labels), missing_images="skip").read()
    assert len(everything.items) == 222 and everything.rejects == []
    assert sum(len(it.boxes) for it in everything.items) == 37
    assert sum(1 for it in everything.items if it.boxes) == 29
    pa = RSNAReader(str(images), str(labels), views=("PA",), missing_images="skip").read()
    assert len(pa.items) == expected["PA"] and {it.view for it in pa.items} == {"PA"}
    assert pa.info["images_outside_views"] == expected.get("AP", 0)
    assert all(it.age is None and it.sex is None for it in pa.items)        # not unless asked
    demo = RSNAReader(str(images), str(labels), missing_images="skip", demographics=True).read()
    ages = headers.set_index("PatientID").loc[[it.patient_id for it in demo.items], "PatientAge"].to_numpy(float)
    np.testing.assert_array_equal([it.age for it in demo.items], ages)


def test_class_info_and_contradictions(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("patientId,x,y,width,height,Target\na,10,20,30,40,1\na,100,100,50,50,1\nb,,,,,0\n"
                      "c,,,,,0\nd,,,,,1\ne,,,,,0\ne,1,1,1,1,1\n")
    info = tmp_path / "class.csv"
    info.write_text("patientId,class\na,Lung Opacity\nb,No Lung Opacity / Not Normal\nc,Lung Opacity\n")
    src = RSNAReader(None, str(labels), class_info=str(info), require_images=False).read()
    assert src.label_names == ["Pneumonia", "Not Normal"]
    got = {it.patient_id: it.labels for it in src.items}
    assert got == {"a": (1.0, 0.0), "b": (0.0, 1.0)}
    reasons = " | ".join(r.reason for r in src.rejects)
    assert "Target 1 row without a box" in reasons                 # d
    assert "Target 1 contradicts line" in reasons                  # e
    assert "class 'Lung Opacity' contradicts Target 0" in reasons  # c
    assert "no row in" in reasons                                  # d has no class row either way
