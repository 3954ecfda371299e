"""The classifier trainer: model, optimizer, the distributed step and the one training loop.

Everything a run checks (options, data splits, shards, weights, launch) is checked in
``Trainer.__init__`` and before the first write in :meth:`Trainer.fit`, so a bad run
stops with one clear line and leaves the output directory as it was.

The pieces it composes live beside it: :mod:`tfxr.training.checkpoints` (save/resume),
:mod:`tfxr.training.schedule` (warm-up, reduce-on-plateau, early stopping) and
:mod:`tfxr.training.runlog` (config.yaml, history.json, TensorBoard, console).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time

import numpy as np

from tfxr import cpu
from tfxr.config import to_dict, validate
from tfxr.errors import CheckpointError, ConfigError, ManifestError
from tfxr.evaluation.metrics import auroc_per_label, nanmean
from tfxr.io import atomic_path
from tfxr.training.schedule import POLICY_STATE, PlateauPolicy, WarmupSchedule

#: added to a rank's dropout seed per rank, so ranks draw different dropout masks
RANK_SEED_STRIDE = 1_000_003


def weighted_bce(pos_weight, neg_weight):
    """Class-weighted binary cross-entropy on probabilities (CheXNet's loss).

    A non-finite label (NaN: unknown, e.g. CheXpert's uncertain label under the
    ``ignore`` policy) is masked out: the loss is the mean over the known labels.
    """
    import tensorflow as tf

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


def class_weights(positives: np.ndarray, total: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-label (w+, w-).  'balanced' gives each class half the weight: w+ = N/2P, w- = N/2(N-P),
    the same ratio as CheXNet's w+ = |N|/(|P|+|N|), w- = |P|/(|P|+|N|) but mean-preserving."""
    if mode == "none":
        return np.ones_like(positives), np.ones_like(positives)
    if mode != "balanced":
        raise ConfigError(f"class_weighting: unknown value {mode!r} (allowed: balanced, none)")
    pos = np.clip(positives, 1, None)
    neg = np.clip(total - positives, 1, None)
    return total / (2 * pos), total / (2 * neg)


def new_run_state() -> dict:
    """The plain-Python state a checkpoint carries beside the model and optimizer."""
    return {"epoch": 0, "global_step": 0, "history": [], **POLICY_STATE}


class DistributedStep:
    """The classifier's training step (``tf.function``s), shared with ``tfxr.benchmark``.

    Forward and loss under a tape, gradients allreduced by Horovod's
    ``DistributedGradientTape`` (or, with ``xla``, compiled forward/backward then the same
    grouped allreduce), applied by the optimizer.  The gradient sources are the Keras
    variables' backing ``tf.Variable``s (see :mod:`tfxr.distributed`).  The loss is summed
    on the device in ``loss_sum``: the caller reads it once per epoch, never per step.

    Gradient accumulation (``accumulate_steps`` K > 1, Horovod's ``backward_passes_per_step``):
    each call is one micro-batch; its local gradients are added to accumulators, and every
    K-th call averages them over the K micro-batches, allreduces them once and applies them.
    The update therefore equals one step on the K micro-batches together (effective batch
    K x batch x ranks) for a model without batch norm; batch norm statistics (and dropout
    masks) stay per micro-batch.  ``allreduces`` counts the gradient allreduces run.
    """

    def __init__(self, model, optimizer, loss_fn, compression: str = "none", xla: bool = False,
                 accumulate_steps: int = 1, watchdog=None):
        import tensorflow as tf

        from tfxr import distributed as dist

        if accumulate_steps < 1:
            raise ConfigError(f"accumulate_steps: {accumulate_steps} is below the minimum 1")
        self.tf, self.dist = tf, dist
        self.model, self.optimizer, self.loss_fn, self.compression = model, optimizer, loss_fn, compression
        self.accumulate_steps = accumulate_steps
        self.watchdog = watchdog              # a dist.StallWatchdog: a step that hangs ends the job
        self.sources = dist.backing_variables(model.trainable_variables)
        self.loss_sum = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        self.allreduces = tf.Variable(0, trainable=False, dtype=tf.int64)
        self._micro = 0                       # micro-batches since the last update (host side)
        self._calls = 0
        grads = tf.function(self._local_grads, jit_compile=True, reduce_retracing=True) if xla \
            else self._local_grads
        self._grads = grads
        if accumulate_steps > 1:
            self.accumulators = [tf.Variable(tf.zeros_like(s), trainable=False) for s in self.sources]
            self._accumulate = tf.function(self._step_accumulate, reduce_retracing=True)
            self._accumulate_apply = tf.function(self._step_accumulate_apply, reduce_retracing=True)
        elif xla:
            self._call = tf.function(self._step_xla, reduce_retracing=True)
        else:
            self._call = tf.function(self._step, reduce_retracing=True)

    def __call__(self, x, y):
        """One step on this rank's (micro-)batch; returns the local loss as a tensor (no host sync)."""
        self._calls += 1
        if self.watchdog is None:
            return self._run(x, y)
        with self.watchdog.step(tracing=self._calls <= self.accumulate_steps):
            return self._run(x, y)

    def close(self) -> None:
        """Stop the stall watchdog (if any) and remove its heartbeat files."""
        if self.watchdog is not None:
            self.watchdog.close()

    def _run(self, x, y):
        if self.accumulate_steps == 1:
            return self._call(x, y)
        self._micro += 1
        if self._micro < self.accumulate_steps:
            return self._accumulate(x, y)
        self._micro = 0
        return self._accumulate_apply(x, y)

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
        self.allreduces.assign_add(1)
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
        self.allreduces.assign_add(1)
        self.optimizer.apply(grads, self.model.trainable_variables)
        self.loss_sum.assign_add(loss)
        return loss

    def _step_accumulate(self, x, y):
        """A micro-batch that is not the K-th: local gradients added, no communication."""
        loss, grads = self._grads(x, y)
        for acc, g in zip(self.accumulators, grads):
            acc.assign_add(self.tf.cast(g, acc.dtype))
        self.loss_sum.assign_add(loss)
        return loss

    def _step_accumulate_apply(self, x, y):
        """The K-th micro-batch: the mean of the K gradients allreduced once and applied."""
        loss, grads = self._grads(x, y)
        mean = [(acc + self.tf.cast(g, acc.dtype)) / self.accumulate_steps
                for acc, g in zip(self.accumulators, grads)]
        mean = self.dist.allreduce_gradients(mean, self.compression)   # HVD: ring-allreduce
        self.allreduces.assign_add(1)
        self.optimizer.apply(mean, self.model.trainable_variables)
        for acc in self.accumulators:
            acc.assign(self.tf.zeros_like(acc))
        self.loss_sum.assign_add(loss)
        return loss


class Trainer:
    """Model, optimizer, the distributed step and the run state (resumable)."""

    def __init__(self, cfg, manifest: dict | None = None):
        import keras
        import tensorflow as tf

        from tfxr import distributed as dist
        from tfxr.data.pipeline import training_label_counts
        from tfxr.data.records import read_manifest

        validate(cfg)
        if not cfg.data:
            raise ConfigError("--data is required (a directory written by `python -m tfxr.tfrecords write`)")
        self.cfg, self.dist, self.tf = cfg, dist, tf
        dist.init(stall_timeout=cfg.stall_timeout, timeline=cfg.timeline)   # refuses a multi-process
        #                                 launch without Horovod; bounded stalls, the optional timeline
        self.rank, self.world = dist.rank(), dist.size()
        deterministic = cfg.pipeline.deterministic
        if deterministic and cfg.xla:
            raise ConfigError("xla=true with deterministic=true: TensorFlow has no deterministic XLA "
                              "MaxPool gradient; turn one of them off")
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(cfg.seed)
        self.manifest = manifest or read_manifest(cfg.data)
        self._check_data()
        self.label_names = list(self.manifest["label_names"])
        self.image_size = cfg.pipeline.image_size or int(self.manifest["image_size"])
        self.data_cfg = dataclasses.replace(cfg.pipeline, image_size=self.image_size)
        if cfg.mixed_precision:
            gpu = bool(tf.config.list_physical_devices("GPU"))
            keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
            slow = None if gpu else cpu.mixed_precision_problem()
            if slow and self.rank == 0:
                print(f"tfxr: warning: {slow}", file=sys.stderr)
        self.model = self._build_model()
        positives, total = training_label_counts(self.manifest, cfg.pipeline.synthetic_fraction)
        self.pos_weight, self.neg_weight = class_weights(positives, total, cfg.class_weighting)
        self.loss_fn = weighted_bce(self.pos_weight, self.neg_weight)
        # the effective batch is accumulate_steps x batch x ranks: lr scaling and warm-up use it
        self.scale = self.world * cfg.accumulate_steps
        self.base_lr = cfg.lr * (self.scale if cfg.lr_scaling else 1)
        self.schedule = WarmupSchedule(self.base_lr, self.scale, cfg.warmup_epochs, cfg.min_lr)
        self.policy = PlateauPolicy(cfg.monitor, cfg.plateau_factor, cfg.plateau_patience,
                                    cfg.early_stopping_patience)
        self.optimizer = self._make_optimizer()
        self.optimizer.build(self.model.trainable_variables)
        watchdog = (dist.StallWatchdog(os.path.join(cfg.out, ".tfxr-heartbeat"), cfg.stall_timeout, self.rank,
                                       self.world) if self.world > 1 and cfg.stall_timeout else None)
        self.step = DistributedStep(self.model, self.optimizer, self.loss_fn, cfg.compression, cfg.xla,
                                    cfg.accumulate_steps, watchdog)
        self.state = new_run_state()
        self._offset_seed_states()
        self._predict = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)
        self.steps_per_epoch()           # checked now: too few batches to accumulate stops here

    # ---- checks before anything is written
    def _check_data(self) -> None:
        """The splits the run reads exist and their shards are intact (sizes as in the manifest)."""
        from tfxr.data import records

        cfg, splits = self.cfg, self.manifest.get("splits", {})
        if "train" not in splits:
            raise ManifestError(f"{cfg.data}: the data has no 'train' split (has {sorted(splits)}); "
                                f"write one with `python -m tfxr.tfrecords write`")
        if cfg.val_split and cfg.val_split not in splits:
            raise ConfigError(f"--val-split {cfg.val_split!r}: {cfg.data} has no such split (has "
                              f"{sorted(splits)}); use --val-split '' to train without validation")
        check_shards = getattr(records, "check_shards", None)   # from the data branch (issue 6)
        if check_shards is not None:
            check_shards(cfg.data, self.manifest, ["train"] + ([cfg.val_split] if cfg.val_split else []),
                         hashes=cfg.pipeline.verify_shards)

    def _build_model(self):
        from tfxr.models import build_model, model_accepts

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
        import keras

        options = {"learning_rate": self.base_lr}
        if self.cfg.weight_decay:
            options["weight_decay"] = self.cfg.weight_decay
        makers = {"adam": lambda: keras.optimizers.Adam(**options),
                  "sgd": lambda: keras.optimizers.SGD(momentum=0.9, nesterov=True, **options),
                  "rmsprop": lambda: keras.optimizers.RMSprop(**options)}
        if self.cfg.optimizer not in makers:
            raise ConfigError(f"optimizer: unknown value {self.cfg.optimizer!r} (allowed: {', '.join(makers)})")
        optimizer = makers[self.cfg.optimizer]()
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        return self.schedule.lr(step, steps_per_epoch, self.state["lr_multiplier"])

    def train_step(self, x, y):
        """One step on this rank's batch; returns the local loss as a tensor (no host sync)."""
        return self.step(x, y)

    def _seed_states(self) -> list:
        return [v for v in self.model.non_trainable_variables if "seed_generator_state" in v.path]

    def _offset_seed_states(self) -> None:
        """Give each rank its own dropout stream ([seed, counter] -> [seed + rank*K, counter])."""
        if self.rank:
            for v in self._seed_states():
                v.assign(v.numpy() + np.array([self.rank * RANK_SEED_STRIDE, 0]).astype(v.dtype))

    def broadcast(self) -> None:
        """Rank 0's model and optimizer state on every rank (dropout streams stay per rank)."""
        own = {id(v) for v in self._seed_states()}
        self.dist.broadcast_variables([v for v in self.model.variables if id(v) not in own]
                                      + list(self.optimizer.variables))

    # ---- data
    def dataset(self, split: str, training: bool, epoch: int = 0, steps: int | None = None,
                epochs: int = 1):
        """This rank's dataset of ``split``; for training, ``epochs`` epochs from ``epoch`` on."""
        from tfxr.data.pipeline import build_dataset

        return build_dataset(self.cfg.data, split, self.data_cfg, training=training, rank=self.rank,
                             world=self.world, seed=self.cfg.seed, epoch=epoch, epochs=epochs,
                             manifest=self.manifest, repeat_steps=steps)

    def steps_per_epoch(self) -> int:
        """Micro-batches per epoch: a whole number of updates with gradient accumulation (the
        remainder of a pass is dropped, so an epoch -- and a checkpoint -- ends on an update)."""
        from tfxr.data.pipeline import split_steps

        k = self.cfg.accumulate_steps
        steps = self.cfg.steps_per_epoch or split_steps(self.cfg.data, "train", self.manifest,
                                                        self.data_cfg.batch_size, self.world,
                                                        self.data_cfg.synthetic_fraction)
        if steps < k:
            raise ConfigError(f"accumulate_steps={k}: an epoch has only {steps} batch(es) of "
                              f"{self.data_cfg.batch_size} per rank; lower accumulate_steps or the batch size")
        return steps - steps % k

    def validate(self, dataset) -> dict:
        """Validation metrics over the whole split (every rank's predictions gathered)."""
        probs, labels = [], []
        for x, y in dataset:
            probs.append(np.asarray(self._predict(x), np.float32))
            labels.append(y.numpy())
        width = len(self.label_names)
        mine = (np.concatenate(probs) if probs else np.zeros((0, width), np.float32),
                np.concatenate(labels) if labels else np.zeros((0, width), np.float32))
        parts = self.dist.allgather_object(mine) if self.world > 1 else [mine]
        probs, labels = np.concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts])
        aucs = auroc_per_label(labels, probs)
        return {"val_loss": float(self.loss_fn(labels, probs)),
                "val_auroc": dict(zip(self.label_names, aucs)), "val_mean_auroc": nanmean(aucs),
                "val_accuracy": float(np.mean((probs >= 0.5) == (labels >= 0.5)))}

    # ---- checkpoints
    def _checkpoint_store(self):
        from tfxr.training.checkpoints import CheckpointStore, variables_by_path

        return CheckpointStore(os.path.join(self.cfg.out, "checkpoints"),
                               {"model": variables_by_path(self.model.variables),
                                "optimizer": variables_by_path(self.optimizer.variables)},
                               max_to_keep=self.cfg.keep_checkpoints, writer=self.rank == 0)

    def restore(self, store, path: str) -> None:
        self.state = {**new_run_state(), **store.restore(path)}
        self._offset_seed_states()   # the checkpoint holds rank 0's dropout stream

    def _save_model(self, name: str) -> None:
        if self.rank == 0:
            with atomic_path(os.path.join(self.cfg.out, name), suffix=".keras") as tmp:
                self.model.save(tmp)

    # ---- the loop
    def fit(self) -> dict:
        import keras

        from tfxr.progress import progress_bar
        from tfxr.training.runlog import RunLog

        cfg, chief = self.cfg, self.rank == 0
        store = self._checkpoint_store()
        resumed = (store.resume_path(os.path.join(cfg.out, "history.json"), self.dist.broadcast_object)
                   if cfg.resume else None)
        if resumed:
            self.restore(store, resumed)
        log = RunLog(cfg.out, enabled=chief)
        log.start({**to_dict(cfg), "_resolved": {
            "workers": self.world, "base_lr": self.base_lr, "image_size": self.image_size,
            "effective_batch": self.scale * self.data_cfg.batch_size,
            "label_names": self.label_names, "pos_weight": self.pos_weight.tolist(),
            "neg_weight": self.neg_weight.tolist()}})
        if resumed:
            log.message(f"resumed from {resumed} (epoch {self.state['epoch']})")
        self.broadcast()   # HVD: identical start on every rank
        steps = self.steps_per_epoch()
        from tfxr.models import model_report
        if chief:
            report = model_report(self.model)
            log.message(f"{cfg.model}: {report['params']:,} params, {report['flops_per_image'] / 1e9:.3f} "
                        f"GFLOPs/image; {self.world} worker(s) x batch {self.data_cfg.batch_size}"
                        f"{f' x {cfg.accumulate_steps} accumulated' if cfg.accumulate_steps > 1 else ''}, "
                        f"{steps} steps/epoch, lr {self.base_lr:g}")
        first = self.state["epoch"]
        batches = iter(self.dataset("train", True, first, steps, epochs=cfg.epochs - first)) \
            if first < cfg.epochs else None
        validation = self.dataset(cfg.val_split, False) if cfg.val_split else None
        while self.state["epoch"] < cfg.epochs:
            record = self._train_epoch(batches, steps, progress_bar)
            if validation is not None:
                record.update(self.validate(validation))
            record["epoch_time_s"] = time.perf_counter() - record.pop("_start")
            decision = self.policy.update(self.state, record)
            self.state["history"].append(record)
            if decision.improved:
                self._save_model("best.keras")
            self.state["epoch"] = record["epoch"]
            store.save(self.state["epoch"], self.state)
            log.epoch(self.state["history"], self._summary(record))
            if decision.stop:
                log.message(f"early stopping after epoch {record['epoch']} (best epoch {self.state['best_epoch']})")
                break
        self._save_model("final.keras")
        if chief and not os.path.exists(os.path.join(cfg.out, "best.keras")):
            with atomic_path(os.path.join(cfg.out, "best.keras"), suffix=".keras") as tmp:
                shutil.copyfile(os.path.join(cfg.out, "final.keras"), tmp)
        self.step.close()
        log.close()
        keras.mixed_precision.set_global_policy("float32")
        return self.state

    def _train_epoch(self, batches, steps: int, progress_bar) -> dict:
        cfg, epoch = self.cfg, self.state["epoch"]
        start = time.perf_counter()
        bar = progress_bar(steps, f"epoch {epoch + 1}/{cfg.epochs}", enabled=self.rank == 0 and cfg.progress,
                           unit="step")
        self.step.loss_sum.assign(0.0)
        allreduces = int(self.step.allreduces.numpy())
        for _ in range(steps):
            x, y = next(batches)
            self.optimizer.learning_rate.assign(self.lr_at(self.state["global_step"], steps))
            self.train_step(x, y)
            self.state["global_step"] += 1
            bar.update(1)
        bar.close()
        seconds = time.perf_counter() - start
        train_loss = float(self.dist.allreduce_mean(self.step.loss_sum.numpy() / steps))
        return {"epoch": epoch + 1, "train_loss": train_loss,
                "lr": float(self.optimizer.learning_rate.numpy()),
                "allreduces": int(self.step.allreduces.numpy()) - allreduces,   # gradient allreduces run
                "images_per_s": steps * self.data_cfg.batch_size * self.world / seconds,
                "epoch_time_s": seconds, "_start": start}

    @staticmethod
    def _summary(record: dict) -> str:
        line = f"epoch {record['epoch']}: loss {record['train_loss']:.4f}"
        if "val_loss" in record:
            line += (f", val loss {record['val_loss']:.4f}, val AUROC {record['val_mean_auroc']:.4f}, "
                     f"val acc {record['val_accuracy']:.4f}")
        return line + f", lr {record['lr']:.2e}, {record['images_per_s']:.1f} img/s, {record['epoch_time_s']:.1f} s"
