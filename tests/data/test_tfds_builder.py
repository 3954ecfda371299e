"""The TFDS builder gives the same examples as tfxr's own pipeline, offline, from a tiny
tfxr directory (real-like, phantom and generated images; a box)."""
from __future__ import annotations

import numpy as np
import pytest

import tensorflow_datasets as tfds   # installed with tfxr (install_requires): missing must fail, not skip

from tfxr.data.pipeline import DataConfig, build_dataset
from tfxr.data.records import ShardWriter, build_manifest, plan_shards, read_manifest, write_manifest
from tfxr.data.tfds_builder import TfxrShards, TfxrShardsConfig, tfds_builder
from tfxr.data.types import Box, Item, Source
from tfxr.errors import ManifestError

LABELS = ["Effusion", "Mass"]


def _image(seed: int):
    return np.random.default_rng(seed).integers(0, 256, (24, 20), dtype=np.uint8)


@pytest.fixture(scope="module")
def tfxr_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tfxr")
    origins = ["real"] * 6 + ["phantom"] * 3 + ["generated"]
    items = [Item(f"img_{i:02d}", f"p{i // 2}", (float(i % 2), float(i % 3 == 0)), _image(i), origin=origin)
             for i, origin in enumerate(origins)]
    items[0].boxes = (Box(1, 0.1, 0.2, 0.5, 0.6),)
    splits = {"train": items[:7], "val": items[7:]}
    plans = plan_shards(splits, 2, seed=0)
    with ShardWriter(str(out), 16, len(LABELS)) as writer:
        results = [writer.write(p) for p in plans]
    write_manifest(str(out), build_manifest(Source("tiny", LABELS, items), results, image_size=16, seed=0,
                                            fractions=(0.7, 0.3, 0.0), command=["t"], fmt="tfrecord",
                                            source_rejects=[]))
    return out


def _pipeline_examples(data_dir, split) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    ds = build_dataset(str(data_dir), split, DataConfig(batch_size=3, deterministic=True), training=False,
                       with_meta=True)
    found = {}
    for batch in ds:
        for img, lab, iid, pid in zip(*(batch[k].numpy() for k in ("image", "labels", "image_id", "patient_id"))):
            found[iid.decode()] = (np.rint(img * 255).astype(np.uint8), lab, pid.decode())
    return found


def _tfds_examples(ds) -> dict[str, dict]:
    return {ex["image_id"].decode(): ex for ex in tfds.as_numpy(ds)}


def test_builder_gives_the_same_examples_as_the_tfxr_pipeline(tfxr_dir, tmp_path):
    builder = tfds_builder(str(tfxr_dir), str(tmp_path / "tfds"))
    assert set(builder.info.splits) == {"train", "val"}
    assert builder.info.metadata["label_names"] == LABELS
    for split in ("train", "val"):
        expected = _pipeline_examples(tfxr_dir, split)
        got = _tfds_examples(builder.as_dataset(split=split))
        assert sorted(got) == sorted(expected) and builder.info.splits[split].num_examples == len(expected)
        for image_id, (image, labels, patient) in expected.items():
            np.testing.assert_array_equal(got[image_id]["image"], image)
            np.testing.assert_array_equal(got[image_id]["labels"], labels)
            assert got[image_id]["patient_id"].decode() == patient
    train = _tfds_examples(builder.as_dataset(split="train"))
    origins = builder.info.features["origin"].names
    assert {k: origins[v["origin"]] for k, v in train.items()} == {
        f"img_{i:02d}": "real" if i < 6 else "phantom" for i in range(7)}
    np.testing.assert_allclose(train["img_00"]["boxes"]["bbox"], [[0.2, 0.1, 0.6, 0.5]])  # ymin, xmin, ...
    assert list(train["img_00"]["boxes"]["label"]) == [1] and len(train["img_01"]["boxes"]["label"]) == 0
    manifest = read_manifest(str(tfxr_dir))
    val = manifest["splits"]["val"]   # a generated image never reaches val/test, as in the pipeline
    assert val["origins"]["generated"] == 1
    assert sum(1 for _ in builder.as_dataset(split="val")) == val["count"] - val["origins"]["generated"]


def test_tfds_load_and_reading_without_tfxr_code(tfxr_dir, tmp_path):
    config = TfxrShardsConfig.for_directory(str(tfxr_dir))
    ds = tfds.load("tfxr_shards", split="val", data_dir=str(tmp_path), as_supervised=True,
                   builder_kwargs={"config": config},
                   download_and_prepare_kwargs={"download_config": tfds.download.DownloadConfig(
                       manual_dir=str(tfxr_dir))})
    pairs = list(tfds.as_numpy(ds))
    expected = _pipeline_examples(tfxr_dir, "val")
    assert sorted(lab.tolist() for _, lab in pairs) == sorted(v[1].tolist() for v in expected.values())
    assert sorted(img.tobytes() for img, _ in pairs) == sorted(v[0][..., None].tobytes()
                                                                for v in expected.values())
    prepared = tfds.builder_from_directory(str(tmp_path / "tfxr_shards" / config.name / "1.0.0"))
    assert prepared.info.splits["val"].num_examples == 2 and prepared.info.splits["train"].num_examples == 7


def test_builder_refuses_what_it_cannot_read(tfxr_dir, tmp_path):
    with pytest.raises(ManifestError, match="no manifest"):
        TfxrShardsConfig.for_directory(str(tmp_path))
    with pytest.raises(ManifestError, match="needs config=TfxrShardsConfig.for_directory"):
        TfxrShards(data_dir=str(tmp_path / "tfds")).info  # noqa: B018 - no tfxr directory given


def test_builder_reads_raw_encoded_records_as_the_same_images(tmp_path):
    """A directory written with --encoding raw gives TFDS the same pixels (TFDS encodes them as PNG)."""
    items = [Item(f"img_{i:02d}", f"p{i}", (float(i % 2), 0.0), _image(i)) for i in range(4)]
    (tmp_path / "raw").mkdir()
    with ShardWriter(str(tmp_path / "raw"), 16, len(LABELS), encoding="raw") as writer:
        results = [writer.write(p) for p in plan_shards({"train": items}, 1, seed=0)]
    write_manifest(str(tmp_path / "raw"), build_manifest(Source("tiny", LABELS, items), results, image_size=16,
                                                         seed=0, fractions=(1, 0, 0), command=["t"],
                                                         fmt="tfrecord", source_rejects=[], encoding="raw"))
    expected = _pipeline_examples(tmp_path / "raw", "train")
    got = _tfds_examples(tfds_builder(str(tmp_path / "raw"), str(tmp_path / "tfds")).as_dataset(split="train"))
    assert set(got) == set(expected) and len(got) == 4
    for image_id, (img, lab, _pid) in expected.items():
        np.testing.assert_array_equal(got[image_id]["image"], img)
        np.testing.assert_array_equal(got[image_id]["labels"], lab)
