"""The classifier trainer: model, optimizer, the distributed step, validation.

``Trainer(cfg: TrainConfig)`` (the config is in :mod:`tfxr.configs`) checks every option,
the data splits, the shards and the weights in ``__init__``, so a bad run stops with one
clear line before anything is written.  :meth:`Trainer.fit` runs it in the one run
scaffold, :mod:`tfxr.training.run` (seeding, broadcast, the epoch loop, checkpoints and
``--resume``, ``config.yaml``/``history.json``/TensorBoard, progress, the NaN check and
early stopping), with the policies of :mod:`tfxr.training.schedule` (warm-up,
reduce-on-plateau, early stopping).  It writes ``best.keras`` (the best validation
epoch) and ``final.keras``.
"""
from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from tfxr import cpu, distributed as dist, log
from tfxr.config import validate
from tfxr.configs import TrainConfig
from tfxr.data.pipeline import build_dataset, split_steps, training_label_counts
from tfxr.data.records import check_shards, read_manifest
from tfxr.errors import ConfigError, ManifestError
from tfxr.evaluation.metrics import auroc_per_label, nanmean
from tfxr.files import atomic_path
from tfxr.models import build_model, model_accepts, model_report
from tfxr.training import run
from tfxr.training.schedule import POLICY_STATE, Decision, PlateauPolicy


def weighted_bce(pos_weight, neg_weight):
    """Class-weighted binary cross-entropy on probabilities (CheXNet's loss).

    A non-finite label (NaN: unknown, e.g. CheXpert's uncertain label under the
    ``ignore`` policy) is masked out: the loss is the mean over the known labels.
    """
    pos = tf.constant(pos_weight, tf.float32)
    neg = tf.constant(neg_weight, tf.float32)

    def loss(labels, probs):
        probs = tf.clip_by_value(tf.cast(probs, tf.float32), 1e-7, 1 - 1e-7)
        labels = tf.cast(labels, tf.float32)
        known = tf.math.is_finite(labels)
        labels = tf.where(known, labels, 0.0)
        per_label = -(pos * labels * tf.math.log(probs) + neg * (1 - labels) * tf.math.log(1 - probs))
        per_label = tf.where(known, per_label, 0.0)
        return tf.reduce_sum(per_label) / tf.maximum(tf.reduce_sum(tf.cast(known, tf.float32)), 1.0)
    return loss


