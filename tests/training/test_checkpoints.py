"""CheckpointStore with Keras 3 models: every variable (BatchNorm statistics, dropout seed
state) by name, max_to_keep, clear errors for damaged or mismatched checkpoints."""
from __future__ import annotations

import numpy as np
import pytest

from tfxr.errors import CheckpointError
from tfxr.training.checkpoints import CheckpointStore, variables_by_path


def _model(units=3):
    import keras

    inputs = keras.Input((4,))
    x = keras.layers.Dense(units, name="dense")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dropout(0.5, seed=1, name="drop")(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="out")(x))


def _store(directory, model, keep=2, writer=True):
    return CheckpointStore(str(directory), {"model": variables_by_path(model.variables)}, max_to_keep=keep,
                           writer=writer)


def test_round_trip_restores_every_variable_and_the_state(tmp_path):
    a, b = _model(), _model()
    for v in a.variables:                                    # non-trainable ones too (BN, seed state)
        v.assign(np.full(v.shape, 7, v.dtype) if v.dtype != "uint32" else np.array([5, 9], v.dtype))
    store = _store(tmp_path, a, keep=2)
    for step in (1, 2, 3):
        store.save(step, {"epoch": step, "history": [step]})
    assert store.latest().endswith("ckpt-3")
    assert sorted(p.name for p in tmp_path.glob("*.index")) == ["ckpt-2.index", "ckpt-3.index"]
    state = _store(tmp_path, b, writer=False).restore(store.latest())
    assert state == {"epoch": 3, "history": [3]}
    for va, vb in zip(a.variables, b.variables):
        np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=va.path)


def test_mismatched_damaged_and_missing_checkpoints(tmp_path):
    store = _store(tmp_path, _model())
    path = store.save(1, {})
    with pytest.raises(CheckpointError, match="cannot restore"):
        _store(tmp_path, _model(units=5), writer=False).restore(path)     # a different model
    data = next(tmp_path.glob("ckpt-1.data-*"))
    data.write_bytes(data.read_bytes()[:10])
    with pytest.raises(CheckpointError, match="cannot restore"):
        _store(tmp_path, _model(), writer=False).restore(path)
    data.unlink()
    (tmp_path / "ckpt-1.index").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        store.latest()
    with pytest.raises(CheckpointError, match="max_to_keep"):
        _store(tmp_path / "x", _model(), keep=0)
