"""Training-time augmentation for radiographs, stateless and seeded (reproducible).

Every op takes an explicit seed, so a given (seed, epoch, step) always gets the same
augmentation: deterministic runs and exact resume depend on that.

The classifier pipeline augments whole batches in the graph after batching
(:func:`augment_batch`): one draw of a parameter vector per op for the batch (each image
its own value, from the same distributions as before: flip with probability 1/2,
rotation uniform in +-``rotation_deg``, scale uniform in ``1 +- zoom``, brightness uniform
in +-``brightness``, gamma ``exp(uniform(+-gamma))``, Gaussian noise), then one compiled
function for the batch (:func:`apply_parameters`).  :func:`augment` is the same function
on a batch of one.  The detector's :func:`augment_with_boxes` stays per image: its boxes
are ragged (each image its own number) and move with the pixels.

Why compiled: the augmentation runs on the same cores as the training step, so its CPU
time is taken from the step.  As separate TensorFlow kernels (``ImageProjectiveTransformV3``,
``tf.pow``, ``stateless_normal``, the largest in that order) it took about a third of the
TB CNN's step at 128 px on two cores.  XLA fuses the bilinear resampling
(:func:`sample_affine`, the flip folded into each image's transform), brightness, gamma
(``exp(g log x)``), the noise (:func:`gaussian_noise`) and the clips into a few loops over
the batch, reading its uint8 pixels directly.  ``python -m tfxr.benchmark input`` measures
the CPU time per batch of both (BENCHMARKS.md).
"""
from __future__ import annotations

import math

import tensorflow as tf

from tfxr.configs import AugmentConfig  # noqa: F401 - the config lives with the others; importable here too


def affine_transforms(angle: tf.Tensor, scale: tf.Tensor, height, width, flip: tf.Tensor | None = None) -> tf.Tensor:
    """(B, 8) projective transforms: rotate by ``angle`` (radians) and zoom by ``scale``
    around the image centre, one row per image (ImageProjectiveTransformV3's layout:
    output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2)).  ``flip`` (B,)
    bool: image i is first mirrored left-right where ``flip[i]`` (its input column x is read
    as W - 1 - x: the x row becomes (-a0, -a1, W - 1 - a2))."""
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    c, s = tf.cos(angle) / scale, tf.sin(angle) / scale
    zero = tf.zeros_like(c)
    row_x = [c, -s, cx - c * cx + s * cy]
    if flip is not None:
        sign = tf.where(flip, -1.0, 1.0)
        row_x = [row_x[0] * sign, row_x[1] * sign, row_x[2] * sign + tf.where(flip, w - 1, 0.0)]
    return tf.stack(row_x + [s, c, cy - s * cx - c * cy, zero, zero], axis=1)


def reflect(coords: tf.Tensor, length) -> tf.Tensor:
    """Pixel coordinates mirrored into [-0.5, length - 0.5] about the image's edges, the
    edge pixel repeated (``... c b a | a b c ... x y z | z y x ...``: the pattern of
    ImageProjectiveTransformV3's ``REFLECT``)."""
    period = 2.0 * length
    coords = tf.math.floormod(coords + 0.5, period) - 0.5
    return tf.where(coords > length - 0.5, period - 1.0 - coords, coords)


def sample_affine(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """``images`` (B, H, W, C) resampled bilinearly at each image's transform
    (:func:`affine_transforms`), coordinates outside the image reflected (:func:`reflect`).

    Inside the image this is ImageProjectiveTransformV3 (BILINEAR, REFLECT); within a
    pixel of the edge it differs: that op reads the fill value 0 for a neighbour outside
    the image after reflecting, which darkens a border line of rotated images; here the
    reflected coordinate's neighbours are clamped to the image, so the edge pixel repeats."""
    shape = tf.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    xs = tf.cast(tf.range(width), tf.float32)[None, None, :]
    ys = tf.cast(tf.range(height), tf.float32)[:, None][None]

    def row(i):
        return transforms[:, i][:, None, None]
    x = reflect(row(0) * xs + row(1) * ys + row(2), w)          # (B, H, W)
    y = reflect(row(3) * xs + row(4) * ys + row(5), h)
    x0, y0 = tf.floor(x), tf.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)      # the neighbours, then clamped
    x0, x1 = tf.clip_by_value(x0, 0, width - 1), tf.clip_by_value(x0 + 1, 0, width - 1)
    y0, y1 = tf.clip_by_value(y0, 0, height - 1), tf.clip_by_value(y0 + 1, 0, height - 1)
    pixels = tf.reshape(images, [-1, channels])
    first = tf.range(batch)[:, None, None] * (height * width)

    def at(yi, xi):
        return tf.gather(pixels, first + yi * width + xi)       # (B, H, W, C)
    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


