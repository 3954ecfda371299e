"""The one plot set-up and PNG write of tfxr: every figure (ROC curves, CAM and box overlays,
GAN losses, sample grids, benchmark scaling) is made by :func:`subplots` and written by
:func:`save_png`.

Matplotlib runs on its ``Agg`` backend (files only, no display: a cluster node, a test, a
rank of a job) and is imported on first use, deliberately lazily: most commands draw
nothing, and it costs a noticeable part of a second to import.  A PNG is written
atomically (:func:`tfxr.files.atomic_path`): a reader never sees half a picture, an
interrupted write leaves the previous one.
"""
from __future__ import annotations

import os

from tfxr.files import atomic_path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib  # lazy: see the module docstring

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def subplots(*args, **kwargs):
    """``(figure, axes)`` of ``matplotlib.pyplot.subplots`` (same arguments), on Agg."""
    return pyplot().subplots(*args, **kwargs)


def save_png(fig, path: str | os.PathLike, dpi: float | None = None, tight: bool = True) -> str:
    """Write ``fig`` to ``path`` as PNG, atomically, and close it (also when writing fails).

    ``tight``: ``fig.tight_layout()`` first; ``dpi``: the file's resolution (None: the
    figure's own).  Returns ``path``.
    """
    try:
        if tight:
            fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi="figure" if dpi is None else dpi)
    finally:
        pyplot().close(fig)
    return os.fspath(path)


def box(ax, x0: float, y0: float, x1: float, y1: float, colour: str, linewidth: float = 1.5) -> None:
    """An unfilled rectangle from (x0, y0) to (x1, y1), in the axes' data (pixel) coordinates."""
    from matplotlib.patches import Rectangle  # lazy, as pyplot (matplotlib is set up by then)

    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=linewidth))
