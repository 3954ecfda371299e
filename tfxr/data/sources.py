"""Readers that turn a data set on disk into a :class:`~tfxr.data.types.Source`.

Each reader lists images, labels, patient ids, official splits and boxes; it never
decodes pixels (that happens in the converter's workers) and it reports, rather than
raises on, inputs it cannot use: a label row without an image, an image without a
label, an unknown label name.
"""
from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from tfxr.data.types import CHEXNET_LABELS, SPLITS, Box, Item, Reject, Source
from tfxr.errors import SourceError  # noqa: F401 - a data set that cannot be read at all

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIH_BOX_SPACE = 1024.0  # NIH boxes are given in the 1024-px coordinates of the release
NIH_LABEL_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
NIH_BOX_COLUMNS = ("Image Index", "Finding Label")


def _require_file(path: str) -> None:
    if not os.path.exists(path) or os.path.isdir(path):   # exists: /dev/fd/N from <(...) works too
        raise SourceError(f"{path}: no such file")


def read_lines(path: str) -> list[str]:
    """The lines of a text file (plain or .gz) as UTF-8; a byte-order mark is dropped."""
    _require_file(path)
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8-sig") as fh:
                return fh.read().splitlines()
        with open(path, encoding="utf-8-sig") as fh:
            return fh.read().splitlines()
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (OSError, EOFError) as e:
        raise SourceError(f"{path}: unreadable ({e})") from None


def read_table(path: str, required: tuple[str, ...], what: str) -> pd.DataFrame:
    """A CSV label file (plain or .gz) as a table of strings, indexed by line number.

    Every cell is read as text (a patient id keeps its leading zeros until a reader
    decides), a UTF-8 byte-order mark is accepted, missing cells of a short row are
    empty strings, and blank lines are dropped.  A file that is not UTF-8 CSV or lacks
    one of the ``required`` columns is a SourceError naming the file.
    """
    _require_file(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False,
                            encoding="utf-8-sig", compression="gzip" if path.endswith(".gz") else None)
    except pd.errors.EmptyDataError:
        raise SourceError(f"{path}: empty file, expected {what}") from None
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (pd.errors.ParserError, OSError, EOFError) as e:
        raise SourceError(f"{path}: not a readable CSV file ({str(e).strip()})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise SourceError(f"{path}: not {what}: missing column(s) {missing} "
                          f"(found {[c for c in table.columns if not c.startswith('Unnamed')]})")
    table = table.fillna("")
    table.index = table.index + 2  # the line number of each row (line 1 is the header)
    blank = (table.apply(lambda col: col.str.strip()) == "").all(axis=1)
    return table[~blank]


def printable_path(path: str) -> str:
    """A path as text that can be printed and stored in JSON (undecodable bytes as \\xNN)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def list_images(folder: str, rejects: list[Reject]) -> dict[str, str]:
    """Map relative path (with '/') -> path for every image below folder (recursively).

    A file name that is not valid UTF-8 cannot be stored as an image id (TFRecords,
    manifests and CSV indexes are UTF-8): it is rejected here, by its escaped name, so
    the rest of the conversion goes on.
    """
    if not os.path.isdir(folder):
        raise SourceError(f"{folder}: no such image folder")
    found: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if not name.lower().endswith(IMAGE_EXTENSIONS) or name.startswith("."):
                continue
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            try:
                relative.encode("utf-8")
            except UnicodeEncodeError:
                rejects.append(Reject(printable_path(path), "file name is not valid UTF-8 (rename it)"))
                continue
            found[relative] = path
    return found


def by_file_name(files: dict[str, str], rejects: list[Reject]) -> dict[str, str]:
    """Map base file name -> path, for label files that name images by file name only.

    Two images with the same name in different subfolders cannot be told apart by such
    a label file: both are rejected, each naming the other, rather than one dropped.
    """
    paths_of: dict[str, list[str]] = {}
    for relative in sorted(files):
        paths_of.setdefault(relative.rsplit("/", 1)[-1], []).append(relative)
    unique: dict[str, str] = {}
    for name, relatives in paths_of.items():
        if len(relatives) == 1:
            unique[name] = files[relatives[0]]
            continue
        for relative in relatives:
            others = ", ".join(r for r in relatives if r != relative)
            rejects.append(Reject(files[relative], f"ambiguous file name {name!r}: also at {others} "
                                                   f"(the label file names images by file name)"))
    return unique


# --------------------------------------------------------------------------- NIH
def read_nih_labels(path: str) -> pd.DataFrame:
    """NIH ``Data_Entry_2017*.csv(.gz)`` as a table of strings indexed by line number."""
    return read_table(path, NIH_LABEL_COLUMNS, "an NIH label file (Data_Entry_2017*.csv)")


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


def nih_source(images: str, labels: str, bbox: str | None = None,
               split_lists: dict[str, str] | None = None, require_images: bool = True) -> Source:
    """NIH ChestX-ray14: ``Data_Entry_2017*.csv`` (+.gz) and an image folder.

    ``split_lists`` maps split -> list file: NIH's ``train_val_list.txt`` (as 'trainval')
    and ``test_list.txt``, or CheXNet-style lists (``name.png`` then 14 0/1 values), whose
    labels are then used instead of the CSV's.  ``require_images=False`` lists every
    label row (expected path ``images/<name>``) without looking for the files, for split
    planning and prevalence tables on the full label file.  Malformed label rows (short,
    empty cells, a non-numeric patient id) are rejected with file and line.
    """
    label_names = list(CHEXNET_LABELS)
    rejects: list[Reject] = []
    files = by_file_name(list_images(images, rejects), rejects) if require_images else None
    split_of: dict[str, str] = {}
    list_labels: dict[str, tuple[float, ...]] = {}
    for split, lf in (split_lists or {}).items():
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
    boxes = read_nih_boxes(bbox, label_names, rejects) if bbox else {}
    table = read_nih_labels(labels)
    rows = pd.DataFrame({"image": table["Image Index"].str.strip(),
                         "findings": table["Finding Labels"].str.strip(),
                         "patient": table["Patient ID"].str.strip()}, index=table.index)
    items: list[Item] = []
    seen: set[str] = set()
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
        if split_lists and name not in split_of:
            continue  # not part of the requested split lists
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
        items.append(Item(image_id=name, patient_id=row.patient.lstrip("0") or "0",
                          labels=lab, image=path, boxes=tuple(boxes.get(name, ())),
                          split=split_of.get(name)))
    for name in sorted(set(files or ()) - seen):
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
    rejects: list[Reject] = []
    files = by_file_name(list_images(images, rejects), rejects)
    items: list[Item] = []
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
            items.append(Item(name, patient or Path(name).stem, (float(value),), files[name]))
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


# --------------------------------------------------------------------------- MedMNIST
#: Label names per MedMNIST data set: MedMNIST's own names (its ``INFO[flag]["label"]``;
#: PneumoniaMNIST's positive class is "pneumonia"), except ChestMNIST, whose 14 columns
#: are NIH's findings and keep NIH's spelling in CheXNet order so reports line up.
MEDMNIST_LABELS = {
    "pneumoniamnist": ["pneumonia"],
    "chestmnist": list(CHEXNET_LABELS),
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
    found = [s for s in SPLITS if f"{s}_images" in data.files]
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
