"""MIMIC-CXR-JPG reader.  No MIMIC file is here (credentialed, PhysioNet): the three CSVs
are built in the test from the published column layout of MIMIC-CXR-JPG 2.0.0
(mimic-cxr-2.0.0-chexpert.csv, -split.csv, -metadata.csv), with stand-in JPEGs."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from tfxr.data.sources import CHEXPERT_LABELS, MIMICReader
from tfxr.data.sources.mimic import mimic_image_path

# the published column orders
CHEXPERT_COLUMNS = ["subject_id", "study_id", "Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
                    "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion", "Lung Opacity", "No Finding",
                    "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax", "Support Devices"]
SPLIT_COLUMNS = ["dicom_id", "study_id", "subject_id", "split"]
METADATA_COLUMNS = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
                    "Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                    "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"]


def _write(path, columns, rows):
    path.write_text(",".join(columns) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


def _layout(tmp_path):
    studies = [("10000032", "50414267", {"Atelectasis": "-1.0", "Edema": "1.0"}, "train"),
               ("10000032", "53189527", {"No Finding": "1.0"}, "train"),
               ("10000764", "57375967", {"Pneumonia": "-1.0", "Consolidation": "0.0"}, "validate"),
               ("10000898", "50771383", {"Cardiomegaly": "1.0"}, "test")]
    chex, split, meta = [], [], []
    for k, (subject, study, values, sp) in enumerate(studies):
        chex.append([subject, study] + [values.get(c, "") for c in CHEXPERT_COLUMNS[2:]])
        for view in ("PA", "LATERAL"):
            dicom = f"{k:02d}{view[:2]}-dicom"
            split.append([dicom, study, subject, sp])
            meta.append([dicom, subject, study, "CHEST (PA AND LAT)", view, 3056, 2544, 21800506, 213014.531,
                         "CHEST (PA AND LAT)", "postero-anterior" if view == "PA" else "lateral", "Erect"])
            f = mimic_image_path(str(tmp_path), subject, study, dicom)
            import os

            os.makedirs(os.path.dirname(f), exist_ok=True)
            Image.fromarray(np.full((30, 30), 40 * k, np.uint8)).save(f)
    _write(tmp_path / "chexpert.csv", CHEXPERT_COLUMNS, chex)
    _write(tmp_path / "split.csv", SPLIT_COLUMNS, split)
    _write(tmp_path / "metadata.csv", METADATA_COLUMNS, meta)


def test_mimic_labels_splits_views_and_policy(tmp_path):
    _layout(tmp_path)
    args = (str(tmp_path), str(tmp_path / "chexpert.csv"), str(tmp_path / "split.csv"), str(tmp_path / "metadata.csv"))
    src = MIMICReader(*args, policy="ignore").read()
    assert src.rejects == [] and src.label_names == list(CHEXPERT_LABELS)
    assert len(src.items) == 4 and {it.view for it in src.items} == {"PA"}      # frontal by default
    assert [it.split for it in src.items] == ["train", "train", "val", "test"]
    assert [it.patient_id for it in src.items] == ["10000032", "10000032", "10000764", "10000898"]
    first = dict(zip(CHEXPERT_LABELS, src.items[0].labels))
    assert math.isnan(first["Atelectasis"]) and first["Edema"] == 1.0 and first["Pneumonia"] == 0.0
    ones = MIMICReader(*args, policy="ones", views=None).read()
    assert len(ones.items) == 8
    assert dict(zip(CHEXPERT_LABELS, ones.items[4].labels))["Pneumonia"] == 1.0
