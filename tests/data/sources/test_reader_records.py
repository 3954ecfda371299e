"""The records each reader's conversion writes stay byte-for-byte what they were.

``reader_records.json`` holds, per case, every shard's sha256 and the manifest without its
run-dependent keys (time, command, tfxr version, the temporary folder): it was written by
the function readers (``nih_source(...)`` ..., commit 3ba1a71) before they became one class
per data set, and must not change unless a conversion's output changes on purpose (changed
once since: the ``nih`` case when NIH's `View Position` became each record's ``image/view``,
with the ``views`` and ``images_outside_views`` facts; splits, counts and rejects the same).  The
commands run as a user types them, from another working directory with relative paths.
Real data where it is here (RSNA's DICOM sample, NIH's sample, TBX11K's sample); CheXpert,
VinDr and the class-per-folder case use stand-in images drawn under real file names.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import shard_hashes, shared, tfxr

GOLDEN = Path(__file__).with_name("reader_records.json")
RUN_DEPENDENT = ("created", "command", "tfxr_version", "conversion")


def _stand_in(path: Path, k: int, size: int = 40) -> None:
    """A deterministic grey stand-in image (a gradient plus the index), PNG or JPEG by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:size, 0:size]
    Image.fromarray(((x * 3 + y * 2 + 17 * k) % 256).astype(np.uint8)).save(path)


def _chexpert(tmp: Path) -> list[str]:
    raw = pd.read_csv(shared("chexpert_metadata", "train.csv.gz"), nrows=30, dtype=str, keep_default_na=False)
    for k, path in enumerate(raw["Path"]):
        _stand_in(tmp / path, k)
    raw.to_csv(tmp / "train.csv", index=False)
    return ["--source", "chexpert", "--images", "CheXpert-v1.0-small", "--labels", "train.csv",
            "--uncertainty", "zeros", "--all-views"]


def _vindr(tmp: Path) -> list[str]:
    raw = pd.read_csv(shared("vindr_cxr_metadata", "train.csv.gz"), dtype=str, keep_default_na=False)
    ids = list(dict.fromkeys(raw["image_id"]))[:12]
    raw[raw["image_id"].isin(ids)].to_csv(tmp / "train.csv", index=False)
    for k, image_id in enumerate(ids):
        _stand_in(tmp / "train" / f"{image_id}.png", k, size=64)
    return ["--source", "vindr", "--images", "train", "--labels", "train.csv", "--fusion", "wbf"]


def _folder(tmp: Path) -> list[str]:
    names = {"NORMAL": ["IM-0001-0001.jpeg", "IM-0003-0001.jpeg"],
             "PNEUMONIA": ["person1_bacteria_1.jpeg", "person1_bacteria_2.jpeg", "person7_virus_3.jpeg"]}
    k = 0
    for split in ("train", "val"):
        for cls, files in names.items():
            for name in files:
                _stand_in(tmp / "kermany" / split / cls / f"{split}{name}", k)
                k += 1
    return ["--source", "folder", "--images", "kermany"]


CASES = {
    "rsna": lambda tmp: ["--source", "rsna", "--images", "data/rsna_pneumonia/sample_stage_2_train_images",
                         "--labels", "data/rsna_pneumonia/stage_2_train_labels.csv",
                         "--missing-images", "skip", "--views", "PA,AP", "--max-rejects", "-1"],
    "nih": lambda tmp: ["--source", "nih", "--images", "data/nih_chestxray14_sample/images",
                        "--labels", "data/nih_chestxray14_sample/Data_Entry_2017_sample.csv",
                        "--bbox", "data/nih_chestxray14_metadata/BBox_List_2017.csv.gz", "--max-rejects", "-1"],
    "tbx11k": lambda tmp: ["--source", "tbx11k", "--images", "data/tbx11k_sample/imgs",
                           "--labels", "data/tbx11k_sample/annotations/json/TBX11K_train.json"],
    "tb": lambda tmp: ["--source", "tb", "--images", "data/tb_cxr/images", "--labels", "data/tb_cxr/labels.csv"],
    "chexpert": _chexpert,
    "vindr": _vindr,
    "folder": _folder,
}


def _written(tmp: Path, case: str) -> dict:
    """Convert one case from ``tmp`` (relative paths) and return what must not change."""
    os.symlink(shared(), tmp / "data")
    args = CASES[case](tmp)
    tfxr("tfxr.tfrecords", "write", *args, "--out", "out", "--image-size", "32", "--shards", "2",
         "--split-fractions", "0.6,0.2,0.2", "--quiet", cwd=tmp)
    manifest = json.loads((tmp / "out" / "manifest.json").read_text())
    for key in RUN_DEPENDENT:
        manifest.pop(key)
    text = json.dumps(manifest, sort_keys=False).replace(str(tmp), "<tmp>")
    return {"manifest": json.loads(text), "shards": shard_hashes(tmp / "out")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_records_are_unchanged(tmp_path, case):
    golden = json.loads(GOLDEN.read_text())
    got = _written(tmp_path, case)
    want = golden[case]
    assert got["shards"] == want["shards"]
    assert list(got["manifest"]) == list(want["manifest"])             # key order too: the bytes on disk
    assert list(got["manifest"]["source"]) == list(want["manifest"]["source"])
    assert got["manifest"] == want["manifest"]


if __name__ == "__main__":   # how reader_records.json is made (only when an output changes on purpose)
    import sys
    import tempfile

    out = {}
    for case in sorted(CASES):
        with tempfile.TemporaryDirectory() as d:
            out[case] = _written(Path(d), case)
    GOLDEN.write_text(json.dumps(out, indent=1) + "\n")
    sys.exit(0)
