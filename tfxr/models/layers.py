"""Custom Keras layers shared by the models (registered, so .keras files load by name)."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfxr")
class PerImageStandardization(keras.layers.Layer):
    """(x - mean) / max(std, eps) over each image's pixels and channels.

    Radiographs differ in exposure, contrast and gamma from machine to machine; a small
    CNN without batch normalisation learns much faster on standardised images.
    """

    def __init__(self, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        std = ops.sqrt(ops.mean(ops.square(x - mean), axis=(1, 2, 3), keepdims=True))
        return (x - mean) / ops.maximum(std, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def conv_pool_trunk(input_shape, filters, standardize: bool):
    """``image -> [standardize] -> (Conv2D k 3x3 ReLU same -> MaxPool 2) per k -> flatten``.

    The shared trunk of the small CNNs; layers are named conv{i}_{k}, pool{i}, flatten.
    Returns (inputs, flattened features).
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = PerImageStandardization(name="standardize")(inputs) if standardize else inputs
    for i, k in enumerate(filters, start=1):
        x = keras.layers.Conv2D(k, 3, padding="same", activation="relu", name=f"conv{i}_{k}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    return inputs, keras.layers.Flatten(name="flatten")(x)
