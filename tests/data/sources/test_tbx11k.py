"""TBX11K reader on its real COCO-style JSON and its three real images."""
from __future__ import annotations

import json

import pytest

from tests.conftest import shared, tfxr
from tfxr.data.sources import TBX11KReader


def test_coco_json_labels_boxes_and_conversion(tmp_path):
    root = shared("tbx11k_sample")
    js = root / "annotations" / "json" / "TBX11K_train.json"
    coco = json.loads(js.read_text())
    src = TBX11KReader(str(root / "imgs"), [str(js)]).read()
    assert src.rejects == [] and len(src.items) == len(coco["images"]) == 3
    assert sum(len(it.boxes) for it in src.items) == len(coco["annotations"]) == 3
    by_name = {it.image_id: it for it in src.items}
    assert by_name["health/h0001.png"].labels == (0.0, 0.0, 0.0, 0.0)
    assert by_name["tb/tb0005.png"].labels[:2] == (1.0, 1.0)
    assert {it.split for it in src.items} == {"train"}
    (tmp_path / "imgs").symlink_to(root / "imgs")
    (tmp_path / "train.json").symlink_to(js)
    tfxr("tfxr.tfrecords", "write", "--source", "tbx11k", "--images", "imgs", "--labels", "train.json",
         "--out", "out", "--image-size", "32", "--shards", "1", "--quiet", cwd=tmp_path)
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["splits"]["train"]["count"] == 3 and m["splits"]["train"]["images_with_boxes"] == 2
    ann = coco["annotations"][0]
    x, y, w, h = ann["bbox"]
    b = next(b for b in by_name["tb/tb0005.png"].boxes)
    assert (b.xmin, b.xmax) == pytest.approx((x, x + w))     # the reader keeps TBX11K's pixels ...
    assert by_name["tb/tb0005.png"].box_space == (512.0, 512.0)  # ... and their space, divided on writing


@pytest.mark.parametrize("missing", ["images", "labels"])
def test_missing_tbx11k_files_say_how_to_get_them(tmp_path, missing):
    """TBX11K has no direct download URL: a missing folder or box file is one line naming it
    and the remedy (download_dataset.sh prints the manual steps), exit 2, nothing written."""
    root = shared("tbx11k_sample")
    if missing != "images":
        (tmp_path / "imgs").symlink_to(root / "imgs")
    if missing != "labels":
        (tmp_path / "TBX11K_train.json").symlink_to(root / "annotations" / "json" / "TBX11K_train.json")
    r = tfxr("tfxr.tfrecords", "write", "--source", "tbx11k", "--images", "imgs", "--labels", "TBX11K_train.json",
             "--out", "out", "--quiet", cwd=tmp_path, check=False)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfxr: error: ")
    assert ("imgs: no such image folder" if missing == "images" else "TBX11K_train.json: no such file") in lines[0]
    assert "./download_dataset.sh tbx11k" in lines[0] and "manual steps" in lines[0]
    assert not (tmp_path / "out").exists()