def class_weights(positives: np.ndarray, total, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-label (w+, w-).  'balanced' gives each class half the weight: w+ = N/2P, w- = N/2(N-P),
    the same ratio as CheXNet's w+ = |N|/(|P|+|N|), w- = |P|/(|P|+|N|) but mean-preserving.
    ``total`` (N) is the images whose label is known, per label (or one count for all):
    a masked NaN label is neither a positive nor a negative, as in the loss."""
    if mode == "none":
        return np.ones_like(positives), np.ones_like(positives)
    if mode != "balanced":
        raise ConfigError(f"class_weighting: unknown value {mode!r} (allowed: balanced, none)")
    pos = np.clip(positives, 1, None)
    neg = np.clip(total - positives, 1, None)
    return total / (2 * pos), total / (2 * neg)


def new_run_state() -> dict:
    """The plain-Python state a checkpoint carries beside the model and optimizer."""
    return run.new_run_state(**POLICY_STATE)


class DistributedStep(run.AccumulatedStep):
    """The classifier's training step (``tf.function``s), shared with ``tfxr.benchmark``.

    Forward and loss under a tape, gradients allreduced by Horovod's
    ``DistributedGradientTape`` (or, with ``xla``, compiled forward/backward then the same
    grouped allreduce), applied by the optimizer.  The gradient sources are the Keras
    variables' backing ``tf.Variable``s (see :mod:`tfxr.distributed`).  The loss is summed
    on the device in ``loss_sum``: the caller reads it once per epoch, never per step.

    Gradient accumulation (``accumulate_steps`` K > 1) and the stall watchdog are the run
    scaffold's :class:`~tfxr.training.run.GradientAccumulation`, as for the GAN and the
    detector: each call is one micro-batch, every K-th allreduces the mean of the K
    gradients once and applies it (effective batch K x batch x ranks; batch norm statistics
    and dropout masks stay per micro-batch).  ``allreduces`` counts the gradient allreduces run.
    """

    def __init__(self, model, optimizer, loss_fn, compression: str = "none", xla: bool = False,
                 accumulate_steps: int = 1, watchdog=None):
        self.tf, self.dist = tf, dist
        self.model, self.optimizer, self.loss_fn, self.compression = model, optimizer, loss_fn, compression
        self.accumulate_steps = accumulate_steps
        self.sources = dist.backing_variables(model.trainable_variables)
        self.loss_sum = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        self._grads = (tf.function(self._local_grads, jit_compile=True, reduce_retracing=True) if xla
                       else self._local_grads)
        self.accumulate_with([self.sources], accumulate_steps, compression, watchdog,
                             self._step_xla if xla else self._step)

    def _forward(self, tape, x, y):
        with tape:
            loss = self.loss_fn(y, self.model(x, training=True))
            scaled = self.optimizer.scale_loss(loss)   # loss scaling under mixed_float16
        return loss, scaled

    def _step(self, x, y):
        tape = self.tf.GradientTape()
        loss, scaled = self._forward(tape, x, y)
        tape = self.dist.distributed_tape(tape, self.compression)   # HVD: ring-allreduce
        grads = tape.gradient(scaled, self.sources)
        self.accumulation.counted()
        self.optimizer.apply(grads, self.model.trainable_variables)
        self.loss_sum.assign_add(loss)
        return loss

    def _local_grads(self, x, y):
        tape = self.tf.GradientTape()
        loss, scaled = self._forward(tape, x, y)
        return loss, tape.gradient(scaled, self.sources)

    def _step_xla(self, x, y):
        loss, grads = self._grads(x, y)
        grads = self.dist.allreduce_gradients(grads, self.compression)   # HVD: ring-allreduce
        self.accumulation.counted()
        self.optimizer.apply(grads, self.model.trainable_variables)
        self.loss_sum.assign_add(loss)
        return loss

    def _step_accumulate(self, x, y):
        """A micro-batch that is not the K-th: local gradients added, no communication."""
        loss, grads = self._grads(x, y)
        self.accumulation.add([grads])
        self.loss_sum.assign_add(loss)
        return loss

    def _step_accumulate_apply(self, x, y):
        """The K-th micro-batch: the mean of the K gradients allreduced once and applied."""
        loss, grads = self._grads(x, y)
        (mean,) = self.accumulation.mean_allreduced([grads])   # HVD: one allreduce per K micro-batches
        self.optimizer.apply(mean, self.model.trainable_variables)
        self.loss_sum.assign_add(loss)
        return loss


class Trainer(run.OneModelTask):
    """Model, optimizer, the distributed step and the run state (a :class:`tfxr.training.run.Task`)."""

    def __init__(self, cfg: TrainConfig, manifest: dict | None = None):
        validate(cfg)
        if not cfg.data:
            raise ConfigError("--data is required (a directory written by `python -m tfxr.tfrecords write`)")
        self.cfg, self.dist, self.tf = cfg, dist, tf
        # refuses a multi-process launch without Horovod; bounded stalls, the optional timeline
        self.rank, self.world = run.init_process(stall_timeout=cfg.stall_timeout, timeline=cfg.timeline)
        deterministic = cfg.pipeline.deterministic
        if deterministic and cfg.xla:
            raise ConfigError("xla=true with deterministic=true: TensorFlow has no deterministic XLA "
                              "MaxPool gradient; turn one of them off")
        run.seed_process(cfg.seed, deterministic)
        self.manifest = manifest or read_manifest(cfg.data)
        self._check_data()
        self.label_names = list(self.manifest["label_names"])
        self.image_size = cfg.pipeline.image_size or int(self.manifest["image_size"])
        self.data_cfg = dataclasses.replace(cfg.pipeline, image_size=self.image_size)
        if cfg.mixed_precision:
            gpu = bool(tf.config.list_physical_devices("GPU"))
            keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
            slow = None if gpu else cpu.mixed_precision_problem()
            if slow:
                log.warning(slow)
        self.model = self._build_model()
        positives, total = training_label_counts(self.manifest, cfg.pipeline.generated_fraction)
        self.pos_weight, self.neg_weight = class_weights(positives, total, cfg.class_weighting)
        self.loss_fn = weighted_bce(self.pos_weight, self.neg_weight)
        self.scale_lr()
        self.policy = PlateauPolicy(cfg.monitor, cfg.plateau_factor, cfg.plateau_patience,
                                    cfg.early_stopping_patience)
        self.optimizer = self._make_optimizer()
        self.optimizer.build(self.model.trainable_variables)
        self.step = DistributedStep(self.model, self.optimizer, self.loss_fn, cfg.compression, cfg.xla,
                                    cfg.accumulate_steps, run.stall_watchdog(cfg, self.rank, self.world))
        self.state = new_run_state()
        run.offset_seed_states(self.seed_variables(), self.rank)
        self._predict = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        self.global_batch = self.data_cfg.batch_size * self.world
        self.steps = self.steps_per_epoch()   # checked now: too few batches to accumulate stops here
        self._batches = self._validation = None

    # ---- checks before anything is written
    def _check_data(self) -> None:
        """The splits the run reads exist and their shards are intact (sizes as in the manifest)."""
        cfg, splits = self.cfg, self.manifest.get("splits", {})
        if "train" not in splits:
            raise ManifestError(f"{cfg.data}: the data has no 'train' split (has {sorted(splits)}); "
                                f"write one with `python -m tfxr.tfrecords write`")
        if cfg.val_split and cfg.val_split not in splits:
            raise ConfigError(f"--val-split {cfg.val_split!r}: {cfg.data} has no such split (has "
                              f"{sorted(splits)}); use --val-split '' to train without validation")
        check_shards(cfg.data, self.manifest, ["train"] + ([cfg.val_split] if cfg.val_split else []),
                     hashes=cfg.pipeline.verify_shards)

    def _build_model(self):
        cfg = self.cfg
        options = {}
        if cfg.dropout is not None:              # None: the model's own default (one source of truth)
            options["dropout"] = cfg.dropout
        if model_accepts(cfg.model, "weights"):
            options["weights"] = cfg.weights
        elif cfg.weights != "none":
            raise ConfigError(f"--weights {cfg.weights!r}: --model {cfg.model} takes no weights "
                              f"(only models with a pretrained backbone do); use --weights none")
        try:
            return build_model(cfg.model, self.image_size, channels=cfg.pipeline.channels,
                               num_outputs=len(self.label_names), **options)
        except (RuntimeError, ValueError, FileNotFoundError) as e:   # bad weights file, offline, sizes
            raise ConfigError(f"cannot build --model {cfg.model}: {e}") from None

    def _make_optimizer(self):
        options = {"learning_rate": self.base_lr}
        if self.cfg.weight_decay:
            options["weight_decay"] = self.cfg.weight_decay
        makers = {"adam": lambda: keras.optimizers.Adam(**options),   # the choices of TrainConfig.optimizer
                  "sgd": lambda: keras.optimizers.SGD(momentum=0.9, nesterov=True, **options),
                  "rmsprop": lambda: keras.optimizers.RMSprop(**options)}
        optimizer = makers[self.cfg.optimizer]()
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    def world_adopted(self) -> None:
        """Elastic training, after run.OneModelTask.adopt_world: the steps of an epoch on the live world."""
        self.steps = self.steps_per_epoch()

    def lr_at(self, step: int) -> float:
        return self.schedule.lr(step, self.steps, self.state["lr_multiplier"])

    def train_step(self, x, y):
        """One step on this rank's batch; returns the local loss as a tensor (no host sync)."""
        return self.step(x, y)

    def broadcast(self) -> None:
        """Rank 0's model and optimizer state on every rank (dropout streams stay per rank)."""
        run.broadcast(self)

    # ---- data
    def dataset(self, split: str, training: bool, epoch: int = 0, steps: int | None = None,
                epochs: int = 1):
        """This rank's dataset of ``split``; for training, ``epochs`` epochs from ``epoch`` on."""
        return build_dataset(self.cfg.data, split, self.data_cfg, training=training, rank=self.rank,
                             world=self.world, seed=self.cfg.seed, epoch=epoch, epochs=epochs,
                             manifest=self.manifest, repeat_steps=steps)

    def steps_per_epoch(self) -> int:
        """Micro-batches per epoch: a whole number of updates with gradient accumulation (the
        remainder of a pass is dropped, so an epoch -- and a checkpoint -- ends on an update)."""
        steps = self.cfg.steps_per_epoch or split_steps(self.cfg.data, "train", self.manifest,
                                                        self.data_cfg.batch_size, self.world,
                                                        self.data_cfg.generated_fraction)
        return run.whole_updates(steps, self.cfg.accumulate_steps, self.data_cfg.batch_size)

    def validate(self, dataset) -> dict:
        """Validation metrics over the whole split (every rank's predictions gathered)."""
        probs, labels = [], []
        for x, y in dataset:
            probs.append(np.asarray(self._predict(x), np.float32))
            labels.append(y.numpy())
        width = len(self.label_names)
        mine = list(zip((row for part in probs for row in part), (row for part in labels for row in part)))
        records = self.dist.allgather_records(mine)
        probs = np.stack([p for p, _ in records]) if records else np.zeros((0, width), np.float32)
        labels = np.stack([y for _, y in records]) if records else np.zeros((0, width), np.float32)
        aucs = auroc_per_label(labels, probs)
        return {"val_loss": float(self.loss_fn(labels, probs)),
                "val_auroc": dict(zip(self.label_names, aucs)), "val_mean_auroc": nanmean(aucs),
                "val_accuracy": float(np.mean((probs >= 0.5) == (labels >= 0.5)))}

    def _save_model(self, name: str) -> None:
        with atomic_path(os.path.join(self.cfg.out, name), suffix=".keras") as tmp:
            self.model.save(tmp)

    # ---- the run (tfxr.training.run.Task)
    def fit(self) -> dict:
        """Train to ``cfg.epochs`` in the run scaffold; returns the final run state."""
        try:
            return run.Run(self.cfg, self.rank, self.world, policy=self.policy).fit(self)
        finally:
            self.step.close()
            keras.mixed_precision.set_global_policy("float32")

    def resolved(self) -> dict:
        return {"workers": self.world, "base_lr": self.base_lr, "image_size": self.image_size,
                "effective_batch": self.scale * self.data_cfg.batch_size, "label_names": self.label_names, "pos_weight": self.pos_weight.tolist(),
                "neg_weight": self.neg_weight.tolist()}

    def outputs(self) -> tuple[str, ...]:
        return ("best.keras", "final.keras")

    def begin(self) -> None:
        cfg, first = self.cfg, self.state["epoch"]
        done = run.epoch_position(self.state, self.steps, cfg.accumulate_steps)   # elastic: committed steps
        self._batches = None
        if first < cfg.epochs:
            train = self.dataset("train", True, first, self.steps, epochs=cfg.epochs - first)
            self._batches = iter(train.skip(done) if done else train)
        self._validation = self.dataset(cfg.val_split, False) if cfg.val_split else None

    def describe(self) -> str:
        report, k = model_report(self.model), self.cfg.accumulate_steps
        accumulated = f" x {k} accumulated" if k > 1 else ""
        return (f"{self.cfg.model}: {report['params']:,} params, {report['flops_per_image'] / 1e9:.3f} "
                f"GFLOPs/image; {self.world} worker(s) x batch {self.data_cfg.batch_size}{accumulated}, "
                f"{self.steps} steps/epoch, lr {self.base_lr:g}")

    def end_epoch(self, record: dict) -> dict:
        return self.validate(self._validation) if self._validation is not None else {}

    def after_epoch(self, record: dict, decision: Decision) -> None:
        if decision.improved:
            self._save_model("best.keras")

    def finish(self) -> None:
        self._save_model("final.keras")
        self.final_as_best("final.keras", "best.keras")

    @staticmethod
    def summary(record: dict) -> str:
        line = f"epoch {record['epoch']}: loss {record['train_loss']:.4f}"
        if "val_loss" in record:
            line += (f", val loss {record['val_loss']:.4f}, val AUROC {record['val_mean_auroc']:.4f}, "
                     f"val acc {record['val_accuracy']:.4f}")
        return line + f", lr {record['lr']:.2e}, {record['images_per_s']:.1f} img/s, {record['epoch_time_s']:.1f} s"
