"""Class activation maps: where in the image a classifier's output for one label comes from.

Maps from gradients at the last convolutional feature map (found automatically, or named
with ``--layer``), ReLU'd, upsampled (bilinear) to the image and scaled to a maximum of 1:

* ``hirescam`` (the default), HiResCAM (Draelos & Carin 2020): gradient times activation
  element-wise, summed over channels;
* ``gradcam``, Grad-CAM (Selvaraju et al. 2017): the gradient averaged over space weights
  each channel.

For a head that global-average-pools the feature map (CheXNet) the two are the same map;
for a Flatten + Dense head (tfxr's small CNNs) averaging the gradient discards where each
weight looks (measured in :mod:`tfxr.evaluation.localization`).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfxr.configs import CAM_METHODS  # the map each ``--cam`` value computes (the first is the default)
from tfxr.errors import ConfigError


def find_last_conv_layer(model) -> str:
    """Name of the last convolution layer (searching nested models too)."""
    def convs(m):
        for layer in m.layers:
            if hasattr(layer, "layers"):
                yield from convs(layer)
            elif "Conv" in type(layer).__name__ and len(layer.output.shape) == 4:
                yield layer
    found = list(convs(model))
    if not found:
        raise ConfigError(f"model {model.name}: no convolution layer for a class activation map; name one with --layer")
    return found[-1].name


class ClassActivationMaps:
    """Class activation maps of a Keras model at one 4-D layer (top level or in a nested model):
    HiResCAM by default, Grad-CAM with ``method="gradcam"`` (see :data:`CAM_METHODS`)."""

    def __init__(self, model, layer: str = "", method: str = "hirescam"):
        if method not in CAM_METHODS:
            raise ConfigError(f"--cam {method}: unknown (allowed: {', '.join(CAM_METHODS)})")
        self.method = method
        self.model = model
        self.layer = layer or find_last_conv_layer(model)
        owner = self._owner(model, self.layer)
        if owner is model:
            self.stages = [keras.Model(model.inputs, [model.get_layer(self.layer).output, model.output])]
            self.before, self.after = [], []
        else:   # a nested backbone (CheXNet's DenseNet121): the outer graph before and after it
            node = owner._inbound_nodes[-1]
            self.before = [keras.Model(model.inputs, node.input_tensors[0])]
            self.after = [keras.Model(node.output_tensors[0], model.outputs[0])]
            self.stages = [keras.Model(owner.inputs, [owner.get_layer(self.layer).output, owner.output])]
        shape = self.stages[0].outputs[0].shape
        if len(shape) != 4:
            raise ConfigError(f"--layer {self.layer}: output shape {tuple(shape)} is not a 4-D feature map")

    @staticmethod
    def _owner(model, name: str):
        for layer in model.layers:
            if layer.name == name:
                return model
        for layer in model.layers:
            if hasattr(layer, "layers"):
                try:
                    layer.get_layer(name)
                    return layer
                except ValueError:
                    continue
        raise ConfigError(f"--layer {name}: no such layer in model {model.name}")

    def _forward(self, x):
        for layer in self.before:
            x = layer(x, training=False)
        features, out = self.stages[0](x, training=False)
        for layer in self.after:
            out = layer(out, training=False)
        return features, out

    def __call__(self, images: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
        """(heatmaps (N, H, W) in [0, 1] at the image size, probabilities (N, labels))."""
        x = tf.convert_to_tensor(images, tf.float32)
        with tf.GradientTape() as tape:
            features, out = self._forward(x)
            target = tf.reduce_sum(out[:, label])   # images are independent: per-image gradients
        grads = tape.gradient(target, features)
        if self.method == "gradcam":
            grads = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(grads * features, axis=-1, keepdims=True))
        cam = tf.image.resize(cam, images.shape[1:3], method="bilinear")[..., 0].numpy()
        peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
        return np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0), np.asarray(out)
