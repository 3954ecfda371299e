"""DCGAN generator/discriminator shapes, ranges and parameter counts at every image size."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("size,steps", [(28, 2), (64, 4), (128, 5)])
def test_generator_and_discriminator_shapes(size, steps):
    from tfxr.models import model_report
    from tfxr.models.dcgan import build_discriminator, build_generator, latent_dim_of, upsampling_steps

    assert upsampling_steps(size) == steps
    gen = build_generator(size, base_filters=4)
    disc = build_discriminator(size, base_filters=4, dropout=0.3, seed=1)
    noise = np.random.default_rng(0).standard_normal((3, 100)).astype(np.float32)
    images = gen(noise, training=False).numpy()
    assert images.shape == (3, size, size, 1)
    assert images.min() >= -1.0 and images.max() <= 1.0          # tanh
    assert disc(images, training=False).numpy().shape == (3, 1)   # one logit
    assert latent_dim_of(gen) == 100
    transposed = [layer for layer in gen.layers if "Conv2DTranspose" in type(layer).__name__]
    assert len(transposed) == steps
    # parameter count of the generator by hand for the 28-px case: Dense 100->7*7*8 (no bias) +
    # BN(392*4) + ConvT(4x4, 8->4, no bias) + BN(4*4) + ConvT(4x4, 4->1) + bias
    if size == 28:
        expected = 100 * 392 + 4 * 392 + 16 * 8 * 4 + 4 * 4 + 16 * 4 + 1
        assert model_report(gen)["params"] == expected


def test_unsupported_size_is_rejected():
    from tfxr.models.dcgan import build_generator

    with pytest.raises(ValueError, match="28, 64, 128"):
        build_generator(32)
