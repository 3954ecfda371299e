"""The measured processes: ``python -m tfxr.benchmark _worker`` and ``_gemm`` (internal).

A worker builds the model, runs ``warmup`` untimed steps (tracing, allocation, oneDNN
primitive creation), then ``repeats`` timed windows of ``steps`` steps, and prints one
result line (rank 0) that the runner parses.  Independent processes meet at a file
barrier before the first window and keep stepping until all are done, so the load is
the same throughout every window.
"""
from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass

from tfxr.benchmark.analysis import INPUTS, MODELS, PRECISIONS
from tfxr.config import option, parse_config

RESULT_MARK = "TFXR_BENCH "   # the worker's result line (horovodrun prefixes output lines)


@dataclass
class WorkerConfig:
    """One measured process (the runner writes these flags; see runner.worker_argv)."""

    model: str = option("tb_cnn", choices=MODELS)
    input: str = option("random", choices=INPUTS)
    precision: str = option("fp32", choices=PRECISIONS)
    data: str = ""                      # TFRecords for input=pipeline
    image_size: int = option(128, minimum=8)
    batch_size: int = option(32, minimum=1)
    steps: int = option(10, minimum=1)
    repeats: int = option(3, minimum=1)
    warmup: int = option(3, minimum=1)
    xla: bool = False
    pin_core: int = option(-1, minimum=-1)   # -1: not pinned
    pin_local_rank: bool = False        # pin to core = local rank (horovodrun)
    sync_dir: str = ""                  # independent processes: the file barrier's directory
    sync_count: int = option(1, minimum=1)
    index: int = option(0, minimum=0)


@dataclass
class GemmConfig:
    """``_gemm [SIZE [REPEATS]]``: the fp32 matrix product measured as the CPU's ceiling."""

    size: int = option(2048, minimum=16, positional="?", help="n of the n x n matrices")
    repeats: int = option(5, minimum=1, positional="?", help="timed windows")


def _file_barrier(directory: str, name: str, index: int, count: int) -> None:
    """Wait until ``count`` processes have each touched ``name.<index>`` in ``directory``."""
    open(os.path.join(directory, f"{name}.{index}"), "w").close()
    while sum(os.path.exists(os.path.join(directory, f"{name}.{i}")) for i in range(count)) < count:
        time.sleep(0.01)


def _all_done(directory: str, count: int) -> bool:
    return all(os.path.exists(os.path.join(directory, f"done.{i}")) for i in range(count))


def classifier_step(cfg: WorkerConfig, dist, keras, np, tf):
    """The very step tfxr.train runs (model-only: no validation), and the forward FLOPs."""
    # deliberately late, as run_worker's TensorFlow import: these import TensorFlow
    from tfxr.data.augment import AugmentConfig
    from tfxr.data.pipeline import DataConfig, build_dataset
    from tfxr.models import build_model, model_report
    from tfxr.training.classifier import DistributedStep

    outputs = 14 if cfg.model == "chexnet" else 1
    model = build_model(cfg.model, cfg.image_size, channels=1, num_outputs=outputs)
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    dist.broadcast_variables(list(model.variables) + list(optimizer.variables))
    train_step = DistributedStep(model, optimizer, keras.losses.BinaryCrossentropy(), xla=cfg.xla)
    if cfg.input == "random":   # one random batch kept in memory: the model-only rate
        rng = np.random.default_rng(dist.rank())
        x = tf.constant(rng.random((cfg.batch_size, cfg.image_size, cfg.image_size, 1), np.float32))
        y = tf.constant((rng.random((cfg.batch_size, outputs)) < 0.3).astype(np.float32))
        batches = itertools.repeat((x, y))
    else:
        data_cfg = DataConfig(batch_size=cfg.batch_size, image_size=cfg.image_size,
                              augment=AugmentConfig(enabled=cfg.input == "pipeline"))
        batches = iter(build_dataset(cfg.data, "train", data_cfg, training=True, rank=dist.rank(),
                                     world=dist.size(), repeat_steps=1 << 30))   # endless
    return (lambda: train_step(*next(batches))), model_report(model)["flops_per_image"]


def _gan_step(cfg: WorkerConfig, dist, np):
    """The DCGAN's distributed step (tfxr.gan train's), on random images in [-1, 1] in memory.

    Forward FLOPs per real image: the generator's one image plus the discriminator on
    the real and the fake image.
    """
    # deliberately late, as run_worker's TensorFlow import: these import TensorFlow
    from tfxr.models.report import count_flops
    from tfxr.training.gan import GanConfig, GanTrainer

    if cfg.input != "random":
        raise ValueError("the DCGAN is measured on random in-memory images only (input=random)")
    images = np.random.default_rng(dist.rank()).uniform(-1, 1, (cfg.batch_size, cfg.image_size, cfg.image_size, 1))
    # stall_timeout=0: no stall watchdog, as in the classifier's and detector's measured steps
    # (its heartbeat folder would go below GanConfig's default out, in the working directory)
    trainer = GanTrainer(GanConfig(batch_size=cfg.batch_size, steps_per_epoch=1, progress=False, stall_timeout=0),
                         images=images.astype(np.float32))
    trainer.broadcast()
    counter = itertools.count()
    flops = count_flops(trainer.generator) + 2 * count_flops(trainer.discriminator)
    return (lambda: trainer.train_step(trainer.images, next(counter))["d_loss"]), flops


