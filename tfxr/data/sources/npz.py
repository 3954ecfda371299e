"""MedMNIST ``.npz`` archives (PneumoniaMNIST, ChestMNIST)."""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from tfxr.data.sources.base import Reader
from tfxr.data.types import CHEXNET_LABELS, SPLITS, Item
from tfxr.errors import SourceError

#: Label names per MedMNIST data set: MedMNIST's own names (its ``INFO[flag]["label"]``;
#: PneumoniaMNIST's positive class is "pneumonia"), except ChestMNIST, whose 14 columns
#: are NIH's findings and keep NIH's spelling in CheXNet order so reports line up.
MEDMNIST_LABELS = {
    "pneumoniamnist": ["pneumonia"],
    "chestmnist": list(CHEXNET_LABELS),
}


class MedMNISTReader(Reader):
    """MedMNIST ``.npz`` (PneumoniaMNIST, ChestMNIST): ``{split}_images`` / ``{split}_labels``.

    MedMNIST has no patient ids; each image is its own patient, and its official
    splits are kept.  ChestMNIST's 14 columns are NIH's labels in CheXNet order.  The
    source is named after the data set (``pneumoniamnist``, ``chestmnist``) when the
    file name or ``dataset`` says which, else ``npz``; labels are then ``label_<i>``.
    """

    name = "npz"
    options = ("npz",)
    required = ("npz",)
    patient_key = "none (image = patient)"
    official_split = "the archive's `train`/`val`/`test` arrays"

    def __init__(self, path: str, dataset: str | None = None) -> None:
        super().__init__()
        if not os.path.isfile(path):
            raise SourceError(f"{path}: no such file")
        self.path = path
        self.dataset = dataset or next((k for k in MEDMNIST_LABELS if k in os.path.basename(path).lower()), None)
        self.name = self.dataset or "npz"
        self.label_names = list(MEDMNIST_LABELS.get(self.dataset, [])) if self.dataset else []

    @classmethod
    def keywords(cls, args) -> dict:
        return {"path": args.npz}

    def items(self) -> Iterator[Item]:
        path, ds = self.path, self.dataset
        try:
            data = np.load(path)
        except Exception as e:  # noqa: BLE001 - report any unreadable npz plainly
            raise SourceError(f"{path}: not a readable .npz file ({e})") from None
        if not hasattr(data, "files"):  # a plain .npy array, not an archive of named arrays
            raise SourceError(f"{path}: not an .npz archive (a single {type(data).__name__})")
        label_names: list[str] | None = MEDMNIST_LABELS.get(ds) if ds else None
        found = [s for s in SPLITS if f"{s}_images" in data.files]
        if not found:
            raise SourceError(f"{path}: no '<split>_images' arrays (has {data.files})")
        for split in found:
            if f"{split}_labels" not in data.files:
                raise SourceError(f"{path}: has {split}_images but no {split}_labels")
            imgs, labs = _array(data, path, f"{split}_images"), _array(data, path, f"{split}_labels")
            if len(labs) != len(imgs):
                raise SourceError(f"{path}: {len(imgs)} {split}_images but {len(labs)} {split}_labels")
            labs = labs.reshape(len(labs), -1)
            bad = np.argwhere(~np.isfinite(labs.astype(np.float64)))
            if len(bad):
                i, j = bad[0]
                raise SourceError(f"{path}: {split}_labels[{i}] is {labs[i, j]} (column {j}); MedMNIST labels are "
                                  f"numbers ({len(bad)} non-finite value(s))")
            if label_names is None:
                label_names = [f"label_{i}" for i in range(labs.shape[1])]
                self.label_names = list(label_names)
            if labs.shape[1] != len(label_names):
                raise SourceError(f"{path}: {split}_labels has {labs.shape[1]} columns, "
                                  f"expected {len(label_names)} for {ds}")
            for i in range(len(imgs)):
                image_id = f"{split}_{i:06d}"
                yield Item(image_id, image_id, tuple(float(v) for v in labs[i]), imgs[i], split=split)
        self.info = {"npz": os.path.abspath(path)}


def _array(data, path: str, key: str) -> np.ndarray:
    """One numeric array of the archive; object arrays (pickled Python objects) are refused."""
    try:
        arr = data[key]
    except ValueError as e:          # numpy refuses object arrays without allow_pickle
        raise SourceError(f"{path}: {key} is an object array ({e}); tfxr reads numeric arrays only") from None
    if arr.dtype.kind not in "biuf":
        raise SourceError(f"{path}: {key} has dtype {arr.dtype}, not numbers")
    return arr
