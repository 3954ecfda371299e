"""The tf.data pipeline: rank sharding, determinism, augmentation, raw vs TFRecord input."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import tfxr
from tfxr.data.augment import AugmentConfig, augment
from tfxr.data.augment import augment_batch
from tfxr.data.pipeline import (CACHE_MEMORY_FRACTION, DataConfig, build_dataset, cache_bytes, cache_decision,
                                epoch_seed, steps_per_epoch)
from tfxr.data.records import rank_assignment, read_manifest, shard_files


def _ids(ds) -> list[str]:
    return [i.decode() for b in ds for i in b["image_id"].numpy()]


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_rank_sharding_is_disjoint_and_complete(synthetic_tfrec, world):
    m = read_manifest(str(synthetic_tfrec))
    cfg = DataConfig(batch_size=7, deterministic=True)
    for split in m["splits"]:
        every = set(_ids(build_dataset(str(synthetic_tfrec), split, cfg, training=False, with_meta=True)))
        assert len(every) == m["splits"][split]["count"]
        parts = [_ids(build_dataset(str(synthetic_tfrec), split, cfg, training=False, rank=r, world=world,
                                    with_meta=True)) for r in range(world)]
        union = set().union(*map(set, parts))
        assert union == every and sum(map(len, parts)) == len(every)        # disjoint + complete


def test_training_dataset_has_equal_steps_on_every_rank(synthetic_tfrec):
    m = read_manifest(str(synthetic_tfrec))
    files = shard_files(str(synthetic_tfrec), "train", m)
    for world in (1, 2, 3):
        steps = steps_per_epoch(files, 8, world)
        counts = [rank_assignment(files, r, world)[2] for r in range(world)]
        assert steps == min(counts) // 8
        for r in range(world):
            ds = build_dataset(str(synthetic_tfrec), "train", DataConfig(batch_size=8), training=True,
                               rank=r, world=world)
            shapes = [x.shape for x, _ in ds]
            assert len(shapes) == steps and all(s == (8, 64, 64, 1) for s in shapes)


def test_deterministic_mode_repeats_and_epochs_differ(synthetic_tfrec):
    cfg = DataConfig(batch_size=16, deterministic=True)

    def first(epoch):
        x, y = next(iter(build_dataset(str(synthetic_tfrec), "train", cfg, training=True, epoch=epoch)))
        return x.numpy()

    a, b, c = first(0), first(0), first(1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and a.dtype == np.float32


def test_resize_and_channels_options(synthetic_tfrec):
    cfg = DataConfig(batch_size=4, image_size=32, channels=3, deterministic=True)
    x, y = next(iter(build_dataset(str(synthetic_tfrec), "val", cfg, training=False)))
    assert x.shape == (4, 32, 32, 3) and y.shape == (4, 1)
    np.testing.assert_array_equal(x[..., 0], x[..., 2])


def test_raw_input_matches_tfrecord_input(tmp_path):
    args = ["--source", "synthetic", "--num-images", "40", "--synthetic-size", "96", "--image-size", "48", "--quiet"]
    tfxr("tfxr.tfrecords", "write", *args, "--shards", "2", "--out", str(tmp_path / "rec"))
    tfxr("tfxr.tfrecords", "write", *args, "--out", str(tmp_path / "raw"), "--format", "raw")  # no --shards
    cfg = DataConfig(batch_size=8, deterministic=True)

    def by_id(d):
        out = {}
        for b in build_dataset(str(d), "train", cfg, training=False, with_meta=True):
            for i, im, lab in zip(b["image_id"].numpy(), b["image"].numpy(), b["labels"].numpy()):
                out[i.decode()] = (im, lab)
        return out

    rec, raw = by_id(tmp_path / "rec"), by_id(tmp_path / "raw")
    assert rec.keys() == raw.keys() and len(rec) > 20
    for k in rec:
        assert rec[k][0].shape == raw[k][0].shape == (48, 48, 1)
        np.testing.assert_array_equal(rec[k][1], raw[k][1])
        # PIL (converter) and TF (raw path) resize slightly differently
        assert np.abs(rec[k][0] - raw[k][0]).mean() < 0.02


@pytest.mark.parametrize("cache", ["false", "true", "auto"])
def test_one_dataset_spans_epochs_and_epoch_k_is_the_same_when_resumed(synthetic_tfrec, cache):
    """A run iterates one dataset over all its epochs; epoch 1 of it equals epoch 1 built alone
    (what a run resumed at epoch 1 reads), with and without the in-memory cache."""
    cfg = DataConfig(batch_size=16, deterministic=True, cache=cache)
    steps = 3

    def batches(epoch, epochs):
        ds = build_dataset(str(synthetic_tfrec), "train", cfg, training=True, epoch=epoch, epochs=epochs,
                           seed=4, repeat_steps=steps)
        return [x.numpy() for x, _ in ds]

    whole = batches(0, 2)
    assert len(whole) == 2 * steps
    resumed = batches(1, 1)
    for a, b in zip(whole[steps:], resumed):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(whole[0], whole[steps])            # epochs reshuffle and re-augment


def test_class_balance_of_the_training_stream_follows_the_generated_fraction():
    """Generated images count toward class weights only as far as the stream holds them."""
    import numpy as np

    from tfxr.data.pipeline import training_label_counts

    # 100 real images (10 normal = label 0), plus 30 generated normals from `gan balance`
    manifest = {"label_names": ["Pneumonia"],
                "splits": {"train": {"count": 130, "label_counts": {"Pneumonia": 90}}},
                "balancing": {"class": {"label": "Pneumonia", "value": 0},
                              "added": {"train": {"count": 30, "label_value": 0, "synthetic": 30,
                                                  "oversampled": 0}}}}
    positives, total = training_label_counts(manifest, -1.0)              # as written
    assert (positives.tolist(), total) == ([90.0], 130)
    positives, total = training_label_counts(manifest, 0.0)               # generated left out
    assert (positives.tolist(), total) == ([90.0], 100)
    positives, total = training_label_counts(manifest, 0.5)               # half the stream generated
    assert total == 200 and positives[0] == np.float64(0.5 * 0.9 * 200)
    oversampled = {**manifest, "balancing": {**manifest["balancing"], "added": {"train": {
        "count": 30, "label_value": 0, "synthetic": 0, "oversampled": 30}}}}
    assert training_label_counts(oversampled, 0.0)[1] == 130                # real duplicates stay


def test_input_threads_private_pool_by_default(synthetic_tfrec, monkeypatch):
    from tfxr.data.pipeline import DataConfig, build_dataset

    monkeypatch.setenv("TFXR_CPU_THREADS", "3")
    def pool(threads):
        ds = build_dataset(str(synthetic_tfrec), "val", DataConfig(batch_size=4, threads=threads), training=False)
        return ds.options().threading.private_threadpool_size
    assert pool(0) == 3          # this process's cores (tfxr.cpu.process_cores)
    assert pool(5) == 5
    assert pool(-1) is None      # tf.data's shared pool


def test_training_batches_are_augmented_whole_with_the_epoch_and_step_seed(synthetic_tfrec):
    """Batch k of epoch e is augment_batch(the same batch unaugmented, (epoch seed, k)): the
    augmentation runs on whole batches after batching, seeded by (seed, epoch, step)."""
    def batches(aug, epoch):
        cfg = DataConfig(batch_size=8, deterministic=True, augment=aug)
        return [x for x, _ in build_dataset(str(synthetic_tfrec), "train", cfg, training=True, seed=3, epoch=epoch,
                                            repeat_steps=3)]
    for epoch in (0, 2):
        plain, augmented = batches(AugmentConfig(enabled=False), epoch), batches(AugmentConfig(), epoch)
        for k, (a, b) in enumerate(zip(plain, augmented)):
            expected = augment_batch(a, tf.constant([epoch_seed(3, epoch), k], tf.int64), AugmentConfig())
            np.testing.assert_allclose(b, expected, atol=1e-6)
            assert np.abs(a.numpy() - b.numpy()).mean() > 1e-3


def test_deterministic_batches_are_the_same_cached_or_not(synthetic_tfrec):
    """What cache=auto decides (it depends on the memory free) never changes a deterministic run's batches."""
    def batches(cache):
        cfg = DataConfig(batch_size=8, deterministic=True, cache=cache)
        return [x.numpy() for x, _ in build_dataset(str(synthetic_tfrec), "train", cfg, training=True, seed=1,
                                                    epochs=2, repeat_steps=4)]
    for a, b in zip(batches("true"), batches("false")):
        np.testing.assert_array_equal(a, b)