def detector_step(cfg: WorkerConfig, dist, keras, np, tf):
    """The detector's training step (``tfxr.detect train``'s :class:`DetectorStep` with the
    trainer's default backbone, optimizer and clipping) on one random batch with random
    boxes kept in memory: the model-only rate.  And the forward FLOPs per image.

    Each image holds 0-3 random boxes (an image without one is a negative, as most RSNA
    images are), padded to the trainer's default ``max_boxes`` as its pipeline pads them.
    """
    # deliberately late, as run_worker's TensorFlow import: these import TensorFlow and KerasCV
    from tfxr.configs import DetectorConfig
    from tfxr.models.detector import build_detector, pack_targets
    from tfxr.models.report import model_report
    from tfxr.training.detector import DetectorStep

    if cfg.input != "random":
        raise ValueError("the detector is measured on random in-memory images and boxes only (input=random)")
    defaults = DetectorConfig()
    model = build_detector(cfg.image_size, num_classes=1, backbone=defaults.backbone, fpn_depth=defaults.fpn_depth)
    optimizer = keras.optimizers.Adam(defaults.lr)
    optimizer.build(model.trainable_variables)
    dist.broadcast_variables(list(model.variables) + list(optimizer.variables))
    train_step = DetectorStep(model, optimizer, defaults.compression, defaults.clipnorm)
    rng = np.random.default_rng(dist.rank())
    x = tf.constant(rng.random((cfg.batch_size, cfg.image_size, cfg.image_size, 1), np.float32))
    boxes = []
    for _ in range(cfg.batch_size):
        corners = rng.uniform(0.0, 0.7, (int(rng.integers(0, 4)), 2))
        sizes = rng.uniform(0.05, 0.3, corners.shape)
        boxes.append([(0, (*c, *(c + s))) for c, s in zip(corners, sizes)])
    y = {k: tf.constant(v) for k, v in pack_targets(boxes, defaults.max_boxes).items()}
    return (lambda: train_step(x, y)), model_report(model)["flops_per_image"]


def run_worker(argv: list[str]) -> int:
    """Time ``repeats`` windows of ``steps`` training steps; print one result line (rank 0)."""
    cfg, _ = parse_config(WorkerConfig, argv, "python -m tfxr.benchmark _worker")
    if cfg.pin_local_rank:
        cfg.pin_core = int(os.environ.get("HOROVOD_LOCAL_RANK", os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", 0)))
    if cfg.pin_core >= 0:   # before TensorFlow starts its thread pools
        os.sched_setaffinity(0, {cfg.pin_core % (os.cpu_count() or 1)})
        os.environ["TFXR_CPU_THREADS"] = "1"
    # TensorFlow is imported deliberately late: after the pinning above, which its thread
    # pools and oneDNN read when they start
    import keras
    import numpy as np
    import tensorflow as tf

    from tfxr import distributed as dist

    dist.init()
    if cfg.precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(dist.rank())
    if cfg.model == "dcgan":
        step, flops_per_image = _gan_step(cfg, dist, np)
    elif cfg.model == "detector":
        step, flops_per_image = detector_step(cfg, dist, keras, np, tf)
    else:
        step, flops_per_image = classifier_step(cfg, dist, keras, np, tf)
    loss = None
    for _ in range(cfg.warmup):
        loss = step()
    float(loss)
    if cfg.sync_dir:
        _file_barrier(cfg.sync_dir, "ready", cfg.index, cfg.sync_count)
    dist.barrier()
    rates = []
    for _ in range(cfg.repeats):
        start = time.perf_counter()
        for _ in range(cfg.steps):
            loss = step()
        float(loss)          # one host sync per window: all its steps have finished
        dist.barrier()
        rates.append(cfg.steps * cfg.batch_size * dist.size() / (time.perf_counter() - start))
    if cfg.sync_dir:        # keep the load on until every independent process is done
        open(os.path.join(cfg.sync_dir, f"done.{cfg.index}"), "w").close()
        while not _all_done(cfg.sync_dir, cfg.sync_count):
            step()
    if dist.rank() == 0:
        print(RESULT_MARK + json.dumps({"rates": rates, "flops_per_image": flops_per_image,
                                        "workers": dist.size()}), flush=True)
    return 0


def run_gemm_worker(argv: list[str]) -> int:
    """Time an fp32 n x n matrix product on every core: what this CPU sustains in practice.

    ``_gemm [SIZE [REPEATS]]`` (or ``--set size=N``); prints one result line of GFLOP/s per
    timed window (2 n^3 FLOPs per product).
    """
    cfg, _ = parse_config(GemmConfig, argv, "python -m tfxr.benchmark _gemm")
    # TensorFlow is imported deliberately late: `python -m tfxr.benchmark` itself never needs it
    import tensorflow as tf

    a = tf.random.stateless_uniform([cfg.size, cfg.size], [1, 2])
    b = tf.random.stateless_uniform([cfg.size, cfg.size], [3, 4])
    products = 10
    step = tf.function(lambda: tf.reduce_sum(tf.stack([tf.matmul(a + float(k), b) for k in range(products)])))
    float(step())   # warm-up (and tracing)
    rates = []
    for _ in range(cfg.repeats):
        start = time.perf_counter()
        float(step())
        rates.append(products * 2 * cfg.size ** 3 / (time.perf_counter() - start) / 1e9)
    print(RESULT_MARK + json.dumps({"rates": rates, "size": cfg.size}), flush=True)
    return 0
