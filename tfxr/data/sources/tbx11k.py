"""TBX11K: COCO-style box files (``annotations/json/TBX11K_{train,val}.json``) and ``imgs/``.

``images`` lists ``file_name`` (``tb/tb0005.png``, ``health/h0001.png``, ``sick/...``)
with its width and height; ``annotations`` hold ``bbox`` ``[x, y, w, h]`` in those pixels
with a ``category_id`` (ActiveTuberculosis, ObsoletePulmonaryTuberculosis,
PulmonaryTuberculosis).  Labels: ``Tuberculosis`` (the image is in ``tb/`` or has a TB
box), then one label per category (an image with a box of that category).  Box labels
index the category labels.  The JSON file (train / val) is the official split; TBX11K
has no patient ids (each image is its own patient).
"""
from __future__ import annotations

import json
import os
from typing import Iterator

from tfxr.data.paths import inside
from tfxr.data.sources.base import Reader
from tfxr.data.sources.common import missing_image
from tfxr.data.types import Box, Item, Reject
from tfxr.errors import SourceError

TBX11K_CATEGORIES = ("ActiveTuberculosis", "ObsoletePulmonaryTuberculosis", "PulmonaryTuberculosis")
#: what to do when TBX11K's files are not there: it has no direct public download.
TBX11K_REMEDY = ("TBX11K has no direct download URL; './download_dataset.sh tbx11k' prints the manual steps "
                 "and the layout tfxr reads (imgs/ and annotations/json/TBX11K_{train,val}.json)")


def read_coco(path: str) -> dict:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            data = json.load(fh)
    except OSError as e:
        raise SourceError(f"{path}: unreadable ({e.strerror})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise SourceError(f"{path}: not a COCO box file (needs 'images', 'annotations', 'categories')")
    return data


class TBX11KReader(Reader):
    """TBX11K: one or more COCO box files (``--labels``, repeatable) and the ``imgs/`` folder."""

    name = "tbx11k"
    options = ("images", "labels", "missing_images")
    required = ("images", "labels")
    patient_key = "none published (image = patient)"
    official_split = "`TBX11K_train/val.json`"
    boxes = "COCO `bbox` (image pixels)"

    def __init__(self, images: str | None, labels: list[str], require_images: bool = True,
                 missing_images: str = "reject") -> None:
        super().__init__()
        if require_images and images and not os.path.isdir(images):
            raise SourceError(f"{images}: no such image folder. {TBX11K_REMEDY}")
        for lf in labels:
            if not os.path.isfile(lf):
                raise SourceError(f"{lf}: no such file. {TBX11K_REMEDY}")
        self.images, self.labels = images, list(labels)
        self.require_images, self.missing_images = require_images, missing_images
        self.label_names = ["Tuberculosis", *TBX11K_CATEGORIES]

    def items(self) -> Iterator[Item]:
        images, label_names, rejects, skipped = self.images, self.label_names, self.rejects, [0]
        for lf in self.labels:
            data = read_coco(lf)
            split = "val" if "val" in os.path.basename(lf).lower() else "train"
            cats = {}
            for c in data.get("categories") or []:
                if isinstance(c, dict) and c.get("name") in TBX11K_CATEGORIES:
                    cats[c.get("id")] = TBX11K_CATEGORIES.index(c["name"]) + 1
            boxes: dict = {}
            for n, a in enumerate(data.get("annotations") or []):
                bbox = a.get("bbox") if isinstance(a, dict) else None
                if (a.get("category_id") if isinstance(a, dict) else None) not in cats or not (
                        isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)
                        and bbox[2] > 0 and bbox[3] > 0):
                    rejects.append(Reject(f"{lf}: annotations[{n}]", "needs a known category_id and bbox [x, y, w, h]"))
                    continue
                x, y, w, h = (float(v) for v in bbox)
                boxes.setdefault(a.get("image_id"), []).append(Box(cats[a["category_id"]], x, y, x + w, y + h))
            for n, im in enumerate(data["images"]):
                name = im.get("file_name") if isinstance(im, dict) else None
                try:
                    space = (float(im["width"]), float(im["height"]))
                except (KeyError, TypeError, ValueError):
                    space = None
                if not isinstance(name, str) or not name or space is None or min(space) <= 0:
                    rejects.append(Reject(f"{lf}: images[{n}]", "needs file_name, width and height"))
                    continue
                path = os.path.join(images or "", *name.split("/"))
                if self.require_images:
                    inside(images or ".", os.path.join(*name.split("/")), f"{lf}: images[{n}]", "file_name")
                if self.require_images and not os.path.isfile(path):
                    missing_image(self.missing_images, path, f"{lf}: images[{n}]", rejects, skipped)
                    continue
                bx = tuple(boxes.get(im.get("id"), ()))
                tb = float(name.startswith("tb/") or bool(bx))
                lab = (tb,) + tuple(float(any(b.label == k for b in bx)) for k in range(1, len(label_names)))
                yield Item(name, name.rsplit(".", 1)[0], lab, path, boxes=bx, split=split, box_space=space)
        self.info = {"images": images and os.path.abspath(images), "labels": [os.path.abspath(x) for x in self.labels],
                     "label_rows_without_image_skipped": skipped[0]}