def affine_batch(images: tf.Tensor, angle: tf.Tensor, scale: tf.Tensor, flip: tf.Tensor | None = None) -> tf.Tensor:
    """Rotate image i of ``images`` (B, H, W, C) by ``angle[i]`` (radians) and zoom it by
    ``scale[i]`` around its centre, bilinear, edges reflected (:func:`sample_affine`), after
    mirroring it left-right where ``flip[i]``; compiled with XLA."""
    shape = tf.shape(images)
    return _compiled_affine(images, affine_transforms(angle, scale, shape[1], shape[2], flip))


_compiled_affine = tf.function(sample_affine, jit_compile=True)


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


#: the noise's uniforms lie in [-LIMIT, LIMIT]: erfinv(+-1) is infinite (this keeps |z| < 5.4)
UNIFORM_LIMIT = 1.0 - 2.0 ** -24


def gaussian_noise(shape, seed: tf.Tensor) -> tf.Tensor:
    """Standard normal values of ``shape``, stateless from ``seed`` (int shape [2]): uniforms
    (the threefry generator) through the inverse normal CDF, sqrt(2) erfinv(u).  Meant for
    the compiled :func:`apply_parameters`, where XLA's erfinv is a polynomial and its
    threefry vectorises (cheaper on the CPU than ``stateless_normal``'s kernel)."""
    uniforms = tf.random.stateless_uniform(shape, seed, -UNIFORM_LIMIT, UNIFORM_LIMIT, alg="threefry")
    return math.sqrt(2.0) * tf.math.erfinv(uniforms)


def _apply(images, transforms, flip, brightness, gamma, noise_seed, noise_std: float):
    """The ops of :func:`apply_parameters` on the batch; ``None`` skips one."""
    def each(v):      # a (B,) vector against (B, H, W, C) images
        return v[:, None, None, None]
    if images.dtype == tf.uint8:
        images = tf.cast(images, tf.float32) / 255.0
    if transforms is not None:
        images = sample_affine(images, transforms)
    elif flip is not None:
        images = tf.where(each(flip), tf.reverse(images, axis=[2]), images)
    if brightness is not None:
        images = images + each(brightness)
    if gamma is not None:     # x ** g as exp(g log x): log 0 = -inf gives 0, as pow does for g > 0
        images = tf.exp(each(gamma) * tf.math.log(tf.clip_by_value(images, 0.0, 1.0)))
    if noise_seed is not None:
        images = images + noise_std * gaussian_noise(tf.shape(images), noise_seed)
    return tf.clip_by_value(images, 0.0, 1.0)


_compiled_apply = tf.function(_apply, jit_compile=True)


def apply_parameters(images: tf.Tensor, p: dict, cfg: AugmentConfig) -> tf.Tensor:
    """Augment ``images`` (B, H, W, C), float32 in [0, 1] or uint8 (read as x / 255), with
    the drawn parameters ``p`` (:func:`draw_parameters`): flip, rotate/zoom, add brightness,
    raise to gamma (after clipping to [0, 1]), add noise, clip to [0, 1]; one XLA-compiled
    function.  Returns float32."""
    geometric = cfg.rotation_deg > 0 or cfg.zoom > 0
    shape = tf.shape(images)
    transforms = (affine_transforms(p["angle"], p["scale"], shape[1], shape[2], p["flip"] if cfg.flip else None)
                  if geometric else None)
    return _compiled_apply(images, transforms, p["flip"] if cfg.flip and not geometric else None,
                           p["brightness"] if cfg.brightness > 0 else None,
                           p["gamma"] if cfg.gamma > 0 else None,
                           p["noise_seed"] if cfg.noise_std > 0 else None, float(cfg.noise_std))


def augment_batch(images: tf.Tensor, seed: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """images: (B, H, W, C) float32 in [0, 1] or uint8; seed: int32/int64 shape [2] (the
    batch's: the pipeline passes (epoch seed, step)).  Returns float32 of the same shape;
    each image gets its own parameters (:func:`draw_parameters`)."""
    if not cfg.enabled:
        return tf.cast(images, tf.float32) / 255.0 if images.dtype == tf.uint8 else images
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
