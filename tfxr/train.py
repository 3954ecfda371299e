"""``python -m tfxr.train``: one data-parallel training loop for every tfxr classifier.

    python -m tfxr.train --model tb_cnn --data tfrec/tb --out runs/tb --epochs 10
    mpirun -np 4 python -m tfxr.train --config configs/chexnet_nih.yaml --data tfrec/nih224 \\
        --out runs/chexnet --set compression=fp16 --set pipeline.shuffle_buffer=512
    python -m tfxr.distributed --np 4 -- tfxr.train ...     (the same mpirun line, built for you)

Config: dataclass defaults < ``--config run.yaml`` < flags < ``--set key=value``.  The
input pipeline's options form the ``pipeline:`` section (``--batch-size``, ``--image-size``,
``--channels``, ``--cache``, ``--deterministic``, ``--shuffle-buffer`` set them directly).
Rank 0 alone writes ``OUT/config.yaml``, ``history.json``, TensorBoard logs,
``checkpoints/`` (resumable with ``--resume``), ``best.keras`` and ``final.keras``.
Every option is checked before anything is written.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import ClassVar

from tfxr.cli import run_main
from tfxr.config import option, parse_config, seed_option
from tfxr.data.pipeline import DataConfig
from tfxr.models import MODELS
from tfxr.training.classifier import Trainer, class_weights, weighted_bce

__all__ = ["TrainConfig", "Trainer", "class_weights", "main", "weighted_bce"]


@dataclass
class TrainConfig:
    model: str = option("tb_cnn", choices=tuple(MODELS))
    data: str = ""                     # TFRecord (or raw index) directory with manifest.json
    out: str = "runs/train"
    epochs: int = option(10, minimum=1)
    lr: float = option(1e-3, minimum=0.0)            # per-worker base learning rate
    lr_scaling: bool = True            # multiply lr by the number of workers (Goyal et al.)
    warmup_epochs: float = option(1.0, minimum=0.0)  # ramp lr from lr to lr*workers (Horovod's warm-up)
    optimizer: str = option("adam", choices=("adam", "sgd", "rmsprop"))
    weight_decay: float = option(0.0, minimum=0.0)
    plateau_factor: float = option(0.1, minimum=0.0, maximum=1.0)  # CheXNet: lr / 10 on a plateau
    plateau_patience: int = option(1, minimum=0)                   # 0 = never reduce
    min_lr: float = option(1e-7, minimum=0.0)
    early_stopping_patience: int = option(4, minimum=0)  # epochs without val improvement; 0 = off
    monitor: str = option("auroc", choices=("auroc", "loss"))   # mean validation AUROC | validation loss
    class_weighting: str = option("balanced", choices=("balanced", "none"))
    dropout: float | None = option(None, minimum=0.0, maximum=0.99)  # None: the model's own default
    weights: str = "none"              # models with a pretrained backbone (chexnet): none | imagenet | PATH
    compression: str = option("none", choices=("none", "fp16"))      # allreduce compression
    accumulate_steps: int = option(1, minimum=1)     # micro-batches per allreduce (effective batch x K)
    stall_timeout: float = option(600.0, minimum=0.0)  # s until a job with a stalled rank ends; 0 = never
    timeline: str = ""                 # Horovod timeline file (rank 0 writes it; tfxr.timeline reads it)
    mixed_precision: bool = False      # bf16 on CPU, fp16 (+ loss scaling) on GPU
    xla: bool = False                  # jit-compile the forward/backward pass
    resume: bool = False
    seed: int = seed_option()
    steps_per_epoch: int = option(0, minimum=0)      # 0: one pass over the smallest rank's share
    val_split: str = "val"             # '' to skip validation
    keep_checkpoints: int = option(2, minimum=1)
    progress: bool = True
    pipeline: DataConfig = field(default_factory=DataConfig)

    #: short flags for the pipeline options people set most (README, Slurm scripts, notebooks)
    FLAG_ALIASES: ClassVar[dict[str, str]] = {
        "batch_size": "pipeline.batch_size", "image_size": "pipeline.image_size",
        "channels": "pipeline.channels", "cache": "pipeline.cache",
        "deterministic": "pipeline.deterministic", "shuffle_buffer": "pipeline.shuffle_buffer"}


def main(argv: list[str] | None = None) -> int:
    def body():
        cfg, _ = parse_config(TrainConfig, argv, "python -m tfxr.train", __doc__)
        Trainer(cfg).fit()
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
