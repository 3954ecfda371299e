"""The tf.data input pipeline: one function for training and evaluation datasets.

TFRecord shards (or a raw-image index written with ``--format raw``) are split across
Horovod ranks so each rank reads a disjoint part: whole shards when there are at least
as many shards as ranks, otherwise every world-th record of the shards read in one fixed
order (so every rank counts the same records the same way; shuffling comes after).
Then parallel interleave, parse, decode, resize, (cache), shuffle, augment, batch and
prefetch, AUTOTUNE throughout.  ``deterministic=True`` fixes every order and random
draw for tests.

A training dataset is built once per run and spans its epochs: each epoch's file order,
shuffle and augmentation are seeded by (``seed``, epoch) alone, so epoch k is the same
whether the run started at epoch 0 or resumed at k, and ``cache=True`` keeps decoded
images in memory across epochs.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tfxr import cpu
from tfxr.config import ConfigError, option
from tfxr.data.augment import AugmentConfig, augment, augment_with_boxes
from tfxr.data.tfrecord import ManifestError, feature_spec, read_manifest

AUTOTUNE = tf.data.AUTOTUNE

#: the padding box of detection targets: outside the image and not degenerate.  KerasCV's
#: YOLOv8 masks out any box with a coordinate <= -1; its documented all -1 padding (zero
#: width and height) makes its loss NaN under tf.function (see tfxr/models/detector.py).
PAD_BOX = (-3.0, -3.0, -2.0, -2.0)


@dataclass
class DataConfig:
    batch_size: int = option(32, minimum=1)            # per worker
    image_size: int = option(0, minimum=0)             # 0: the size stored in the manifest
    channels: int = option(1, choices=(1, 3))          # 1 (grey) or 3 (grey repeated)
    shuffle_buffer: int = option(2048, minimum=1)
    cycle_length: int = option(4, minimum=1)           # shards read in parallel
    # input threads: a private tf.data pool of this process's cores (0), of N threads (N), or
    # tf.data's shared pool (-1).  Measured, tb_cnn 128 px loop on 2 cores: 0 gave +1 to +4 % over -1
    # (385 vs 381 and 394 vs 378 images/s, medians of 5 epochs): small, within run-to-run noise.
    threads: int = option(0, minimum=-1)
    cache: bool = False            # keep decoded images in memory after the first epoch
    deterministic: bool = False
    # generated (GAN) training shards: -1 use as written, 0 leave out, 0<f<1 draw them with
    # probability f.  Never used in validation/test (see synthetic_split).
    synthetic_fraction: float = option(-1.0, minimum=-1.0, maximum=0.99)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


# --------------------------------------------------------------------------- sharding
def split_files(data_dir: str, split: str, manifest: dict) -> list[tuple[str, int]]:
    """(path, record count) of every shard of a split, in name order."""
    if split not in manifest["splits"]:
        raise ManifestError(f"{data_dir}: no '{split}' split (has {sorted(manifest['splits'])})")
    return [(os.path.join(data_dir, s["file"]), s["count"]) for s in manifest["splits"][split]["shards"]]


def rank_assignment(files: list[tuple[str, int]], rank: int, world: int):
    """Files this rank reads, whether it must further shard by record, its record count.

    File level (whole shards, round robin) when every rank gets at least one shard;
    otherwise every rank reads all shards in the same fixed order and keeps every
    world-th record, which is disjoint and complete only because that order is fixed.
    """
    if world > 1 and len(files) >= world:
        mine = files[rank::world]
        return [f for f, _ in mine], False, sum(c for _, c in mine)
    total = sum(c for _, c in files)
    return [f for f, _ in files], world > 1, len(range(rank, total, world))


def steps_per_epoch(files: list[tuple[str, int]], batch_size: int, world: int) -> int:
    """Equal step count on every rank (the smallest rank's full batches): allreduce needs it."""
    counts = [rank_assignment(files, r, world)[2] for r in range(world)]
    return max(1, min(counts) // batch_size)


def split_steps(data_dir: str, split: str, manifest: dict, batch_size: int, world: int,
                synthetic_fraction: float = -1.0) -> int:
    """Training steps per epoch for a split, TFRecord or raw index alike.

    With generated shards left out (``synthetic_fraction=0``) an epoch is one pass over
    the real records; mixed in at a fraction f, the real records are 1-f of the stream,
    so an epoch is the real pass divided by 1-f.
    """
    if manifest.get("format", "tfrecord") == "raw":   # one index file, sharded by record
        total = int(manifest["splits"][split]["count"])
        return max(1, (total // world) // batch_size)
    files = split_files(data_dir, split, manifest)
    if synthetic_fraction == -1:
        return steps_per_epoch(files, batch_size, world)
    real, _ = synthetic_split(data_dir, split, manifest, files)
    return max(1, int(steps_per_epoch(real, batch_size, world) / (1 - max(0.0, synthetic_fraction))))


# --------------------------------------------------------------------------- generated records
def synthetic_split(data_dir: str, split: str, manifest: dict, files: list[tuple[str, int]]):
    """(real shards, generated shards) of a split, as flagged in the manifest.

    Shards flagged ``"synthetic": true`` (written by ``tfxr.gan balance``) may only be in
    ``train``: a manifest listing them elsewhere is refused.
    """
    flagged = {s["file"] for s in manifest["splits"][split]["shards"] if s.get("synthetic")}
    if flagged and split != "train":
        raise ManifestError(f"{data_dir}/manifest.json lists synthetic shards in the '{split}' split "
                            f"({', '.join(sorted(flagged))}); generated images belong to 'train' only")
    real = [(f, c) for f, c in files if os.path.basename(f) not in flagged]
    return real, [(f, c) for f, c in files if os.path.basename(f) in flagged]


def _is_real(record):
    """Record-level guard: False for a record flagged ``image/synthetic=1``, wherever it sits."""
    spec = {"image/synthetic": tf.io.FixedLenFeature([], tf.int64, default_value=0)}
    return tf.equal(tf.io.parse_single_example(record, spec)["image/synthetic"], 0)


# --------------------------------------------------------------------------- decoding
def _grey(image: tf.Tensor) -> tf.Tensor:
    """HxWxC (C in 1..4) float -> HxWx1 grey."""
    c = tf.shape(image)[-1]
    return tf.case([(tf.equal(c, 1), lambda: image),
                    (tf.equal(c, 2), lambda: image[..., :1]),
                    (tf.equal(c, 3), lambda: tf.image.rgb_to_grayscale(image))],
                   default=lambda: tf.image.rgb_to_grayscale(image[..., :3]))


def _resize_u8(image: tf.Tensor, size: int) -> tf.Tensor:
    img = tf.image.resize(tf.cast(image, tf.float32), [size, size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)


def _tfrecord_records(files, record_level, rank, world, cfg, file_seed):
    """This rank's serialized records; shards shuffled by ``file_seed`` (None: name order)."""
    ds = tf.data.Dataset.from_tensor_slices(files)
    if file_seed is not None and not record_level:
        ds = ds.shuffle(len(files), seed=file_seed)
    # record-level sharding counts records in one fixed order on every rank: deterministic
    # interleave there, whatever cfg.deterministic says (else ranks overlap and miss records)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=max(1, min(cfg.cycle_length, len(files))),
                       num_parallel_calls=AUTOTUNE, deterministic=record_level or cfg.deterministic)
    if record_level:
        ds = ds.shard(world, rank)
    return ds


def _parse_tfrecord(num_labels: int, stored: int, size: int, boxes: bool = False):
    spec = feature_spec(num_labels)

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
        img = tf.io.decode_png(ex["image/encoded"], channels=1)
        img = tf.ensure_shape(img, [stored, stored, 1])
        if size != stored:
            img = _resize_u8(img, size)
        out = {"image": img, "labels": ex["labels"], "image_id": ex["image/id"], "patient_id": ex["patient/id"]}
        if boxes:
            out["bbox_label"] = tf.sparse.to_dense(ex["bbox/label"])
            out["bbox"] = tf.reshape(tf.stack([tf.sparse.to_dense(ex[f"bbox/{c}"])
                                               for c in ("xmin", "ymin", "xmax", "ymax")], axis=1), [-1, 4])
        return out
    return parse


def read_raw_index(data_dir: str, split: str, manifest: dict):
    paths, labels, ids, patients = [], [], [], []
    for path, _ in split_files(data_dir, split, manifest):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                paths.append(row["path"])
                labels.append([float(x) for x in row["labels"].split()])
                ids.append(row["image_id"])
                patients.append(row["patient_id"])
    return paths, np.asarray(labels, np.float32).reshape(len(paths), -1), ids, patients


def _parse_raw(size: int):
    def parse(path, labels, image_id, patient_id):
        img = tf.io.decode_image(tf.io.read_file(path), channels=0, dtype=tf.float32, expand_animations=False)
        img = tf.image.resize(_grey(img), [size, size], antialias=True)
        img = tf.cast(tf.clip_by_value(tf.round(img * 255.0), 0, 255), tf.uint8)
        return {"image": img, "labels": labels, "image_id": image_id, "patient_id": patient_id}
    return parse


def pad_boxes(labels: tf.Tensor, boxes: tf.Tensor, max_boxes: int) -> dict:
    """Detection targets of one image: ``labels`` (n,), ``boxes`` (n, 4) normalised xyxy ->
    ``{"boxes": (max_boxes, 4), "classes": (max_boxes,)}`` padded with PAD_BOX / -1 (boxes
    past ``max_boxes`` are dropped)."""
    n = tf.minimum(tf.shape(labels)[0], max_boxes)
    pad = max_boxes - n
    boxes = tf.concat([tf.cast(boxes[:n], tf.float32), tf.tile(tf.constant([PAD_BOX], tf.float32), [pad, 1])], 0)
    classes = tf.concat([tf.cast(labels[:n], tf.float32), -tf.ones([pad], tf.float32)], 0)
    return {"boxes": tf.ensure_shape(boxes, [max_boxes, 4]), "classes": tf.ensure_shape(classes, [max_boxes])}


# --------------------------------------------------------------------------- the builder
def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffles and augmentations: a function of (seed, epoch) only."""
    return int(np.random.default_rng([seed, epoch]).integers(2**31 - 1))


def build_dataset(data_dir: str, split: str, cfg: DataConfig | None = None, *, training: bool,
                  rank: int = 0, world: int = 1, seed: int = 0, epoch: int = 0, epochs: int = 1,
                  with_meta: bool = False, manifest: dict | None = None,
                  repeat_steps: int | None = None, boxes: int = 0) -> tf.data.Dataset:
    """Batched dataset of ``(image, labels)`` (or dicts with ids when ``with_meta``).

    ``boxes=N`` (detection): ``(image, {"boxes": (N, 4), "classes": (N,)})`` instead, the
    record's ``bbox/*`` boxes (normalised xyxy) padded to N with the detector's padding
    box and class -1 (:func:`tfxr.models.detector.pad_targets_tf`); images without boxes
    are kept as negatives; training augmentation is box-aware
    (:func:`tfxr.data.augment.augment_with_boxes`: flip and scale/crop move the boxes).
    With ``with_meta`` the dicts carry ``boxes`` and ``classes`` too.

    training: ``epochs`` consecutive epochs starting at ``epoch``, each exactly
    ``repeat_steps`` batches (default: the equal per-rank step count; this rank's
    records repeat as needed), shuffled and augmented with :func:`epoch_seed`, last
    partial batch dropped.  Iterate it once for the whole run.
    evaluation: every record of this rank once, in order, no augmentation; iterating
    it again (each validation) reuses the in-memory cache when ``cache=True``.
    Images are float32 in [0, 1], shape (size, size, channels).
    """
    cfg = cfg or DataConfig()
    manifest = manifest or read_manifest(data_dir)
    stored = int(manifest["image_size"])
    size = cfg.image_size or stored
    files = split_files(data_dir, split, manifest)
    parallel = {"num_parallel_calls": AUTOTUNE, "deterministic": cfg.deterministic or not training}

    if manifest.get("format", "tfrecord") == "raw":
        if boxes:
            raise ManifestError(f"{data_dir}: a raw-image index has no boxes; detection reads TFRecords "
                                f"(write them with `python -m tfxr.tfrecords write` without --format raw)")
        paths, labels, ids, patients = read_raw_index(data_dir, split, manifest)
        n_mine = len(range(rank, len(paths), world))

        def records(file_seed):
            ds = tf.data.Dataset.from_tensor_slices((paths, labels, ids, patients)).shard(world, rank)
            if file_seed is not None:       # shuffle the cheap paths before decoding
                ds = ds.shuffle(max(1, n_mine), seed=file_seed)
            return ds.map(_parse_raw(size), **parallel)
    else:
        # generated images: as written (training only), left out, or mixed in at a fraction;
        # evaluation splits never see one (shard flag and record flag both checked)
        as_written = training and cfg.synthetic_fraction == -1
        real, generated = synthetic_split(data_dir, split, manifest, files)
        mixed = training and cfg.synthetic_fraction > 0 and bool(generated)
        if cfg.synthetic_fraction != -1 and cfg.synthetic_fraction < 0:
            raise ConfigError(f"synthetic_fraction: {cfg.synthetic_fraction} is not -1 (as written), "
                              f"0 (leave out) or a fraction in (0, 1)")
        if mixed and cfg.cache:
            raise ConfigError("cache=true cannot be combined with 0 < synthetic_fraction < 1 "
                                "(the mixed stream is endless); turn one of them off")
        mine, record_level, n_mine = rank_assignment(files if as_written else real, rank, world)
        parse = _parse_tfrecord(len(manifest["label_names"]), stored, size, bool(boxes))

        def records(file_seed):
            ds = _tfrecord_records(mine, record_level, rank, world, cfg, file_seed)
            if not as_written:
                ds = ds.filter(_is_real)
            if mixed:
                gen_files, gen_by_record, _ = rank_assignment(generated, rank, world)
                gen = _tfrecord_records(gen_files, gen_by_record, rank, world, cfg, file_seed)
                mix_seed = 0 if file_seed is None else file_seed
                ds = tf.data.Dataset.sample_from_datasets(
                    [ds.repeat(), gen.shuffle(1024, seed=mix_seed).repeat()],
                    weights=[1 - cfg.synthetic_fraction, cfg.synthetic_fraction], seed=mix_seed)
            return ds.map(parse, **parallel)

    channels, aug = cfg.channels, cfg.augment

    def finish(ep_seed):
        def fn(i, ex):
            ex = dict(ex)
            img = tf.cast(ex["image"], tf.float32) / 255.0
            if boxes:
                box_labels, coords = ex.pop("bbox_label"), ex.pop("bbox")
                if training:
                    img, box_labels, coords = augment_with_boxes(img, box_labels, coords, tf.stack([ep_seed, i]), aug)
                targets = pad_boxes(box_labels, coords, boxes)
            elif training:
                img = augment(img, tf.stack([ep_seed, i]), aug)
            if channels == 3:
                img = tf.repeat(img, 3, axis=-1)
            if with_meta:
                return {**ex, "image": img, **(targets if boxes else {})}
            return img, (targets if boxes else ex["labels"])
        return fn

    if not training:
        ds = records(None)
        if cfg.cache:
            ds = ds.cache()
        ds = ds.enumerate().map(finish(tf.constant(0, tf.int64)), **parallel).batch(cfg.batch_size)
    else:
        if n_mine == 0:
            raise ManifestError(f"{data_dir}: rank {rank} of {world} has no '{split}' records")
        steps = repeat_steps or split_steps(data_dir, split, manifest, cfg.batch_size, world,
                                            cfg.synthetic_fraction)
        # cached: one fixed record order, filled once; uncached: shard order reshuffled per epoch
        cached = records(None).cache() if cfg.cache else None

        def one_epoch(ep_seed):
            # the shuffles below take their seed from (seed, epoch) alone, not from TensorFlow's
            # global seed (which also breaks tensor seeds when it is 0): clear it in this graph
            tf.compat.v1.get_default_graph().seed = None
            ds = cached if cached is not None else records(ep_seed)
            ds = ds.shuffle(min(cfg.shuffle_buffer, max(1, n_mine)), seed=ep_seed + 1).repeat()
            ds = ds.enumerate().map(finish(ep_seed), **parallel)
            return ds.batch(cfg.batch_size, drop_remainder=True).take(steps)

        seeds = [epoch_seed(seed, e) for e in range(epoch, epoch + max(1, epochs))]
        ds = tf.data.Dataset.from_tensor_slices(np.asarray(seeds, np.int64)).flat_map(one_epoch)
    opts = tf.data.Options()
    opts.deterministic = cfg.deterministic
    opts.experimental_optimization.map_parallelization = True
    if cfg.threads != -1:
        opts.threading.private_threadpool_size = cfg.threads or cpu.process_cores()
    return ds.with_options(opts).prefetch(AUTOTUNE)


def training_label_counts(manifest: dict, synthetic_fraction: float = -1.0) -> tuple[np.ndarray, float]:
    """Positives per label and image count of the training stream the pipeline builds.

    As written (-1): the training split's counts.  A balanced data set's generated images
    (``balancing.added`` in the manifest) are taken out when they are left out (0) and
    weighted by the mixing fraction f otherwise: per label, the expected positive rate
    (1 - f) x real + f x generated over an epoch of real / (1 - f) images.
    """
    positives, total = label_counts(manifest, "train")
    balancing = manifest.get("balancing") or {}
    added = (balancing.get("added") or {}).get("train") or {}
    generated = int(added.get("synthetic", 0))
    if synthetic_fraction == -1 or not generated:
        return positives, total
    generated_positives = np.zeros_like(positives)
    generated_positives[list(manifest["label_names"]).index(balancing["class"]["label"])] = (
        generated * int(added["label_value"]))
    real_positives, real_total = positives - generated_positives, total - generated
    if synthetic_fraction == 0:
        return real_positives, real_total
    rate = ((1 - synthetic_fraction) * real_positives / real_total
            + synthetic_fraction * generated_positives / generated)
    stream_total = real_total / (1 - synthetic_fraction)
    return rate * stream_total, stream_total


def label_counts(manifest: dict, split: str = "train") -> tuple[np.ndarray, int]:
    """Positives per label and image count of a split (for class weights)."""
    if split not in manifest.get("splits", {}):
        raise ManifestError(f"the data has no '{split}' split (has {sorted(manifest.get('splits', {}))})")
    s = manifest["splits"][split]
    return np.asarray([s["label_counts"][n] for n in manifest["label_names"]], float), int(s["count"])