def test_cache_auto_caches_what_fits_a_share_of_the_available_memory(monkeypatch):
    need = cache_bytes(1000, 224, 14)
    assert need == 1000 * (224 * 224 + 56 + 512)
    fits = int(need / CACHE_MEMORY_FRACTION) + 1              # just enough memory for one process
    assert cache_decision("auto", 1000, 224, 14, available=fits)[0]
    cached, why = cache_decision("auto", 1000, 224, 14, available=fits, local_ranks=2)   # two ranks share it
    assert not cached and "2 rank(s)" in why and "not cached" in why
    assert not cache_decision("auto", 1000, 224, 14, available=fits - 2)[0]
    monkeypatch.setattr("tfxr.cpu.memory_available", lambda: None)
    assert not cache_decision("auto", 10, 32)[0]                         # memory unknown: no cache
    monkeypatch.setattr("tfxr.cpu.memory_available", lambda: fits)
    assert cache_decision("auto", 1000, 224, 14)[0]                      # default: this machine's memory
    assert cache_decision("true", 10**9, 1024, available=0) == (True, "cache=true")
    assert cache_decision("false", 1, 8, available=10**12) == (False, "cache=false")
    assert DataConfig().cache == "auto" and DataConfig(cache=True).cache == "true"


def test_cache_option_spellings():
    from tfxr.config import ConfigError, parse_config
    from tfxr.train import TrainConfig

    def cache(*argv):
        return parse_config(TrainConfig, list(argv), "t")[0].pipeline.cache
    assert cache() == "auto"
    assert cache("--cache") == "true" and cache("--no-cache") == "false" and cache("--cache", "auto") == "auto"
    assert cache("--set", "pipeline.cache=true") == "true" and cache("--set", "pipeline.cache=off") == "false"
    with pytest.raises(ConfigError, match="--cache: unknown value 'sometimes'"):
        cache("--cache", "sometimes")
