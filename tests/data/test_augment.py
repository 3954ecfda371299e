"""Batched in-graph augmentation (tfxr.data.augment.augment_batch): exact flips, identity
parameters, rotation direction, parameter distributions, image-by-image equality, and the
compiled ops against TensorFlow's own (ImageProjectiveTransformV3, pow, a normal sample)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from tfxr.data.augment import (AugmentConfig, affine_batch, affine_transforms, apply_parameters, augment,
                               augment_batch, draw_parameters, gaussian_noise, reflect)

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


# --------------------------------------------------------------------------- the compiled ops vs TensorFlow's
def _projective_op(images, transforms):
    """TensorFlow's own kernel, as the augmentation ran before it was compiled."""
    return tf.raw_ops.ImageProjectiveTransformV3(images=images, transforms=transforms,
                                                 output_shape=tf.shape(images)[1:3], fill_value=0.0,
                                                 interpolation="BILINEAR", fill_mode="REFLECT")


def test_the_resampler_equals_tensorflows_projective_transform_inside_the_image():
    images = _batch(16, 24, seed=3)
    rng = np.random.default_rng(4)
    angle = tf.constant(rng.uniform(-0.4, 0.4, 16), tf.float32)
    scale = tf.constant(rng.uniform(0.75, 1.25, 16), tf.float32)
    ours = affine_batch(images, angle, scale).numpy()
    transforms = affine_transforms(angle, scale, 24, 24)
    theirs = _projective_op(images, transforms).numpy()
    t = transforms.numpy()[:, :, None, None]
    ys, xs = np.mgrid[0:24, 0:24].astype(np.float32)
    x_in, y_in = t[:, 0] * xs + t[:, 1] * ys + t[:, 2], t[:, 3] * xs + t[:, 4] * ys + t[:, 5]
    inside = (x_in >= 0) & (x_in <= 23) & (y_in >= 0) & (y_in <= 23)
    assert inside.mean() > 0.8 and (~inside).sum() > 100          # both kinds of pixel are tested
    np.testing.assert_allclose(ours[..., 0][inside], theirs[..., 0][inside], atol=1e-5)
    assert ours.min() >= 0 and ours.max() <= 1


def test_coordinates_outside_the_image_are_mirrored_with_the_edge_pixel_repeated():
    # ... c b a | a b c d | d c b ...: -1 -> 0, -2 -> 1, 4 -> 3, 5 -> 2 (length 4)
    got = reflect(tf.constant([-2.0, -1.0, 0.0, 1.5, 3.0, 4.0, 5.0, 6.0, 9.0]), 4.0).numpy()
    np.testing.assert_allclose(got, [1.0, 0.0, 0.0, 1.5, 3.0, 3.0, 2.0, 1.0, 1.0], atol=1e-6)
    # zoomed out 2x about the centre: each output column reads input column 2 (x - 3.5) + 3.5,
    # i.e. -3.5, -1.5, ..., 10.5, mirrored into the 8 columns as numpy's "symmetric" padding does
    ramp = tf.constant(np.tile(np.arange(8, dtype=np.float32), (8, 1))[None, ..., None])
    row = affine_batch(ramp, tf.constant([0.0]), tf.constant([0.5])).numpy()[0, 4, :, 0]
    padded = np.pad(np.arange(8, dtype=np.float32), 8, mode="symmetric")
    expected = np.interp(2 * (np.arange(8) - 3.5) + 3.5 + 8, np.arange(24), padded)
    np.testing.assert_allclose(row, expected, atol=1e-5)


def test_a_flip_folded_into_the_transform_equals_flipping_first():
    images = _batch(8, 20, seed=5)
    angle, scale = tf.linspace(-0.2, 0.2, 8), tf.linspace(0.9, 1.1, 8)
    flip = tf.constant([True, False, True, True, False, False, True, False])
    first = affine_batch(tf.where(flip[:, None, None, None], tf.reverse(images, [2]), images), angle, scale)
    np.testing.assert_allclose(affine_batch(images, angle, scale, flip), first, atol=2e-6)


def test_gamma_as_exp_log_equals_pow_and_uint8_input_reads_as_x_over_255():
    images = tf.concat([_batch(7, 16, seed=6), tf.zeros([1, 16, 16, 1])], 0)    # exact zeros too
    cfg = AugmentConfig(**{**OFF, "gamma": 0.4})
    p = draw_parameters(tf.constant([2, 3], tf.int64), 8, cfg)
    expected = tf.pow(images, p["gamma"][:, None, None, None])
    np.testing.assert_allclose(apply_parameters(images, p, cfg), expected, atol=2e-6)
    pixels = tf.constant(np.random.default_rng(7).integers(0, 256, (4, 16, 16, 1)), tf.uint8)
    seed = tf.constant([4, 4], tf.int64)
    as_float = tf.cast(pixels, tf.float32) / 255.0
    for aug in (AugmentConfig(), AugmentConfig(enabled=False)):
        out = augment_batch(pixels, seed, aug)
        assert out.dtype == tf.float32
        np.testing.assert_allclose(out, augment_batch(as_float, seed, aug), atol=2e-6)


def test_the_noise_is_standard_normal_and_seeded():
    draw = tf.function(lambda seed: gaussian_noise([400, 500], seed), jit_compile=True)
    z = draw(tf.constant([1, 2], tf.int64)).numpy()
    assert np.isfinite(z).all() and np.abs(z).max() < 5.5
    assert abs(z.mean()) < 0.01 and z.std() == pytest.approx(1.0, abs=0.01)
    for k, share in [(1, 0.6827), (2, 0.9545), (3, 0.9973)]:       # the normal's 68-95-99.7 rule
        assert (np.abs(z) < k).mean() == pytest.approx(share, abs=0.003)
    np.testing.assert_array_equal(z, draw(tf.constant([1, 2], tf.int64)))
    assert np.abs(z - draw(tf.constant([1, 3], tf.int64)).numpy()).mean() > 0.5
