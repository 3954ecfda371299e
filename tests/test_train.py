"""python -m tfxr.train: loss, checkpoints and exact resume, clear errors before any write,
rank-0-only outputs, mixed precision against fp32."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from tests.conftest import copy_run_after_checkpoint, tfxr
from tfxr.config import parse_config
from tfxr.evaluate import main as evaluate_main
from tfxr.train import TrainConfig, main as train_main


def checkpoint_tensors(run_dir, number: int) -> dict:
    """Every saved model/optimizer tensor of checkpoint ``number`` of a run, by name."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / f"ckpt-{number}"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith(("model/", "optimizer/"))}


def assert_same_training(run_a, run_b, number: int) -> None:
    """Two runs' checkpoints hold bit-identical weights and optimizer state, same losses."""
    a, b = checkpoint_tensors(run_a, number), checkpoint_tensors(run_b, number)
    assert a.keys() == b.keys() and any(k.startswith("model/") and "seed_generator" in k for k in a)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    ha = json.loads((run_a / "history.json").read_text())
    hb = json.loads((run_b / "history.json").read_text())
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    assert [h["lr"] for h in ha] == [h["lr"] for h in hb]


def _train(data, out, *extra, np_=1, **kw):
    return tfxr("tfxr.train", "--model", "tb_cnn", "--data", str(data), "--out", str(out), "--batch-size", "16",
                "--deterministic", "--no-progress", "--set", "early_stopping_patience=0", *extra, np=np_, **kw)


def _train_in_process(capsys, data, out, *extra) -> tuple[int, str]:
    """``_train``'s command line through ``tfxr.train.main`` in this process (the CLI's own
    run_main path: exit code and the one error line), for tests whose subject is not the
    process; returns (exit code, what it wrote to stderr)."""
    capsys.readouterr()
    code = train_main(["--model", "tb_cnn", "--data", str(data), "--out", str(out), "--batch-size", "16",
                       "--deterministic", "--no-progress", "--set", "early_stopping_patience=0", *extra])
    return code, capsys.readouterr().err


