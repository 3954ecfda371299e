"""Readers that turn a data set on disk into a :class:`~tfxr.data.types.Source`.

Each reader lists images, labels, patient ids, official splits and boxes; it never
decodes pixels (that happens in the converter's workers) and it reports, rather than
raises on, inputs it cannot use: a label row without an image, an image without a
label, an unknown label name.
"""
from __future__ import annotations

import csv
import gzip
import os
import re
from pathlib import Path

import numpy as np

from tfxr.data.types import Box, Item, Reject, Source

#: The 14 ChestX-ray14 findings in CheXNet order.
CHEXNET_LABELS = [
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIH_BOX_SPACE = 1024.0  # NIH boxes are given in the 1024-px coordinates of the release


from tfxr.errors import SourceError  # noqa: E402,F401 - a data set that cannot be read at all


def _open_text(path: str):
    if not os.path.exists(path) or os.path.isdir(path):   # exists: /dev/fd/N from <(...) works too
        raise SourceError(f"{path}: no such file")
    return gzip.open(path, "rt", newline="") if path.endswith(".gz") else open(path, newline="")


def list_images(folder: str) -> dict[str, str]:
    """Map file name -> path for every image below folder (recursively)."""
    if not os.path.isdir(folder):
        raise SourceError(f"{folder}: no such image folder")
    found: dict[str, str] = {}
    for root, _dirs, files in os.walk(folder):
        for f in files:
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
                found.setdefault(f, os.path.join(root, f))
    return found


def _read_list(path: str) -> list[str]:
    with _open_text(path) as fh:
        return [ln.split()[0] for ln in fh if ln.strip()]


# --------------------------------------------------------------------------- NIH
class _ExpectedFiles(dict):
    """Stands in for a listing: every name 'exists' at folder/name."""

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def __contains__(self, name) -> bool:
        return True

    def __getitem__(self, name: str) -> str:
        return os.path.join(self.folder, name)


def read_nih_boxes(path: str, label_names: list[str], rejects: list[Reject]) -> dict[str, list[Box]]:
    boxes: dict[str, list[Box]] = {}
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for n, row in enumerate(reader, start=2):
            if not row or not row[0].strip():
                continue
            try:
                name, finding = row[0].strip(), row[1].strip()
                x, y, w, h = (float(v) for v in row[2:6])
            except (IndexError, ValueError):
                rejects.append(Reject(f"{path}:{n}", "malformed bounding-box row"))
                continue
            if finding == "Infiltrate":  # the box file's spelling of Infiltration
                finding = "Infiltration"
            if finding not in label_names:
                rejects.append(Reject(f"{path}:{n}", f"unknown label name {finding!r} in box file"))
                continue
            s = NIH_BOX_SPACE
            boxes.setdefault(name, []).append(Box(
                label_names.index(finding),
                max(0.0, x / s), max(0.0, y / s), min(1.0, (x + w) / s), min(1.0, (y + h) / s)))
    return boxes


def nih_source(images: str, labels: str, bbox: str | None = None,
               split_lists: dict[str, str] | None = None, require_images: bool = True) -> Source:
    """NIH ChestX-ray14: ``Data_Entry_2017*.csv`` (+.gz) and an image folder.

    ``split_lists`` maps split -> list file: NIH's ``train_val_list.txt`` (as 'trainval')
    and ``test_list.txt``, or CheXNet-style lists (``name.png`` then 14 0/1 values), whose
    labels are then used instead of the CSV's.  ``require_images=False`` lists every
    label row (expected path ``images/<name>``) without looking for the files, for split
    planning and prevalence tables on the full label file.
    """
    label_names = list(CHEXNET_LABELS)
    rejects: list[Reject] = []
    files = list_images(images) if require_images else _ExpectedFiles(images)
    split_of: dict[str, str] = {}
    list_labels: dict[str, tuple[float, ...]] = {}
    for split, lf in (split_lists or {}).items():
        with _open_text(lf) as fh:
            for ln in fh:
                parts = ln.split()
                if not parts:
                    continue
                split_of[parts[0]] = split
                if len(parts) == 1 + len(label_names):
                    list_labels[parts[0]] = tuple(float(v) for v in parts[1:])
    boxes = read_nih_boxes(bbox, label_names, rejects) if bbox else {}
    items: list[Item] = []
    seen: set[str] = set()
    with _open_text(labels) as fh:
        reader = csv.DictReader(fh)
        need = {"Image Index", "Finding Labels", "Patient ID"}
        if not need <= set(reader.fieldnames or ()):
            raise SourceError(f"{labels}: not an NIH label file (needs columns {sorted(need)})")
        for n, row in enumerate(reader, start=2):
            name = row["Image Index"].strip()
            if name in seen:
                rejects.append(Reject(f"{labels}:{n}", f"duplicate label row for {name}"))
                continue
            seen.add(name)
            if split_lists and name not in split_of:
                continue  # not part of the requested split lists
            if name not in files:
                rejects.append(Reject(name, f"label row ({labels}:{n}) without an image"))
                continue
            if name in list_labels:
                lab = list_labels[name]
            else:
                findings = [f.strip() for f in row["Finding Labels"].split("|") if f.strip()]
                unknown = [f for f in findings if f != "No Finding" and f not in label_names]
                if unknown:
                    rejects.append(Reject(files[name], f"unknown label name(s) {unknown} ({labels}:{n})"))
                    continue
                lab = tuple(1.0 if c in findings else 0.0 for c in label_names)
            items.append(Item(image_id=name, patient_id=row["Patient ID"].strip().lstrip("0") or "0",
                              labels=lab, image=files[name], boxes=tuple(boxes.get(name, ())),
                              split=split_of.get(name)))
    for name in sorted(set(files) - seen):
        rejects.append(Reject(files[name], "image without a label row"))
    info = {"images": os.path.abspath(images), "labels": os.path.abspath(labels),
            "bbox": bbox and os.path.abspath(bbox),
            "split_lists": {k: os.path.abspath(v) for k, v in (split_lists or {}).items()}}
    return Source("nih", label_names, items, rejects, info)


# --------------------------------------------------------------------------- TB
_TB_NAME = re.compile(r"^(?P<stem>.+)_(?P<tb>[01])\.(png|jpe?g)$", re.IGNORECASE)


def tb_source(images: str, labels: str | None = None) -> Source:
    """Tuberculosis sets: Shenzhen/Montgomery names (``*_1.png`` = TB) or a labels.csv.

    labels.csv columns: ``image`` and ``tb`` (0/1), optional ``patient`` and ``source``.
    Montgomery and Shenzhen have one radiograph per patient, so the image stem is the
    patient id unless a ``patient`` column says otherwise.
    """
    files = list_images(images)
    rejects: list[Reject] = []
    items: list[Item] = []
    if labels:
        seen: set[str] = set()
        with _open_text(labels) as fh:
            reader = csv.DictReader(fh)
            if not {"image", "tb"} <= set(reader.fieldnames or ()):
                raise SourceError(f"{labels}: needs columns 'image' and 'tb'")
            for n, row in enumerate(reader, start=2):
                name = row["image"].strip()
                if name in seen:
                    rejects.append(Reject(f"{labels}:{n}", f"duplicate label row for {name}"))
                    continue
                seen.add(name)
                if name not in files:
                    rejects.append(Reject(name, f"label row ({labels}:{n}) without an image"))
                    continue
                if row["tb"].strip() not in ("0", "1"):
                    rejects.append(Reject(files[name], f"unknown label value {row['tb']!r} ({labels}:{n})"))
                    continue
                pid = (row.get("patient") or "").strip() or Path(name).stem
                items.append(Item(name, pid, (float(row["tb"]),), files[name]))
        for name in sorted(set(files) - seen):
            rejects.append(Reject(files[name], "image without a label row"))
    else:
        for name in sorted(files):
            m = _TB_NAME.match(name)
            if not m:
                rejects.append(Reject(files[name], "image without a label (name not *_0/*_1)"))
                continue
            items.append(Item(name, m["stem"], (float(m["tb"]),), files[name]))
    return Source("tb", ["Tuberculosis"], items, rejects,
                  {"images": os.path.abspath(images), "labels": labels and os.path.abspath(labels)})


# --------------------------------------------------------------------------- class folders
_PATIENT_PATTERNS = [
    re.compile(r"^(person\d+)_", re.IGNORECASE),              # Kermany pneumonia
    re.compile(r"^(?:NORMAL2-)?IM-(\d+)-", re.IGNORECASE),      # Kermany normals
    re.compile(r"^(\d{8})_\d{3}\.", re.IGNORECASE),            # NIH names
    re.compile(r"^((?:MCUCXR|CHNCXR)_\d+)_[01]\.", re.IGNORECASE),
]


def patient_from_name(name: str) -> str:
    """Patient id encoded in a file name where the data set does that, else the stem."""
    for pat in _PATIENT_PATTERNS:
        m = pat.match(name)
        if m:
            return m.group(1)
    return Path(name).stem


def folder_source(images: str, negative: str = "NORMAL") -> Source:
    """Class-per-folder layouts (Kermany: ``NORMAL/``, ``PNEUMONIA/``).

    Either ``DIR/<class>/`` or ``DIR/{train,val,test}/<class>/`` (official splits kept).
    Labels are one output per class folder except the negative one (default NORMAL),
    so NORMAL/PNEUMONIA gives the single binary label PNEUMONIA.
    """
    root = Path(images)
    if not root.is_dir():
        raise SourceError(f"{images}: no such image folder")
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir())
    split_dirs = [d for d in subdirs if d in ("train", "val", "test")]
    layout = [(d, root / d) for d in split_dirs] if split_dirs else [(None, root)]
    classes = sorted({p.name for _, base in layout for p in base.iterdir() if p.is_dir()})
    if not classes:
        raise SourceError(f"{images}: no class folders found")
    label_names = [c for c in classes if c != negative] or classes
    rejects: list[Reject] = []
    items: list[Item] = []
    for split, base in layout:
        for cls in classes:
            cdir = base / cls
            if not cdir.is_dir():
                continue
            for name, path in sorted(list_images(str(cdir)).items()):
                lab = tuple(1.0 if c == cls else 0.0 for c in label_names)
                image_id = f"{split}/{cls}/{name}" if split else f"{cls}/{name}"
                items.append(Item(image_id, patient_from_name(name), lab, path, split=split))
    # loose images: in a split folder, or at the top when there are split folders
    for base in [b for _, b in layout] + ([root] if split_dirs else []):
        for f in sorted(base.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                rejects.append(Reject(str(f), "image without a label (not inside a class folder)"))
    return Source("folder", label_names, items, rejects,
                  {"images": os.path.abspath(images), "negative_class": negative})


# --------------------------------------------------------------------------- MedMNIST
#: Label names per MedMNIST data set: MedMNIST's own names (its ``INFO[flag]["label"]``;
#: PneumoniaMNIST's positive class is "pneumonia"), except ChestMNIST, whose 14 columns
#: are NIH's findings and keep NIH's spelling in CheXNet order so reports line up.
MEDMNIST_LABELS = {
    "pneumoniamnist": ["pneumonia"],
    "chestmnist": CHEXNET_LABELS,
}


def npz_source(path: str, dataset: str | None = None) -> Source:
    """MedMNIST ``.npz`` (PneumoniaMNIST, ChestMNIST): ``{split}_images`` / ``{split}_labels``.

    MedMNIST has no patient ids; each image is its own patient, and its official
    splits are kept.  ChestMNIST's 14 columns are NIH's labels in CheXNet order.
    """
    if not os.path.isfile(path):
        raise SourceError(f"{path}: no such file")
    try:
        data = np.load(path)
    except Exception as e:  # noqa: BLE001 - report any unreadable npz plainly
        raise SourceError(f"{path}: not a readable .npz file ({e})") from None
    if not hasattr(data, "files"):  # a plain .npy array, not an archive of named arrays
        raise SourceError(f"{path}: not an .npz archive (a single {type(data).__name__})")
    ds = dataset or next((k for k in MEDMNIST_LABELS if k in os.path.basename(path).lower()), None)
    items: list[Item] = []
    label_names: list[str] | None = MEDMNIST_LABELS.get(ds) if ds else None
    rejects: list[Reject] = []
    found = [s for s in ("train", "val", "test") if f"{s}_images" in data.files]
    if not found:
        raise SourceError(f"{path}: no '<split>_images' arrays (has {data.files})")
    for split in found:
        if f"{split}_labels" not in data.files:
            raise SourceError(f"{path}: has {split}_images but no {split}_labels")
        imgs, labs = data[f"{split}_images"], data[f"{split}_labels"]
        if len(labs) != len(imgs):
            raise SourceError(f"{path}: {len(imgs)} {split}_images but {len(labs)} {split}_labels")
        labs = labs.reshape(len(labs), -1)
        if label_names is None:
            label_names = [f"label_{i}" for i in range(labs.shape[1])]
        if labs.shape[1] != len(label_names):
            raise SourceError(f"{path}: {split}_labels has {labs.shape[1]} columns, "
                              f"expected {len(label_names)} for {ds}")
        for i in range(len(imgs)):
            image_id = f"{split}_{i:06d}"
            items.append(Item(image_id, image_id, tuple(float(v) for v in labs[i]), imgs[i], split=split))
    return Source(ds or "npz", list(label_names or []), items, rejects, {"npz": os.path.abspath(path)})
