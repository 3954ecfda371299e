"""Raw images -> sharded TFRecords: round trip, determinism across ranks/workers, bad input, resume."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import shard_hashes, shared, tfxr
from tfxr.data import imageio
from tfxr.data.records import (ShardWriter, build_manifest, check_shards, feature_spec, plan_shards,
                                read_manifest, write_manifest)
from tfxr.data.types import Item, Source
from tfxr.errors import ManifestError


def _write_tb_dir(root: Path, n: int = 12, size: int = 40) -> Path:
    """A small TB-style folder of real-looking images with labels.csv."""
    img = root / "images"
    img.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["image,tb,source"]
    for i in range(n):
        name = f"CHNCXR_{i:04d}_{i % 2}.png"
        Image.fromarray(rng.integers(0, 255, (size + i, size), dtype=np.uint8)).save(img / name)
        rows.append(f"{name},{i % 2},test")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_round_trip_equals_resized_source(tmp_path):
    """image -> TFRecord -> pipeline equals the resized source pixels exactly."""
    from tfxr.data.pipeline import DataConfig, build_dataset

    src = _write_tb_dir(tmp_path / "raw")
    out = tmp_path / "rec"
    tfxr("tfxr.tfrecords", "write", "--source", "tb", "--images", str(src / "images"), "--labels",
         str(src / "labels.csv"), "--out", str(out), "--image-size", "32", "--shards", "2", "--quiet")
    m = read_manifest(str(out))
    seen = 0
    for split in m["splits"]:
        ds = build_dataset(str(out), split, DataConfig(batch_size=4, deterministic=True), training=False,
                           with_meta=True)
        for b in ds:
            for img, lab, iid in zip(b["image"].numpy(), b["labels"].numpy(), b["image_id"].numpy()):
                name = iid.decode()
                expect = imageio.resize(imageio.read_image_file(str(src / "images" / name)), 32)
                np.testing.assert_array_equal(np.rint(img[..., 0] * 255).astype(np.uint8), expect)
                assert lab[0] == float(name.endswith("_1.png"))
                seen += 1
    assert seen == 12


def test_manifest_contents(synthetic_tfrec):
    m = read_manifest(str(synthetic_tfrec))
    assert m["schema_version"] == 1 and m["image_size"] == 64 and m["label_names"] == ["Tuberculosis"]
    assert sum(s["count"] for s in m["splits"].values()) == 240
    assert "--num-images 240" in m["command"]
    for split, info in m["splits"].items():
        assert len(info["shards"]) == 4
        assert sum(s["count"] for s in info["shards"]) == info["count"]
        for s in info["shards"]:
            data = (synthetic_tfrec / s["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == s["sha256"]
            assert s["file"].startswith(f"{split}-") and s["file"].endswith("-of-00004.tfrecord")
    fr = m["splits"]["train"]["count"] / 240
    assert 0.6 < fr < 0.8
    for split, info in m["splits"].items():  # synthetic phantoms are counted as such, never as real
        assert info["origins"] == {"real": 0, "phantom": info["count"], "generated": 0}
        for s in info["shards"]:
            assert s["bytes"] == (synthetic_tfrec / s["file"]).stat().st_size


def test_shards_and_manifest_are_readable_by_the_group_and_others(synthetic_tfrec):
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    m = read_manifest(str(synthetic_tfrec))
    files = [synthetic_tfrec / "manifest.json"] + [synthetic_tfrec / s["file"] for info in m["splits"].values()
                                                   for s in info["shards"]]
    files += list((synthetic_tfrec / ".tfxr-shards").iterdir())
    assert {f.stat().st_mode & 0o777 for f in files} == {expected}


def _pixels(value: int):
    """A picklable image callable for ShardWriter items (arrays work too)."""
    return np.full((20, 20), value, np.uint8)


def test_origin_of_each_image_is_recorded_in_records_and_manifest(tmp_path):
    items = [Item(f"real_{i}", f"p{i}", (float(i % 2),), _pixels(10 * i), origin="real") for i in range(3)]
    items += [Item(f"phantom_{i}", f"q{i}", (1.0,), _pixels(100 + i), origin="phantom") for i in range(2)]
    items += [Item("generated_0", "g0", (1.0,), _pixels(200), origin="generated")]
    source = Source("mixed", ["Finding"], items)
    plans = plan_shards({"train": items}, 2, seed=0)
    with ShardWriter(str(tmp_path), 16, 1) as writer:
        results = [writer.write(p) for p in plans]
    manifest = build_manifest(source, results, image_size=16, seed=0, fractions=(1, 0, 0), command=["t"],
                              fmt="tfrecord", source_rejects=[])
    assert manifest["splits"]["train"]["origins"] == {"real": 3, "phantom": 2, "generated": 1}
    files = [str(tmp_path / p.name) for p in plans]
    spec = feature_spec(1)
    found = {}
    for record in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(record, spec)
        found[ex["image/id"].numpy().decode()] = (ex["image/origin"].numpy().decode(),
                                                  int(ex["image/synthetic"].numpy()))
    assert found == {it.image_id: (it.origin, int(it.origin == "generated")) for it in items}


def _write_small_dir(tmp_path):
    items = [Item(f"img_{i}", f"p{i}", (float(i % 2),), _pixels(i * 9)) for i in range(12)]
    plans = plan_shards({"train": items[:8], "val": items[8:]}, 2, seed=0)
    with ShardWriter(str(tmp_path), 16, 1) as writer:
        results = [writer.write(p) for p in plans]
    manifest = build_manifest(Source("small", ["Finding"], items), results, image_size=16, seed=0,
                              fractions=(0.7, 0.3, 0.0), command=["t"], fmt="tfrecord", source_rejects=[])
    write_manifest(str(tmp_path), manifest)
    return read_manifest(str(tmp_path))


def test_damaged_or_old_shard_state_rewrites_the_shard(tmp_path):
    m = _write_small_dir(tmp_path)
    states = sorted((tmp_path / ".tfxr-shards").iterdir())
    states[0].write_text("{not json")
    old = json.loads(states[1].read_text())
    del old["origins"]  # written before origins were counted
    states[1].write_text(json.dumps(old))
    items = [Item(f"img_{i}", f"p{i}", (float(i % 2),), _pixels(i * 9)) for i in range(12)]
    with ShardWriter(str(tmp_path), 16, 1) as writer:
        results = [writer.write(p) for p in plan_shards({"train": items[:8], "val": items[8:]}, 2, seed=0)]
    assert [r.reused for r in results] == [False, False, True, True]
    assert [r.sha256 for r in results] == [s["sha256"] for split in ("train", "val")
                                           for s in m["splits"][split]["shards"]]
    assert all(sum(r.origins.values()) == r.count for r in results)


def test_check_shards_names_a_missing_or_truncated_shard(tmp_path):
    m = _write_small_dir(tmp_path)
    check_shards(str(tmp_path), m)  # intact: no error
    val_shard = tmp_path / m["splits"]["val"]["shards"][1]["file"]
    val_shard.write_bytes(val_shard.read_bytes()[:-5])
    check_shards(str(tmp_path), m, ["train"])  # only the requested splits are checked
    with pytest.raises(ManifestError, match=re.escape(str(val_shard)) + r": \d+ bytes, the manifest says"):
        check_shards(str(tmp_path), m)
    train_shard = tmp_path / m["splits"]["train"]["shards"][0]["file"]
    train_shard.unlink()
    with pytest.raises(ManifestError, match=re.escape(str(train_shard)) + ": shard listed in the manifest is missing"):
        check_shards(str(tmp_path), m, ["train", "val"])
    with pytest.raises(ManifestError, match="no split 'test'"):
        check_shards(str(tmp_path), m, ["test"])


@pytest.mark.parametrize("damage, named", [
    (lambda m: m.pop("label_names"), "label_names"),
    (lambda m: m["splits"]["val"].pop("count"), "splits.val.count"),
    (lambda m: m["splits"]["train"]["shards"][1].pop("sha256"), "splits.train.shards[1].sha256"),
    (lambda m: m.update(splits=[]), "splits (not a mapping)"),
])
def test_manifest_with_missing_keys_names_them(tmp_path, damage, named):
    m = _write_small_dir(tmp_path)
    damage(m)
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match="missing key\\(s\\): .*" + re.escape(named)):
        read_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="not a manifest"):
        read_manifest(str(tmp_path))


def test_mpi_conversion_equals_single_process(tmp_path):
    args = ["tfxr.tfrecords", "write", "--source", "synthetic", "--num-images", "90", "--image-size", "48",
            "--shards", "3", "--quiet"]
    tfxr(*args, "--out", str(tmp_path / "one"))
    tfxr(*args, "--out", str(tmp_path / "two"), np=2)
    tfxr(*args, "--out", str(tmp_path / "pool"), "--workers", "2")
    one, two, pool = (shard_hashes(tmp_path / d) for d in ("one", "two", "pool"))
    assert len(one) == 9 and one == two == pool
    m1, m2 = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("one", "two"))
    assert m1["splits"] == m2["splits"]


@pytest.fixture()
def bad_tb(tmp_path) -> Path:
    root = _write_tb_dir(tmp_path / "raw", n=6)
    img = root / "images"
    good = (img / "CHNCXR_0000_0.png").read_bytes()
    (img / "CHNCXR_0100_1.png").write_bytes(os.urandom(300))                 # corrupt
    (img / "CHNCXR_0101_0.png").write_bytes(good[: len(good) // 2])          # truncated
    (img / "CHNCXR_0102_1.png").write_bytes(b"")                             # empty
    os.symlink(tmp_path / "nowhere.png", img / "CHNCXR_0103_0.png")          # unreadable
    (img / "CHNCXR_0104_1.png").write_bytes(good)                            # image without label
    (img / "CHNCXR_0105_1.png").write_bytes(good)                            # unknown label value
    with open(root / "labels.csv", "a") as fh:
        fh.write("CHNCXR_0100_1.png,1,t\nCHNCXR_0101_0.png,0,t\nCHNCXR_0102_1.png,1,t\n"
                 "CHNCXR_0103_0.png,0,t\nCHNCXR_0105_1.png,TB?,t\nMISSING_0001_1.png,1,t\n")
    return root


def test_bad_input_reported_and_conversion_goes_on(bad_tb, tmp_path):
    out = tmp_path / "rec"
    r = tfxr("tfxr.tfrecords", "write", "--source", "tb", "--images", str(bad_tb / "images"), "--labels",
             str(bad_tb / "labels.csv"), "--out", str(out), "--image-size", "32", "--shards", "1", "--quiet")
    m = read_manifest(str(out))
    rej = {os.path.basename(x["file"]): x["reason"] for x in m["rejected"]}
    assert "not a recognised image" in rej["CHNCXR_0100_1.png"] or "corrupt" in rej["CHNCXR_0100_1.png"]
    assert "truncated" in rej["CHNCXR_0101_0.png"] or "corrupt" in rej["CHNCXR_0101_0.png"]
    assert "empty" in rej["CHNCXR_0102_1.png"]
    assert "unreadable" in rej["CHNCXR_0103_0.png"]
    assert "without a label" in rej["CHNCXR_0104_1.png"]
    assert "unknown label value" in rej["CHNCXR_0105_1.png"]
    assert "without an image" in rej["MISSING_0001_1.png"]
    assert len(rej) == 7
    assert sum(s["count"] for s in m["splits"].values()) == 6          # the good ones all converted
    for name in rej:
        assert name in r.stderr                                          # and said on stderr
    # past the bound: non-zero exit, but shards and manifest are still written
    out2 = tmp_path / "rec2"
    r2 = tfxr("tfxr.tfrecords", "write", "--source", "tb", "--images", str(bad_tb / "images"), "--labels",
              str(bad_tb / "labels.csv"), "--out", str(out2), "--image-size", "32", "--shards", "1",
              "--max-rejects", "3", "--quiet", check=False)
    assert r2.returncode == 3 and "exceed --max-rejects 3" in r2.stderr  # EXIT_REJECTED, not a crash
    assert shard_hashes(out2) == shard_hashes(out)


def test_unusable_arguments_give_clear_errors(tmp_path):
    r = tfxr("tfxr.tfrecords", "write", "--source", "tb", "--images", str(tmp_path / "nope"), "--out",
             str(tmp_path / "o"), check=False)
    assert r.returncode == 2 and "nope: no such image folder" in r.stderr and "Traceback" not in r.stderr
    r = tfxr("tfxr.tfrecords", "write", "--source", "nih", "--images", str(tmp_path), "--out",
             str(tmp_path / "o"), check=False)
    assert r.returncode == 2 and "needs --labels" in r.stderr
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest(str(tmp_path))


def test_interrupted_run_leaves_no_half_shard_and_rerun_finishes(tmp_path, monkeypatch):
    from tfxr.data import records
    from tfxr.data.sources import PhantomReader
    from tfxr.data.splits import assign_splits

    src = PhantomReader(40, 32, seed=3).read()
    plans = plan_shards(assign_splits(src.items, seed=0), 2, seed=0)
    out = tmp_path / "rec"
    out.mkdir()
    with ShardWriter(str(out), 32, 1) as w:
        ref = [w.write(p) for p in plans]
    ref_bytes = shard_hashes(out)
    shutil.rmtree(out)
    out.mkdir()
    real = records.make_example
    calls = {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] > 30:
            raise KeyboardInterrupt("simulated kill")
        return real(*a, **k)

    monkeypatch.setattr(records, "make_example", dying)
    with pytest.raises(KeyboardInterrupt):
        with ShardWriter(str(out), 32, 1) as w:
            for p in plans:
                w.write(p)
    done = shard_hashes(out)
    assert 0 < len(done) < len(plans)                       # some shards finished, others not
    assert all(ref_bytes[k] == v for k, v in done.items())  # finished ones are complete
    assert not list(out.glob(".tmp-*"))                     # no half shard left behind
    monkeypatch.setattr(records, "make_example", real)
    with ShardWriter(str(out), 32, 1) as w:
        res = [w.write(p) for p in plans]
    assert shard_hashes(out) == ref_bytes
    assert sum(r.reused for r in res) == len(done)
    assert [r.sha256 for r in res] == [r.sha256 for r in ref]


def test_changed_input_invalidates_reused_shard(tmp_path):
    src = _write_tb_dir(tmp_path / "raw", n=6)
    args = ["tfxr.tfrecords", "write", "--source", "tb", "--images", str(src / "images"), "--labels",
            str(src / "labels.csv"), "--out", str(tmp_path / "rec"), "--image-size", "16", "--shards", "1"]
    tfxr(*args, "--quiet")
    before = shard_hashes(tmp_path / "rec")
    img = src / "images" / "CHNCXR_0003_1.png"
    Image.fromarray(np.full((50, 40), 200, np.uint8)).save(img)
    r = tfxr(*args)
    after = shard_hashes(tmp_path / "rec")
    changed = [k for k in before if before[k] != after[k]]
    assert len(changed) == 1 and "reused" in r.stderr        # only the shard with that image
    assert tfxr("tfxr.tfrecords", "verify", str(tmp_path / "rec")).returncode == 0
    shard = tmp_path / "rec" / changed[0]
    shard.write_bytes(shard.read_bytes()[:-3])
    v = tfxr("tfxr.tfrecords", "verify", str(tmp_path / "rec"), check=False)
    assert v.returncode == 3 and "sha256 differs" in v.stderr


def test_nih_sample_converts_with_boxes(tmp_path):
    images = shared("nih_chestxray14_sample", "images")
    labels = shared("nih_chestxray14_sample", "Data_Entry_2017_sample.csv")
    bbox = shared("nih_chestxray14_metadata", "BBox_List_2017.csv.gz")
    # only a few images, through a CheXNet-style list, to stay fast
    names = sorted(os.listdir(images))[:24]
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(names) + "\n")
    out = tmp_path / "rec"
    tfxr("tfxr.tfrecords", "write", "--source", "nih", "--images", str(images), "--labels", str(labels),
         "--bbox", str(bbox), "--split-list", f"trainval={lst}", "--out", str(out), "--image-size", "64",
         "--shards", "2", "--quiet")
    m = read_manifest(str(out))
    assert len(m["label_names"]) == 14 and m["rejected"] == []
    assert m["splits"]["train"]["count"] + m["splits"]["val"]["count"] == 24
    assert "test" not in m["splits"]


def test_raw_index_keeps_paths_and_ids_with_commas_and_quotes(tmp_path):
    """The raw-image index is CSV: a comma or a quote in a path or id must not shift columns."""
    from tfxr.data.pipeline import DataConfig, build_dataset

    img_dir = tmp_path / 'we,ird "images"'
    img_dir.mkdir()
    items = []
    for i in range(3):
        path = img_dir / f'x,{i}"q.png'
        Image.fromarray(np.full((12, 12), 40 * (i + 1), np.uint8)).save(path)
        items.append(Item(f'id,{i}"', f'p,{i}', (float(i % 2),), str(path)))
    out = tmp_path / "raw"
    out.mkdir()
    plans = plan_shards({"train": items}, 1, seed=0, fmt="raw")
    with ShardWriter(str(out), 12, 1, fmt="raw") as w:
        results = [w.write(p) for p in plans]
    write_manifest(str(out), build_manifest(Source("t", ["F"], items, info={"images": str(img_dir)}), results,
                                            image_size=12, seed=0, fractions=(1, 0, 0), command=["t"],
                                            fmt="raw", source_rejects=[]))
    batch = next(iter(build_dataset(str(out), "train", DataConfig(batch_size=8, deterministic=True),
                                    training=False, with_meta=True)))
    got = {i.decode(): (float(lab[0]), int(img.numpy().max() * 255 + 0.5))
           for i, lab, img in zip(batch["image_id"].numpy(), batch["labels"].numpy(), batch["image"])}
    assert got == {f'id,{i}"': (float(i % 2), 40 * (i + 1)) for i in range(3)}


def test_raw_and_png_encodings_give_identical_pixels_through_the_pipeline(tmp_path):
    """--encoding raw stores uint8 pixels (no PNG decode on read); the manifest says which,
    the one reader reads both, and both give the same images, labels and ids."""
    from tfxr.data.pipeline import DataConfig, build_dataset
    from tfxr.data.splits import assign_splits
    from tfxr.data.sources import PhantomReader

    src = PhantomReader(30, 32, seed=5).read()
    splits = assign_splits(src.items, seed=0)
    batches = {}
    for encoding in ("png", "raw"):
        out = tmp_path / encoding
        out.mkdir()
        with ShardWriter(str(out), 32, 1, encoding=encoding) as w:
            results = [w.write(p) for p in plan_shards(splits, 2, seed=0)]
        write_manifest(str(out), build_manifest(src, results, image_size=32, seed=0, fractions=(0.7, 0.1, 0.2),
                                                command=["t"], fmt="tfrecord", source_rejects=[],
                                                encoding=encoding))
        m = read_manifest(str(out))
        assert m["encoding"] == encoding
        batches[encoding] = [next(iter(build_dataset(str(out), split, DataConfig(batch_size=64, image_size=size,
                                                                                 deterministic=True),
                                                     training=False, with_meta=True)))
                             for split in m["splits"] for size in (0, 24)]
    first = tf.data.TFRecordDataset(str(tmp_path / "raw" / read_manifest(str(tmp_path / "raw"))
                                        ["splits"]["train"]["shards"][0]["file"])).take(1)
    ex = tf.io.parse_single_example(next(iter(first)), {"image/format": tf.io.FixedLenFeature([], tf.string),
                                                        "image/encoded": tf.io.FixedLenFeature([], tf.string)})
    assert ex["image/format"].numpy() == b"raw" and len(ex["image/encoded"].numpy()) == 32 * 32
    assert len(batches["png"]) == len(batches["raw"]) > 0
    for a, b in zip(batches["png"], batches["raw"]):
        np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
        np.testing.assert_array_equal(a["labels"].numpy(), b["labels"].numpy())
        assert list(a["image_id"].numpy()) == list(b["image_id"].numpy())
