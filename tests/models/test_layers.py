"""FusedBatchNormalization: the Keras 3 layer's results through TensorFlow's fused kernel."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfxr.models.layers import FusedBatchNormalization, fuse_batch_norms


def _pair(**config):
    ref = keras.layers.BatchNormalization(**config)
    fused = FusedBatchNormalization(**config)
    ref.build((None, 6, 5, 8))
    fused.build((None, 6, 5, 8))
    rng = np.random.default_rng(0)
    weights = ([rng.normal(1, 0.3, 8)] if ref.scale else []) + ([rng.normal(0, 0.3, 8)] if ref.center else [])
    weights += [rng.normal(0, 0.5, 8), rng.uniform(0.5, 2, 8)]
    ref.set_weights(weights)
    fused.set_weights(weights)
    return ref, fused


@pytest.mark.parametrize("config", [dict(epsilon=1.001e-5, momentum=0.99), dict(), dict(center=False, scale=False)])
def test_fused_batch_norm_equals_the_keras_layer_in_training_and_inference(config):
    ref, fused = _pair(**config)
    x = tf.constant(np.random.default_rng(1).normal(2, 3, (4, 6, 5, 8)), tf.float32)
    for training in (True, False):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            a, b = ref(x, training=training), fused(x, training=training)
            loss_a, loss_b = tf.reduce_sum(a * a * tf.range(8.0)), tf.reduce_sum(b * b * tf.range(8.0))
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(tape.gradient(loss_b, x), tape.gradient(loss_a, x), rtol=1e-4, atol=1e-4)
        for va, vb in zip(ref.trainable_variables, fused.trainable_variables):
            np.testing.assert_allclose(tape.gradient(loss_b, vb), tape.gradient(loss_a, va), rtol=1e-4, atol=1e-3)
        for va, vb in zip(ref.non_trainable_variables, fused.non_trainable_variables):   # moving mean/variance
            np.testing.assert_allclose(vb.numpy(), va.numpy(), rtol=1e-5, atol=1e-6)


def test_the_step_graph_runs_the_fused_kernel():
    fused = FusedBatchNormalization()
    fn = tf.function(lambda x: fused(x, training=True))
    ops = {op.type for op in fn.get_concrete_function(tf.TensorSpec([2, 4, 4, 3])).graph.get_operations()}
    assert "FusedBatchNormV3" in ops and "SquaredDifference" not in ops


def test_fuse_batch_norms_keeps_a_models_outputs_and_weights():
    inputs = keras.Input((8, 8, 2))
    inner = keras.Sequential([keras.layers.Conv2D(4, 3, padding="same"), keras.layers.BatchNormalization(),
                              keras.layers.ReLU()])
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(inner(inputs))))
    x = np.random.default_rng(2).normal(size=(3, 8, 8, 2)).astype(np.float32)
    fused = fuse_batch_norms(model)
    kinds = [type(layer).__name__ for layer in fused.layers[1].layers]
    assert kinds == ["Conv2D", "FusedBatchNormalization", "ReLU"]
    np.testing.assert_allclose(fused(x, training=False), model(x, training=False), atol=1e-5)
    np.testing.assert_allclose(fused(x, training=True), model(x, training=True), atol=1e-5)
    assert [w.name for w in fused.weights] == [w.name for w in model.weights]


def test_densenet121_with_fused_batch_norms_computes_what_the_keras_one_does():
    """CheXNet's backbone (tfxr.models.chexnet fuses it) against the unchanged Keras DenseNet121:
    outputs in training and inference, and the loss gradient of every weight.  (64 px, batch 4: at
    32 px the last block normalises 1 x 1 maps of 2 images, +-1 whose sign float rounding decides.)"""
    keras.utils.set_random_seed(0)
    plain = keras.applications.DenseNet121(include_top=False, weights=None, input_shape=(64, 64, 3), pooling="avg")
    fused = fuse_batch_norms(plain)
    assert sum(type(layer).__name__ == "FusedBatchNormalization" for layer in fused.layers) == 121
    x = tf.constant(np.random.default_rng(3).uniform(size=(4, 64, 64, 3)), tf.float32)
    for training in (False, True):
        with tf.GradientTape(persistent=True) as tape:
            a, b = plain(x, training=training), fused(x, training=training)
            la, lb = tf.reduce_sum(tf.square(a)), tf.reduce_sum(tf.square(b))
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4)
        ga = tape.gradient(la, plain.trainable_variables)
        gb = tape.gradient(lb, fused.trainable_variables)
        # against the largest gradient: a few (conv1_bn/gamma's) are sums of large terms that cancel, and
        # 121 batch-statistics layers on 4 images amplify float rounding (the layer test above is exact)
        scale = max(float(tf.reduce_max(tf.abs(g))) for g in ga)
        worst = max(float(tf.reduce_max(tf.abs(p - q))) for p, q in zip(ga, gb)) / scale
        assert worst < 2e-2, worst
    for va, vb in zip(plain.non_trainable_variables, fused.non_trainable_variables):
        np.testing.assert_allclose(vb.numpy(), va.numpy(), rtol=1e-4, atol=1e-5)
