"""Loading saved models without running code from the file: the one loader of tfxr.

A Keras model file describes its layers in ``config.json``, and deserialising that
description can run code (Lambda layers, ``TFSMLayer``, a config that turns safe mode
off; Keras 3.10 had published bypasses of ``safe_mode`` for each).  tfxr never
deserialises it for its own models:

* a tfxr run folder holds ``config.yaml`` beside its models (written by ``tfxr.train``
  and ``tfxr.gan train``).  :func:`load_run_model` rebuilds the architecture from that
  config with tfxr's own builders (``tfxr.models.build_model``, the DCGAN builders) and
  reads only the weights: the ``model.weights.h5`` member of the ``.keras`` zip archive
  (HDF5 arrays, no code), loaded with ``model.load_weights``.  ``config.json`` and any
  other archive member (assets, paths) are never read.
* anything else (a legacy ``.h5``/``.hdf5`` model, a ``.keras`` file without a tfxr run
  config beside it) is refused with one line, unless the user passes the documented
  ``--trust-model-file`` flag; then Keras loads the file itself with ``safe_mode=True``
  (which the pinned Keras enforces, see the README's installed table).

Which keys of ``config.yaml`` are read:

* classifier runs (``tfxr.train``): ``model``, ``dropout``, ``pipeline.channels``,
  ``_resolved.image_size`` and ``_resolved.label_names`` (the number of outputs); any
  ``.keras`` file of the folder (``best.keras``, ``final.keras``) is such a classifier.
* GAN runs (``tfxr.gan train``): ``_resolved.image_size``, ``latent_dim``,
  ``g_filters``, ``batch_norm`` (``generator.keras``), ``d_filters``, ``d_dropout``
  (``discriminator.keras``).

A rebuilt model computes in float32 even if the run trained under a mixed-precision
policy (the saved variables are float32 either way).
"""
from __future__ import annotations

import os
import tempfile
import warnings
import zipfile
from typing import Any

import keras

import tfxr.models.layers  # noqa: F401 - registers tfxr's custom layers for deserialisation
from tfxr.config import load_yaml_file
from tfxr.errors import ConfigError
from tfxr.models import MODELS, build_model
from tfxr.models.dcgan import IMAGE_SIZES, build_discriminator, build_generator

#: the command-line flag that lets Keras itself load a file that is not a tfxr run's model
TRUST_FLAG = "--trust-model-file"
#: the one member of a ``.keras`` archive tfxr reads (Keras' name for the weights file)
WEIGHTS_MEMBER = "model.weights.h5"
#: the largest weights member tfxr unpacks (CheXNet's is about 30 MB; bounds a zip bomb)
MAX_WEIGHTS_BYTES = 2 << 30
#: what a caller may ask for
KINDS = ("classifier", "generator", "discriminator", "any")
_GAN_FILES = {"generator.keras": "generator", "discriminator.keras": "discriminator"}


def resolve_model_path(path: str) -> str:
    """A model file, or the best.keras (else final.keras) of a run directory."""
    if os.path.isdir(path):
        for name in ("best.keras", "final.keras"):
            if os.path.exists(os.path.join(path, name)):
                return os.path.join(path, name)
        raise ConfigError(f"{path}: no best.keras or final.keras in this run directory")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such model file")
    return path


def load_run_model(path: str, kind: str = "any", trust: bool = False, what: str = ""):
    """The Keras model saved at ``path`` (a file or a run directory), built by tfxr.

    ``kind`` is what the caller needs (``classifier``, ``generator``, ``discriminator`` or
    ``any``); a model of another kind is a ConfigError.  ``trust`` (``--trust-model-file``)
    lets Keras load a file that has no tfxr run config, with ``safe_mode=True``.  ``what``
    prefixes error messages (e.g. ``--generator``).  Every problem is one ConfigError line.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    try:
        path = resolve_model_path(path)
    except ConfigError as e:
        raise ConfigError(f"{what} {e}" if what else str(e)) from None
    label = f"{what} {path}" if what else path
    config = run_config_of(path, label)
    if config is None:
        if path.lower().endswith((".h5", ".hdf5")) and not path.endswith(".weights.h5"):
            problem = "a legacy HDF5 model file, whose layers can run code when loaded"
        else:
            problem = ("not a model of a tfxr run (no config.yaml beside it), so tfxr cannot "
                       "rebuild it without deserialising code from the file")
        if not trust:
            raise ConfigError(f"{label}: {problem}; refused (pass {TRUST_FLAG} only if you trust "
                              f"whoever made the file)")
        return _trusted_keras_load(path, label)
    if not path.endswith(".keras"):
        raise ConfigError(f"{label}: a tfxr run's models are .keras files")
    found, model = _build_from_run_config(path, config, label)
    if kind not in ("any", found):
        raise ConfigError(f"{label}: a {found} of a tfxr run, not a {kind}")
    load_archive_weights(model, path, label)
    return model


def load_generator(path: str, trust: bool = False, what: str = "--generator"):
    """A DCGAN generator (noise vector -> one grey image) saved by ``tfxr.gan train``."""
    model = load_run_model(path, "generator", trust, what)
    if (len(model.inputs) != 1 or len(model.inputs[0].shape) != 2 or len(model.outputs) != 1
            or len(model.outputs[0].shape) != 4 or model.outputs[0].shape[-1] != 1):
        raise ConfigError(f"{what} {path}: not a tfxr DCGAN generator (noise vector -> grey image)")
    return model


def run_config_of(path: str, label: str) -> dict | None:
    """The ``config.yaml`` of the run folder holding ``path``, or None when there is none."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.yaml")
    if not os.path.isfile(config_path):
        return None
    config = load_yaml_file(config_path)
    if not isinstance(config, dict) or not isinstance(config.get("_resolved"), dict):
        raise ConfigError(f"{label}: {config_path} is not a tfxr run config (no _resolved section)")
    return config


