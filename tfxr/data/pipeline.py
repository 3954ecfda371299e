"""The tf.data input pipeline: one function for training and evaluation datasets.

TFRecord shards (or a raw-image index written with ``--format raw``) are split across
Horovod ranks so each rank reads a disjoint part: whole shards when there are at least
as many shards as ranks, otherwise every world-th record of the shards read in one fixed
order (so every rank counts the same records the same way; shuffling comes after).
Then parallel interleave, parse, decode, resize, (cache), shuffle, batch, augment the
batch in the graph (:func:`tfxr.data.augment.augment_batch`; the detector's box-aware
augmentation stays per image, before batching) and prefetch; AUTOTUNE parallelism, autotuning model off.
``deterministic=True`` fixes every order and random draw for tests.

A training dataset is built once per run and spans its epochs: each epoch's file order,
shuffle and augmentation are seeded by (``seed``, epoch) alone (a batch's augmentation
by (epoch seed, step)), so epoch k is the same whether the run started at epoch 0 or
resumed at k.

The cache (``cache``: ``auto``, the default, ``true`` or ``false``) keeps the decoded
uint8 images in memory after their first read, for every later epoch and validation.
``auto`` caches when the estimate of :func:`cache_bytes` (this rank's records x image
size^2 x 1 byte -- grey, cached before any channel repetition -- plus
:data:`CACHE_RECORD_OVERHEAD` bytes per record for labels, ids and tensors) is at most
:data:`CACHE_MEMORY_FRACTION` of the memory available (``MemAvailable`` of
/proc/meminfo, or the cgroup's limit minus its use when that is smaller) divided by the
ranks on this node (each holds its own share); see :func:`cache_decision`.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfxr import cpu
from tfxr import distributed as dist
from tfxr.config import ConfigError
from tfxr.configs import AugmentConfig, DataConfig  # noqa: F401 - importable from here too
from tfxr.data.augment import augment_batch, augment_with_boxes
from tfxr.data.records import (ManifestError, rank_assignment, rank_share, read_examples, read_manifest,
                                shard_files)

AUTOTUNE = tf.data.AUTOTUNE

#: the padding box of detection targets: outside the image and not degenerate.  KerasCV's
#: YOLOv8 masks out any box with a coordinate <= -1; its documented all -1 padding (zero
#: width and height) makes its loss NaN under tf.function (see tfxr/models/detector.py).
PAD_BOX = (-3.0, -3.0, -2.0, -2.0)


# --------------------------------------------------------------------------- the cache
#: the share of the available memory one cached dataset may take (train and validation
#: each; divided among the ranks of the node)
CACHE_MEMORY_FRACTION = 0.25
#: bytes per cached record besides its pixels: labels, image and patient ids, tensor headers
CACHE_RECORD_OVERHEAD = 512


def cache_bytes(records: int, image_size: int, num_labels: int = 1) -> int:
    """The memory a cache of ``records`` decoded grey uint8 images of ``image_size``^2 takes
    (an estimate: pixels, float32 labels and :data:`CACHE_RECORD_OVERHEAD`)."""
    return records * (image_size * image_size + 4 * num_labels + CACHE_RECORD_OVERHEAD)


def cache_decision(setting: str, records: int, image_size: int, num_labels: int = 1, *,
                   local_ranks: int = 1, available: int | None = None) -> tuple[bool, str]:
    """Whether to cache a dataset, and why.  ``true``/``false``: as said.  ``auto``: when
    :func:`cache_bytes` is at most :data:`CACHE_MEMORY_FRACTION` x ``available`` (default
    :func:`tfxr.cpu.memory_available`) / ``local_ranks``; an unknown memory size means no cache."""
    if setting in ("true", "false"):
        return setting == "true", f"cache={setting}"
    need = cache_bytes(records, image_size, num_labels)
    available = cpu.memory_available() if available is None else available
    if available is None:
        return False, "cache=auto: the available memory is unknown; not cached"
    budget = int(CACHE_MEMORY_FRACTION * available / max(1, local_ranks))
    verdict = "cached" if need <= budget else "not cached"
    return need <= budget, (f"cache=auto: {records} images of {image_size} px need ~{need / 2**20:.0f} MiB, "
                            f"the budget is {budget / 2**20:.0f} MiB ({CACHE_MEMORY_FRACTION:g} x "
                            f"{available / 2**20:.0f} MiB available / {max(1, local_ranks)} rank(s) on this "
                            f"node): {verdict}")


# --------------------------------------------------------------------------- steps
def steps_per_epoch(files: list[tuple[str, int]], batch_size: int, world: int) -> int:
    """Equal step count on every rank (the smallest rank's full batches): allreduce needs it."""
    counts = [rank_assignment(files, r, world)[2] for r in range(world)]
    return max(1, min(counts) // batch_size)


def split_steps(data_dir: str, split: str, manifest: dict, batch_size: int, world: int,
                generated_fraction: float = -1.0) -> int:
    """Training steps per epoch for a split, TFRecord or raw index alike.

    With generated shards left out (``generated_fraction=0``) an epoch is one pass over
    the real records; mixed in at a fraction f, the real records are 1-f of the stream,
    so an epoch is the real pass divided by 1-f.
    """
    if generated_fraction == -1:
        return steps_per_epoch(shard_files(data_dir, split, manifest), batch_size, world)
    real = shard_files(data_dir, split, manifest, "real")
    return max(1, int(steps_per_epoch(real, batch_size, world) / (1 - max(0.0, generated_fraction))))


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
    records' boxes (normalised xyxy, read by the one reader) padded to N with
    :data:`PAD_BOX` and class -1 (:func:`pad_boxes`); images without boxes are kept as
    negatives; training augmentation is box-aware
    (:func:`tfxr.data.augment.augment_with_boxes`: flip and scale/crop move the boxes).
    With ``with_meta`` the dicts carry ``boxes`` and ``classes`` too.

    training: ``epochs`` consecutive epochs starting at ``epoch``, each exactly
    ``repeat_steps`` batches (default: the equal per-rank step count; this rank's
    records repeat as needed), shuffled with :func:`epoch_seed`, batched, then each
    batch augmented in the graph with the seed (epoch seed, step) (the detector: each
    image before batching, with (epoch seed, index)), last partial batch dropped.
    Iterate it once for the whole run.
    evaluation: every record of this rank once, in order, no augmentation; iterating
    it again (each validation) reuses the in-memory cache when it caches
    (:func:`cache_decision`).
    Images are float32 in [0, 1], shape (size, size, channels).
    """
    cfg = cfg or DataConfig()
    manifest = manifest or read_manifest(data_dir)
    size = cfg.image_size or int(manifest["image_size"])
    deterministic = cfg.deterministic or not training
    parallel = {"num_parallel_calls": AUTOTUNE, "deterministic": deterministic}
    # ids only when asked for: they would ride through cache and batches for nothing
    fields = ("image", "labels") + (("image_id", "patient_id") if with_meta else ()) + (("boxes",) if boxes else ())
    # generated images: as written (training only), left out, or mixed in at a fraction;
    # evaluation splits never see one (shard flag and record flag both checked)
    if cfg.generated_fraction != -1 and cfg.generated_fraction < 0:
        raise ConfigError(f"generated_fraction: {cfg.generated_fraction} is not -1 (as written), "
                          f"0 (leave out) or a fraction in (0, 1)")
    selection = "all" if training and cfg.generated_fraction == -1 else "real"
    generated = (shard_files(data_dir, split, manifest, "generated")
                 if manifest.get("format", "tfrecord") != "raw" else [])
    mixed = training and cfg.generated_fraction > 0 and bool(generated)
    if mixed and cfg.cache == "true":
        raise ConfigError("cache=true cannot be combined with 0 < generated_fraction < 1 "
                          "(the mixed stream is endless); turn one of them off")
    n_mine = rank_share(data_dir, split, manifest, rank, world, selection)
    # the mixed stream is endless: never cached (auto)
    cache = not mixed and cache_decision(cfg.cache, n_mine, size, len(manifest["label_names"]),
                                         local_ranks=dist.local_size())[0]

    def records(file_seed):
        def read(which):
            return read_examples(data_dir, split, fields=fields, rank=rank, world=world, image_size=size,
                                 manifest=manifest, shards=which, file_seed=file_seed,
                                 cycle_length=cfg.cycle_length, deterministic=deterministic)
        ds = read(selection)
        if mixed:
            mix_seed = 0 if file_seed is None else file_seed
            ds = tf.data.Dataset.sample_from_datasets(
                [ds.repeat(), read("generated").shuffle(1024, seed=mix_seed).repeat()],
                weights=[1 - cfg.generated_fraction, cfg.generated_fraction], seed=mix_seed)
        return ds

    channels, aug = cfg.channels, cfg.augment
    per_image_augment = training and bool(boxes)     # the detector's boxes move with each image

    def prepare(ep_seed):
        """One record -> its image (uint8, or float32 when augmented here with its boxes)
        and its targets / fields, before batching."""
        def fn(i, ex):
            ex = dict(ex)
            if boxes:
                found = ex.pop("boxes")
                box_labels = found["label"]
                coords = tf.stack([found[c] for c in ("xmin", "ymin", "xmax", "ymax")], axis=1)
                if per_image_augment:
                    img = tf.cast(ex["image"], tf.float32) / 255.0
                    ex["image"], box_labels, coords = augment_with_boxes(img, box_labels, coords,
                                                                         tf.stack([ep_seed, i]), aug)
                ex.update(pad_boxes(box_labels, coords, boxes))
            return ex
        return fn

    def finish(ep_seed):
        """One batch -> float32 images in [0, 1], augmented (training, no boxes), channels."""
        def fn(step, batch):
            img = batch["image"]
            if training and not per_image_augment:     # uint8 in, float32 in [0, 1] out
                img = augment_batch(img, tf.stack([ep_seed, step]), aug)
            elif img.dtype == tf.uint8:
                img = tf.cast(img, tf.float32) / 255.0
            if channels == 3:
                img = tf.repeat(img, 3, axis=-1)
            if with_meta:
                return {**batch, "image": img}
            targets = {"boxes": batch["boxes"], "classes": batch["classes"]} if boxes else batch["labels"]
            return img, targets
        return fn

    if not training:
        ds = records(None)
        if cache:
            ds = ds.cache()
        if boxes:
            ds = ds.enumerate().map(prepare(tf.constant(0, tf.int64)), **parallel)
        ds = ds.batch(cfg.batch_size)
        ds = ds.enumerate().map(finish(tf.constant(0, tf.int64)), **parallel)
    else:
        if n_mine == 0:
            raise ManifestError(f"{data_dir}: rank {rank} of {world} has no '{split}' records")
        steps = repeat_steps or split_steps(data_dir, split, manifest, cfg.batch_size, world,
                                            cfg.generated_fraction)
        # cached: one fixed record order, filled once; uncached: shard order reshuffled per epoch,
        # except in deterministic mode, which reads the cache's fixed order: its batches are the
        # same whether ``auto`` cached or not (the decision depends on the memory free)
        cached = records(None).cache() if cache else None

        def one_epoch(ep_seed):
            # the shuffles below take their seed from (seed, epoch) alone, not from TensorFlow's
            # global seed (which also breaks tensor seeds when it is 0): clear it in this graph
            tf.compat.v1.get_default_graph().seed = None
            ds = cached if cached is not None else records(None if cfg.deterministic else ep_seed)
            ds = ds.shuffle(min(cfg.shuffle_buffer, max(1, n_mine)), seed=ep_seed + 1).repeat()
            if boxes:
                ds = ds.enumerate().map(prepare(ep_seed), **parallel)
            ds = ds.batch(cfg.batch_size, drop_remainder=True).take(steps)
            return ds.enumerate().map(finish(ep_seed), **parallel)

        seeds = [epoch_seed(seed, e) for e in range(epoch, epoch + max(1, epochs))]
        ds = tf.data.Dataset.from_tensor_slices(np.asarray(seeds, np.int64)).flat_map(one_epoch)
    opts = tf.data.Options()
    opts.deterministic = cfg.deterministic
    opts.experimental_optimization.map_parallelization = True
    # no autotuning model: when a run released its training iterator, ~RootDataset::Iterator
    # waited on a tf.data thread (py-spy, a 2-rank tfxr.train), which held most 2-rank runs
    # 10-42 s past their last epoch, as long as the autotuner's optimization period had grown;
    # AUTOTUNE parallelism then runs on the private pool
    opts.autotune.enabled = False
    if cfg.threads != -1:
        opts.threading.private_threadpool_size = cfg.threads or cpu.process_cores()
    return ds.with_options(opts).prefetch(AUTOTUNE)


def training_label_counts(manifest: dict, generated_fraction: float = -1.0) -> tuple[np.ndarray, np.ndarray]:
    """Positives per label and, per label, the images with a known label (masked NaN labels
    left out) of the training stream the pipeline builds.

    As written (-1): the training split's counts.  A balanced data set's generated images
    (``balancing.added`` in the manifest) are taken out when they are left out (0) and
    weighted by the mixing fraction f otherwise: per label, the expected positive rate
    (1 - f) x real + f x generated over an epoch of real / (1 - f) images.
    """
    positives, total = label_counts(manifest, "train")
    balancing = manifest.get("balancing") or {}
    added = (balancing.get("added") or {}).get("train") or {}
    generated = int(added.get("synthetic", 0))
    if generated_fraction == -1 or not generated:
        return positives, total
    generated_positives = np.zeros_like(positives)
    generated_positives[list(manifest["label_names"]).index(balancing["class"]["label"])] = (
        generated * int(added["label_value"]))
    real_positives, real_total = positives - generated_positives, total - generated
    if generated_fraction == 0:
        return real_positives, real_total
    rate = ((1 - generated_fraction) * real_positives / real_total
            + generated_fraction * generated_positives / generated)
    stream_total = real_total / (1 - generated_fraction)
    return rate * stream_total, stream_total


def label_counts(manifest: dict, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Positives per label, and per label the images whose label is known, of a split (for
    class weights): a masked label (NaN, e.g. CheXpert's uncertain label under 'ignore') is
    neither positive nor negative."""
    if split not in manifest.get("splits", {}):
        raise ManifestError(f"the data has no '{split}' split (has {sorted(manifest.get('splits', {}))})")
    s = manifest["splits"][split]
    names = manifest["label_names"]
    masked = s.get("label_masked") or {}
    known = [int(s["count"]) - int(masked.get(n, 0)) for n in names]
    return np.asarray([s["label_counts"][n] for n in names], float), np.asarray(known, float)
