"""The chest X-ray models, a registry to build them by name, and parameter/FLOP reports.

========================  =====================================================  ===

name                      architecture                                           output
========================  =====================================================  ===

``tb_cnn``                3x (Conv2D 16/32/64 + max-pool), dropout, dense        sigmoid
``pneumonia_cnn``         2x (Conv2D 32/64 + max-pool), Dense 128 + dropout,     sigmoid
                          dense
``chexnet``               grey->RGB, ImageNet normalisation, DenseNet121,        sigmoid
                          dense (14 ChestX-ray14 pathologies)
========================  =====================================================  ===


Every model takes float images in [0, 1] of shape (H, W, C) and ends in a float32 Dense
with sigmoid units, so it also works under a mixed-precision global policy.
"""
from __future__ import annotations

import inspect
from typing import Callable, Sequence, Union

import keras

from .chexnet import CHEXNET_LABELS, build_chexnet, load_weights_file
from .pneumonia_cnn import build_pneumonia_cnn
from .tb_cnn import build_tb_cnn

#: name -> builder(input_shape=(H, W, C), num_outputs=..., **kwargs) -> keras.Model
MODELS: dict[str, Callable[..., keras.Model]] = {
    "tb_cnn": build_tb_cnn,
    "pneumonia_cnn": build_pneumonia_cnn,
    "chexnet": build_chexnet,
}


_REPORT_NAMES = ("count_flops", "count_macs", "format_report", "model_report")


def __getattr__(name: str):
    """The report functions, imported on first use: importing ``.report`` here eagerly
    would make ``python -m tfxr.models.report`` run that module twice (runpy warning)."""
    if name in _REPORT_NAMES:
        from . import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_accepts(name: str, option: str) -> bool:
    """Whether the builder of model ``name`` takes the keyword ``option`` (e.g. ``weights``)."""
    return option in inspect.signature(MODELS[name]).parameters


def build_model(
    name: str,
    image_size: Union[int, Sequence[int]],
    channels: int = 1,
    num_outputs: int = 1,
    **kwargs,
) -> keras.Model:
    """Build the registered model ``name`` for ``image_size`` x ``image_size`` x ``channels``
    images (``image_size`` may also be a ``(height, width)`` pair) with ``num_outputs``
    sigmoid outputs.  ``kwargs`` go to the builder (``dropout``, and for CheXNet
    ``weights``).  Raises ``ValueError`` for an unknown name.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(sorted(MODELS))}")
    if isinstance(image_size, int):
        height = width = image_size
    else:
        height, width = image_size
    return MODELS[name](input_shape=(height, width, channels), num_outputs=num_outputs, **kwargs)


__all__ = [
    "CHEXNET_LABELS",
    "MODELS",
    "build_chexnet",
    "build_model",
    "build_pneumonia_cnn",
    "build_tb_cnn",
    "count_flops",
    "count_macs",
    "format_report",
    "load_weights_file",
    "model_accepts",
    "model_report",
]
