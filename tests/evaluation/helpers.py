"""Phantom data and a small trained model shared by the evaluation tests.

The model is trained with keras ``fit`` (independent of ``tfxr.train``) once per test
session and reused by tests/evaluation/*, tests/test_evaluate.py and tests/test_localize.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import save_classifier_run, tfxr

_CACHE: dict[str, Path] = {}
PHANTOM_IMAGES, PHANTOM_SIZE, EPOCHS = 400, 64, 12


def load_split(data_dir, split: str, channels: int = 1):
    """(images, labels) of a whole split as arrays."""
    from tfxr.data.pipeline import DataConfig, build_dataset

    xs, ys = [], []
    for x, y in build_dataset(str(data_dir), split, DataConfig(batch_size=256, channels=channels,
                                                               deterministic=True), training=False):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def train_small_classifier(data_dir, path, model: str = "tb_cnn", epochs: int = EPOCHS, seed: int = 0) -> Path:
    """Train a small tfxr model on the 'train' split and save it as ``path`` (.keras) in a
    tfxr run folder (a ``config.yaml`` beside it, so tfxr rebuilds it from weights only)."""
    import keras

    from tfxr.data.records import read_manifest
    from tfxr.models import build_model

    keras.utils.set_random_seed(seed)
    x, y = load_split(data_dir, "train")
    net = build_model(model, x.shape[1], channels=1, num_outputs=y.shape[1], dropout=0.2)
    net.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    net.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=True)
    path = Path(path)
    return save_classifier_run(net, path.parent, model, x.shape[1], read_manifest(str(data_dir))["label_names"],
                               dropout=0.2, file=path.name)


def phantom_data(tmp_path_factory) -> Path:
    """Multilabel phantoms (Nodule, Consolidation, Effusion, Cardiomegaly) with lesion boxes."""
    if "data" not in _CACHE:
        out = tmp_path_factory.mktemp("eval_phantoms") / "tfrec"
        tfxr("tfxr.tfrecords", "write", "--source", "synthetic", "--synthetic-task", "multilabel",
             "--num-images", str(PHANTOM_IMAGES), "--image-size", str(PHANTOM_SIZE), "--shards", "2",
             "--out", str(out), "--quiet")
        _CACHE["data"] = out
    return _CACHE["data"]


def phantom_model(tmp_path_factory) -> Path:
    """A tb_cnn with 4 outputs trained for a few epochs on :func:`phantom_data`."""
    if "model" not in _CACHE:
        data = phantom_data(tmp_path_factory)
        run_dir = tmp_path_factory.mktemp("eval_run")
        _CACHE["model"] = train_small_classifier(data, run_dir / "best.keras")
    return _CACHE["model"]
