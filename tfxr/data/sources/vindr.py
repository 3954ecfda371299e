"""VinDr-CXR (VinBigData challenge): ``train.csv`` boxes from three radiologists per image.

Rows are ``image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max``: one row per box
(or one ``No finding`` row, class 14, without a box) per reader.  Labels are the 14
finding classes (``class_id`` 0..13), taken from the boxes.  ``fusion`` decides what
the three readings become:

- ``keep``: every reader's boxes; a class is positive when any reader marked it.
- ``wbf``: weighted-box fusion (Solovyev et al. 2021) of the readers' boxes per class:
  boxes overlapping a cluster's fused box by IoU > ``iou`` join it, the fused box is the
  mean of its members (every reading weighs 1); labels as ``keep``.
- ``agreement``: the fused clusters that at least ``min_readers`` different readers
  support; a class is positive when at least ``min_readers`` readers marked it.

Boxes are in pixels of the original DICOM, divided by its size after decoding.  VinDr
publishes no patient ids (each image is its own patient).  The label file has no view
column; ``views`` (``--views PA``) keeps only the DICOMs whose header's View Position is
one of them (read from the header only when asked; an image without one, or a PNG copy,
is outside every filter and counted in ``images_outside_views``).  A file named ``*test*`` is
the official test split; others are ``trainval`` (divided into train and val).
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import pandas as pd

from tfxr.configs import FUSIONS  # the choices of tfrecords write --fusion
from tfxr.data.sources.base import Reader, one_label_file
from tfxr.data.sources.common import (by_file_name, dicom_header, list_images, missing_image, parse_views,
                                      read_table)
from tfxr.data.types import Box, Item, Reject
from tfxr.errors import SourceError

VINDR_COLUMNS = ("image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max")
VINDR_LABELS = (
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Consolidation", "ILD",
    "Infiltration", "Lung Opacity", "Nodule/Mass", "Other lesion", "Pleural effusion",
    "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis",
)
NO_FINDING = 14


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def fuse_boxes(boxes: list[tuple[str, tuple[float, float, float, float]]], iou: float
               ) -> list[tuple[tuple[float, float, float, float], set[str]]]:
    """Weighted-box fusion of one class's readings ``[(reader, (x0, y0, x1, y1)), ...]``.

    Every reading has weight 1 (VinDr's readers give no scores), so a fused box is the
    mean of its cluster.  Returns ``[(fused box, readers in the cluster), ...]`` in the
    order clusters were opened (readings sorted by reader, then position: deterministic).
    """
    clusters: list[list] = []  # [fused, members, readers]
    for reader, box in sorted(boxes):
        best, best_iou = None, iou
        for c in clusters:
            v = _iou(c[0], box)
            if v > best_iou:
                best, best_iou = c, v
        if best is None:
            clusters.append([box, [box], {reader}])
        else:
            best[1].append(box)
            best[2].add(reader)
            best[0] = tuple(float(v) for v in np.mean(best[1], axis=0))
    return [(c[0], c[2]) for c in clusters]


def read_vindr_table(path: str) -> pd.DataFrame:
    """Kaggle's ``train.csv``, or PhysioNet's ``annotations_train.csv`` (no ``class_id``
    column: it is taken from ``class_name``)."""
    required = tuple(c for c in VINDR_COLUMNS if c != "class_id")
    table = read_table(path, required, "a VinDr-CXR annotation file (train.csv)")
    if "class_id" not in table.columns:
        ids = {n: str(k) for k, n in enumerate(VINDR_LABELS + ("No finding",))}
        table["class_id"] = table["class_name"].str.strip().map(ids).fillna("")
    out = pd.DataFrame({c: table[c].str.strip() for c in ("image_id", "class_name", "class_id", "rad_id")},
                       index=table.index)
    for c in ("x_min", "y_min", "x_max", "y_max"):
        out[c] = pd.to_numeric(table[c].str.strip().replace("", np.nan), errors="coerce")
    return out


class VinDrReader(Reader):
    """VinDr-CXR: ``train.csv`` (or PhysioNet's ``annotations_*.csv``) and the DICOMs
    (``<image_id>.dicom``; ``.dcm`` or ``.png`` copies are found too)."""

    name = "vindr"
    options = ("images", "labels", "fusion", "fusion_iou", "min_readers", "views", "missing_images")
    required = ("images", "labels")
    patient_key = "none published (image = patient)"
    official_split = "`*test*` file = test, else trainval"
    boxes = "3 readers: `--fusion keep|wbf|agreement` (`--fusion-iou`, `--min-readers`), DICOM pixels"
    views = "View Position from the DICOM header, `--views`"

    def __init__(self, images: str | None, labels: str, fusion: str = "keep", iou: float = 0.4,
                 min_readers: int = 2, require_images: bool = True, missing_images: str = "reject",
                 views: tuple[str, ...] | None = None) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise SourceError(f"VinDr box fusion {fusion!r} is not one of {', '.join(FUSIONS)}")
        self.images, self.labels, self.fusion, self.iou, self.min_readers = images, labels, fusion, iou, min_readers
        self.require_images, self.missing_images, self.keep_views = require_images, missing_images, views
        self.label_names = list(VINDR_LABELS)

    @classmethod
    def keywords(cls, args) -> dict:
        return {"images": args.images, "labels": one_label_file(args), "fusion": args.fusion,
                "iou": args.fusion_iou, "min_readers": args.min_readers, "missing_images": args.missing_images,
                "views": parse_views(args.views)}

    def items(self) -> Iterator[Item]:
        images, labels, fusion, iou, min_readers = self.images, self.labels, self.fusion, self.iou, self.min_readers
        require_images, rejects = self.require_images, self.rejects
        files = by_file_name(list_images(images, rejects), rejects) if require_images else {}
        table = read_vindr_table(labels)
        readings: dict[str, dict[int, list]] = {}   # image -> class -> [(reader, box)]
        readers_of: dict[str, dict[int, set]] = {}  # image -> class -> readers who named it
        order: list[str] = []
        for line, r in zip(table.index, table.itertuples(index=False)):
            where = f"{labels}:{line}"
            if not r.image_id or not r.class_id.isdigit() or int(r.class_id) > NO_FINDING or not r.rad_id:
                rejects.append(Reject(where, "malformed row: needs image_id, class_id 0..14 and rad_id"))
                continue
            cid = int(r.class_id)
            expected = "No finding" if cid == NO_FINDING else VINDR_LABELS[cid]
            if r.class_name != expected:
                rejects.append(Reject(where, f"class_name {r.class_name!r} does not match class_id {cid} "
                                             f"({expected!r})"))
                continue
            if r.image_id not in readings:
                readings[r.image_id], readers_of[r.image_id] = {}, {}
                order.append(r.image_id)
            if cid == NO_FINDING:
                continue
            box = (r.x_min, r.y_min, r.x_max, r.y_max)
            if any(np.isnan(v) for v in box) or box[2] <= box[0] or box[3] <= box[1]:
                rejects.append(Reject(where, "finding row without a box (x_min < x_max, y_min < y_max)"))
                continue
            readings[r.image_id].setdefault(cid, []).append((r.rad_id, tuple(float(v) for v in box)))
            readers_of[r.image_id].setdefault(cid, set()).add(r.rad_id)
        split = "test" if "test" in os.path.basename(labels).lower() else "trainval"
        skipped = [0]
        views, view_skipped = self.keep_views, 0
        for image_id in order:
            name = next((n for n in (f"{image_id}.dicom", f"{image_id}.dcm", f"{image_id}.png") if n in files), None)
            if require_images and name is None:
                missing_image(self.missing_images, f"{image_id}.dicom", labels, rejects, skipped)
                continue
            path = files[name] if require_images else os.path.join(images or "", f"{image_id}.dicom")
            view = dicom_header(path).get("view") if views and require_images else None
            if views and view not in views:
                view_skipped += 1
                continue
            need = min_readers if fusion == "agreement" else 1
            lab = tuple(float(len(readers_of[image_id].get(c, ())) >= need) for c in range(len(VINDR_LABELS)))
            boxes: list[Box] = []
            for cid in sorted(readings[image_id]):
                group = readings[image_id][cid]
                if fusion == "keep":
                    boxes += [Box(cid, *b) for _, b in group]
                    continue
                for fused, readers in fuse_boxes(group, iou):
                    if fusion == "wbf" or len(readers) >= min_readers:
                        boxes.append(Box(cid, *fused))
            yield Item(image_id, image_id, lab, path, boxes=tuple(boxes), split=split, box_space=(0, 0),
                       view=view)
        if require_images:
            for n in sorted(set(files) - {f"{i}{ext}" for i in readings for ext in (".dicom", ".dcm", ".png")}):
                rejects.append(Reject(files[n], "image without a label row"))
        self.info = {"images": images and os.path.abspath(images), "labels": os.path.abspath(labels),
                     "fusion": fusion, "iou": iou, "min_readers": min_readers,
                     "label_rows_without_image_skipped": skipped[0]}
        if views:   # only when asked, so the manifests of unfiltered conversions stay as they were
            self.info.update(views=list(views), images_outside_views=view_skipped)
