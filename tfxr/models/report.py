"""Parameter and FLOP counts of a built Keras model.

FLOPs are counted analytically from the layer shapes, per image (batch size 1), as
2 x multiply-accumulates (MACs) of the layers that do the arithmetic:

* ``Conv1D/2D/3D``: output positions x kernel size (kh x kw x C_in/groups x C_out);
* ``DepthwiseConv1D/2D``: output positions x kh x kw x C_in x depth_multiplier;
* ``SeparableConv1D/2D``: the depthwise part plus the 1x1 pointwise part;
* ``Conv1D/2D/3DTranspose``: input positions x kernel size;
* ``Dense``: input units x output units (x leading non-batch dims, if any).

Not counted: bias additions, activations, batch normalisation, pooling, padding,
concatenation, normalisation/rescaling and other per-element layers (together well under
1% of the total for these models).  This is the usual convention of published figures,
e.g. DenseNet121 at 224x224x3 = 2.87 G MACs = 5.7 GFLOPs.  Nested models (such as the
DenseNet121 inside CheXNet) are counted recursively.  The model must have a fixed input
size.
"""
from __future__ import annotations

import math

import keras

_TRANSPOSE = tuple(
    getattr(keras.layers, n) for n in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
)
_SEPARABLE = tuple(getattr(keras.layers, n) for n in ("SeparableConv1D", "SeparableConv2D"))
_DEPTHWISE = tuple(getattr(keras.layers, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D"))
_CONV = tuple(getattr(keras.layers, n) for n in ("Conv1D", "Conv2D", "Conv3D"))


def _spatial_positions(shape, data_format: str, layer: keras.layers.Layer, which: str) -> int:
    dims = shape[2:] if data_format == "channels_first" else shape[1:-1]
    if any(d is None for d in dims):
        raise ValueError(
            f"count_flops: layer {layer.name!r} has an unknown {which} size {tuple(shape)}; "
            f"build the model with a fixed input shape"
        )
    return math.prod(dims)


def _layer_macs(layer: keras.layers.Layer) -> int:
    """MACs per image of one (non-nested) layer; 0 for layers that are not counted."""
    if isinstance(layer, _TRANSPOSE):
        return _spatial_positions(layer.input.shape, layer.data_format, layer, "input") * math.prod(
            layer.kernel.shape
        )
    if isinstance(layer, _SEPARABLE):
        positions = _spatial_positions(layer.output.shape, layer.data_format, layer, "output")
        return positions * (math.prod(layer.depthwise_kernel.shape) + math.prod(layer.pointwise_kernel.shape))
    if isinstance(layer, _DEPTHWISE):
        positions = _spatial_positions(layer.output.shape, layer.data_format, layer, "output")
        return positions * math.prod(layer.kernel.shape)
    if isinstance(layer, _CONV):
        # kernel: (*kernel_size, C_in / groups, C_out) -> MACs per output position.
        positions = _spatial_positions(layer.output.shape, layer.data_format, layer, "output")
        return positions * math.prod(layer.kernel.shape)
    if isinstance(layer, keras.layers.Dense):
        leading = layer.output.shape[1:-1]
        if any(d is None for d in leading):
            raise ValueError(f"count_flops: layer {layer.name!r} has an unknown input shape")
        return math.prod(leading) * math.prod(layer.kernel.shape)
    return 0


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates per image of ``model`` (see the module docstring)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
        else:
            total += _layer_macs(layer)
    return total


def count_flops(model: keras.Model) -> int:
    """FLOPs per image of ``model``: 2 x :func:`count_macs` (see the module docstring)."""
    return 2 * count_macs(model)


def model_report(model: keras.Model) -> dict[str, int]:
    """``{"params", "trainable_params", "flops_per_image"}`` of a built model."""
    return {
        "params": int(model.count_params()),
        "trainable_params": int(sum(math.prod(w.shape) for w in model.trainable_weights)),
        "flops_per_image": count_flops(model),
    }


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} "


def format_report(name: str, model: keras.Model) -> str:
    """One line for logs, e.g. ``tb_cnn: input (128, 128, 1) -> (None, 1), 39,681 params
    (39,681 trainable), 80.25 MFLOPs/image``."""
    r = model_report(model)
    return (
        f"{name}: input {tuple(model.input_shape[1:])} -> {tuple(model.output_shape)}, "
        f"{r['params']:,} params ({r['trainable_params']:,} trainable), "
        f"{_si(r['flops_per_image'])}FLOPs/image"
    )
