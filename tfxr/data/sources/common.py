"""What every reader shares: label-table and list-file reading, image listing, file names.

Readers list images, labels, patient ids, official splits and boxes; they never decode
pixels (that happens in the converter's workers) and they report, rather than raise on,
inputs they cannot use.
"""
from __future__ import annotations

import csv
import gzip
import os

import pandas as pd

from tfxr.data.imageio import DICOM_EXTENSIONS
from tfxr.data.types import Reject
from tfxr.errors import SourceError

#: Image files a reader lists: PNG, JPEG, BMP, TIFF and DICOM (``.dcm``).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff") + DICOM_EXTENSIONS

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


def read_table(path: str, required: tuple[str, ...], what: str,
               rejects: list[Reject] | None = None) -> pd.DataFrame:
    """A CSV label file (plain or .gz) as a table of strings, indexed by line number.

    Every cell is read as text (a patient id keeps its leading zeros until a reader
    decides), a UTF-8 byte-order mark is accepted, missing cells of a short row are
    empty strings, and blank lines are dropped.  A file that is not UTF-8 CSV or lacks
    one of the ``required`` columns is a SourceError naming the file.  With ``rejects``,
    a row with more fields than the header is rejected there (file:line and why) and the
    rest of the file is read; without, it makes the file unreadable.
    """
    _require_file(path)
    try:
        try:
            table = _read_csv(path)
            skipped: list[int] = []
            if not isinstance(table.index, pd.RangeIndex):   # pandas made extra leading fields an index
                raise pd.errors.ParserError("a row has more fields than the header")
        except pd.errors.ParserError:
            long_rows, fields = _long_rows(path) if rejects is not None else ([], 0)
            if not long_rows:
                raise
            skipped = [line for line, _ in long_rows]
            table = _read_csv(path, skiprows=[line - 1 for line in skipped])   # 0-based file lines
            rejects.extend(Reject(f"{path}:{line}", f"malformed row: {n} fields, the header has {fields}")
                           for line, n in long_rows)
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
    if skipped:     # the line number of each row that was read (line 1 is the header)
        gone = set(skipped)
        lines = [n for n in range(2, len(table) + len(gone) + 2) if n not in gone]
        table.index = lines[:len(table)]
    else:
        table.index = table.index + 2  # the line number of each row (line 1 is the header)
    blank = (table.apply(lambda col: col.str.strip()) == "").all(axis=1)
    return table[~blank]


def _read_csv(path: str, skiprows=None) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, skiprows=skiprows,
                       encoding="utf-8-sig", compression="gzip" if path.endswith(".gz") else None)


def _long_rows(path: str) -> tuple[list[tuple[int, int]], int]:
    """(line, fields) of every row with more fields than the header, and the header's field count."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
        rows = csv.reader(fh)
        header = next(rows, [])
        return [(rows.line_num, len(row)) for row in rows if len(row) > len(header)], len(header)


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


def parse_views(text: str | None) -> tuple[str, ...] | None:
    """``'PA,AP'`` -> ('PA', 'AP') (upper case); None or '' -> None (every view)."""
    if not text:
        return None
    views = tuple(v.strip().upper() for v in text.split(",") if v.strip())
    return views or None


def parse_age(text) -> float | None:
    """An age in years from '55', '55.0' or a DICOM Age String ('055Y', '006M', '010W', '003D')."""
    s = str(text or "").strip().upper()
    if not s:
        return None
    unit = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}.get(s[-1])
    try:
        return round(float(s[:-1]) * unit, 3) if unit else float(s)
    except ValueError:
        return None


def dicom_header(path: str, demographics: bool = False) -> dict:
    """The few header values a reader may use: view, and age and sex only if asked.

    Reads the header only (no pixel data).  Names, birth dates and UIDs are never read out.
    A file that is not DICOM gives {} (the converter then rejects it with the reason).
    """
    import pydicom  # lazy: only readers of DICOM sets need it

    tags = ["ViewPosition"] + (["PatientAge", "PatientSex"] if demographics else [])
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags, force=True)
    except Exception:  # noqa: BLE001 - reported by the converter when it decodes the file
        return {}
    out = {"view": str(ds.get("ViewPosition", "") or "").strip().upper() or None}
    if demographics:
        out["age"] = parse_age(ds.get("PatientAge"))
        out["sex"] = str(ds.get("PatientSex", "") or "").strip().upper() or None
    return out


def missing_image(policy: str, name: str, where: str, rejects: list[Reject], skipped: list[int]) -> None:
    """A label row without an image: a reject (``policy='reject'``) or only counted ('skip')."""
    if policy == "skip":
        skipped[0] += 1
    else:
        rejects.append(Reject(name, f"label row ({where}) without an image"))
