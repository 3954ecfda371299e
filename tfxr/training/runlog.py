"""What a run writes about itself (rank 0 only): the resolved config, ``history.json``
(a list of per-epoch dicts), TensorBoard scalars and one console line per epoch.

Generic on purpose: the run scaffold (:mod:`tfxr.training.run`) drives it for every
trainer (the classifier and the GAN), whose histories are lists of flat or one-level
nested dicts of numbers; how a line reads is the trainer's business (``summary``).
Console lines go through the one logger, :mod:`tfxr.log`.
"""
from __future__ import annotations

import os

import tensorflow as tf

from tfxr import log
from tfxr.files import write_json, write_yaml


class RunLog:
    """Writes under ``out_dir`` when ``enabled`` (rank 0); every method is a no-op elsewhere."""

    def __init__(self, out_dir: str, enabled: bool = True, tensorboard: bool = True):
        self.out_dir, self.enabled = out_dir, enabled
        self._tensorboard = tensorboard
        self._writer = None

    def start(self, config: dict) -> None:
        """Create the run directory and write ``config.yaml`` (call after all validation)."""
        if not self.enabled:
            return
        os.makedirs(self.out_dir, exist_ok=True)
        write_yaml(os.path.join(self.out_dir, "config.yaml"), config)

    def epoch(self, history: list[dict], line: str, step_key: str = "epoch") -> None:
        """Log the newest record of ``history`` and rewrite ``history.json`` atomically."""
        if not self.enabled:
            return
        record = history[-1]
        self._scalars(record, int(record[step_key]), step_key)
        write_json(os.path.join(self.out_dir, "history.json"), history)
        log.info(line)

    def _scalars(self, record: dict, step: int, step_key: str) -> None:
        if not self._tensorboard:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.out_dir, "tensorboard"))
        with self._writer.as_default():
            for key, value in record.items():
                if isinstance(value, dict):
                    for name, inner in value.items():
                        tf.summary.scalar(f"{key}/{name}", inner, step=step)
                elif key != step_key and isinstance(value, (int, float)):
                    tf.summary.scalar(key, value, step=step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
