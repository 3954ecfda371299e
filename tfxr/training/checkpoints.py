"""The one checkpoint mechanism of tfxr: ``tf.train.Checkpoint`` + ``CheckpointManager``.

Variables are matched by their place in the object graph (``model``, ``optimizer``, ...),
not by position; the manager keeps ``max_to_keep`` checkpoints and writes atomically.
A run's plain-Python state (epoch, history, best metric, ...) is saved *inside* the same
checkpoint as a JSON string variable, so model, optimizer and state can never disagree.

Keras 3 note (measured): ``tf.train.Checkpoint(model=keras_model)`` saves none of a Keras 3
model's own variables (only what the optimizer references: no BatchNorm statistics, no
dropout seed state).  Give Keras models and optimizers as :func:`variables_by_path`
dicts instead: every variable is then saved, keyed by its place and name.

Under Horovod, rank 0 alone writes (``writer=True``); every rank restores the same
checkpoint (``restore`` takes the path rank 0 chose, see :mod:`tfxr.training.run`), so
per-rank state such as dropout seeds can be re-derived after the restore.

Paths: the store works on the absolute path of its directory.  TensorFlow joins the
relative names of the ``checkpoint`` index with the directory it is given, so a relative
``--out`` given to a store that joined them again named ``run/checkpoints/run/checkpoints/ckpt-2``.
"""
from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from tfxr.errors import CheckpointError

INDEX = "checkpoint"   # TensorFlow's index file of a checkpoint directory


def read_index(directory: str) -> str | None:
    """The newest checkpoint's absolute path prefix named by ``directory``'s index, None
    when there is no index; CheckpointError (naming the file) when the index is empty or
    damaged, or names a checkpoint whose files are gone (resuming would silently start over).
    """
    directory = os.path.abspath(directory)
    index = os.path.join(directory, INDEX)
    if not os.path.exists(index):
        return None
    try:
        with open(index, "rb") as fh:
            text = fh.read()
        state = tf.train.get_checkpoint_state(directory) if text.strip() else None
    except Exception as e:  # noqa: BLE001 - a damaged index file is a damaged checkpoint
        raise CheckpointError(f"{index}: cannot read the checkpoint index ({e})") from None
    if state is None or not state.model_checkpoint_path:
        raise CheckpointError(f"{index}: the checkpoint index is empty or damaged; restore it, or delete "
                              f"{directory} to start over")
    path = state.model_checkpoint_path      # TensorFlow joined it with ``directory`` already
    if not tf.io.gfile.glob(path + ".index"):
        raise CheckpointError(f"{index} names {path}, whose files are missing; restore them, or "
                              f"delete {directory} to start over")
    return path


def variables_by_path(variables) -> dict:
    """{key: backing tf.Variable} of Keras 3 variables, for ``CheckpointStore`` objects.

    The key is the variable's place in the list plus its own name (``0003-kernel``):
    Keras makes auto-generated paths unique per process (``seed_generator_1/...`` for a
    second model in the same notebook kernel), so full paths would not find their
    checkpoint again; the list order of one architecture is fixed, and the name and
    shape checks still reject a checkpoint of another model.
    """
    return {f"{index:04d}-{variable.name}": variable.value if isinstance(variable, keras.Variable) else variable
            for index, variable in enumerate(variables)}


class CheckpointStore:
    """Save and restore ``objects`` (name -> trackable) plus a JSON-able state dict."""

    def __init__(self, directory: str, objects: dict, *, max_to_keep: int = 2, writer: bool = True):
        if max_to_keep < 1:
            raise CheckpointError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.directory = os.path.abspath(directory)
        if writer:
            read_index(self.directory)   # CheckpointManager would trip over a damaged index
        self.writer, self.max_to_keep = False, max_to_keep
        self._state = tf.Variable("{}", dtype=tf.string, trainable=False, name="run_state")
        self.checkpoint = tf.train.Checkpoint(run_state=self._state, **objects)
        self.manager = None
        self.set_writer(writer)

    def set_writer(self, writer: bool) -> None:
        """Make this process the writer, or not (elastic training: rank 0 can move to another
        process; the new writer's manager finds the checkpoints already in the directory)."""
        if writer and self.manager is None:
            self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=self.max_to_keep,
                                                      checkpoint_name="ckpt")
        self.writer = writer

    def save(self, step: int, state: dict) -> str | None:
        """Write a checkpoint numbered ``step`` (rank 0 only); returns its path prefix."""
        if not self.writer:
            return None
        self._state.assign(json.dumps(state))
        return self.manager.save(checkpoint_number=step)

    def latest(self) -> str | None:
        """The newest checkpoint's path prefix, None when the directory has none (see
        :func:`read_index` for the errors)."""
        return read_index(self.directory)

    def restore(self, path: str) -> dict:
        """Load every object from ``path`` (all must match) and return the saved state."""
        try:
            status = self.checkpoint.restore(path)
            status.assert_existing_objects_matched().expect_partial()
        except Exception as e:  # noqa: BLE001 - TF raises OpError, ValueError, IndexError, ... here
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{path}: cannot restore this checkpoint into the model being "
                                  f"trained (damaged, or made by a different model/config): {first}") from None
        return json.loads(self._state.numpy().decode())

    def resume_point(self, run_history: str) -> str | None:
        """The checkpoint a ``--resume`` run continues from (call on the writer, rank 0).

        When the run's ``run_history`` file exists but no checkpoint does, starting over
        would overwrite it: that is a CheckpointError too.
        """
        path = self.latest()
        if path is None and os.path.exists(run_history):
            raise CheckpointError(f"--resume: {os.path.dirname(run_history) or '.'} has "
                                  f"{os.path.basename(run_history)} but no checkpoint in "
                                  f"{self.directory}; starting over would overwrite it (use another "
                                  f"--out, or delete that folder to start over)")
        return path
