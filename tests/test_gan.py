"""`python -m tfxr.gan`: train (mpirun -np 2), sample, balance, and clear errors."""
from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run, tfxr
from tfxr.data.records import feature_spec, read_manifest
from tfxr.gan import main as gan_main
from tfxr.train import main as train_main

TINY = ["--batch-size", "8", "--set", "g_filters=4", "--set", "d_filters=4", "--no-progress"]


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _records(path, num_labels=1):
    spec = feature_spec(num_labels)
    return [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(str(path))]


@pytest.fixture(scope="module")
def gan_run(synthetic_tfrec, tmp_path_factory):
    """One epoch of the CLI under mpirun -np 2 (rank 0 alone writes)."""
    out = tmp_path_factory.mktemp("gan") / "run"
    r = tfxr("tfxr.gan", "train", "--data", str(synthetic_tfrec), "--out", str(out), "--epochs", "2",
             "--optimizer", "rmsprop", "--sample-epochs", "2", *TINY, np=2)
    assert "2 worker(s)" in r.stderr
    return out


def test_train_under_mpirun_writes_the_run(gan_run, synthetic_tfrec):
    history = json.loads((gan_run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h["d_loss"]) and 0 <= h["d_real"] <= 1 for h in history)
    assert (gan_run / "samples" / "epoch-0002.png").exists() and not (gan_run / "samples" / "epoch-0001.png").exists()
    assert (gan_run / "losses.png").read_bytes()[:4] == b"\x89PNG"
    cfg = (gan_run / "config.yaml").read_text()
    m = read_manifest(str(synthetic_tfrec))
    train = m["splits"]["train"]
    minority = 1 if train["label_counts"]["Tuberculosis"] <= train["count"] / 2 else 0
    assert f"class_value: {minority}" in cfg and "workers: 2" in cfg


def test_sample_writes_pngs_and_a_grid(gan_run, tmp_path):
    from tfxr.data.imageio import decode_png

    tfxr("tfxr.gan", "sample", "--generator", str(gan_run / "generator.keras"), "--n", "5", "--out", str(tmp_path))
    files = sorted(tmp_path.glob("sample-*.png"))
    assert len(files) == 5 and decode_png(files[0].read_bytes()).shape == (64, 64)
    assert (tmp_path / "grid.png").exists()


def test_balance_writes_exact_flagged_counts_and_leaves_real_shards_unchanged(gan_run, synthetic_tfrec, tmp_path):
    real = read_manifest(str(synthetic_tfrec))
    before = {p.name: _sha(p) for p in synthetic_tfrec.glob("*.tfrecord")}
    out = tmp_path / "balanced"
    gen = gan_run / "generator.keras"
    tfxr("tfxr.gan", "balance", "--data", str(synthetic_tfrec), "--generator", str(gen), "--out", str(out),
         "--num", "30", "--shards", "3")
    assert {p.name: _sha(p) for p in synthetic_tfrec.glob("*.tfrecord")} == before     # source untouched
    m = read_manifest(str(out))
    for split, info in real["splits"].items():
        for shard in info["shards"]:                                                   # copied byte for byte
            assert _sha(out / shard["file"]) == shard["sha256"] == before[shard["file"]]
    added = [s for s in m["splits"]["train"]["shards"] if s.get("synthetic")]
    assert len(added) == 3 and sum(s["count"] for s in added) == 30
    assert m["splits"]["train"]["count"] == real["splits"]["train"]["count"] + 30
    value = m["balancing"]["class"]["value"]
    for s in added:
        assert _sha(out / s["file"]) == s["sha256"]
        for ex in _records(out / s["file"]):
            assert int(ex["image/synthetic"]) == 1 and ex["image/origin"].numpy() == b"generated"
            assert float(ex["labels"][0]) == value
    assert m["balancing"]["generator"]["sha256"] == _sha(gen)
    assert m["balancing"]["added"]["train"] == {"count": 30, "label_value": value, "synthetic": 30, "oversampled": 0}
    assert "--num 30" in m["balancing"]["command"]
    for split in ("val", "test"):
        assert m["splits"][split] == real["splits"][split]
    # the classifier trains on the balanced directory unchanged (in-process: tfxr.train.main)
    assert train_main(["--model", "tb_cnn", "--data", str(out), "--out", str(tmp_path / "clf"), "--epochs", "1",
                       "--batch-size", "16", "--no-progress"]) == 0
    assert (tmp_path / "clf" / "best.keras").exists()


