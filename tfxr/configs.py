"""Every trainer's config, in one place: what ``python -m tfxr.train`` and
``python -m tfxr.gan train`` accept (``--help`` lists the same fields, with their bounds).

* :class:`TrainConfig` - the classifier (``tfxr.train``, :class:`tfxr.training.classifier.Trainer`);
  its input pipeline is the nested :class:`~tfxr.data.pipeline.DataConfig` (``pipeline:``),
  whose augmentations are :class:`~tfxr.data.augment.AugmentConfig` (``pipeline.augment:``).
* :class:`GanConfig` - the DCGAN (``tfxr.gan train``, :class:`tfxr.training.gan.GanTrainer`).
* :class:`DetectorConfig` - the box detector (``tfxr.detect train``,
  :class:`tfxr.training.detector.DetectorTrainer`).

The machinery (``option()`` bounds, YAML, ``--set``) is :mod:`tfxr.config`.  Every
trainer's config has the run fields the run scaffold (:mod:`tfxr.training.run`) reads:
``out``, ``epochs``, ``seed``, ``resume``, ``overwrite``, ``keep_checkpoints``,
``progress``, and ``RESUME_SAFE``: the fields a ``--resume`` may change (anything else
that differs from the run's ``config.yaml`` is refused).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from tfxr.config import option, seed_option
from tfxr.data.augment import AugmentConfig
from tfxr.data.pipeline import DataConfig
from tfxr.models import MODELS

__all__ = ["AugmentConfig", "DataConfig", "DetectorConfig", "GanConfig", "TrainConfig"]

#: the fields of every trainer's config that a ``--resume`` may change
RUN_FIELDS_SAFE_TO_CHANGE = frozenset({"out", "epochs", "resume", "overwrite", "progress", "keep_checkpoints"})


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
    elastic: bool = False              # Horovod elastic (horovodrun --min-np/--max-np): survive lost workers
    mixed_precision: bool = False      # bf16 on CPU, fp16 (+ loss scaling) on GPU
    xla: bool = False                  # jit-compile the forward/backward pass
    resume: bool = False               # continue OUT from its newest checkpoint
    overwrite: bool = False            # replace the run already in OUT
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
    #: what ``--resume`` may change (more epochs, patience of the stopping rule, the console)
    RESUME_SAFE: ClassVar[frozenset] = RUN_FIELDS_SAFE_TO_CHANGE | {"early_stopping_patience", "stall_timeout",
                                                                    "timeline", "elastic"}


@dataclass
class GanConfig:
    data: str = ""                                   # TFRecord directory (manifest.json)
    out: str = "runs/gan"
    split: str = "train"
    class_label: str = ""                            # '' : the first label of the data set
    class_value: int = option(-1, choices=(-1, 0, 1))   # -1: the minority value in the split
    image_size: int = option(0, choices=(0, 28, 64, 128))   # 0: as stored (must be 28/64/128)
    epochs: int = option(20, minimum=1)
    batch_size: int = option(32, minimum=1)          # per worker
    latent_dim: int = option(100, minimum=1)
    g_filters: int = option(64, minimum=1)           # generator width (last hidden layer)
    d_filters: int = option(64, minimum=1)           # discriminator width (first layer)
    batch_norm: bool = True                          # in the generator
    d_dropout: float = option(0.3, minimum=0.0, maximum=0.9)
    optimizer: str = option("adam", choices=("adam", "rmsprop"))
    g_lr: float = option(2e-4, minimum=0.0)
    d_lr: float = option(2e-4, minimum=0.0)
    beta1: float = option(0.5, minimum=0.0, maximum=1.0)    # Adam's beta_1 (0.5 as in DCGAN)
    loss: str = option("bce", choices=("bce", "hinge"))      # non-saturating BCE | hinge
    label_smoothing: float = option(0.0, minimum=0.0, maximum=0.5)   # one-sided: real target 1-s
    instance_noise: float = option(0.0, minimum=0.0)   # sd of noise added to D's inputs, -> 0 linearly
    sample_epochs: list[int] = option(list)            # epochs with a sample grid; [] : first and last
    collapse_threshold: float = option(0.5, minimum=0.0)   # flag when sample diversity < this x real
    steps_per_epoch: int = option(0, minimum=0)         # 0: one pass over the smallest rank's images
    compression: str = option("none", choices=("none", "fp16"))
    accumulate_steps: int = option(1, minimum=1)     # micro-batches per allreduce (effective batch x K)
    stall_timeout: float = option(600.0, minimum=0.0)  # s until a job with a stalled rank ends; 0 = never
    seed: int = seed_option()
    deterministic: bool = False
    resume: bool = False                             # continue OUT from its newest checkpoint
    overwrite: bool = False                          # replace the run already in OUT
    keep_checkpoints: int = option(2, minimum=1)
    progress: bool = True
    # compare-optimizers scores both runs' samples with the evaluator: FID/IS with InceptionV3
    # weights from this file, and/or the offline domain variant with this trained tfxr classifier
    inception_weights: str = ""
    feature_model: str = ""

    #: what ``--resume`` may change (only rank 0's outputs: sample grids, the collapse flag,
    #: the evaluators of compare-optimizers; more epochs also stretch the instance-noise decay)
    RESUME_SAFE: ClassVar[frozenset] = RUN_FIELDS_SAFE_TO_CHANGE | {
        "sample_epochs", "collapse_threshold", "inception_weights", "feature_model", "stall_timeout"}


@dataclass
class DetectorConfig:
    """The box detector (``tfxr.detect train``, :class:`tfxr.training.detector.DetectorTrainer`)."""

    data: str = ""                     # TFRecord directory whose records carry bbox/* boxes
    out: str = "runs/detector"
    epochs: int = option(30, minimum=1)
    backbone: str = option("tiny", choices=("tiny", "xs", "s", "m"))   # tfxr.models.detector.BACKBONES
    backbone_weights: str = ""         # a YOLOV8Backbone .weights.h5 file ('' = random initialisation)
    fpn_depth: int = option(1, minimum=1, maximum=3)
    max_boxes: int = option(16, minimum=1)           # ground-truth boxes per training image
    lr: float = option(2e-3, minimum=0.0)            # per-worker base learning rate
    lr_scaling: bool = True            # multiply lr by the number of workers (Goyal et al.)
    warmup_epochs: float = option(1.0, minimum=0.0)  # ramp lr from lr to lr*workers (Horovod's warm-up)
    min_lr: float = option(0.0, minimum=0.0)
    optimizer: str = option("adam", choices=("adam", "sgd"))
    weight_decay: float = option(0.0, minimum=0.0)
    clipnorm: float = option(10.0, minimum=0.0)      # global gradient-norm clip (KerasCV's YOLOv8 recipe); 0 = off
    compression: str = option("none", choices=("none", "fp16"))      # allreduce compression
    accumulate_steps: int = option(1, minimum=1)     # micro-batches per allreduce (effective batch x K)
    stall_timeout: float = option(600.0, minimum=0.0)  # s until a job with a stalled rank ends; 0 = never
    elastic: bool = False              # Horovod elastic (horovodrun --min-np/--max-np): survive lost workers
    seed: int = seed_option()
    steps_per_epoch: int = option(0, minimum=0)      # 0: one pass over the smallest rank's share
    val_split: str = "val"             # mAP@0.5 on it after each epoch ('' to skip); best.keras by it
    resume: bool = False               # continue OUT from its newest checkpoint
    overwrite: bool = False            # replace the run already in OUT
    keep_checkpoints: int = option(2, minimum=1)
    progress: bool = True
    pipeline: DataConfig = field(default_factory=lambda: DataConfig(batch_size=8))

    FLAG_ALIASES: ClassVar[dict[str, str]] = TrainConfig.FLAG_ALIASES
    RESUME_SAFE: ClassVar[frozenset] = RUN_FIELDS_SAFE_TO_CHANGE | {"stall_timeout", "elastic"}
