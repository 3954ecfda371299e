"""Tuberculosis sets: Shenzhen/Montgomery names (``*_1.png`` = TB) or a ``labels.csv``."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import pandas as pd

from tfxr.data.sources.base import Reader, one_label_file
from tfxr.data.sources.common import by_file_name, list_images, read_table
from tfxr.data.types import Item, Reject

_TB_NAME = re.compile(r"^(?P<stem>.+)_(?P<tb>[01])\.(png|jpe?g|dcm)$", re.IGNORECASE)


class TBReader(Reader):
    """Tuberculosis sets: Shenzhen/Montgomery names (``*_1.png`` = TB) or a labels.csv.

    labels.csv columns: ``image`` and ``tb`` (0/1), optional ``patient`` and ``source``.
    Montgomery and Shenzhen have one radiograph per patient, so the image stem is the
    patient id unless a ``patient`` column says otherwise.
    """

    name = "tb"
    options = ("images", "labels")
    required = ("images",)
    patient_key = "image stem, or a `patient` column"

    def __init__(self, images: str, labels: str | None = None) -> None:
        super().__init__()
        self.images, self.labels = images, labels
        self.label_names = ["Tuberculosis"]

    @classmethod
    def keywords(cls, args) -> dict:
        return {"images": args.images, "labels": one_label_file(args)}

    def items(self) -> Iterator[Item]:
        images, labels, rejects = self.images, self.labels, self.rejects
        files = by_file_name(list_images(images, rejects), rejects)
        if labels:
            seen: set[str] = set()
            table = read_table(labels, ("image", "tb"), "a TB label file (columns image, tb)")
            patients = table["patient"] if "patient" in table.columns else pd.Series("", index=table.index)
            for line, name, value, patient in zip(table.index, table["image"].str.strip(),
                                                  table["tb"].str.strip(), patients.str.strip()):
                where = f"{labels}:{line}"
                if not name:
                    rejects.append(Reject(where, "malformed row: no 'image'"))
                    continue
                if name in seen:
                    rejects.append(Reject(where, f"duplicate label row for {name}"))
                    continue
                seen.add(name)
                if name not in files:
                    rejects.append(Reject(name, f"label row ({where}) without an image"))
                    continue
                if value not in ("0", "1"):
                    rejects.append(Reject(files[name], f"unknown label value {value!r} ({where})"))
                    continue
                yield Item(name, patient or Path(name).stem, (float(value),), files[name])
            for name in sorted(set(files) - seen):
                rejects.append(Reject(files[name], "image without a label row"))
        else:
            for name in sorted(files):
                m = _TB_NAME.match(name)
                if not m:
                    rejects.append(Reject(files[name], "image without a label (name not *_0/*_1)"))
                    continue
                yield Item(name, m["stem"], (float(m["tb"]),), files[name])
        self.info = {"images": os.path.abspath(images), "labels": labels and os.path.abspath(labels)}
