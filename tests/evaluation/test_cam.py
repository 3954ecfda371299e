"""Class activation maps: both methods on a trained model, layer errors, a nested backbone."""
from __future__ import annotations

import numpy as np
import pytest

from tfxr.data.records import read_manifest
from tfxr.errors import ConfigError
from tfxr.evaluation.boxes import read_boxed_images
from tfxr.evaluation.cam import CAM_METHODS, ClassActivationMaps, find_last_conv_layer
from tfxr.evaluation.classifier import load_model
from tfxr.models import build_model


def test_both_cam_methods_and_layer_errors(phantom_data, phantom_model):
    model = load_model(str(phantom_model))
    assert find_last_conv_layer(model) == "conv3_64"
    items = read_boxed_images(str(phantom_data), "val", read_manifest(str(phantom_data)), 64, 1)
    effusion = [it.image for it in items if 2 in {lab for lab, _ in it.boxes}][:3]
    x = np.stack(effusion)
    for method in CAM_METHODS:
        maps, probs = ClassActivationMaps(model, method=method)(x, 2)
        assert maps.shape == (3, 64, 64) and probs.shape == (3, 4)
        peaks = maps.reshape(3, -1).max(axis=1)
        assert maps.min() >= 0 and np.all(np.isclose(peaks, 1.0) | (peaks == 0)) and peaks.max() == 1.0
    with pytest.raises(ConfigError, match="--layer nope"):
        ClassActivationMaps(model, "nope")
    with pytest.raises(ConfigError, match="not a 4-D"):
        ClassActivationMaps(model, "flatten")


def test_cam_through_a_nested_backbone_matches_the_model():
    """CheXNet's DenseNet121 is a nested model: the CAM runs the outer graph around it."""
    model = build_model("chexnet", 32, channels=1, num_outputs=2, weights="none")
    cam = ClassActivationMaps(model)
    assert cam.layer == find_last_conv_layer(model) == "conv5_block16_2_conv"
    x = np.random.default_rng(0).random((2, 32, 32, 1), dtype=np.float32)
    maps, probs = cam(x, 1)
    assert maps.shape == (2, 32, 32) and np.allclose(probs, np.asarray(model(x)), atol=1e-6)