def test_target_ratio_and_oversampling_control(synthetic_tfrec, tmp_path):
    from tfxr.data.balance import Balancer, count_to_add

    assert count_to_add(10, 100, 0.5, None) == 80          # 90 majority -> 90 minority
    assert count_to_add(10, 100, 0.2, None) == 13          # (10+13)/(100+13) = 0.2035 >= 0.2, 12 is not
    m = Balancer(str(synthetic_tfrec), str(tmp_path / "over"), method="oversample", target_ratio=0.5).run()
    train = m["splits"]["train"]
    counts = train["label_counts"]["Tuberculosis"], train["count"] - train["label_counts"]["Tuberculosis"]
    assert abs(counts[0] - counts[1]) <= 1 and m["balancing"]["minority_fraction"]["after"] >= 0.5
    real_pngs = {ex["image/encoded"].numpy() for s in read_manifest(str(synthetic_tfrec))["splits"]["train"]["shards"]
                 for ex in _records(synthetic_tfrec / s["file"])}
    dup = [s for s in train["shards"] if s.get("oversampled")]
    recs = [ex for s in dup for ex in _records(tmp_path / "over" / s["file"])]
    assert len(recs) == m["balancing"]["added"]["train"]["count"] > 0
    assert all(ex["image/encoded"].numpy() in real_pngs and int(ex["image/synthetic"]) == 0 for ex in recs)


@pytest.mark.parametrize("args,message", [
    (["train", "--data", "DATA", "--optimizer", "sgd"], "optimizer: unknown value 'sgd' (allowed: adam, rmsprop)"),
    (["train", "--data", "DATA", "--image-size", "32"], "--image-size: unknown value 32"),
    (["balance", "--data", "DATA", "--generator", "/nonexistent.keras", "--out", "OUT"], "--generator /nonexistent"),
    (["fit"], "unknown command 'fit'"),
])
def test_bad_input_is_one_line_and_exit_2(synthetic_tfrec, tmp_path, capsys, args, message):
    """In-process: tfxr.gan.main, the CLI's run_main path (the command runs as a process above)."""
    args = [a.replace("DATA", str(synthetic_tfrec)).replace("OUT", str(tmp_path / "o")) for a in args]
    code = gan_main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "tfxr: error: " in err and message in err and "Traceback" not in err


def test_compare_optimizers_reports_both_with_the_evaluators_domain_fid(synthetic_tfrec, tmp_path):
    """Adam and RMSProp side by side, each scored by the evaluator's FID_tfxr beside the
    real-vs-real baseline (a random-init tfxr classifier is enough to exercise the path)."""
    from tests.conftest import save_classifier_run
    from tfxr.models import build_model

    feature_model = save_classifier_run(build_model("tb_cnn", 64, num_outputs=1), tmp_path / "clf", "tb_cnn",
                                        64, ["tb"])
    out = tmp_path / "cmp"
    tfxr("tfxr.gan", "compare-optimizers", "--data", str(synthetic_tfrec), "--out", str(out), "--epochs", "1",
         "--set", "steps_per_epoch=2", "--set", f"feature_model={feature_model}", *TINY)
    results = json.loads((out / "comparison.json").read_text())
    assert set(results) == {"adam", "rmsprop"}
    for res in results.values():
        (label, score), = res["scores"].items()
        assert label.startswith("FID_tfxr[") and score["n"] == 256
        assert np.isfinite(score["fid"]) and score["fid"] >= 0 and np.isfinite(score["real_vs_real_fid"])
    report = (out / "comparison.md").read_text()
    assert report.count("FID_tfxr[") == 2 and "real-vs-real" in report
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_gan_sample_and_evaluate_gan_draw_the_same_images_for_a_seed(tmp_path):
    """One sampler: the PNGs `gan sample --seed S` writes are the images `evaluate gan --seed S`
    scores (up to the PNG's 8 bits), and another seed draws other images."""
    from PIL import Image

    from tests.conftest import save_generator_run
    from tfxr.evaluate import GanEvalConfig, _generated_images
    from tfxr.models.dcgan import build_generator

    keras_seed = tf.keras.utils.set_random_seed
    keras_seed(1)
    gen = save_generator_run(build_generator(28, latent_dim=8, base_filters=8), tmp_path / "run", 28,
                             latent_dim=8, g_filters=8)
    real = np.zeros((40, 28, 28, 1), np.float32)

    def scored(seed):
        return _generated_images(GanEvalConfig(generated=str(gen), num_images=6, seed=seed), real)[..., 0]

    for seed in (0, 7):
        run([sys.executable, "-m", "tfxr.gan", "sample", "--generator", "run/generator.keras", "--n", "6",
             "--seed", str(seed), "--out", f"s{seed}"], cwd=tmp_path)
        written = np.stack([np.asarray(Image.open(tmp_path / f"s{seed}" / f"sample-{i:05d}.png"), np.float32)
                            for i in range(6)]) / 255.0
        assert np.abs(written - scored(seed)).max() <= 0.5 / 255 + 1e-4
    assert np.abs(scored(0) - scored(7)).max() > 0.05
