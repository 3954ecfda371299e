"""Small trained models for the evaluation tests (keras ``fit``: independent of tfxr.train)."""
from __future__ import annotations

import numpy as np


def load_split(data_dir: str, split: str, channels: int = 1):
    """(images, labels) of a whole split as arrays."""
    from tfxr.data.pipeline import DataConfig, build_dataset

    xs, ys = [], []
    for x, y in build_dataset(data_dir, split, DataConfig(batch_size=256, channels=channels,
                                                          deterministic=True), training=False):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def train_small_classifier(data_dir: str, path: str, model: str = "tb_cnn", epochs: int = 12,
                           seed: int = 0) -> str:
    """Train a small tfxr model on a split 'train' and save it as ``path`` (.keras)."""
    import keras

    from tfxr.models import build_model

    keras.utils.set_random_seed(seed)
    x, y = load_split(data_dir, "train")
    net = build_model(model, x.shape[1], channels=1, num_outputs=y.shape[1], dropout=0.2)
    net.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    net.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=True)
    net.save(path)
    return path
