"""Localization: box geometry by hand, heatmap boxes, and a trained model against random boxes."""
from __future__ import annotations

import numpy as np
import pytest

from tfxr.evaluation import localization as loc


def test_iobb_and_iou_hand_values():
    truth, pred = (0.0, 0.0, 0.4, 0.4), (0.2, 0.2, 0.6, 0.6)   # overlap 0.2 x 0.2
    assert loc.iobb(truth, pred) == pytest.approx(0.04 / 0.16)
    assert loc.iou(truth, pred) == pytest.approx(0.04 / (0.16 + 0.16 - 0.04))
    inner = (0.1, 0.1, 0.2, 0.2)                             # a small box inside the truth
    assert loc.iobb(truth, inner) == pytest.approx(1.0)
    assert loc.iou(truth, inner) == pytest.approx(0.01 / 0.16)
    hits = loc.score_box(truth, [pred], (0.3, 0.3))
    assert hits["iobb_0.1"] and hits["iobb_0.5"] is False and hits["iou_0.1"] and not hits["iou_0.2"]
    assert hits["pointing"] and not loc.score_box(truth, [], (0.5, 0.5))["pointing"]


def test_false_positives_and_afp_per_image_and_finding():
    truths = [(0.0, 0.0, 0.5, 0.5)]      # binary fractions: IoBB exactly 1.0, 0.5 and 0.0
    inside, half, outside = (0.125, 0.125, 0.25, 0.25), (0.25, 0.0, 0.75, 0.5), (0.625, 0.625, 0.875, 0.875)
    fp = loc.false_positives(truths, [inside, half, outside])
    assert fp == {"fp_0.1": 1, "fp_0.25": 1, "fp_0.5": 2, "fp_0.75": 2, "fp_0.9": 2}
    # two truths of one finding in image a (one pair), one in image b: AFP averages the 2 pairs
    hit = dict.fromkeys([f"iobb_{t}" for t in loc.IOBB_THRESHOLDS] + [f"iou_{t}" for t in loc.IOU_THRESHOLDS]
                        + ["pointing"], True)
    records = [{"image_id": "a", "label": 0, "box": list(truths[0]), "predicted": [list(outside)], **hit,
                "random": hit},
               {"image_id": "a", "label": 0, "box": [0.5, 0.5, 1.0, 1.0], "predicted": [list(outside)], **hit,
                "random": hit},
               {"image_id": "b", "label": 0, "box": list(truths[0]), "predicted": [list(outside), list(inside)],
                **hit, "random": hit}]
    row = loc.summarise(records, ["Mass"])["Mass"]
    assert row["boxes"] == 3 and row["images"] == 2
    assert row["afp"]["fp_0.1"] == pytest.approx((0 + 1) / 2)    # a: outside lies in its 2nd truth


def test_boxes_from_heatmap_one_box_per_region():
    heat = np.zeros((20, 10))
    heat[2:6, 1:4] = 1.0          # rows 2-5, cols 1-3
    heat[10:12, 6:9] = 0.5
    assert loc.boxes_from_heatmap(heat, 0.6) == [(0.1, 0.1, 0.4, 0.3)]
    both = loc.boxes_from_heatmap(heat, 0.4)
    assert len(both) == 2 and (0.6, 0.5, 0.9, 0.6) in both
    assert loc.peak_point(heat) == pytest.approx((0.15, 0.125))
    assert loc.boxes_from_heatmap(np.zeros((4, 4)), 0.5) == []


def test_box_threshold_is_chosen_on_the_items_given():
    heat = np.zeros((10, 10))
    heat[2:8, 2:8] = 0.3
    heat[4:6, 4:6] = 1.0
    items = [loc.BoxedImage("a", np.zeros((10, 10, 1)), np.ones(1), [(0, (0.2, 0.2, 0.8, 0.8))])]
    assert loc.choose_box_thresholds(items, {(0, 0): heat}, 1) == {0: 0.1}   # 0.1..0.3 give the big box
    items[0].boxes = [(0, (0.4, 0.4, 0.6, 0.6))]
    assert loc.choose_box_thresholds(items, {(0, 0): heat}, 1)[0] >= 0.4


