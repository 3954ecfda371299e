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