def test_resume_equals_uninterrupted_run(synthetic_tfrec, tmp_path, monkeypatch, capsys):
    """The run killed right after epoch 2's checkpoint (its folder copied at that moment), resumed
    from a relative --out typed in the folder above it (as a user would): the uninterrupted run.
    In-process (the 2-rank resume below runs the command under mpirun)."""
    full, part = tmp_path / "full", tmp_path / "part"
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as patch:
        copy_run_after_checkpoint(patch, 2, full, part)
        assert _train_in_process(capsys, synthetic_tfrec, "full", "--epochs", "3", "--keep-checkpoints", "1")[0] == 0
    assert sorted(f for f in os.listdir(part / "checkpoints") if f.endswith(".index")) == ["ckpt-2.index"]
    code, err = _train_in_process(capsys, synthetic_tfrec, "part", "--epochs", "3", "--resume",
                                  "--keep-checkpoints", "1")
    assert code == 0, err[-2000:]
    assert "resumed from" in err and "ckpt-2" in err and "checkpoints/part" not in err
    assert_same_training(full, part, 3)
    # keep_checkpoints=1 keeps exactly one; the run did train (weights moved since epoch 2)
    assert sorted(f for f in os.listdir(part / "checkpoints") if f.endswith(".index")) == ["ckpt-3.index"]
    hist = json.loads((part / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3] and hist[0]["train_loss"] != hist[2]["train_loss"]


def test_damaged_or_missing_checkpoints_are_clear_errors(synthetic_tfrec, tmp_path, capsys):
    """In-process (tfxr.train.main: the CLI's exit codes and error lines)."""
    out, args = tmp_path / "run", ("--set", "steps_per_epoch=2", "--val-split", "")
    assert _train_in_process(capsys, synthetic_tfrec, out, "--epochs", "1", *args)[0] == 0
    history = (out / "history.json").read_text()
    ckpt = out / "checkpoints"
    data_file = next(ckpt.glob("ckpt-1.data-*"))
    good = data_file.read_bytes()
    for damage in (b"", good[: len(good) // 2]):                 # empty, truncated
        data_file.write_bytes(damage)
        code, err = _train_in_process(capsys, synthetic_tfrec, out, "--epochs", "2", "--resume", *args)
        assert code == 2 and "tfxr: error: " in err and "Traceback" not in err, err[-2000:]
        assert "ckpt-1" in err and "cannot restore" in err
        assert (out / "history.json").read_text() == history
    data_file.unlink()                                           # the index names a deleted checkpoint
    code, err = _train_in_process(capsys, synthetic_tfrec, out, "--epochs", "2", "--resume", *args)
    assert code == 2 and "missing" in err and "tfxr: error: " in err and "Traceback" not in err, err[-2000:]
    for f in ckpt.iterdir():                                     # no checkpoint at all, history kept
        f.unlink()
    code, err = _train_in_process(capsys, synthetic_tfrec, out, "--epochs", "2", "--resume", *args)
    assert code == 2 and "history.json but no checkpoint" in err
    assert (out / "history.json").read_text() == history


#: the 2-rank runs below: 3 steps per epoch, one intra-op thread per rank (bit-identical resume)
TWO_RANK_ARGS = ("--set", "steps_per_epoch=3", "--batch-size", "8", "--set", "warmup_epochs=1")
ONE_THREAD_RANKS = {"env": {"TFXR_CPU_THREADS": "1"}}


@pytest.fixture(scope="module")
def two_rank_run(synthetic_tfrec, tmp_path_factory):
    """One uninterrupted 2-epoch run under mpirun -np 2: what rank 0 writes, and the reference
    of the 2-rank resume (both tests below read it)."""
    out = tmp_path_factory.mktemp("two-rank") / "full"
    r = _train(synthetic_tfrec, out, "--epochs", "2", *TWO_RANK_ARGS, np_=2, **ONE_THREAD_RANKS)
    return out, r


@pytest.mark.mpi
def test_two_rank_cli_run_rank0_writes_everything_once(two_rank_run):
    out, r = two_rank_run
    assert r.stderr.count("epoch 2:") == 1                    # one log line per epoch (rank 0)
    files = sorted(os.listdir(out))
    assert files == ["best.keras", "checkpoints", "config.yaml", "final.keras", "history.json", "tensorboard"]
    events = [f for _, _, fs in os.walk(out / "tensorboard") for f in fs]
    assert len(events) == 1
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 2 and all(0 <= h["val_mean_auroc"] <= 1 for h in hist)
    import yaml

    resolved = yaml.safe_load((out / "config.yaml").read_text())["_resolved"]
    assert resolved["workers"] == 2 and resolved["base_lr"] == pytest.approx(2e-3)
    assert hist[-1]["lr"] == pytest.approx(2e-3)              # warm-up reached lr x workers


@pytest.mark.mpi
def test_two_rank_resume_is_bit_identical(synthetic_tfrec, two_rank_run, tmp_path):
    """Kill-and-resume under mpirun -np 2 (dropout streams per rank, validation after each
    epoch) = the uninterrupted run of the fixture."""
    full, _ = two_rank_run
    _train(synthetic_tfrec, "part", "--epochs", "1", *TWO_RANK_ARGS, np_=2, cwd=tmp_path, **ONE_THREAD_RANKS)
    r = _train(synthetic_tfrec, "part", "--epochs", "2", "--resume", *TWO_RANK_ARGS, np_=2, cwd=tmp_path,
               **ONE_THREAD_RANKS)
    assert r.stderr.count("resumed from") == 1
    assert_same_training(full, tmp_path / "part", 2)


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "--epochs: 0 is below the minimum 1"),
    (["--batch-size", "-4"], "--batch-size: -4 is below the minimum 1"),
    (["--channels", "2"], "--channels: unknown value 2 (allowed: 1, 3)"),
    (["--set", "compression=fp8"], "--set compression: unknown value 'fp8' (allowed: none, fp16)"),
    (["--set", "monitor=accuracy"], "--set monitor: unknown value 'accuracy' (allowed: auroc, loss)"),
    (["--optimizer", "lamb"], "--optimizer: unknown value 'lamb'"),
    (["--keep-checkpoints", "0"], "--keep-checkpoints: 0 is below the minimum 1"),
    (["--model", "resnet9000"], "--model: unknown value 'resnet9000' (allowed: tb_cnn, pneumonia_cnn, chexnet)"),
    (["--weights", "imagenet"], "--weights 'imagenet': --model tb_cnn takes no weights"),
    (["--val-split", "holdout"], "--val-split 'holdout'"),
])
def test_bad_options_fail_before_anything_is_written(synthetic_tfrec, tmp_path, capsys, args, message):
    from tfxr.train import main                 # in-process: the same run_main path as the CLI

    out = tmp_path / "out"
    code = main(["--model", "tb_cnn", "--data", str(synthetic_tfrec), "--out", str(out), "--epochs", "1",
                 "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2 and f"tfxr: error: {message}" in err and "Traceback" not in err, err[-2000:]
    assert not out.exists()


def test_data_errors_are_clear(synthetic_tfrec, tmp_path, capsys):
    """In-process: tfxr.train.main, the CLI's run_main path (exit code, one error line)."""
    code = train_main(["--data", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "no manifest" in err and "tfxr: error: " in err and "Traceback" not in err, err[-2000:]
    no_train = tmp_path / "no_train"
    no_train.mkdir()
    manifest = json.loads((synthetic_tfrec / "manifest.json").read_text())
    del manifest["splits"]["train"]
    (no_train / "manifest.json").write_text(json.dumps(manifest))
    code = train_main(["--data", str(no_train), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "no 'train' split" in err and "tfxr: error: " in err and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "o").exists()


def test_missing_shard_is_caught_before_training(synthetic_tfrec, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synthetic_tfrec, data)
    victim = sorted(data.glob("train-*"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    code, err = _train_in_process(capsys, data, tmp_path / "o", "--epochs", "1")
    assert code == 2 and victim.name in err and "tfxr: error: " in err and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "o").exists()


def test_bad_weights_file_is_a_clear_cli_error(synthetic_tfrec, tmp_path, capsys):
    code = train_main(["--model", "chexnet", "--weights", str(tmp_path / "nope.weights.h5"), "--data",
                       str(synthetic_tfrec), "--out", str(tmp_path / "o"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "nope.weights.h5" in err and "tfxr: error: " in err and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def fp32_run(synthetic_tfrec, tmp_path_factory):
    """One fp32 epoch, shared by the evaluation and mixed-precision tests."""
    out = tmp_path_factory.mktemp("fp32") / "run"
    _train(synthetic_tfrec, out, "--epochs", "1")
    return out


def test_evaluate_writes_metrics_and_roc(synthetic_tfrec, fp32_run, tmp_path, capsys):
    """One process in-process (tfxr.evaluate.main), then the command under mpirun -np 2."""
    out = fp32_run
    assert evaluate_main(["--model", str(out), "--data", str(synthetic_tfrec), "--split", "test",
                          "--set", "bootstrap=50", "--out", str(tmp_path / "ev1")]) == 0
    stdout = capsys.readouterr().out
    m = json.loads((tmp_path / "ev1" / "metrics.json").read_text())
    assert (tmp_path / "ev1" / "roc.png").stat().st_size > 1000
    assert m["images"] == json.loads((synthetic_tfrec / "manifest.json").read_text())["splits"]["test"]["count"]
    tb = m["labels"]["Tuberculosis"]
    assert 0 <= tb["auroc"] <= 1 and tb["auroc_ci95"][0] <= tb["auroc"] <= tb["auroc_ci95"][1]
    assert "mean AUROC" in stdout
    assert not math.isnan(tb["at_val_threshold"]["sensitivity"])
    # under mpirun -np 2 each rank predicts half; the gathered result is the same evaluation
    tfxr("tfxr.evaluate", "--model", str(out), "--data", str(synthetic_tfrec), "--split", "test",
         "--set", "bootstrap=50", "--out", str(tmp_path / "ev2"), np=2)
    m2 = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    assert m2["images"] == m["images"]
    assert m2["labels"]["Tuberculosis"]["auroc"] == pytest.approx(tb["auroc"], abs=1e-9)
    rows = lambda p: sorted((p / "predictions.csv").read_text().splitlines())  # noqa: E731
    assert rows(tmp_path / "ev2") == rows(tmp_path / "ev1")


@pytest.mark.slow
def test_tb_cnn_learns_the_synthetic_phantoms(tmp_path):
    """The built-in default data is learnable: loss goes down, validation AUROC well above chance."""
    data = tmp_path / "data"
    tfxr("tfxr.tfrecords", "write", "--source", "synthetic", "--num-images", "900", "--image-size", "64",
         "--shards", "2", "--seed", "5", "--out", str(data), "--quiet")
    out = tmp_path / "run"
    # the small CNN sits near chance for several epochs before it takes off (seed 0: ~epoch 14)
    tfxr("tfxr.train", "--model", "tb_cnn", "--data", str(data), "--out", str(out), "--epochs", "20",
         "--batch-size", "32", "--cache", "--deterministic", "--no-progress", "--set", "lr=0.002",
         "--set", "early_stopping_patience=0", "--set", "plateau_patience=0")
    hist = json.loads((out / "history.json").read_text())
    losses = [h["train_loss"] for h in hist]
    assert np.mean(losses[-3:]) < losses[0] - 0.05
    assert max(h["val_mean_auroc"] for h in hist) > 0.8


def test_mixed_precision_tracks_fp32(synthetic_tfrec, fp32_run, tmp_path):
    """bf16 mixed precision on CPU: bf16 layers, float32 output, and the same epoch as fp32
    up to bf16 rounding (same seed, same batches)."""
    out = tmp_path / "mp"
    _train(synthetic_tfrec, out, "--epochs", "1", "--set", "mixed_precision=true")
    import zipfile

    from tfxr.models.loading import load_run_model

    saved = json.loads(zipfile.ZipFile(out / "final.keras").read("config.json"))   # read as data only
    policies = {layer["config"]["name"]: layer["config"]["dtype"]["config"]["name"]
                for layer in saved["config"]["layers"] if isinstance(layer["config"].get("dtype"), dict)}
    assert policies["conv1_16"] == "mixed_bfloat16"
    m = load_run_model(str(out / "final.keras"))      # tfxr rebuilds it in float32, same weights
    assert m.output.dtype == "float32"
    bf16 = json.loads((out / "history.json").read_text())[0]
    fp32 = json.loads((fp32_run / "history.json").read_text())[0]
    assert bf16["train_loss"] != fp32["train_loss"]                        # really a different path
    assert bf16["train_loss"] == pytest.approx(fp32["train_loss"], abs=0.05)
    assert bf16["val_loss"] == pytest.approx(fp32["val_loss"], abs=0.05)


@pytest.mark.parametrize("name", ["chexnet_nih", "tb_cnn", "pneumoniamnist"])
def test_shipped_configs_parse(name):
    from tests.conftest import REPO

    cfg, _ = parse_config(TrainConfig, ["--config", str(REPO / "configs" / f"{name}.yaml")], "t")
    assert cfg.model == {"chexnet_nih": "chexnet", "tb_cnn": "tb_cnn", "pneumoniamnist": "pneumonia_cnn"}[name]
    assert cfg.dropout is None                    # each model's own default, never overridden
    if name == "chexnet_nih":
        assert (cfg.pipeline.image_size, cfg.pipeline.batch_size, cfg.weights) == (224, 16, "imagenet")
        assert cfg.pipeline.augment.flip and cfg.pipeline.augment.rotation_deg == 0
