"""CheXNet: DenseNet-121 with a 14-way sigmoid head for the ChestX-ray14 pathologies.

Rajpurkar et al. 2017, "CheXNet: Radiologist-Level Pneumonia Detection on Chest X-Rays
with Deep Learning" (arXiv:1711.05225).  Architecture (layer names in brackets)::

    image (H, W, C), float in [0, 1]                         [image]
    C == 1: repeat the grey channel to RGB; C == 3: identity [grey_to_rgb]
    (x - ImageNet mean) / ImageNet std, per channel          [imagenet_normalization]
    DenseNet121(include_top=False, pooling="avg")            [densenet121]
    Dropout(dropout), only when dropout > 0                  [dropout]
    Dense(num_outputs, sigmoid), float32                     [pathology_probabilities]

Weights (``weights=``):

* ``"none"`` (or ``None``): random initialisation.
* ``"imagenet"``: ImageNet weights for the DenseNet121 backbone (the head stays random).
  The Keras cache (``$KERAS_HOME/models/`` or ``~/.keras/models/``) is checked first, so a
  pre-placed ``densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5`` works offline;
  otherwise Keras downloads it, and a failed download raises ``RuntimeError`` saying how to
  place the file by hand.
* a path to a ``.weights.h5`` file (``model.save_weights``) or the ``.keras`` file of a
  tfxr CheXNet run (``best.keras``/``final.keras`` beside its ``config.yaml``): the weights
  are loaded into the new model.  A ``.keras`` file is rebuilt from its run config and
  copied layer by layer (so it may have been trained at another image size or channel
  count); a ``.keras`` file of no tfxr run is refused (see :mod:`tfxr.models.loading`); a
  file that does not fit raises ``ValueError`` naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import keras
import numpy as np

from tfxr.data.types import CHEXNET_LABELS  # noqa: F401 - the one label list, re-exported by tfxr.models

from ._common import check_head, check_input_shape


#: ImageNet statistics (RGB) that the DenseNet ImageNet weights were trained with
#: (``keras.applications.densenet.preprocess_input``, "torch" mode).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The file Keras downloads for ``DenseNet121(include_top=False, weights="imagenet")``;
#: same name, URL and md5 as ``keras.src.applications.densenet``.
IMAGENET_WEIGHTS_FILE = "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/densenet/" + IMAGENET_WEIGHTS_FILE
)
IMAGENET_WEIGHTS_MD5 = "30ee3e1110167f948a6b9946edeeb738"

WeightsArg = Union[str, os.PathLike, None]


def keras_cache_dir() -> Path:
    """The directory Keras caches downloads under: ``$KERAS_HOME``, else ``~/.keras``.

    Read from the environment at call time (Keras itself reads ``KERAS_HOME`` once, at
    import), with Keras's fallback to ``/tmp/.keras`` when the home directory is read-only.
    """
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"])
    home = os.path.expanduser("~")
    if not os.access(home, os.W_OK):
        home = "/tmp"
    return Path(home) / ".keras"


def imagenet_weights_path() -> Path:
    """Return the local path of the DenseNet121 no-top ImageNet weights, downloading if needed.

    A file already in the Keras cache is used as is (no network access).  Otherwise the
    download goes through ``keras.utils.get_file``; if it fails for any reason (typically:
    no internet) a ``RuntimeError`` with the remedy is raised, chained to the original error.
    """
    cache_dir = keras_cache_dir()
    cached = cache_dir / "models" / IMAGENET_WEIGHTS_FILE
    if cached.is_file():
        return cached
    try:
        path = keras.utils.get_file(
            IMAGENET_WEIGHTS_FILE,
            IMAGENET_WEIGHTS_URL,
            cache_dir=str(cache_dir),
            cache_subdir="models",
            file_hash=IMAGENET_WEIGHTS_MD5,
        )
    # keras.utils.get_file raises a bare Exception for network errors: anything here means
    # "the file could not be fetched"; the original error is kept as __cause__.
    except Exception as e:
        raise RuntimeError(
            f"Could not download the DenseNet121 ImageNet weights ({type(e).__name__}: {e}). "
            f"This machine is probably offline. Remedy: on a machine with internet, download "
            f"{IMAGENET_WEIGHTS_URL} ({IMAGENET_WEIGHTS_FILE}) and copy it to "
            f"{cached.parent}/ (the Keras cache: ~/.keras/models/, or $KERAS_HOME/models/ when "
            f"KERAS_HOME is set); or pass --weights PATH with a .weights.h5/.keras file of a "
            f"trained model; or --weights none for random initialisation."
        ) from e
    return Path(path)


def build_chexnet(
    input_shape: Sequence[int] = (224, 224, 1),
    num_outputs: int = 14,
    weights: WeightsArg = "none",
    dropout: float = 0.0,
    name: str = "chexnet",
) -> keras.Model:
    """Build CheXNet (DenseNet121 backbone + sigmoid head); see the module docstring.

    ``input_shape`` is (H, W, 1) or (H, W, 3) with H, W >= 32; the input is a float image in
    [0, 1].  The head runs in float32 so it stays float32 under a mixed-precision policy.
    """
    h, w, c = check_input_shape(input_shape, min_size=32, model=name)
    check_head(num_outputs, dropout, model=name)
    if c not in (1, 3):
        raise ValueError(f"{name}: input must have 1 (grey) or 3 (RGB) channels, got {c}")
    mode, path = _parse_weights(weights)
    # Resolve the ImageNet file before building anything, so being offline fails fast.
    imagenet_file = imagenet_weights_path() if mode == "imagenet" else None

    inputs = keras.Input(shape=(h, w, c), name="image")
    if c == 1:
        x = keras.layers.Concatenate(axis=-1, name="grey_to_rgb")([inputs, inputs, inputs])
    else:
        x = keras.layers.Identity(name="grey_to_rgb")(inputs)
    x = keras.layers.Normalization(
        axis=-1,
        mean=list(IMAGENET_MEAN),
        variance=[s * s for s in IMAGENET_STD],
        name="imagenet_normalization",
    )(x)
    backbone = keras.applications.DenseNet121(
        include_top=False, weights=None, input_shape=(h, w, 3), pooling="avg"
    )
    if imagenet_file is not None:
        _load_imagenet_backbone(backbone, imagenet_file)
    x = backbone(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(
        num_outputs, activation="sigmoid", dtype="float32", name="pathology_probabilities"
    )(x)
    model = keras.Model(inputs, outputs, name=name)

    if mode == "path":
        load_weights_file(model, path)
    return model


def _parse_weights(weights: WeightsArg) -> tuple[str, Path | None]:
    if weights is None:
        return "none", None
    if isinstance(weights, str) and weights.lower() in ("none", "imagenet"):
        return weights.lower(), None
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights).expanduser()
        if not path.name.endswith((".weights.h5", ".keras")):
            raise ValueError(
                f"weights must be 'none', 'imagenet' or a path to a .weights.h5 or .keras file, "
                f"got {str(weights)!r}"
            )
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        return "path", path
    raise TypeError(f"weights must be a str, a path or None, got {type(weights).__name__}")


def _load_weights_or_explain(model: keras.Model, path: Path, explain) -> None:
    """``model.load_weights(path)``; Keras raises ValueError on a structural mismatch and
    OSError on a file that is not HDF5: either way a ValueError ``explain(error)`` (which
    file, what was expected)."""
    try:
        model.load_weights(str(path))
    except (ValueError, OSError, KeyError) as e:
        raise ValueError(explain(e)) from e


def _load_imagenet_backbone(backbone: keras.Model, path: Path) -> None:
    _load_weights_or_explain(backbone, path, lambda e: (
        f"The ImageNet weights file {path} does not fit DenseNet121(include_top=False) "
        f"({type(e).__name__}: {e}). It may be truncated or a different file: delete it "
        f"and download {IMAGENET_WEIGHTS_URL} again."))


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """Load weights saved from a model of the same architecture into ``model``.

    ``.weights.h5``: ``model.load_weights`` (the layer structure must match exactly).
    ``.keras`` (a tfxr run's): the model is rebuilt from its run config, its weights read
    (never its code) and copied layer by layer, matched by layer name, with every weight's
    shape checked.  Any mismatch raises ``ValueError``
    naming the file.
    """
    path = Path(path)
    if path.name.endswith(".weights.h5"):
        _load_weights_h5(model, path)
    elif path.name.endswith(".keras"):
        _copy_weights_from_keras_file(model, path)
    else:
        raise ValueError(f"{path}: expected a .weights.h5 or .keras file")


def _load_weights_h5(model: keras.Model, path: Path) -> None:
    _load_weights_or_explain(model, path, lambda e: (
        f"The weights file {path} does not fit model {model.name!r} "
        f"({type(e).__name__}: {_first_lines(e)}). Was it saved from a {model.name} model?"))


def _first_lines(error: BaseException, lines: int = 3) -> str:
    """The start of a (possibly very long) Keras error; the whole one stays in __cause__."""
    parts = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(parts[:lines]) + (" ..." if len(parts) > lines else "")


def _copy_weights_from_keras_file(model: keras.Model, path: Path) -> None:
    # Rebuilt from its run's config.yaml, weights only (a foreign .keras is refused: loading
    # its config.json could run code); raises ConfigError, a ValueError, naming the file.
    from tfxr.models.loading import load_run_model   # lazy: loading imports tfxr.models, which imports this

    source = load_run_model(str(path), "classifier")

    def weighted(m: keras.Model) -> dict[str, keras.layers.Layer]:
        return {layer.name: layer for layer in m.layers if layer.weights}

    src, dst = weighted(source), weighted(model)
    if set(src) != set(dst):
        raise ValueError(
            f"The model file {path} (model {source.name!r}) does not fit model {model.name!r}: "
            f"layers with weights only in the file: {sorted(set(src) - set(dst))}, "
            f"only in the model: {sorted(set(dst) - set(src))}"
        )
    for layer_name, layer in dst.items():
        values = src[layer_name].get_weights()
        expected = [tuple(v.shape) for v in layer.weights]
        found = [tuple(np.shape(v)) for v in values]
        if expected != found:
            raise ValueError(
                f"The model file {path} does not fit model {model.name!r}: layer "
                f"{layer_name!r} has weight shapes {found} in the file, the model needs {expected}"
            )
    for layer_name, layer in dst.items():
        layer.set_weights(src[layer_name].get_weights())
