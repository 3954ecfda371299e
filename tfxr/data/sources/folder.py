"""Class-per-folder layouts (Kermany ``NORMAL/``, ``PNEUMONIA/``), optionally under split folders."""
from __future__ import annotations

import os
import re
from pathlib import Path

from tfxr.data.sources.common import IMAGE_EXTENSIONS, list_images, printable_path
from tfxr.data.types import SPLITS, Item, Reject, Source
from tfxr.errors import SourceError

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


def _utf8_name(path: Path, rejects: list[Reject], what: str) -> bool:
    try:
        path.name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        rejects.append(Reject(printable_path(str(path)), f"{what} is not valid UTF-8 (rename it)"))
        return False


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
    split_dirs = [d for d in subdirs if d in SPLITS]
    layout = [(d, root / d) for d in split_dirs] if split_dirs else [(None, root)]
    rejects: list[Reject] = []
    classes = set()
    for _, base in layout:
        for p in base.iterdir():
            if p.is_dir() and _utf8_name(p, rejects, "class folder name"):
                classes.add(p.name)
    classes = sorted(classes)
    if not classes:
        raise SourceError(f"{images}: no class folders found")
    label_names = [c for c in classes if c != negative] or classes
    items: list[Item] = []
    for split, base in layout:
        for cls in classes:
            cdir = base / cls
            if not cdir.is_dir():
                continue
            # keyed by the path inside the class folder: equal names in subfolders are two images
            for relative, path in list_images(str(cdir), rejects).items():
                lab = tuple(1.0 if c == cls else 0.0 for c in label_names)
                image_id = f"{split}/{cls}/{relative}" if split else f"{cls}/{relative}"
                items.append(Item(image_id, patient_from_name(os.path.basename(relative)), lab, path,
                                  split=split))
    # loose images: in a split folder, or at the top when there are split folders
    for base in [b for _, b in layout] + ([root] if split_dirs else []):
        for f in sorted(base.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                rejects.append(Reject(printable_path(str(f)), "image without a label (not inside a class folder)"))
    return Source("folder", label_names, items, rejects,
                  {"images": os.path.abspath(images), "negative_class": negative})
