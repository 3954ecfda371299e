"""CheXpert (``train.csv``/``valid.csv``), and the uncertainty policies MIMIC-CXR-JPG shares.

CheXpert's 14 observations are ``1.0`` positive, ``0.0`` negative, ``-1.0`` uncertain and
empty when the report does not mention them (read as negative, as the CheXpert paper's
baselines do).  The uncertain label follows a policy (the paper's U-Ones, U-Zeros,
U-Ignore): ``ones`` -> 1, ``zeros`` -> 0, ``ignore`` -> NaN, which the training loss and
AUROC mask out.  The patient is the ``patientNNNNN`` part of the path; ``train.csv`` is
the official ``train`` split and ``valid.csv`` ``val`` (``--remap-splits`` can make val
the test set).  Frontal images only by default; ``views`` filters on AP/PA (laterals
have the view ``LATERAL``).
"""
from __future__ import annotations

import math
import os
import re
from typing import Iterator

import pandas as pd

from tfxr.configs import UNCERTAINTY_POLICIES  # the choices of tfrecords write --uncertainty
from tfxr.data.paths import inside
from tfxr.data.sources.base import Reader
from tfxr.data.sources.common import missing_image, parse_age, parse_views, read_table
from tfxr.data.types import Item, Reject
from tfxr.errors import SourceError

#: The 14 observations, in the column order of CheXpert's (and MIMIC-CXR-JPG's) label files.
CHEXPERT_LABELS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
)
CHEXPERT_COLUMNS = ("Path", "Frontal/Lateral", "AP/PA") + CHEXPERT_LABELS
_PATIENT = re.compile(r"(?:^|/)(patient\d+)/")
_VALUES = {"1.0": 1.0, "1": 1.0, "0.0": 0.0, "0": 0.0, "": 0.0}


def uncertain_value(policy: str) -> float:
    if policy not in UNCERTAINTY_POLICIES:
        raise SourceError(f"uncertainty policy {policy!r} is not one of {', '.join(UNCERTAINTY_POLICIES)}")
    return {"ones": 1.0, "zeros": 0.0, "ignore": math.nan}[policy]


def label_matrix(table: pd.DataFrame, names, policy: str) -> tuple[pd.DataFrame, pd.Series]:
    """The observations as floats under ``policy``; and, per row, the first bad cell or ''."""
    u = uncertain_value(policy)
    cells = table[list(names)].apply(lambda s: s.str.strip())
    known = cells.isin(list(_VALUES) + ["-1.0", "-1"])
    full = {**_VALUES, "-1.0": u, "-1": u}
    values = cells.apply(lambda col: col.map(full)).astype(float)  # a cell not in `full` is NaN, and `bad`
    bad = pd.Series("", index=table.index)
    for c in names:
        wrong = ~known[c] & (bad == "")
        bad[wrong] = [f"{c}={v!r}" for v in cells.loc[wrong, c]]
    return values, bad


class CheXpertReader(Reader):
    """CheXpert: each ``Path`` is looked up under ``images`` as written, or without its
    first folder (``CheXpert-v1.0-small/``), so ``images`` may be either folder."""

    name = "chexpert"
    options = ("images", "labels", "uncertainty", "all_views", "views", "missing_images", "demographics")
    required = ("images", "labels")
    patient_key = "`patientNNNNN` in `Path`"
    official_split = "`train.csv` train, `valid.csv` val"
    views = "frontal only (`--all-views`), AP/PA `--views`"

    def __init__(self, images: str | None, labels: list[str], policy: str = "ones", frontal_only: bool = True,
                 views: tuple[str, ...] | None = None, require_images: bool = True,
                 missing_images: str = "reject", demographics: bool = False) -> None:
        super().__init__()
        uncertain_value(policy)      # an unknown policy is refused before any file is read
        self.images, self.labels, self.policy, self.frontal_only = images, list(labels), policy, frontal_only
        self.keep_views, self.require_images = views, require_images
        self.missing_images, self.demographics = missing_images, demographics
        self.label_names = list(CHEXPERT_LABELS)

    @classmethod
    def keywords(cls, args) -> dict:
        return {"images": args.images, "labels": args.labels, "policy": args.uncertainty,
                "frontal_only": not args.all_views, "views": parse_views(args.views),
                "missing_images": args.missing_images, "demographics": args.demographics}

    def items(self) -> Iterator[Item]:
        images, views, demographics, rejects = self.images, self.keep_views, self.demographics, self.rejects
        skipped, not_frontal, view_skipped = [0], 0, 0
        seen: set[str] = set()
        for lf in self.labels:
            split = "val" if "valid" in os.path.basename(lf).lower() else "train"
            table = read_table(lf, CHEXPERT_COLUMNS, "a CheXpert label file (train.csv / valid.csv)")
            values, bad = label_matrix(table, CHEXPERT_LABELS, self.policy)
            for line, path, fl, appa, sex, age, lab, problem in zip(
                    table.index, table["Path"].str.strip(), table["Frontal/Lateral"].str.strip(),
                    table["AP/PA"].str.strip(), table.get("Sex", pd.Series("", index=table.index)),
                    table.get("Age", pd.Series("", index=table.index)), values.itertuples(index=False), bad):
                where = f"{lf}:{line}"
                m = _PATIENT.search(path)
                if not m or problem:
                    rejects.append(Reject(where, f"malformed row: {problem or 'no patientNNNNN in Path'}"))
                    continue
                if path in seen:
                    rejects.append(Reject(where, f"duplicate label row for {path}"))
                    continue
                seen.add(path)
                if self.frontal_only and fl != "Frontal":
                    not_frontal += 1
                    continue
                view = appa.upper() if fl == "Frontal" else "LATERAL"
                if views and view not in views:
                    view_skipped += 1
                    continue
                file = _locate(images, path, where) if self.require_images else os.path.join(images or "", path)
                if file is None:
                    missing_image(self.missing_images, path, where, rejects, skipped)
                    continue
                yield Item(path, m.group(1), tuple(lab), file, split=split, view=view or None,
                           age=parse_age(age) if demographics else None,
                           sex=(sex.strip()[:1].upper() or None) if demographics else None)
        self.info = {"images": images and os.path.abspath(images), "labels": [os.path.abspath(x) for x in self.labels],
                     "uncertainty": self.policy, "frontal_only": self.frontal_only, "views": list(views or []),
                     "not_frontal_skipped": not_frontal, "images_outside_views": view_skipped,
                     "label_rows_without_image_skipped": skipped[0], "demographics": demographics}


def _locate(images: str | None, path: str, where: str) -> str | None:
    """The image file a label row names, inside ``images`` (else refused), or None."""
    if not images:
        return None
    for candidate in (path, path.split("/", 1)[-1]):
        file = inside(images, os.path.join(*candidate.split("/")), where, "image path")
        if os.path.isfile(file):
            return file
    return None
