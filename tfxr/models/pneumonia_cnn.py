"""Two-conv-layer CNN for pneumonia classification from chest X-rays.

Architecture (layer names in brackets)::

    image (H, W, C)                                          [image]
    per-image standardisation (optional, default on)         [standardize]
    Conv2D 32, 3x3, ReLU, same  -> MaxPooling2D 2            [conv1_32, pool1]
    Conv2D 64, 3x3, ReLU, same  -> MaxPooling2D 2            [conv2_64, pool2]
    Flatten                                                  [flatten]
    Dense(128, ReLU) -> Dropout(dropout)                     [fc1_128, dropout]
    Dense(num_outputs, sigmoid), float32                     [pneumonia_probability]

At 128x128x1 this has 8,407,681 parameters (8,388,736 of them in ``fc1_128``, which sees
the whole 32x32x64 feature map) and 177,209,600 FLOPs per image.
"""
from __future__ import annotations

from typing import Sequence

import keras

from ._common import check_head, check_input_shape
from .layers import conv_pool_trunk

FILTERS = (32, 64)
HIDDEN_UNITS = 128


def build_pneumonia_cnn(
    input_shape: Sequence[int] = (128, 128, 1),
    num_outputs: int = 1,
    dropout: float = 0.5,
    name: str = "pneumonia_cnn",
    standardize: bool = True,
) -> keras.Model:
    """Build the pneumonia classifier (2 conv + 2 fully-connected layers, sigmoid output).

    The output Dense runs in float32 so it stays float32 under a mixed-precision policy.
    """
    shape = check_input_shape(input_shape, min_size=2 ** len(FILTERS), model=name)
    check_head(num_outputs, dropout, model=name)

    inputs, x = conv_pool_trunk(shape, FILTERS, standardize)
    x = keras.layers.Dense(HIDDEN_UNITS, activation="relu", name=f"fc1_{HIDDEN_UNITS}")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(
        num_outputs, activation="sigmoid", dtype="float32", name="pneumonia_probability"
    )(x)
    return keras.Model(inputs, outputs, name=name)
