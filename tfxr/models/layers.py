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


@keras.saving.register_keras_serializable(package="tfxr")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras 3's ``BatchNormalization`` computed by TensorFlow's fused kernel.

    Keras 3 normalises with ``tf.nn.moments`` and ``tf.nn.batch_normalization``: about ten
    element-wise and reduction ops per layer forward and as many backward, each a pass over
    the activations (the traced DenseNet121 step: ``Mean``, ``SquaredDifference``,
    ``Rsqrt``, ``Mul``, ``Sub`` per layer, and no ``FusedBatchNormV3``).  This layer runs
    the same arithmetic as one ``FusedBatchNormV3`` (its gradient ``FusedBatchNormGradV3``;
    oneDNN's ``_MklFusedBatchNormV3`` when oneDNN is on) for 4-D channels-last inputs
    without mask, renorm or synchronisation, and falls back to the Keras layer otherwise.

    Same results (tests/models/test_layers.py, to float32 rounding): statistics in
    float32 as Keras does under mixed precision, the batch's biased variance normalises,
    and the moving variance is updated with the biased variance too (the fused kernel
    returns Bessel's n / (n - 1) corrected one, which is undone).  Weights, config and
    names are the Keras layer's, so checkpoints load either way.
    """

    def _fusable(self, inputs, mask) -> bool:
        axis = self.axis if isinstance(self.axis, int) else None
        return (mask is None and not self.renorm and not self.synchronized and len(inputs.shape) == 4
                and axis in (-1, 3) and self.epsilon >= 1.001e-5 and keras.backend.backend() == "tensorflow")

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        # TensorFlow itself: the fused kernel has no Keras op (lazy: this module stays importable
        # where keras runs on another backend)
        import tensorflow as tf

        x = tf.cast(inputs, "float32")
        channels = x.shape[-1]
        gamma = tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, "float32") if self.center else tf.zeros([channels])
        if training and self.trainable:
            y, mean, unbiased, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=tf.zeros([0]), variance=tf.zeros([0]), epsilon=self.epsilon,
                exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), "float32")
            variance = unbiased * tf.where(n > 1, (n - 1) / tf.maximum(n, 1.0), 1.0)
            m = self.momentum
            self.moving_mean.assign(tf.cast(self.moving_mean, "float32") * m + mean * (1.0 - m))
            self.moving_variance.assign(tf.cast(self.moving_variance, "float32") * m + variance * (1.0 - m))
        else:
            y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"), epsilon=self.epsilon,
                exponential_avg_factor=1.0, data_format="NHWC", is_training=False)
        return tf.cast(y, self.compute_dtype)


def fuse_batch_norms(model: keras.Model) -> keras.Model:
    """A copy of a functional ``model`` (nested models too) with every ``BatchNormalization``
    replaced by :class:`FusedBatchNormalization` of the same config, and its weights."""
    def swap(layer):
        if type(layer) is keras.layers.BatchNormalization:
            return FusedBatchNormalization.from_config(layer.get_config())
        if isinstance(layer, keras.Model):
            return fuse_batch_norms(layer)
        return layer.__class__.from_config(layer.get_config())

    fused = keras.models.clone_model(model, clone_function=swap)
    originals = {layer.name: layer for layer in model.layers}
    for layer in fused.layers:        # layer by layer, by name: the clone may order its weights differently
        if layer.weights and not isinstance(layer, keras.Model):   # a nested model: copied by its own call
            layer.set_weights(originals[layer.name].get_weights())
    return fused
