"""Plain data types shared by every reader (no TensorFlow import here).

A *source* is what a reader returns: the label names, one :class:`Item` per image and
the inputs it had to reject.  Items are cheap: the pixels are loaded later, in worker
processes, through :func:`tfxr.data.imageio.load_item`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np

#: A path to an image file, an in-memory array, or a picklable zero-argument callable
#: that returns the pixels (uint8/uint16, HxW or HxWxC).
ImageRef = Union[str, np.ndarray, Callable[[], np.ndarray]]

#: The splits a tfxr data directory holds, in the order tables list them.
SPLITS = ("train", "val", "test")
#: Official splits a reader may report: SPLITS plus 'trainval' (to be divided into
#: train and val patient-wise, e.g. NIH's ``train_val_list.txt``).
OFFICIAL_SPLITS = SPLITS + ("trainval",)
#: The 14 ChestX-ray14 findings in the order of CheXNet's output units (the one copy:
#: the NIH reader, ChestMNIST and the CheXNet model all use it).
CHEXNET_LABELS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
)
#: Where an image came from; only 'generated' images are flagged ``image/synthetic=1``
#: in a TFRecord, and the pipeline never lets those into validation or test.
ORIGINS = ("real", "phantom", "generated")


@dataclass(frozen=True)
class Box:
    """A localisation box in normalised image coordinates (0..1), for one label index."""

    label: int
    xmin: float
    ymin: float
    xmax: float
    ymax: float


@dataclass
class Item:
    image_id: str
    patient_id: str
    labels: tuple[float, ...]
    image: ImageRef
    boxes: tuple[Box, ...] = ()
    #: official split from the data set ('train', 'val', 'test', 'trainval') or None.
    split: str | None = None
    #: one of ORIGINS: 'real' (acquired radiographs), 'phantom' (tfxr's simulated phantoms),
    #: 'generated' (made by a trained generator, e.g. the GAN, to balance a training split).
    origin: str = "real"


@dataclass(frozen=True)
class Reject:
    file: str
    reason: str

    def as_dict(self) -> dict:
        return {"file": self.file, "reason": self.reason}


@dataclass
class Source:
    name: str
    label_names: list[str]
    items: list[Item]
    rejects: list[Reject] = field(default_factory=list)
    #: free-form facts recorded in the manifest (paths, seeds, file names).
    info: dict = field(default_factory=dict)
