"""Class-per-folder layouts (Kermany ``NORMAL/``, ``PNEUMONIA/``), optionally under split folders."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

from tfxr.data.sources.base import Reader
from tfxr.data.sources.common import IMAGE_EXTENSIONS, list_images, printable_path
from tfxr.data.types import SPLITS, Item, Reject
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


class FolderReader(Reader):
    """Class-per-folder layouts (Kermany: ``NORMAL/``, ``PNEUMONIA/``).

    Either ``DIR/<class>/`` or ``DIR/{train,val,test}/<class>/`` (official splits kept).
    Labels are one output per class folder except the negative one (default NORMAL),
    so NORMAL/PNEUMONIA gives the single binary label PNEUMONIA.
    """

    name = "folder"
    options = ("images", "negative_class")
    required = ("images",)
    patient_key = "parsed from the file name (Kermany, NIH, Montgomery/Shenzhen), else the stem"
    official_split = "`train/ val/ test/` folders"

    def __init__(self, images: str, negative: str = "NORMAL") -> None:
        super().__init__()
        root = Path(images)
        if not root.is_dir():
            raise SourceError(f"{images}: no such image folder")
        self.images, self.negative, self.root = images, negative, root
        subdirs = sorted(p.name for p in root.iterdir() if p.is_dir())
        split_dirs = [d for d in subdirs if d in SPLITS]
        self.split_dirs = split_dirs
        self.layout = [(d, root / d) for d in split_dirs] if split_dirs else [(None, root)]
        classes = set()
        for _, base in self.layout:
            for p in base.iterdir():
                if p.is_dir() and _utf8_name(p, self.rejects, "class folder name"):
                    classes.add(p.name)
        self.classes = sorted(classes)
        if not self.classes:
            raise SourceError(f"{images}: no class folders found")
        self.label_names = [c for c in self.classes if c != negative] or self.classes

    @classmethod
    def keywords(cls, args) -> dict:
        return {"images": args.images, "negative": args.negative_class}

    def items(self) -> Iterator[Item]:
        rejects, label_names = self.rejects, self.label_names
        for split, base in self.layout:
            for cls in self.classes:
                cdir = base / cls
                if not cdir.is_dir():
                    continue
                # keyed by the path inside the class folder: equal names in subfolders are two images
                for relative, path in list_images(str(cdir), rejects).items():
                    lab = tuple(1.0 if c == cls else 0.0 for c in label_names)
                    image_id = f"{split}/{cls}/{relative}" if split else f"{cls}/{relative}"
                    yield Item(image_id, patient_from_name(os.path.basename(relative)), lab, path, split=split)
        # loose images: in a split folder, or at the top when there are split folders
        for base in [b for _, b in self.layout] + ([self.root] if self.split_dirs else []):
            for f in sorted(base.iterdir()):
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                    rejects.append(Reject(printable_path(str(f)), "image without a label (not inside a class folder)"))
        self.info = {"images": os.path.abspath(self.images), "negative_class": self.negative}
