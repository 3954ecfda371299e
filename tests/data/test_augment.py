"""tfxr.data.augment: each switch changes pixels, off is identity, same seed same output
(the box-aware variant: tests/data/test_augment_boxes.py)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfxr.data.augment import AugmentConfig, augment


def _img():
    rng = np.random.default_rng(1)
    base = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32, 1)
    return tf.constant(np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1).astype(np.float32))


OFF = dict(flip=False, rotation_deg=0, zoom=0, brightness=0, gamma=0, noise_std=0)


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
