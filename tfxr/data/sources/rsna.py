"""RSNA Pneumonia Detection Challenge (2018): ``stage_2_train_labels.csv`` and DICOMs.

One label, ``Pneumonia`` (RSNA's ``Target``: 1 where radiologists drew "Lung Opacity"
boxes suggestive of pneumonia).  The label file has one row per box (a patient with
three boxes has three rows; ``Target`` 0 rows have empty boxes).  Boxes are in pixels
of RSNA's 1024 x 1024 images, so they are stored as fractions of 1024 (valid for a
downsized copy too).  Each patientId is one image of one patient; RSNA publishes no
official split.  With ``stage_2_detailed_class_info.csv`` a second label ``Not Normal``
(RSNA's class "No Lung Opacity / Not Normal") is added and the class is checked against
``Target``.  Views (PA/AP) and, if asked, age and sex come from each DICOM's header.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import pandas as pd

from tfxr.data.sources.base import Reader, one_label_file
from tfxr.data.sources.common import (by_file_name, dicom_header, list_images, missing_image,
                                      parse_views, read_table)
from tfxr.data.types import Box, Item, Reject

RSNA_BOX_SPACE = (1024.0, 1024.0)
RSNA_COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
RSNA_CLASSES = ("Lung Opacity", "No Lung Opacity / Not Normal", "Normal")


def read_rsna_labels(path: str) -> pd.DataFrame:
    """The label file as strings indexed by line number, with x, y, width, height as floats."""
    table = read_table(path, RSNA_COLUMNS, "an RSNA label file (stage_2_train_labels.csv)")
    out = pd.DataFrame({"patient": table["patientId"].str.strip(), "target": table["Target"].str.strip()},
                       index=table.index)
    for c in ("x", "y", "width", "height"):
        out[c] = pd.to_numeric(table[c].str.strip().replace("", np.nan), errors="coerce")
    out["blank"] = (table[["x", "y", "width", "height"]].apply(lambda s: s.str.strip()) == "").all(axis=1)
    return out


class RSNAReader(Reader):
    """RSNA: one item per patientId (``<patientId>.dcm`` under ``images``), boxes from every row."""

    name = "rsna"
    options = ("images", "labels", "class_info", "views", "missing_images", "demographics")
    required = ("images", "labels")
    patient_key = "`patientId`"
    boxes = "every `Target` 1 row (1024 px)"
    views = "PA/AP from the DICOM header, `--views`"

    def __init__(self, images: str | None, labels: str, class_info: str | None = None,
                 views: tuple[str, ...] | None = None, require_images: bool = True,
                 missing_images: str = "reject", demographics: bool = False) -> None:
        super().__init__()
        self.images, self.labels, self.class_info = images, labels, class_info
        self.keep_views, self.require_images = views, require_images
        self.missing_images, self.demographics = missing_images, demographics
        self.label_names = ["Pneumonia"] + (["Not Normal"] if class_info else [])

    @classmethod
    def keywords(cls, args) -> dict:
        return {"images": args.images, "labels": one_label_file(args), "class_info": args.class_info or None,
                "views": parse_views(args.views), "missing_images": args.missing_images,
                "demographics": args.demographics}

    def items(self) -> Iterator[Item]:
        images, labels, class_info, views = self.images, self.labels, self.class_info, self.keep_views
        require_images, rejects = self.require_images, self.rejects
        files = by_file_name(list_images(images, rejects), rejects) if require_images else {}
        table = read_rsna_labels(labels)
        classes: dict[str, str] = {}
        if class_info:
            info = read_table(class_info, ("patientId", "class"), "RSNA's stage_2_detailed_class_info.csv")
            for line, pid, cls in zip(info.index, info["patientId"].str.strip(), info["class"].str.strip()):
                if cls not in RSNA_CLASSES:
                    rejects.append(Reject(f"{class_info}:{line}",
                                          f"unknown class {cls!r} (known: {list(RSNA_CLASSES)})"))
                elif classes.setdefault(pid, cls) != cls:
                    rejects.append(Reject(f"{class_info}:{line}", f"{pid}: class {cls!r} differs from "
                                                                   f"{classes[pid]!r} on an earlier row"))
        targets: dict[str, str] = {}
        boxes: dict[str, list[Box]] = {}
        first_line: dict[str, int] = {}
        bad: set[str] = set()
        for line, row in zip(table.index, table.itertuples(index=False)):
            where = f"{labels}:{line}"
            pid = row.patient
            if not pid or row.target not in ("0", "1"):
                rejects.append(Reject(where, "malformed row: needs patientId and Target 0 or 1"))
                continue
            if pid in targets and targets[pid] != row.target:
                rejects.append(Reject(where, f"{pid}: Target {row.target} contradicts line {first_line[pid]}"))
                bad.add(pid)
                continue
            if pid in targets and row.target == "0":
                rejects.append(Reject(where, f"duplicate label row for {pid}"))
                continue
            targets.setdefault(pid, row.target)
            first_line.setdefault(pid, line)
            if row.target == "1":
                x, y, w, h = row.x, row.y, row.width, row.height
                if any(np.isnan(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
                    rejects.append(Reject(where, "Target 1 row without a box of four numbers (positive width, height)"))
                    continue
                boxes.setdefault(pid, []).append(Box(0, float(x), float(y), float(x + w), float(y + h)))
            elif not row.blank:
                rejects.append(Reject(where, "Target 0 row with a box"))
        skipped = [0]
        view_skipped = 0
        for pid in targets:
            if pid in bad:
                continue
            name = f"{pid}.dcm"
            where = f"{labels}:{first_line[pid]}"
            if require_images and name not in files:
                missing_image(self.missing_images, name, where, rejects, skipped)
                continue
            path = files[name] if require_images else os.path.join(images or "", name)
            header = dicom_header(path, self.demographics) if require_images else {}
            if views and header.get("view") not in views:
                view_skipped += 1
                continue
            lab = [float(targets[pid])]
            if class_info:
                cls = classes.get(pid)
                if cls is None:
                    rejects.append(Reject(path, f"no row in {class_info} ({where})"))
                    continue
                if (cls == "Lung Opacity") != (targets[pid] == "1"):
                    rejects.append(Reject(path, f"class {cls!r} contradicts Target {targets[pid]} ({where})"))
                    continue
                lab.append(float(cls == "No Lung Opacity / Not Normal"))
            yield Item(name, pid, tuple(lab), path, boxes=tuple(boxes.get(pid, ())),
                       box_space=RSNA_BOX_SPACE, view=header.get("view"),
                       age=header.get("age"), sex=header.get("sex"))
        if require_images:
            for name in sorted(set(files) - {f"{p}.dcm" for p in targets}):
                rejects.append(Reject(files[name], "image without a label row"))
        self.info = {"images": images and os.path.abspath(images), "labels": os.path.abspath(labels),
                     "class_info": class_info and os.path.abspath(class_info), "views": list(views or []),
                     "label_rows_without_image_skipped": skipped[0], "images_outside_views": view_skipped,
                     "demographics": self.demographics}
