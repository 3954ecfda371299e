"""DCGAN generator and discriminator for grey-scale chest X-rays (Radford et al., 2016).

Generator: a ``latent_dim``-dimensional standard-normal noise vector -> Dense ->
reshape to a small map (7x7 for 28 px, 4x4 for 64/128 px) -> strided transposed
convolutions that double the size, each followed by batch normalisation and ReLU,
ending in one ``tanh`` channel, so images are in [-1, 1].

Discriminator: strided convolutions that halve the size, each followed by LeakyReLU(0.2)
and dropout, then one linear unit: a *logit*, so the same network serves the
non-saturating BCE loss and the hinge loss.

These are not classifiers, so they are not in the ``tfxr.models.MODELS`` registry; their
parameter and FLOP counts come from the same :func:`tfxr.models.model_report`.
"""
from __future__ import annotations

import math
import warnings

import keras
import numpy as np

#: the noise stream of the images a generator makes for a user (see :func:`generate`)
SAMPLE_STREAM = 0x6A4
#: image sizes the generator can produce (powers of two times its start map)
IMAGE_SIZES = (28, 64, 128)
LATENT_DIM = 100


def _start_size(image_size: int) -> int:
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image size {image_size} is not supported by the DCGAN (allowed: "
                         f"{', '.join(map(str, IMAGE_SIZES))})")
    return 7 if image_size == 28 else 4


def upsampling_steps(image_size: int) -> int:
    """How many stride-2 layers take the start map to ``image_size`` (2 for 28 px, 4 for 64)."""
    return int(round(math.log2(image_size / _start_size(image_size))))


def build_generator(image_size: int = 64, latent_dim: int = LATENT_DIM, base_filters: int = 64,
                    batch_norm: bool = True) -> keras.Model:
    """Noise (latent_dim,) -> image (image_size, image_size, 1) in [-1, 1].

    The widest layer has ``base_filters * 2**(steps-1)`` filters and each upsampling
    halves the width, as in DCGAN.  ``batch_norm=False`` exists for exactness tests
    (batch statistics are per worker, so a 2-worker step is not bit-equal to one
    process on the union batch with batch norm on).
    """
    start, steps = _start_size(image_size), upsampling_steps(image_size)
    widths = [base_filters * 2 ** (steps - 1 - i) for i in range(steps)]
    noise = keras.Input((latent_dim,), name="noise")
    x = keras.layers.Dense(start * start * widths[0], use_bias=not batch_norm, name="project")(noise)
    if batch_norm:
        x = keras.layers.BatchNormalization(momentum=0.9, name="project_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Reshape((start, start, widths[0]))(x)
    for i, width in enumerate(widths[1:], start=1):
        x = keras.layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=not batch_norm,
                                         name=f"up{i}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"up{i}_bn")(x)
        x = keras.layers.ReLU()(x)
    image = keras.layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="tanh",
                                         dtype="float32", name=f"up{steps}")(x)
    return keras.Model(noise, image, name=f"dcgan_generator_{image_size}")


def build_discriminator(image_size: int = 64, base_filters: int = 64, dropout: float = 0.3,
                        seed: int | None = None) -> keras.Model:
    """Image (image_size, image_size, 1) in [-1, 1] -> one real-vs-fake logit."""
    steps = upsampling_steps(image_size)
    image = keras.Input((image_size, image_size, 1), name="image")
    x = image
    for i in range(steps):
        x = keras.layers.Conv2D(base_filters * 2 ** i, 4, strides=2, padding="same", name=f"down{i + 1}")(x)
        x = keras.layers.LeakyReLU(0.2)(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=None if seed is None else seed + i,
                                       name=f"dropout{i + 1}")(x)
    x = keras.layers.Flatten()(x)
    logit = keras.layers.Dense(1, dtype="float32", name="logit")(x)
    return keras.Model(image, logit, name=f"dcgan_discriminator_{image_size}")


def latent_dim_of(generator: keras.Model) -> int:
    """The noise size a saved generator expects."""
    return int(generator.inputs[0].shape[-1])


def generate(generator: keras.Model, count: int, seed: int, batch_size: int = 256) -> np.ndarray:
    """``count`` images of ``generator``, float32 (count, size, size, channels), in its own
    output range ([-1, 1] for tfxr's tanh generator), from standard-normal noise drawn by
    ``numpy.random.default_rng([seed, SAMPLE_STREAM])``.

    The one sampler: ``tfxr.gan sample``, ``tfxr.gan balance`` and ``tfxr.evaluate gan``
    draw through it, so one seed means the same images in all three (the batch size only
    splits the same noise stream).
    """
    latent = latent_dim_of(generator)
    rng = np.random.default_rng([seed, SAMPLE_STREAM])
    out = []
    for start in range(0, count, batch_size):
        noise = rng.standard_normal((min(batch_size, count - start), latent)).astype(np.float32)
        with warnings.catch_warnings():   # a loaded model names its input; a tensor is fine
            warnings.filterwarnings("ignore", message="The structure of `inputs`")
            out.append(np.asarray(generator(noise, training=False), np.float32))
    if not out:
        return np.zeros((0, *generator.outputs[0].shape[1:]), np.float32)
    return np.concatenate(out)
