"""Small CNN for tuberculosis classification from chest X-rays.

Architecture (one block per row, layer names in brackets)::

    image (H, W, C)                                          [image]
    per-image standardisation (optional, default on)         [standardize]
    Conv2D 16, 3x3, ReLU, same  -> MaxPooling2D 2            [conv1_16, pool1]
    Conv2D 32, 3x3, ReLU, same  -> MaxPooling2D 2            [conv2_32, pool2]
    Conv2D 64, 3x3, ReLU, same  -> MaxPooling2D 2            [conv3_64, pool3]
    Flatten -> Dropout(dropout)                              [flatten, dropout]
    Dense(num_outputs, sigmoid), float32                     [tb_probability]

At 128x128x1 this has 39,681 parameters and 80,248,832 FLOPs per image
(see ``tests/models/test_models.py`` for the hand computation).
"""
from __future__ import annotations

from typing import Sequence

import keras

from ._common import check_head, check_input_shape
from .layers import conv_pool_trunk

FILTERS = (16, 32, 64)


def build_tb_cnn(
    input_shape: Sequence[int] = (128, 128, 1),
    num_outputs: int = 1,
    dropout: float = 0.5,
    name: str = "tb_cnn",
    standardize: bool = True,
) -> keras.Model:
    """Build the 3-conv-layer TB classifier; outputs are sigmoid probabilities in [0, 1].

    The output Dense runs in float32 (``dtype="float32"``) so the probabilities and the loss
    stay float32 under a ``mixed_float16``/``mixed_bfloat16`` global policy.
    """
    shape = check_input_shape(input_shape, min_size=2 ** len(FILTERS), model=name)
    check_head(num_outputs, dropout, model=name)

    inputs, x = conv_pool_trunk(shape, FILTERS, standardize)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_outputs, activation="sigmoid", dtype="float32", name="tb_probability")(x)
    return keras.Model(inputs, outputs, name=name)
