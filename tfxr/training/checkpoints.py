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
checkpoint (``restore`` takes the path rank 0 chose), so per-rank state such as
dropout seeds can be re-derived after the restore.
"""
from __future__ import annotations

import json
import os

from tfxr.errors import CheckpointError


def variables_by_path(variables) -> dict:
    """{key: backing tf.Variable} of Keras 3 variables, for ``CheckpointStore`` objects.

    The key is the variable's place in the list plus its own name (``0003-kernel``):
    Keras makes auto-generated paths unique per process (``seed_generator_1/...`` for a
    second model in the same notebook kernel), so full paths would not find their
    checkpoint again; the list order of one architecture is fixed, and the name and
    shape checks still reject a checkpoint of another model.
    """
    import keras

    return {f"{index:04d}-{variable.name}": variable.value if isinstance(variable, keras.Variable) else variable
            for index, variable in enumerate(variables)}


class CheckpointStore:
    """Save and restore ``objects`` (name -> trackable) plus a JSON-able state dict."""

    def __init__(self, directory: str, objects: dict, *, max_to_keep: int = 2, writer: bool = True):
        import tensorflow as tf

        if max_to_keep < 1:
            raise CheckpointError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.directory = directory
        self.writer = writer
        self._state = tf.Variable("{}", dtype=tf.string, trainable=False, name="run_state")
        self.checkpoint = tf.train.Checkpoint(run_state=self._state, **objects)
        self.manager = (tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep,
                                                   checkpoint_name="ckpt") if writer else None)

    def save(self, step: int, state: dict) -> str | None:
        """Write a checkpoint numbered ``step`` (rank 0 only); returns its path prefix."""
        if not self.writer:
            return None
        self._state.assign(json.dumps(state))
        return self.manager.save(checkpoint_number=step)

    def latest(self) -> str | None:
        """The newest checkpoint's path prefix, None when the directory has none.

        Raises CheckpointError when the directory's ``checkpoint`` index names a
        checkpoint whose files are gone (resuming would silently start over).
        """
        import tensorflow as tf

        index = os.path.join(self.directory, "checkpoint")
        if not os.path.exists(index):
            return None
        try:
            state = tf.train.get_checkpoint_state(self.directory)
        except Exception as e:  # noqa: BLE001 - a damaged index file is a damaged checkpoint
            raise CheckpointError(f"{index}: cannot read the checkpoint index ({e})") from None
        if state is None or not state.model_checkpoint_path:
            return None
        path = state.model_checkpoint_path
        if not os.path.isabs(path):
            path = os.path.join(self.directory, path)
        if not tf.io.gfile.glob(path + ".index"):
            raise CheckpointError(f"{index} names {path}, whose files are missing; restore them, or "
                                  f"delete {self.directory} to start over")
        return path

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

    def resume_path(self, run_history: str, broadcast_object) -> str | None:
        """The checkpoint a ``--resume`` run continues from, the same on every rank.

        The writer (rank 0) decides; every rank gets its path, or the same CheckpointError
        (through ``broadcast_object``, so no rank is left waiting). When the run's
        ``run_history`` file exists but no checkpoint does, starting over would overwrite
        it: that is an error too.
        """
        path, problem = None, None
        if self.writer:
            try:
                path = self.latest()
                if path is None and os.path.exists(run_history):
                    raise CheckpointError(f"--resume: {os.path.dirname(run_history) or '.'} has "
                                          f"{os.path.basename(run_history)} but no checkpoint in "
                                          f"{self.directory}; starting over would overwrite it (use another "
                                          f"--out, or delete that folder to start over)")
            except CheckpointError as e:
                problem = str(e)
        path, problem = broadcast_object((path, problem))
        if problem:
            raise CheckpointError(problem)
        return path
