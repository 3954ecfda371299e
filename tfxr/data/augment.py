"""Training-time augmentation for radiographs, stateless and seeded (reproducible).

Every op takes an explicit seed, so a given (seed, epoch, step) always gets the same
augmentation: deterministic runs and exact resume depend on that.

The classifier pipeline augments whole batches in the graph after batching
(:func:`augment_batch`): one draw of a parameter vector per op for the batch (each image
its own value, from the same distributions as before: flip with probability 1/2,
rotation uniform in +-``rotation_deg``, scale uniform in ``1 +- zoom``, brightness uniform
in +-``brightness``, gamma ``exp(uniform(+-gamma))``, Gaussian noise), one
``ImageProjectiveTransformV3`` for the batch's rotations and zooms, and the photometric
ops on the batch tensor.  :func:`augment` is the same function on a batch of one.  The
detector's :func:`augment_with_boxes` stays per image: its boxes are ragged (each image
its own number) and move with the pixels.
"""
from __future__ import annotations

import math

import tensorflow as tf

from tfxr.configs import AugmentConfig  # noqa: F401 - the config lives with the others; importable here too


def affine_transforms(angle: tf.Tensor, scale: tf.Tensor, height, width) -> tf.Tensor:
    """(B, 8) projective transforms: rotate by ``angle`` (radians) and zoom by ``scale``
    around the image centre, one row per image (ImageProjectiveTransformV3's layout:
    output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2))."""
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    c, s = tf.cos(angle) / scale, tf.sin(angle) / scale
    zero = tf.zeros_like(c)
    return tf.stack([c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy, zero, zero], axis=1)


def affine_batch(images: tf.Tensor, angle: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """Rotate image i of ``images`` (B, H, W, C) by ``angle[i]`` (radians) and zoom it by
    ``scale[i]`` around its centre, bilinear, edges reflected; one op for the batch."""
    shape = tf.shape(images)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=affine_transforms(angle, scale, shape[1], shape[2]), output_shape=shape[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")


def draw_parameters(seed: tf.Tensor, batch, cfg: AugmentConfig) -> dict:
    """The per-image parameters of one batch, each a (batch,) vector drawn from ``seed``
    (int shape [2]): ``flip`` (bool, p = 1/2), ``angle`` (radians), ``scale``,
    ``brightness`` (additive), ``gamma`` (exponent), and ``noise_seed`` (the seed of the
    batch's Gaussian noise).  An op switched off gets its identity value."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
    ones, zeros = tf.ones([batch]), tf.zeros([batch])

    def uniform(i, half):
        return tf.random.stateless_uniform([batch], seeds[i], -1.0, 1.0) * half

    return {"flip": (tf.random.stateless_uniform([batch], seeds[0]) < 0.5) if cfg.flip else tf.zeros([batch], tf.bool),
            "angle": uniform(1, cfg.rotation_deg * math.pi / 180) if cfg.rotation_deg > 0 else zeros,
            "scale": 1.0 + uniform(2, cfg.zoom) if cfg.zoom > 0 else ones,
            "brightness": uniform(3, cfg.brightness) if cfg.brightness > 0 else zeros,
            "gamma": tf.exp(uniform(4, cfg.gamma)) if cfg.gamma > 0 else ones,
            "noise_seed": seeds[5]}


def apply_parameters(images: tf.Tensor, p: dict, cfg: AugmentConfig) -> tf.Tensor:
    """Augment ``images`` (B, H, W, C) float32 in [0, 1] with the drawn parameters ``p``
    (:func:`draw_parameters`): flip, rotate/zoom, add brightness, raise to gamma (after
    clipping to [0, 1]), add noise, clip to [0, 1]."""
    def each(v):      # a (B,) vector against (B, H, W, C) images
        return v[:, None, None, None]
    if cfg.flip:
        images = tf.where(each(p["flip"]), tf.reverse(images, axis=[2]), images)
    if cfg.rotation_deg > 0 or cfg.zoom > 0:
        images = affine_batch(images, p["angle"], p["scale"])
    if cfg.brightness > 0:
        images = images + each(p["brightness"])
    if cfg.gamma > 0:
        images = tf.pow(tf.clip_by_value(images, 0.0, 1.0), each(p["gamma"]))
    if cfg.noise_std > 0:
        images = images + tf.random.stateless_normal(tf.shape(images), p["noise_seed"], stddev=cfg.noise_std)
    return tf.clip_by_value(images, 0.0, 1.0)


def augment_batch(images: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """images: (B, H, W, C) float32 in [0, 1]; seed: int32/int64 shape [2] (the batch's:
    the pipeline passes (epoch seed, step)).  Returns the same shape; each image gets its
    own parameters (:func:`draw_parameters`)."""
    if not cfg.enabled:
        return images
    return apply_parameters(images, draw_parameters(seed, tf.shape(images)[0], cfg), cfg)


def augment(image: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """image: HxWxC float32 in [0, 1]; seed: int32/int64 shape [2]. Returns the same shape
    (:func:`augment_batch` on a batch of one)."""
    if not cfg.enabled:
        return image
    return augment_batch(image[None], seed, cfg)[0]


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
