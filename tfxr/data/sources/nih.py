"""NIH ChestX-ray14: ``Data_Entry_2017*.csv`` (+.gz), ``BBox_List_2017.csv``, split lists."""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import pandas as pd

from tfxr.data.sources.base import Reader, one_label_file
from tfxr.data.sources.common import by_file_name, list_images, parse_views, read_lines, read_table
from tfxr.data.splits import parse_split_assignment
from tfxr.data.types import CHEXNET_LABELS, Box, Item, Reject
from tfxr.errors import SourceError

NIH_BOX_SPACE = 1024.0  # NIH boxes are given in the 1024-px coordinates of the release
NIH_LABEL_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
NIH_BOX_COLUMNS = ("Image Index", "Finding Label")

def read_nih_labels(path: str, rejects: list[Reject] | None = None) -> pd.DataFrame:
    """NIH ``Data_Entry_2017*.csv(.gz)`` as a table of strings indexed by line number
    (with ``rejects``, a row with more fields than the header is rejected there)."""
    return read_table(path, NIH_LABEL_COLUMNS, "an NIH label file (Data_Entry_2017*.csv)", rejects)


def read_nih_box_table(path: str) -> pd.DataFrame:
    """NIH ``BBox_List_2017.csv(.gz)``: columns image, finding, x, y, w, h (floats, NaN if bad).

    NIH's header spells the four numbers as ``Bbox [x,y,w,h]`` (so a CSV parser sees
    ``Bbox [x``, ``y``, ``w``, ``h]``) followed by empty columns; the numbers are the
    four columns after ``Finding Label``.
    """
    table = read_table(path, NIH_BOX_COLUMNS, "an NIH box file (BBox_List_2017.csv)")
    after = list(table.columns).index("Finding Label") + 1
    numbers = table.iloc[:, after:after + 4]
    if numbers.shape[1] != 4:
        raise SourceError(f"{path}: not an NIH box file: needs x, y, w, h after 'Finding Label'")
    boxes = pd.DataFrame({"image": table["Image Index"].str.strip(),
                          "finding": table["Finding Label"].str.strip()}, index=table.index)
    for column, values in zip(("x", "y", "w", "h"), numbers.T.values):
        boxes[column] = pd.to_numeric(pd.Series(values, index=table.index).str.strip(), errors="coerce")
    return boxes


def read_nih_boxes(path: str, label_names: list[str], rejects: list[Reject]) -> dict[str, list[Box]]:
    boxes: dict[str, list[Box]] = {}
    table = read_nih_box_table(path)
    for line, row in zip(table.index, table.itertuples(index=False)):
        if not row.image:
            continue
        if not row.finding or any(np.isnan(v) for v in (row.x, row.y, row.w, row.h)):
            rejects.append(Reject(f"{path}:{line}", "malformed bounding-box row (needs image, "
                                                     "finding and four numbers)"))
            continue
        finding = "Infiltration" if row.finding == "Infiltrate" else row.finding  # the box file's spelling
        if finding not in label_names:
            rejects.append(Reject(f"{path}:{line}", f"unknown label name {finding!r} in box file"))
            continue
        s = NIH_BOX_SPACE
        boxes.setdefault(row.image, []).append(Box(
            label_names.index(finding), max(0.0, row.x / s), max(0.0, row.y / s),
            min(1.0, (row.x + row.w) / s), min(1.0, (row.y + row.h) / s)))
    return boxes


def _nih_row_problem(row) -> str | None:
    """Why an NIH label row cannot be used (a short or damaged row), or None."""
    empty = [c for c, v in zip(NIH_LABEL_COLUMNS, (row.image, row.findings, row.patient)) if not v]
    if empty:
        return f"malformed row: no {', '.join(repr(c) for c in empty)}"
    if not row.patient.isdigit():
        return f"malformed row: 'Patient ID' {row.patient!r} is not a number"
    return None


