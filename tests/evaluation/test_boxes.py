"""Box geometry and scores by hand: IoBB/IoU, false positives and AFP, boxes cut from a
heatmap, the box threshold chosen on the items given, random placement in a region."""
from __future__ import annotations

import numpy as np
import pytest

from tfxr.evaluation import boxes


def test_iobb_and_iou_hand_values():
    truth, pred = (0.0, 0.0, 0.4, 0.4), (0.2, 0.2, 0.6, 0.6)   # overlap 0.2 x 0.2
    assert boxes.iobb(truth, pred) == pytest.approx(0.04 / 0.16)
    assert boxes.iou(truth, pred) == pytest.approx(0.04 / (0.16 + 0.16 - 0.04))
    inner = (0.1, 0.1, 0.2, 0.2)                             # a small box inside the truth
    assert boxes.iobb(truth, inner) == pytest.approx(1.0)
    assert boxes.iou(truth, inner) == pytest.approx(0.01 / 0.16)
    hits = boxes.score_box(truth, [pred], (0.3, 0.3))
    assert hits["iobb_0.1"] and hits["iobb_0.5"] is False and hits["iou_0.1"] and not hits["iou_0.2"]
    assert hits["pointing"] and not boxes.score_box(truth, [], (0.5, 0.5))["pointing"]


def test_false_positives_and_afp_per_image_and_finding():
    truths = [(0.0, 0.0, 0.5, 0.5)]      # binary fractions: IoBB exactly 1.0, 0.5 and 0.0
    inside, half, outside = (0.125, 0.125, 0.25, 0.25), (0.25, 0.0, 0.75, 0.5), (0.625, 0.625, 0.875, 0.875)
    fp = boxes.false_positives(truths, [inside, half, outside])
    assert fp == {"fp_0.1": 1, "fp_0.25": 1, "fp_0.5": 2, "fp_0.75": 2, "fp_0.9": 2}
    # two truths of one finding in image a (one pair), one in image b: AFP averages the 2 pairs
    hit = dict.fromkeys([f"iobb_{t}" for t in boxes.IOBB_THRESHOLDS] + [f"iou_{t}" for t in boxes.IOU_THRESHOLDS]
                        + ["pointing"], True)
    records = [{"image_id": "a", "label": 0, "box": list(truths[0]), "predicted": [list(outside)], **hit,
                "random": hit},
               {"image_id": "a", "label": 0, "box": [0.5, 0.5, 1.0, 1.0], "predicted": [list(outside)], **hit,
                "random": hit},
               {"image_id": "b", "label": 0, "box": list(truths[0]), "predicted": [list(outside), list(inside)],
                **hit, "random": hit}]
    row = boxes.summarise(records, ["Mass"])["Mass"]
    assert row["boxes"] == 3 and row["images"] == 2
    assert row["afp"]["fp_0.1"] == pytest.approx((0 + 1) / 2)    # a: outside lies in its 2nd truth


def test_boxes_from_heatmap_one_box_per_region():
    heat = np.zeros((20, 10))
    heat[2:6, 1:4] = 1.0          # rows 2-5, cols 1-3
    heat[10:12, 6:9] = 0.5
    assert boxes.boxes_from_heatmap(heat, 0.6) == [(0.1, 0.1, 0.4, 0.3)]
    both = boxes.boxes_from_heatmap(heat, 0.4)
    assert len(both) == 2 and (0.6, 0.5, 0.9, 0.6) in both
    assert boxes.peak_point(heat) == pytest.approx((0.15, 0.125))
    assert boxes.boxes_from_heatmap(np.zeros((4, 4)), 0.5) == []


def test_box_threshold_is_chosen_on_the_items_given():
    heat = np.zeros((10, 10))
    heat[2:8, 2:8] = 0.3
    heat[4:6, 4:6] = 1.0
    items = [boxes.BoxedImage("a", np.zeros((10, 10, 1)), np.ones(1), [(0, (0.2, 0.2, 0.8, 0.8))])]
    assert boxes.choose_box_thresholds(items, {(0, 0): heat}, 1) == {0: 0.1}   # 0.1..0.3 give the big box
    items[0].boxes = [(0, (0.4, 0.4, 0.6, 0.6))]
    assert boxes.choose_box_thresholds(items, {(0, 0): heat}, 1)[0] >= 0.4


def test_random_placement_keeps_size_and_stays_in_the_region():
    rng = np.random.default_rng(0)
    region = np.zeros((10, 10), bool)
    region[6:9, 1:3] = True
    for _ in range(50):
        b = boxes.random_placement((0.0, 0.0, 0.1, 0.2), region, rng)
        assert b[2] - b[0] == pytest.approx(0.1) and b[3] - b[1] == pytest.approx(0.2)
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        assert 0.1 <= cx <= 0.3 and 0.6 <= cy <= 0.9