def test_random_placement_keeps_size_and_stays_in_the_region():
    rng = np.random.default_rng(0)
    region = np.zeros((10, 10), bool)
    region[6:9, 1:3] = True
    for _ in range(50):
        b = loc.random_placement((0.0, 0.0, 0.1, 0.2), region, rng)
        assert b[2] - b[0] == pytest.approx(0.1) and b[3] - b[1] == pytest.approx(0.2)
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        assert 0.1 <= cx <= 0.3 and 0.6 <= cy <= 0.9


def test_gradcam_variants_and_layer_errors(phantom_data, phantom_model):
    from tfxr.data.records import read_manifest
    from tfxr.errors import ConfigError
    from tfxr.evaluation.classifier import load_model

    model = load_model(str(phantom_model))
    assert loc.find_last_conv_layer(model) == "conv3_64"
    items = loc.read_boxed_images(str(phantom_data), "val", read_manifest(str(phantom_data)), 64, 1)
    effusion = [it.image for it in items if 2 in {lab for lab, _ in it.boxes}][:3]
    x = np.stack(effusion)
    for method in loc.CAM_METHODS:
        maps, probs = loc.GradCAM(model, method=method)(x, 2)
        assert maps.shape == (3, 64, 64) and probs.shape == (3, 4)
        peaks = maps.reshape(3, -1).max(axis=1)
        assert maps.min() >= 0 and np.all(np.isclose(peaks, 1.0) | (peaks == 0)) and peaks.max() == 1.0
    with pytest.raises(ConfigError, match="--layer nope"):
        loc.GradCAM(model, "nope")
    with pytest.raises(ConfigError, match="not a 4-D"):
        loc.GradCAM(model, "flatten")


def test_trained_model_boxes_beat_random_boxes_in_the_lung_fields(phantom_data, phantom_model):
    """On the phantoms, heatmap boxes of a trained model localise lesions far better than the
    same boxes dropped at random inside the lung fields (pointing game and IoU > 0.3)."""
    from tfxr.data.records import read_manifest
    from tfxr.evaluation.classifier import load_model

    manifest = read_manifest(str(phantom_data))
    cam = loc.GradCAM(load_model(str(phantom_model)))
    val = loc.read_boxed_images(str(phantom_data), "val", manifest, 64, 1)
    heat, _ = loc.heatmaps_for(cam, val, list(range(4)))
    thresholds = loc.choose_box_thresholds(val, heat, 4)
    test = loc.read_boxed_images(str(phantom_data), "test", manifest, 64, 1)
    regions = loc.phantom_lung_fields(manifest, [it.image_id for it in test], 64)
    assert len(regions) == len(test) and all(0.15 < m.mean() < 0.6 for m in regions.values())
    heat, _ = loc.heatmaps_for(cam, test, list(range(4)))
    records = loc.score_items(test, heat, thresholds, regions)
    assert len(records) >= 60
    model = {k: np.mean([r[k] for r in records]) for k in ("pointing", "iou_0.3")}
    random = {k: np.mean([r["random"][k] for r in records]) for k in ("pointing", "iou_0.3")}
    assert model["pointing"] >= random["pointing"] + 0.15, (model, random)
    assert model["iou_0.3"] >= random["iou_0.3"] + 0.08, (model, random)


def test_cam_through_a_nested_backbone_matches_the_model():
    """CheXNet's DenseNet121 is a nested model: the CAM runs the outer graph around it."""
    from tfxr.models import build_model

    model = build_model("chexnet", 32, channels=1, num_outputs=2, weights="none")
    cam = loc.GradCAM(model)
    assert cam.layer == loc.find_last_conv_layer(model) == "conv5_block16_2_conv"
    x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    maps, probs = cam(x, 1)
    assert maps.shape == (2, 32, 32) and np.allclose(probs, np.asarray(model(x)), atol=1e-6)
