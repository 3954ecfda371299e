"""Small helpers shared by the model builders (argument checks)."""
from __future__ import annotations

from typing import Sequence


def check_input_shape(input_shape: Sequence[int], *, min_size: int, model: str) -> tuple[int, int, int]:
    """Return ``input_shape`` as an ``(H, W, C)`` tuple of ints, or raise ``ValueError``.

    ``min_size`` is the smallest height/width the architecture can take (each 2x2 pooling
    halves the size, so a model with k poolings needs at least 2**k pixels).
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ValueError(f"{model}: input_shape must be (height, width, channels) ints, got {input_shape!r}")
    h, w, c = shape
    if c < 1:
        raise ValueError(f"{model}: input_shape needs at least 1 channel, got {input_shape!r}")
    if h < min_size or w < min_size:
        raise ValueError(f"{model}: height and width must be >= {min_size}, got {input_shape!r}")
    return h, w, c


def check_head(num_outputs: int, dropout: float, *, model: str) -> None:
    if not isinstance(num_outputs, int) or isinstance(num_outputs, bool) or num_outputs < 1:
        raise ValueError(f"{model}: num_outputs must be a positive int, got {num_outputs!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"{model}: dropout must be in [0, 1), got {dropout!r}")
