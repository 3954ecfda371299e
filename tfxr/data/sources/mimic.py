"""MIMIC-CXR-JPG 2.0: ``mimic-cxr-2.0.0-{chexpert,split,metadata}.csv(.gz)`` and ``files/``.

Labels are per study (``subject_id``, ``study_id``) in the CheXpert labeller's 14
observations, with CheXpert's uncertainty policies; every image (``dicom_id``) of a study
gets its study's labels.  The subject is the patient, the split file's
``train``/``validate``/``test`` is the official split, and the metadata's
``ViewPosition`` the view (PA and AP by default).  Images are at
``files/p<first two digits>/p<subject_id>/s<study_id>/<dicom_id>.jpg``.
"""
from __future__ import annotations

import os
from typing import Iterator

from tfxr.data.sources.base import Reader, one_label_file
from tfxr.data.sources.chexpert import CHEXPERT_LABELS, label_matrix, uncertain_value
from tfxr.data.sources.common import missing_image, parse_views, read_table
from tfxr.data.types import Item, Reject

MIMIC_SPLITS = {"train": "train", "validate": "val", "test": "test"}
DEFAULT_VIEWS = ("PA", "AP")


def mimic_image_path(images: str, subject: str, study: str, dicom_id: str) -> str:
    return os.path.join(images, "files", f"p{subject[:2]}", f"p{subject}", f"s{study}", f"{dicom_id}.jpg")


class MIMICReader(Reader):
    """MIMIC-CXR-JPG: the CheXpert-labeller file, the split file and the metadata file."""

    name = "mimic-cxr-jpg"
    options = ("images", "labels", "mimic_split", "mimic_metadata", "uncertainty", "views", "missing_images")
    required = ("images", "labels", "mimic_split", "mimic_metadata")
    patient_key = "`subject_id`"
    official_split = "`-split.csv` (train/validate/test)"
    views = "`ViewPosition`, PA,AP by default"

    def __init__(self, images: str | None, labels: str, split_file: str, metadata: str, policy: str = "ones",
                 views: tuple[str, ...] | None = DEFAULT_VIEWS, require_images: bool = True,
                 missing_images: str = "reject") -> None:
        super().__init__()
        uncertain_value(policy)      # an unknown policy is refused before any file is read
        self.images, self.labels, self.split_file, self.metadata = images, labels, split_file, metadata
        self.policy, self.keep_views, self.require_images = policy, views, require_images
        self.missing_images = missing_images
        self.label_names = list(CHEXPERT_LABELS)

    @classmethod
    def keywords(cls, args) -> dict:
        return {"images": args.images, "labels": one_label_file(args), "split_file": args.mimic_split,
                "metadata": args.mimic_metadata, "policy": args.uncertainty,
                "views": parse_views(args.views) or DEFAULT_VIEWS, "missing_images": args.missing_images}

    def items(self) -> Iterator[Item]:
        images, labels, split_file, metadata = self.images, self.labels, self.split_file, self.metadata
        views, rejects = self.keep_views, self.rejects
        lab_table = read_table(labels, ("subject_id", "study_id") + CHEXPERT_LABELS,
                               "MIMIC-CXR-JPG's mimic-cxr-2.0.0-chexpert.csv")
        values, bad = label_matrix(lab_table, CHEXPERT_LABELS, self.policy)
        study_labels: dict[tuple[str, str], tuple[float, ...]] = {}
        for line, subject, study, lab, problem in zip(lab_table.index, lab_table["subject_id"].str.strip(),
                                                      lab_table["study_id"].str.strip(),
                                                      values.itertuples(index=False), bad):
            if not subject.isdigit() or not study.isdigit() or problem:
                rejects.append(Reject(f"{labels}:{line}",
                                      f"malformed row: {problem or 'subject_id/study_id not numbers'}"))
            elif (subject, study) in study_labels:
                rejects.append(Reject(f"{labels}:{line}", f"duplicate label row for study {study}"))
            else:
                study_labels[(subject, study)] = tuple(lab)
        splits = read_table(split_file, ("dicom_id", "study_id", "subject_id", "split"), "mimic-cxr-2.0.0-split.csv")
        split_of = dict(zip(splits["dicom_id"].str.strip(), splits["split"].str.strip()))
        meta = read_table(metadata, ("dicom_id", "subject_id", "study_id", "ViewPosition"),
                          "mimic-cxr-2.0.0-metadata.csv")
        skipped, view_skipped = [0], 0
        for line, dicom_id, subject, study, view in zip(meta.index, meta["dicom_id"].str.strip(),
                                                        meta["subject_id"].str.strip(), meta["study_id"].str.strip(),
                                                        meta["ViewPosition"].str.strip().str.upper()):
            where = f"{metadata}:{line}"
            if views and view not in views:
                view_skipped += 1
                continue
            lab = study_labels.get((subject, study))
            if lab is None:
                rejects.append(Reject(where, f"image {dicom_id}: study {study} has no row in {labels}"))
                continue
            split = MIMIC_SPLITS.get(split_of.get(dicom_id, ""))
            if split is None:
                rejects.append(Reject(where, f"image {dicom_id}: no train/validate/test row in {split_file}"))
                continue
            path = mimic_image_path(images or "", subject, study, dicom_id)
            if self.require_images and not os.path.isfile(path):
                missing_image(self.missing_images, path, where, rejects, skipped)
                continue
            yield Item(f"p{subject}/s{study}/{dicom_id}.jpg", subject, lab, path, split=split, view=view or None)
        self.info = {"images": images and os.path.abspath(images), "labels": os.path.abspath(labels),
                     "split_file": os.path.abspath(split_file), "metadata": os.path.abspath(metadata),
                     "uncertainty": self.policy, "views": list(views or []), "images_outside_views": view_skipped,
                     "label_rows_without_image_skipped": skipped[0]}
