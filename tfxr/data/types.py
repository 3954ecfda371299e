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
    """A localisation box for one label index (into the source's ``label_names``).

    The one box schema of every source: coordinates as fractions (0..1) of the image's
    width and height.  Records store them as ``bbox/label``, ``bbox/xmin`` ... unchanged;
    as every image is stretched to ``image_size`` x ``image_size``, the box in the stored
    image's pixels is each coordinate times ``image/width`` (= ``image/height``).  A
    reader whose set gives boxes in pixels sets ``Item.box_space`` and the converter
    divides by that space after decoding (see :func:`normalise_boxes`).
    """

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
    #: None: ``boxes`` are already fractions of the image.  (width, height): they are in
    #: pixels of that space (RSNA's 1024 x 1024).  (0, 0): in pixels of the decoded image
    #: itself (VinDr's DICOMs, TBX11K's PNGs); the converter divides once the size is known.
    box_space: tuple[float, float] | None = None
    #: view position ('PA', 'AP', 'LATERAL', ...) where the set records one, else None.
    view: str | None = None
    #: (row, column) pixel spacing in mm of the original image, when the label file gives
    #: it (a DICOM's own Pixel Spacing is read by the converter instead).
    pixel_spacing: tuple[float, float] | None = None
    #: age in years and sex ('F', 'M', 'O'), only when the user asked for demographics.
    age: float | None = None
    sex: str | None = None


def normalise_boxes(boxes, space: tuple[float, float] | None, shape: tuple[int, ...]) -> tuple[Box, ...]:
    """Boxes as fractions of the image, clipped to 0..1.

    ``space`` as in :attr:`Item.box_space`; ``shape`` is the decoded image's (rows, cols).
    """
    if space is None:
        return tuple(boxes)
    w, h = (float(shape[1]), float(shape[0])) if tuple(space) == (0, 0) else (float(space[0]), float(space[1]))
    return tuple(Box(b.label, min(1.0, max(0.0, b.xmin / w)), min(1.0, max(0.0, b.ymin / h)),
                     min(1.0, max(0.0, b.xmax / w)), min(1.0, max(0.0, b.ymax / h))) for b in boxes)


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
