"""The tf.data input pipeline: one function for training and evaluation datasets.

TFRecord shards (or a raw-image index written with ``--format raw``) are split across
Horovod ranks so each rank reads a disjoint part: whole shards when there are at least
as many shards as ranks, otherwise every world-th record.  Then parallel interleave,
parse, decode, resize, (cache), shuffle, augment, batch and prefetch, AUTOTUNE
throughout.  ``deterministic=True`` fixes every order and random draw for tests.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tfxr.data.augment import AugmentConfig, augment
from tfxr.data.tfrecord import ManifestError, feature_spec, read_manifest

AUTOTUNE = tf.data.AUTOTUNE


@dataclass
class DataConfig:
    batch_size: int = 32           # per worker
    image_size: int = 0            # 0: the size stored in the manifest
    channels: int = 1              # 1 (grey) or 3 (grey repeated)
    shuffle_buffer: int = 2048
    cycle_length: int = 4          # shards read in parallel
    cache: bool = False            # keep decoded images in memory after the first epoch
    deterministic: bool = False
    # generated (GAN) training shards: -1 use as written, 0 leave out, 0<f<1 draw them with
    # probability f.  Never used in validation/test (see synthetic_policy).
    synthetic_fraction: float = -1.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)


# --------------------------------------------------------------------------- sharding
def split_files(data_dir: str, split: str, manifest: dict) -> list[tuple[str, int]]:
    """(path, record count) of every shard of a split, in name order."""
    if split not in manifest["splits"]:
        raise ManifestError(f"{data_dir}: no '{split}' split (has {sorted(manifest['splits'])})")
    return [(os.path.join(data_dir, s["file"]), s["count"]) for s in manifest["splits"][split]["shards"]]


def rank_assignment(files: list[tuple[str, int]], rank: int, world: int):
    """Files this rank reads, whether it must further shard by record, its record count."""
    if world > 1 and len(files) >= world:
        mine = files[rank::world]
        return [f for f, _ in mine], False, sum(c for _, c in mine)
    total = sum(c for _, c in files)
    return [f for f, _ in files], world > 1, len(range(rank, total, world))


def steps_per_epoch(files: list[tuple[str, int]], batch_size: int, world: int) -> int:
    """Equal step count on every rank (the smallest rank's full batches): allreduce needs it."""
    counts = [rank_assignment(files, r, world)[2] for r in range(world)]
    return max(1, min(counts) // batch_size)


def split_steps(data_dir: str, split: str, manifest: dict, batch_size: int, world: int) -> int:
    """Training steps per epoch for a split, TFRecord or raw index alike."""
    if manifest.get("format", "tfrecord") == "raw":   # one index file, sharded by record
        total = int(manifest["splits"][split]["count"])
        return max(1, (total // world) // batch_size)
    return steps_per_epoch(split_files(data_dir, split, manifest), batch_size, world)


# --------------------------------------------------------------------------- synthetic records
def synthetic_policy(ds, data_dir: str, split: str, manifest: dict, files: list, cfg: DataConfig,
                     training: bool, rank: int, world: int, seed: int):
    """Apply the rule for generated images to a split's record dataset; returns
    ``(records, files)`` with ``files`` the real shards this split reads.

    Shards flagged ``"synthetic": true`` (written by ``tfxr.gan balance``) may only be in
    ``train``.  Evaluation splits and ``synthetic_fraction=0`` drop every record with
    ``image/synthetic=1`` (a record-level filter, so a generated image inside a real shard
    is caught too); ``0 < f < 1`` interleaves the synthetic shards with probability f.
    """
    flagged = {s["file"] for s in manifest["splits"][split]["shards"] if s.get("synthetic")}
    if flagged and split != "train":
        raise ManifestError(f"{data_dir}/manifest.json lists synthetic shards in the '{split}' split "
                            f"({', '.join(sorted(flagged))}); generated images belong to 'train' only")
    if not 0 <= cfg.synthetic_fraction < 1 and cfg.synthetic_fraction != -1:
        raise ManifestError(f"synthetic_fraction: {cfg.synthetic_fraction} is not -1 (as written), "
                            f"0 (leave out) or a fraction in (0, 1)")
    as_written = training and cfg.synthetic_fraction == -1
    if as_written:
        return ds(files), files
    real = [(f, c) for f, c in files if os.path.basename(f) not in flagged]
    synthetic = [(f, c) for f, c in files if os.path.basename(f) in flagged]
    spec = {"image/synthetic": tf.io.FixedLenFeature([], tf.int64, default_value=0)}

    def is_real(record):
        return tf.equal(tf.io.parse_single_example(record, spec)["image/synthetic"], 0)
    records = ds(real).filter(is_real)
    if training and cfg.synthetic_fraction > 0 and synthetic:
        mine, by_record, _ = rank_assignment(synthetic, rank, world)
        generated = tf.data.TFRecordDataset(mine)
        generated = generated.shard(world, rank) if by_record else generated
        f = cfg.synthetic_fraction
        records = tf.data.Dataset.sample_from_datasets(
            [records.repeat(), generated.shuffle(1024, seed=seed).repeat()], weights=[1 - f, f], seed=seed)
    return records, real


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


def _tfrecord_records(files, record_level, rank, world, cfg, training, seed):
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=max(1, min(cfg.cycle_length, len(files))),
                       num_parallel_calls=AUTOTUNE, deterministic=cfg.deterministic or not training)
    if record_level:
        ds = ds.shard(world, rank)
    return ds


def _parse_tfrecord(num_labels: int, stored: int, size: int):
    spec = feature_spec(num_labels)

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
        img = tf.io.decode_png(ex["image/encoded"], channels=1)
        img = tf.ensure_shape(img, [stored, stored, 1])
        if size != stored:
            img = _resize_u8(img, size)
        return {"image": img, "labels": ex["labels"], "image_id": ex["image/id"],
                "patient_id": ex["patient/id"]}
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


# --------------------------------------------------------------------------- the builder
def build_dataset(data_dir: str, split: str, cfg: DataConfig | None = None, *, training: bool,
                  rank: int = 0, world: int = 1, seed: int = 0, epoch: int = 0,
                  with_meta: bool = False, manifest: dict | None = None,
                  repeat_steps: int | None = None) -> tf.data.Dataset:
    """Batched dataset of ``(image, labels)`` (or dicts with ids when ``with_meta``).

    training: shuffles (seeded by ``seed`` and ``epoch``), augments, drops the last
    partial batch and yields exactly ``repeat_steps`` batches (default: the equal
    per-rank step count), repeating this rank's records as needed.
    evaluation: every record of this rank once, in order, no augmentation.
    Images are float32 in [0, 1], shape (size, size, channels).
    """
    cfg = cfg or DataConfig()
    manifest = manifest or read_manifest(data_dir)
    stored = int(manifest["image_size"])
    size = cfg.image_size or stored
    nl = len(manifest["label_names"])
    files = split_files(data_dir, split, manifest)
    ep_seed = int(np.random.default_rng([seed, epoch]).integers(2**31 - 1))

    if manifest.get("format", "tfrecord") == "raw":
        paths, labels, ids, patients = read_raw_index(data_dir, split, manifest)
        ds = tf.data.Dataset.from_tensor_slices((paths, labels, ids, patients))
        if world > 1:
            ds = ds.shard(world, rank)
        if training:
            ds = ds.shuffle(max(1, len(paths)), seed=ep_seed, reshuffle_each_iteration=True)
        ds = ds.map(_parse_raw(size), num_parallel_calls=AUTOTUNE, deterministic=cfg.deterministic or not training)
        n_mine = len(range(rank, len(paths), world))
    else:
        def records(chosen):   # this rank's records of the chosen shards
            nonlocal n_mine
            mine, record_level, n_mine = rank_assignment(chosen, rank, world)
            return _tfrecord_records(mine, record_level, rank, world, cfg, training, ep_seed)
        n_mine = 0
        ds, _ = synthetic_policy(records, data_dir, split, manifest, files, cfg, training, rank, world, ep_seed)
        ds = ds.map(_parse_tfrecord(nl, stored, size), num_parallel_calls=AUTOTUNE,
                    deterministic=cfg.deterministic or not training)
    if cfg.cache:
        ds = ds.cache()
    if training:
        if n_mine == 0:
            raise ManifestError(f"{data_dir}: rank {rank} of {world} has no '{split}' records")
        ds = ds.shuffle(min(cfg.shuffle_buffer, max(1, n_mine)), seed=ep_seed + 1, reshuffle_each_iteration=True)
        ds = ds.repeat()

    channels, aug = cfg.channels, cfg.augment

    def finish(i, ex):
        img = tf.cast(ex["image"], tf.float32) / 255.0
        if training:
            img = augment(img, tf.stack([tf.cast(ep_seed, tf.int64), i]), aug)
        if channels == 3:
            img = tf.repeat(img, 3, axis=-1)
        if with_meta:
            return {**ex, "image": img}
        return img, ex["labels"]

    ds = ds.enumerate().map(finish, num_parallel_calls=AUTOTUNE, deterministic=cfg.deterministic or not training)
    ds = ds.batch(cfg.batch_size, drop_remainder=training)
    if training:
        ds = ds.take(repeat_steps or split_steps(data_dir, split, manifest, cfg.batch_size, world))
    opts = tf.data.Options()
    opts.deterministic = cfg.deterministic
    opts.experimental_optimization.map_parallelization = True
    return ds.with_options(opts).prefetch(AUTOTUNE)


def label_counts(manifest: dict, split: str = "train") -> tuple[np.ndarray, int]:
    """Positives per label and image count of a split (for class weights)."""
    s = manifest["splits"][split]
    return np.asarray([s["label_counts"][n] for n in manifest["label_names"]], float), int(s["count"])
