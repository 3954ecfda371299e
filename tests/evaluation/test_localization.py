"""Localization end to end: a trained model's heatmap boxes against random boxes in the lungs."""
from __future__ import annotations

import numpy as np

from tfxr.data.records import read_manifest
from tfxr.evaluation import boxes
from tfxr.evaluation import localization as loc
from tfxr.evaluation.cam import ClassActivationMaps
from tfxr.evaluation.classifier import load_model


def test_trained_model_boxes_beat_random_boxes_in_the_lung_fields(phantom_data, phantom_model):
    """On the phantoms, heatmap boxes of a trained model localise lesions far better than the
    same boxes dropped at random inside the lung fields (pointing game and IoU > 0.3)."""
    manifest = read_manifest(str(phantom_data))
    cam = ClassActivationMaps(load_model(str(phantom_model)))
    val = boxes.read_boxed_images(str(phantom_data), "val", manifest, 64, 1)
    heat, _ = loc.heatmaps_for(cam, val, list(range(4)))
    thresholds = boxes.choose_box_thresholds(val, heat, 4)
    test = boxes.read_boxed_images(str(phantom_data), "test", manifest, 64, 1)
    regions = loc.phantom_lung_fields(manifest, [it.image_id for it in test], 64)
    assert len(regions) == len(test) and all(0.15 < m.mean() < 0.6 for m in regions.values())
    heat, _ = loc.heatmaps_for(cam, test, list(range(4)))
    records = boxes.score_items(test, heat, thresholds, regions)
    assert len(records) >= 60
    model = {k: np.mean([r[k] for r in records]) for k in ("pointing", "iou_0.3")}
    random = {k: np.mean([r["random"][k] for r in records]) for k in ("pointing", "iou_0.3")}
    assert model["pointing"] >= random["pointing"] + 0.15, (model, random)
    assert model["iou_0.3"] >= random["iou_0.3"] + 0.08, (model, random)