class NIHReader(Reader):
    """NIH ChestX-ray14: ``Data_Entry_2017*.csv`` (+.gz) and an image folder.

    ``split_lists`` maps split -> list file: NIH's ``train_val_list.txt`` (as 'trainval')
    and ``test_list.txt``, or CheXNet-style lists (``name.png`` then 14 0/1 values), whose
    labels are then used instead of the CSV's.  ``require_images=False`` lists every
    label row (expected path ``images/<name>``) without looking for the files, for split
    planning and prevalence tables on the full label file.  Malformed label rows (short,
    empty cells, a non-numeric patient id) are rejected with file and line.
    """

    name = "nih"
    options = ("images", "labels", "bbox", "split_list", "views")
    required = ("images", "labels")
    patient_key = "`Patient ID`"
    official_split = "`train_val_list`/`test_list` or CheXNet lists (`--split-list`)"
    boxes = "`BBox_List_2017` (1024 px, `--bbox`)"
    views = "`View Position` (PA/AP), `--views`"

    def __init__(self, images: str, labels: str, bbox: str | None = None,
                 split_lists: dict[str, str] | None = None, require_images: bool = True,
                 views: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.images, self.labels, self.bbox, self.keep_views = images, labels, bbox, views
        self.split_lists, self.require_images = dict(split_lists or {}), require_images
        self.label_names = list(CHEXNET_LABELS)

    @classmethod
    def keywords(cls, args) -> dict:
        lists = dict(parse_split_assignment(v) for v in (args.split_list or []))
        return {"images": args.images, "labels": one_label_file(args), "bbox": args.bbox or None,
                "split_lists": lists or None, "views": parse_views(args.views)}

    def items(self) -> Iterator[Item]:
        images, labels, label_names, rejects = self.images, self.labels, self.label_names, self.rejects
        files = by_file_name(list_images(images, rejects), rejects) if self.require_images else None
        split_of: dict[str, str] = {}
        list_labels: dict[str, tuple[float, ...]] = {}
        for split, lf in self.split_lists.items():
            for n, ln in enumerate(read_lines(lf), start=1):
                parts = ln.split()
                if not parts:
                    continue
                split_of[parts[0]] = split
                if len(parts) == 1 + len(label_names):
                    try:
                        list_labels[parts[0]] = tuple(float(v) for v in parts[1:])
                    except ValueError:
                        raise SourceError(f"{lf}:{n}: labels must be 14 numbers after the file name") from None
        boxes = read_nih_boxes(self.bbox, label_names, rejects) if self.bbox else {}
        table = read_nih_labels(labels, rejects)
        views = table["View Position"] if "View Position" in table.columns else pd.Series("", index=table.index)
        rows = pd.DataFrame({"image": table["Image Index"].str.strip(),
                             "findings": table["Finding Labels"].str.strip(),
                             "patient": table["Patient ID"].str.strip(),
                             "view": views.str.strip().str.upper()}, index=table.index)
        seen: set[str] = set()
        view_skipped = 0
        for line, row in zip(rows.index, rows.itertuples(index=False)):
            where = f"{labels}:{line}"
            problem = _nih_row_problem(row)
            if problem:
                rejects.append(Reject(where, problem))
                continue
            name = row.image
            if name in seen:
                rejects.append(Reject(where, f"duplicate label row for {name}"))
                continue
            seen.add(name)
            if self.split_lists and name not in split_of:
                continue  # not part of the requested split lists
            if self.keep_views and row.view not in self.keep_views:
                view_skipped += 1
                continue
            if files is not None and name not in files:
                rejects.append(Reject(name, f"label row ({where}) without an image"))
                continue
            path = files[name] if files is not None else os.path.join(images, name)
            if name in list_labels:
                lab = list_labels[name]
            else:
                findings = [f.strip() for f in row.findings.split("|") if f.strip()]
                unknown = [f for f in findings if f != "No Finding" and f not in label_names]
                if unknown:
                    rejects.append(Reject(path, f"unknown label name(s) {unknown} ({where})"))
                    continue
                lab = tuple(1.0 if c in findings else 0.0 for c in label_names)
            yield Item(image_id=name, patient_id=row.patient.lstrip("0") or "0",
                       labels=lab, image=path, boxes=tuple(boxes.get(name, ())),
                       split=split_of.get(name), view=row.view or None)
        for name in sorted(set(files or ()) - seen):
            rejects.append(Reject(files[name], "image without a label row"))
        self.info = {"images": os.path.abspath(images), "labels": os.path.abspath(labels),
                     "bbox": self.bbox and os.path.abspath(self.bbox),
                     "split_lists": {k: os.path.abspath(v) for k, v in self.split_lists.items()},
                     "views": list(self.keep_views or []), "images_outside_views": view_skipped}
