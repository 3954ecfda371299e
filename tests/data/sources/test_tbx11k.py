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
