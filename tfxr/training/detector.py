"""The detector trainer: KerasCV's YOLOv8 (:mod:`tfxr.models.detector`) trained data-parallel
in the one run scaffold (:mod:`tfxr.training.run`), like the classifier and the GAN.

* Data: the one input pipeline with ``boxes=max_boxes`` (padded targets, negatives kept,
  box-aware flip and scale/crop).
* Step (:class:`DetectorStep`): the library's ``compute_loss`` under a ``tf.GradientTape``
  wrapped by Horovod's ``DistributedGradientTape`` (gradients allreduced), clipped by
  global norm, applied by tfxr's optimizer; ``micro_batches > 1`` splits a batch and
  averages the parts' losses (batch norm sees each part alone, as each rank sees its own
  batch: the data-parallel step then equals one process on the union in micro-batches).
* Learning rate: ``lr`` per worker, times the workers and ``accumulate_steps`` (the
  effective batch, ``lr_scaling``) after Horovod's warm-up
  (:class:`~tfxr.training.schedule.WarmupSchedule`).
* Gradient accumulation (``accumulate_steps``), the stall watchdog (``stall_timeout``) and
  elastic training (``elastic``) as for the classifier (:mod:`tfxr.training.run`).
* After each epoch: mAP@0.5 on ``val_split`` (pycocotools, every rank's images gathered);
  rank 0 keeps ``best.weights.h5`` (best val mAP@0.5) and writes ``final.weights.h5``
  (weights only; :func:`tfxr.models.detector.load_detector` rebuilds from ``config.yaml``).
"""
from __future__ import annotations

import dataclasses
import math
import os

import keras
import keras_cv
import tensorflow as tf

from tfxr import distributed as dist
from tfxr.config import validate
from tfxr.configs import DetectorConfig
from tfxr.data.pipeline import build_dataset, split_steps
from tfxr.data.records import check_shards, read_manifest
from tfxr.errors import ConfigError, ManifestError
from tfxr.evaluation.detection import by_image_id, coco_ap, detect_split
from tfxr.files import atomic_path
from tfxr.models.detector import build_detector, build_loss, check_image_size, detection_loss
from tfxr.models.report import model_report
from tfxr.training import run
from tfxr.training.schedule import Decision


class DetectorStep(run.AccumulatedStep):
    """One training step of the detector (``tf.function``s); the loss summed on the device.

    Gradient accumulation (``accumulate_steps`` K > 1) and the stall watchdog are the run
    scaffold's :class:`~tfxr.training.run.GradientAccumulation`, as for the classifier and
    the GAN: every K-th call allreduces the mean of the K micro-batches' gradients once,
    clips it and applies it.  Batch norm normalises each micro-batch alone, as it does each
    part of ``micro_batches`` (so K = 2 on batch B equals ``micro_batches=2`` on batch 2B).
    """

    def __init__(self, model, optimizer, compression: str = "none", clipnorm: float = 0.0, micro_batches: int = 1,
                 accumulate_steps: int = 1, watchdog=None):
        self.model, self.optimizer, self.compression = model, optimizer, compression
        self.clipnorm, self.micro_batches = clipnorm, micro_batches
        self.sources = dist.backing_variables(model.trainable_variables)
        self.loss_sum = tf.Variable(0.0, trainable=False, dtype=tf.float32)
        build_loss(model)    # the loss trackers built eagerly: the step below is traced once
        self.accumulate_with([self.sources], accumulate_steps, compression, watchdog, self._step)

    def _loss(self, tape, x, y):
        with tape:
            if self.micro_batches == 1:
                return detection_loss(self.model, x, y)
            xs = tf.split(x, self.micro_batches)
            ys = [dict(zip(y, parts)) for parts in zip(*(tf.split(v, self.micro_batches) for v in y.values()))]
            return tf.add_n([detection_loss(self.model, a, b) for a, b in zip(xs, ys)]) / self.micro_batches

    def _update(self, grads, loss):
        if self.clipnorm:
            grads, _ = tf.clip_by_global_norm(grads, self.clipnorm)   # the same on every rank (averaged grads)
        self.optimizer.apply(grads, self.model.trainable_variables)
        self.loss_sum.assign_add(loss)
        return loss

    def _step(self, x, y):
        tape = tf.GradientTape()
        loss = self._loss(tape, x, y)
        tape = dist.distributed_tape(tape, self.compression)   # HVD: ring-allreduce of the gradients
        grads = tape.gradient(loss, self.sources)
        self.accumulation.counted()
        return self._update(grads, loss)

    def _step_accumulate(self, x, y):
        """A micro-batch that is not the K-th: local gradients added, no communication."""
        tape = tf.GradientTape()
        loss = self._loss(tape, x, y)
        self.accumulation.add([tape.gradient(loss, self.sources)])
        self.loss_sum.assign_add(loss)
        return loss

    def _step_accumulate_apply(self, x, y):
        """The K-th micro-batch: the mean of the K gradients allreduced once, clipped, applied."""
        tape = tf.GradientTape()
        loss = self._loss(tape, x, y)
        (mean,) = self.accumulation.mean_allreduced([tape.gradient(loss, self.sources)])   # HVD
        return self._update(mean, loss)


