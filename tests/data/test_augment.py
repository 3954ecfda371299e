"""Batched in-graph augmentation (tfxr.data.augment.augment_batch): exact flips, identity
parameters, rotation direction, parameter distributions, and image-by-image equality."""
from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from tfxr.data.augment import (AugmentConfig, affine_batch, apply_parameters, augment, augment_batch,
                               draw_parameters)

OFF = dict(flip=False, rotation_deg=0.0, zoom=0.0, brightness=0.0, gamma=0.0, noise_std=0.0)


def _batch(n=16, size=24, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.random((n, size, size, 1), np.float32))


def test_flip_is_exact_and_drawn_per_image_about_half_the_time():
    images = _batch(200, 8)
    cfg = AugmentConfig(**{**OFF, "flip": True})
    out = augment_batch(images, tf.constant([5, 9], tf.int64), cfg).numpy()
    flips = draw_parameters(tf.constant([5, 9], tf.int64), 200, cfg)["flip"].numpy()
    x = images.numpy()
    for i in range(200):
        np.testing.assert_array_equal(out[i], x[i, :, ::-1] if flips[i] else x[i])
    assert 0.38 < flips.mean() < 0.62


def test_identity_parameters_give_the_input_back():
    images = _batch()
    seed = tf.constant([1, 2], tf.int64)
    np.testing.assert_array_equal(augment_batch(images, seed, AugmentConfig(enabled=False)), images)
    np.testing.assert_array_equal(augment_batch(images, seed, AugmentConfig(**OFF)), images)
    every = AugmentConfig()        # every op on, fed its identity values (noise off: it has none)
    identity = {"flip": tf.zeros([16], tf.bool), "angle": tf.zeros([16]), "scale": tf.ones([16]),
                "brightness": tf.zeros([16]), "gamma": tf.ones([16]), "noise_seed": seed}
    out = apply_parameters(images, identity, AugmentConfig(**{**every.__dict__, "noise_std": 0.0}))
    np.testing.assert_allclose(out, images, atol=1e-6)


def test_rotation_turns_counter_clockwise_about_the_centre_and_zoom_magnifies():
    images = _batch(2, 9)
    quarter = affine_batch(images, tf.constant([math.pi / 2, 0.0]), tf.constant([1.0, 1.0])).numpy()
    np.testing.assert_allclose(quarter[0], np.rot90(images.numpy()[0], k=1), atol=1e-5)   # +90 deg: counter-clockwise
    np.testing.assert_allclose(quarter[1], images.numpy()[1], atol=1e-6)
    ramp = tf.constant(np.tile(np.arange(9, dtype=np.float32), (9, 1))[None, ..., None])
    zoomed = affine_batch(ramp, tf.constant([0.0]), tf.constant([2.0])).numpy()[0, 4, :, 0]
    np.testing.assert_allclose(zoomed[2:7], [3.0, 3.5, 4.0, 4.5, 5.0], atol=1e-5)      # half a pixel per pixel


def test_parameter_distributions_match_the_configuration():
    cfg = AugmentConfig(rotation_deg=10.0, zoom=0.2, brightness=0.1, gamma=0.3)
    p = {k: v.numpy() for k, v in draw_parameters(tf.constant([3, 4], tf.int64), 20000, cfg).items()}
    for name, values, low, high in [("angle", p["angle"], -math.radians(10), math.radians(10)),
                                    ("scale", p["scale"], 0.8, 1.2), ("brightness", p["brightness"], -0.1, 0.1),
                                    ("log gamma", np.log(p["gamma"]), -0.3, 0.3)]:
        assert low <= values.min() and values.max() <= high, name                     # uniform on [low, high]
        assert values.min() < low + 0.01 * (high - low) and values.max() > high - 0.01 * (high - low), name
        assert values.mean() == pytest.approx((low + high) / 2, abs=0.01 * (high - low)), name
        assert values.std() == pytest.approx((high - low) / math.sqrt(12), rel=0.03), name
    assert 0.48 < p["flip"].mean() < 0.52
    grey = tf.fill([64, 32, 32, 1], 0.5)
    noisy = augment_batch(grey, tf.constant([1, 1], tf.int64), AugmentConfig(**{**OFF, "noise_std": 0.02}))
    assert float(tf.math.reduce_std(noisy - grey)) == pytest.approx(0.02, rel=0.02)


def test_each_image_of_a_batch_is_augmented_as_it_would_be_alone():
    """The vectorised ops never mix images: image i of the batch equals the ops applied to
    image i alone with its parameters (noise aside: one draw for the whole batch)."""
    images = _batch(12, 20)
    cfg = AugmentConfig(noise_std=0.0)
    p = draw_parameters(tf.constant([8, 1], tf.int64), 12, cfg)
    batch = apply_parameters(images, p, cfg).numpy()
    for i in range(12):
        alone = apply_parameters(images[i:i + 1], {k: (v if k == "noise_seed" else v[i:i + 1]) for k, v in p.items()},
                                 cfg).numpy()[0]
        np.testing.assert_allclose(batch[i], alone, atol=1e-6)
    assert len({round(float(v), 6) for v in p["angle"].numpy()}) == 12


def test_seeded_batches_repeat_and_differ_between_seeds():
    images = _batch()
    a = augment_batch(images, tf.constant([1, 0], tf.int64), AugmentConfig())
    b = augment_batch(images, tf.constant([1, 0], tf.int64), AugmentConfig())
    c = augment_batch(images, tf.constant([1, 1], tf.int64), AugmentConfig())
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.numpy() - c.numpy()).mean() > 1e-3
    out = a.numpy()
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    single = augment(images[0], tf.constant([1, 0], tf.int64), AugmentConfig()).numpy()
    np.testing.assert_array_equal(single, augment_batch(images[:1], tf.constant([1, 0], tf.int64),
                                                        AugmentConfig()).numpy()[0])


def _img():
    rng = np.random.default_rng(1)
    base = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32, 1)
    return tf.constant(np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1).astype(np.float32))


def test_augment_switches():
    img, seed = _img(), tf.constant([3, 4], tf.int64)
    np.testing.assert_array_equal(augment(img, seed, AugmentConfig(enabled=False)), img)
    np.testing.assert_allclose(augment(img, seed, AugmentConfig(**OFF)), img, atol=1e-6)
    flips = {bool(np.array_equal(augment(img, tf.constant([s, 0], tf.int64), AugmentConfig(**{**OFF, "flip": True})),
                                 img[:, ::-1])) for s in range(20)}
    assert flips == {True, False}                                  # flipped about half the time
    for name, val in [("brightness", 0.2), ("gamma", 0.3), ("noise_std", 0.05), ("rotation_deg", 10.0),
                      ("zoom", 0.2)]:
        out = augment(img, seed, AugmentConfig(**{**OFF, name: val})).numpy()
        assert out.shape == (32, 32, 1) and out.min() >= 0 and out.max() <= 1
        assert np.abs(out - img.numpy()).mean() > 1e-3, name        # each switch really changes pixels
    np.testing.assert_array_equal(augment(img, seed, AugmentConfig()), augment(img, seed, AugmentConfig()))
