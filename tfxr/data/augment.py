"""Training-time augmentation for radiographs, stateless and seeded (reproducible).

Every op takes an explicit seed, so a given (seed, epoch, example index) always gets
the same augmentation: deterministic runs and exact resume depend on that.
"""
from __future__ import annotations

import math

import tensorflow as tf

from tfxr.configs import AugmentConfig  # noqa: F401 - the config lives with the others; importable here too


def _affine(image: tf.Tensor, angle: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """Rotate by angle (radians) and zoom by scale around the centre; edges reflect."""
    h = tf.cast(tf.shape(image)[0], tf.float32)
    w = tf.cast(tf.shape(image)[1], tf.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    c, s = tf.cos(angle) / scale, tf.sin(angle) / scale
    # output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2)
    transform = tf.stack([c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy, 0.0, 0.0])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform[None], output_shape=tf.shape(image)[:2],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    return out[0]


def augment(image: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """image: HxWxC float32 in [0, 1]; seed: int32/int64 shape [2]. Returns the same shape."""
    if not cfg.enabled:
        return image
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
    if cfg.flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    if cfg.rotation_deg > 0 or cfg.zoom > 0:
        angle = tf.random.stateless_uniform([], seeds[1], -1.0, 1.0) * (cfg.rotation_deg * math.pi / 180)
        scale = 1.0 + tf.random.stateless_uniform([], seeds[2], -1.0, 1.0) * cfg.zoom
        image = _affine(image, angle, scale)
    if cfg.brightness > 0:
        image = image + tf.random.stateless_uniform([], seeds[3], -cfg.brightness, cfg.brightness)
    if cfg.gamma > 0:
        g = tf.exp(tf.random.stateless_uniform([], seeds[4], -cfg.gamma, cfg.gamma))
        image = tf.pow(tf.clip_by_value(image, 0.0, 1.0), g)
    if cfg.noise_std > 0:
        image = image + tf.random.stateless_normal(tf.shape(image), seeds[5], stddev=cfg.noise_std)
    return tf.clip_by_value(image, 0.0, 1.0)


#: a box keeps going when at least this fraction of its area is left inside a crop
MIN_VISIBLE = 0.4


def augment_with_boxes(image: tf.Tensor, labels: tf.Tensor, boxes: tf.Tensor, seed: tf.Tensor,
                       cfg: AugmentConfig) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Box-aware augmentation for detection; returns (image, labels, boxes).

    image: HxWxC float32 in [0, 1]; boxes: (n, 4) normalised (xmin, ymin, xmax, ymax),
    ``labels`` (n,).  The geometric ops move the boxes with the pixels: a horizontal flip
    (``cfg.flip``) and a scale/crop (``cfg.zoom``: a random crop of 1 / s of each side,
    s uniform in [1, 1 + zoom], resized back to H x W).  A box is clipped to the crop and
    dropped when less than :data:`MIN_VISIBLE` of its area is left; an image without boxes
    stays a negative.  Rotation (``cfg.rotation_deg``) is not applied: a rotated box is no
    longer axis-aligned.  Brightness, gamma and noise follow as in :func:`augment`.
    """
    labels = tf.convert_to_tensor(labels)
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    if not cfg.enabled:
        return image, labels, boxes
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    if cfg.flip:
        flip = tf.random.stateless_uniform([], seeds[0]) < 0.5
        image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
        flipped = tf.stack([1.0 - boxes[:, 2], boxes[:, 1], 1.0 - boxes[:, 0], boxes[:, 3]], axis=1)
        boxes = tf.where(flip, flipped, boxes)
    if cfg.zoom > 0:
        scale = 1.0 + tf.random.stateless_uniform([], seeds[1], 0.0, 1.0) * cfg.zoom
        side = 1.0 / scale
        origin = tf.random.stateless_uniform([2], seeds[2], 0.0, 1.0) * (1.0 - side)   # (x0, y0)
        x0, y0 = origin[0], origin[1]
        size = tf.shape(image)[:2]
        image = tf.image.crop_and_resize(image[None], [[y0, x0, y0 + side, x0 + side]], [0], size,
                                         method="bilinear")[0]
        moved = (boxes - tf.stack([x0, y0, x0, y0])) / side
        clipped = tf.clip_by_value(moved, 0.0, 1.0)

        def area(b):
            return tf.maximum(b[:, 2] - b[:, 0], 0.0) * tf.maximum(b[:, 3] - b[:, 1], 0.0)
        keep = area(clipped) >= MIN_VISIBLE * area(moved)
        keep &= area(clipped) > 0
        boxes, labels = tf.boolean_mask(clipped, keep), tf.boolean_mask(labels, keep)
    photometric = AugmentConfig(enabled=True, flip=False, rotation_deg=0.0, zoom=0.0, brightness=cfg.brightness,
                                gamma=cfg.gamma, noise_std=cfg.noise_std)
    return augment(image, seeds[3], photometric), labels, boxes