class DetectorTrainer(run.OneModelTask):
    """Detector, optimizer, step and run state (a :class:`tfxr.training.run.Task`)."""

    def __init__(self, cfg: DetectorConfig, manifest: dict | None = None, micro_batches: int = 1):
        validate(cfg)
        if not cfg.data:
            raise ConfigError("--data is required (a TFRecord directory with boxes, written by "
                              "`python -m tfxr.tfrecords write`)")
        self.cfg = cfg
        self.rank, self.world = run.init_process(stall_timeout=cfg.stall_timeout)   # bounded stalls
        run.seed_process(cfg.seed, cfg.pipeline.deterministic)
        self.manifest = manifest or read_manifest(cfg.data)
        self._check_data()
        self.label_names = list(self.manifest["label_names"])
        self.image_size = check_image_size(cfg.pipeline.image_size or int(self.manifest["image_size"]))
        if cfg.pipeline.channels != 1:
            raise ConfigError(f"--channels {cfg.pipeline.channels}: the detector reads grey-scale images (channels 1)")
        self.data_cfg = dataclasses.replace(cfg.pipeline, image_size=self.image_size)
        self.model = build_detector(self.image_size, num_classes=len(self.label_names), backbone=cfg.backbone,
                                    backbone_weights=cfg.backbone_weights, fpn_depth=cfg.fpn_depth)
        self.scale_lr()
        options = {"learning_rate": self.base_lr}
        if cfg.weight_decay:
            options["weight_decay"] = cfg.weight_decay
        self.optimizer = (keras.optimizers.Adam(**options) if cfg.optimizer == "adam"
                          else keras.optimizers.SGD(momentum=0.9, nesterov=True, **options))
        self.optimizer.build(self.model.trainable_variables)
        self.step = DetectorStep(self.model, self.optimizer, cfg.compression, cfg.clipnorm, micro_batches,
                                 cfg.accumulate_steps, run.stall_watchdog(cfg, self.rank, self.world))
        self.state = run.new_run_state(best=None, best_epoch=None)
        run.offset_seed_states(self.seed_variables(), self.rank)
        self.global_batch = self.data_cfg.batch_size * self.world
        self.steps = 0
        self._batches = None
        self._predict = tf.function(lambda x: self.model.decode_predictions(self.model(x, training=False), x),
                                    reduce_retracing=True)

    def _check_data(self) -> None:
        cfg, splits = self.cfg, self.manifest.get("splits", {})
        if self.manifest.get("format", "tfrecord") != "tfrecord":
            raise ManifestError(f"{cfg.data}: the detector reads TFRecords with boxes, not a "
                                f"{self.manifest.get('format')} index")
        if "train" not in splits:
            raise ManifestError(f"{cfg.data}: the data has no 'train' split (has {sorted(splits)})")
        if cfg.val_split and cfg.val_split not in splits:
            raise ConfigError(f"--val-split {cfg.val_split!r}: {cfg.data} has no such split (has "
                              f"{sorted(splits)}); use --val-split '' to train without validation")
        check_shards(cfg.data, self.manifest, ["train"] + ([cfg.val_split] if cfg.val_split else []),
                     hashes=cfg.pipeline.verify_shards)

    def train_step(self, x, y):
        return self.step(x, y)

    def lr_at(self, step: int) -> float:
        return self.schedule.lr(step, self.steps)

    # ---- the run (tfxr.training.run.Task)
    def fit(self) -> dict:
        try:
            return run.Run(self.cfg, self.rank, self.world).fit(self)
        finally:
            self.step.close()

    def resolved(self) -> dict:
        return {"workers": self.world, "base_lr": self.base_lr, "image_size": self.image_size,
                "effective_batch": self.scale * self.data_cfg.batch_size,
                "label_names": self.label_names, "library": f"keras-cv {_keras_cv_version()} YOLOV8Detector"}

    def outputs(self) -> tuple[str, ...]:
        return ("best.weights.h5", "final.weights.h5")

    def begin(self) -> None:
        cfg, first = self.cfg, self.state["epoch"]
        steps = cfg.steps_per_epoch or split_steps(cfg.data, "train", self.manifest, self.data_cfg.batch_size,
                                                   self.world, self.data_cfg.generated_fraction)
        self.steps = run.whole_updates(steps, cfg.accumulate_steps, self.data_cfg.batch_size)
        done = run.epoch_position(self.state, self.steps, cfg.accumulate_steps)   # elastic: committed steps
        self._batches = None
        if first < cfg.epochs:
            train = build_dataset(cfg.data, "train", self.data_cfg, training=True, rank=self.rank, world=self.world,
                                  seed=cfg.seed, epoch=first, epochs=cfg.epochs - first, manifest=self.manifest,
                                  repeat_steps=self.steps, boxes=cfg.max_boxes)
            self._batches = iter(train.skip(done) if done else train)

    def describe(self) -> str:
        report = model_report(self.model)
        k = self.cfg.accumulate_steps
        return (f"detector yolov8/{self.cfg.backbone} {self.image_size} px: {report['params']:,} params, "
                f"{report['flops_per_image'] / 1e9:.3f} GFLOPs/image; {self.world} worker(s) x batch "
                f"{self.data_cfg.batch_size}{f' x {k} accumulated' if k > 1 else ''}, {self.steps} steps/epoch, "
                f"lr {self.base_lr:g}")

    def validate(self, split: str) -> dict:
        """mAP@0.5 and mAP@[0.5:0.95] of ``split`` (every rank's images gathered)."""
        mine = detect_split(self.model, self.cfg.data, split, self.manifest, self.data_cfg, self.rank, self.world,
                            predict=self._predict)
        records = dist.allgather_records(mine, by_image_id)
        ap = coco_ap([r[1] for r in records], [r[2] for r in records], self.label_names)
        return {"val_map_50": ap["map_50"], "val_map_50_95": ap["map_50_95"]}

    def end_epoch(self, record: dict) -> dict:
        if not self.cfg.val_split:
            return {}
        numbers = self.validate(self.cfg.val_split)
        value = numbers["val_map_50"]
        if not math.isnan(value) and (self.state["best"] is None or value > self.state["best"]):
            self.state.update(best=value, best_epoch=record["epoch"])
        return numbers

    def after_epoch(self, record: dict, decision: Decision) -> None:
        if self.state.get("best_epoch") == record["epoch"]:
            self._save_weights("best.weights.h5")

    def finish(self) -> None:
        self._save_weights("final.weights.h5")
        self.final_as_best("final.weights.h5", "best.weights.h5")

    def _save_weights(self, name: str) -> None:
        """Weights only: :func:`tfxr.models.detector.load_detector` rebuilds the model from config.yaml."""
        with atomic_path(os.path.join(self.cfg.out, name), suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)

    @staticmethod
    def summary(record: dict) -> str:
        line = f"epoch {record['epoch']}: loss {record['train_loss']:.4f}"
        if "val_map_50" in record:
            line += f", val mAP@0.5 {record['val_map_50']:.4f}, mAP@[.5:.95] {record['val_map_50_95']:.4f}"
        return line + f", lr {record['lr']:.2e}, {record['images_per_s']:.1f} img/s, {record['epoch_time_s']:.1f} s"


def _keras_cv_version() -> str:
    return keras_cv.__version__


__all__ = ["DetectorStep", "DetectorTrainer"]