def _kind_of(path: str, config: dict) -> str:
    if "latent_dim" in config:
        name = os.path.basename(path)
        if name not in _GAN_FILES:
            raise ConfigError(f"{path}: a GAN run folder holds generator.keras and discriminator.keras, "
                              f"not {name}")
        return _GAN_FILES[name]
    return "classifier"


def _field(config: dict, dotted: str, types, label: str, check=None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{label}: its run config.yaml has no {dotted}")
        node = node[part]
    wanted = types if isinstance(types, tuple) else (types,)
    if not isinstance(node, wanted) or (isinstance(node, bool) and bool not in wanted):
        raise ConfigError(f"{label}: its run config.yaml has {dotted} = {node!r} (wrong type)")
    if check is not None and not check(node):
        raise ConfigError(f"{label}: its run config.yaml has {dotted} = {node!r} (out of range)")
    return node


def _build_from_run_config(path: str, config: dict, label: str):
    """(kind, a freshly built model with random weights) as the run's config describes it."""
    kind = _kind_of(path, config)
    size_ok = lambda v: 1 <= v <= 8192   # noqa: E731
    try:
        if kind == "classifier":
            name = _field(config, "model", str, label, lambda v: v in MODELS)
            size = _field(config, "_resolved.image_size", int, label, size_ok)
            labels = _field(config, "_resolved.label_names", list, label, lambda v: 1 <= len(v) <= 10000)
            channels = _field(config, "pipeline.channels", int, label, lambda v: v in (1, 3))
            dropout = config.get("dropout")
            options = {}
            if dropout is not None:
                options["dropout"] = float(_field(config, "dropout", (int, float), label, lambda v: 0 <= v < 1))
            return kind, build_model(name, size, channels=channels, num_outputs=len(labels), **options)
        size = _field(config, "_resolved.image_size", int, label, lambda v: v in IMAGE_SIZES)
        if kind == "generator":
            return kind, build_generator(size, _field(config, "latent_dim", int, label, lambda v: 1 <= v <= 4096),
                                         _field(config, "g_filters", int, label, lambda v: 1 <= v <= 4096),
                                         _field(config, "batch_norm", bool, label))
        return kind, build_discriminator(size, _field(config, "d_filters", int, label, lambda v: 1 <= v <= 4096),
                                         float(_field(config, "d_dropout", (int, float), label,
                                                      lambda v: 0 <= v < 1)))
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{label}: cannot rebuild the model its run config.yaml describes ({e})") from None


def load_archive_weights(model, path: str, label: str | None = None) -> None:
    """Load the ``model.weights.h5`` member of the ``.keras`` archive ``path`` into ``model``.

    Only that member is read (bounded in size, unpacked into a private temporary folder);
    a file that is not such an archive, or weights that do not fit ``model``, are one
    ConfigError naming ``path``.
    """
    label = label or path
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(WEIGHTS_MEMBER)
            except KeyError:
                raise ConfigError(f"{label}: not a Keras model archive (no {WEIGHTS_MEMBER} in it)") from None
            if info.file_size > MAX_WEIGHTS_BYTES:
                raise ConfigError(f"{label}: its {WEIGHTS_MEMBER} unpacks to {info.file_size:,} bytes "
                                  f"(more than the {MAX_WEIGHTS_BYTES:,} tfxr accepts)")
            with tempfile.TemporaryDirectory(prefix="tfxr-weights-") as tmp:
                weights = os.path.join(tmp, WEIGHTS_MEMBER)
                with archive.open(info) as src, open(weights, "wb") as dst:
                    copied = _copy_bounded(src, dst, MAX_WEIGHTS_BYTES)
                if copied != info.file_size:
                    raise ConfigError(f"{label}: its {WEIGHTS_MEMBER} is damaged (size differs from the archive's "
                                      f"directory)")
                _load_weights_file(model, weights, label)
    except zipfile.BadZipFile as e:
        raise ConfigError(f"{label}: not a Keras .keras archive ({e})") from None
    except (OSError, EOFError, zipfile.LargeZipFile, RuntimeError) as e:   # truncated, CRC, encrypted
        raise ConfigError(f"{label}: cannot read the archive ({type(e).__name__}: {e})") from None


def _copy_bounded(src, dst, limit: int) -> int:
    copied = 0
    while chunk := src.read(1 << 20):
        copied += len(chunk)
        if copied > limit:
            raise ConfigError(f"weights larger than {limit:,} bytes")
        dst.write(chunk)
    return copied


def _load_weights_file(model, weights: str, label: str) -> None:
    try:
        with warnings.catch_warnings():
            # Keras >= 3.12 notes each weightless internal container of a functional model
            # ("Skipping nested container ..."); the tests compare predictions after loading
            warnings.filterwarnings("ignore", message="Skipping nested container")
            model.load_weights(weights)
    except (ValueError, KeyError, TypeError, OSError) as e:
        first = " ".join(str(e).split())[:300]
        raise ConfigError(f"{label}: its weights do not fit the model its run config.yaml describes "
                          f"({type(e).__name__}: {first})") from None


def _trusted_keras_load(path: str, label: str):
    """Keras' own loader, for a file the user vouched for (``--trust-model-file``)."""
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a bad or unsafe file
        first = " ".join(str(e).split())[:300]
        raise ConfigError(f"{label}: cannot load as a Keras model ({type(e).__name__}: {first})") from None
