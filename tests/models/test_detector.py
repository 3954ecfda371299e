"""The detector model: build, report, backbone weights from a file, a finite tape-step loss."""
import numpy as np
import pytest
import tensorflow as tf

from tfxr.errors import ConfigError
from tfxr.models.detector import (PAD_BOX, build_backbone, build_detector, build_loss, decode, detection_loss,
                                  load_backbone_weights, pack_targets, pad_boxes)
from tfxr.models.report import build_for_report, model_report


def test_grey_input_size_and_report():
    model = build_detector(64)
    assert model.input_shape == (None, 64, 64, 1)
    report = model_report(model)
    assert report["params"] == model.count_params() > 500_000
    # FLOPs scale with the pixels (all convolutions): 128 px is 4x 64 px
    assert model_report(build_for_report("detector", 128)["model"])["flops_per_image"] == 4 * report["flops_per_image"]
    for bad in (100, 32, 2048):
        with pytest.raises(ConfigError, match="multiple of 32"):
            build_detector(bad)


def test_backbone_weights_round_trip(tmp_path):
    source = build_backbone(64)
    path = str(tmp_path / "backbone.weights.h5")
    source.save_weights(path)
    model = build_detector(64, backbone_weights=path, backbone="tiny")
    assert len(model.backbone.weights) == len(source.weights)
    for mine, theirs in zip(model.backbone.weights, source.weights):   # one architecture: one order
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert any(np.any(v.numpy() != 0) for v in source.weights)


def test_backbone_weights_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"no such file; pretrained weights cannot be downloaded here"):
        build_detector(64, backbone_weights=str(tmp_path / "missing.weights.h5"))
    other = str(tmp_path / "xs.weights.h5")
    build_backbone(64, backbone="xs").save_weights(other)
    with pytest.raises(ConfigError, match=r"does not fit the 'tiny' backbone"):
        load_backbone_weights(build_backbone(64), other, "tiny")
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(ConfigError, match="does not fit"):
        build_detector(64, backbone_weights=str(junk))
    with pytest.raises(ConfigError, match="not a Keras .weights.h5"):
        build_detector(64, backbone_weights=str(junk.rename(tmp_path / "junk.h5")))


def test_tape_step_loss_finite_with_negatives_and_decodes():
    """The library's loss under tf.function on a batch with boxes and box-less negatives
    (KerasCV's own -1 padding gives NaN here; tfxr's PAD_BOX does not).  With the compiled
    loss built first (build_loss: no weight changes), the step is traced once, not twice."""
    model = build_detector(64)
    before = [w.numpy() for w in model.weights]
    build_loss(model)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))
    images = tf.random.stateless_uniform((3, 64, 64, 1), [1, 2])
    targets = {k: tf.constant(v) for k, v in pack_targets([[(0, (0.2, 0.2, 0.5, 0.6))], [], []]).items()}
    variables = [v.value for v in model.trainable_variables]
    traces = []

    @tf.function
    def step(x, y):
        traces.append(1)
        with tf.GradientTape() as tape:
            loss = detection_loss(model, x, y)
        return loss, tape.gradient(loss, variables)

    loss, grads = step(images, targets)
    assert len(traces) == 1
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    out = decode(model, images)
    assert out["boxes"].shape == (3, 100, 4) and out["confidence"].shape == (3, 100)


def test_pad_targets_tf_matches_numpy():
    y = pad_boxes(tf.constant([0, 0], tf.int64), tf.constant([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.8]]), 4)
    ref = pack_targets([[(0, (0.1, 0.1, 0.3, 0.3)), (0, (0.5, 0.5, 0.9, 0.8))]], 4)
    np.testing.assert_allclose(y["boxes"].numpy(), ref["boxes"][0])
    np.testing.assert_array_equal(y["classes"].numpy(), ref["classes"][0])
    assert tuple(ref["boxes"][0, 3]) == PAD_BOX
    empty = pad_boxes(tf.zeros([0], tf.int64), tf.zeros([0, 4]), 2)
    assert empty["classes"].numpy().tolist() == [-1, -1]
