"""The run scaffold (tfxr.training.run): a third trainer plugs in with the Task methods
alone; run folders are locked and never overwritten by accident; --resume refuses other
settings and records the safe changes; a diverging run stops with exit 3 and saves nothing
of the bad epoch; the checkpoint index is read safely (empty, relative --out)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
import pytest
import yaml

from tests.conftest import REPO, tfxr
from tfxr.config import ConfigError, option, parse_config
from tfxr.configs import RUN_FIELDS_SAFE_TO_CHANGE, GanConfig, TrainConfig
from tfxr.errors import CheckpointError, RunFolderError, TrainingDiverged
from tfxr.training import run
from tfxr.train import main as train_main
from tfxr.training.checkpoints import variables_by_path


@dataclass
class ToyConfig:
    out: str = "toy"
    epochs: int = option(3, minimum=1)
    lr: float = option(0.05, minimum=0.0)
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    keep_checkpoints: int = 2
    progress: bool = False
    RESUME_SAFE: ClassVar[frozenset] = RUN_FIELDS_SAFE_TO_CHANGE


class ToyTrainer:
    """A linear regression trained by plain SGD: the smallest trainer on the Task protocol."""

    def __init__(self, cfg: ToyConfig):
        self.cfg = cfg
        self.rank, self.world = run.init_process()
        run.seed_process(cfg.seed, deterministic=True)
        inputs = keras.Input((4,))
        self.model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        self.optimizer = keras.optimizers.SGD(cfg.lr)
        self.optimizer.build(self.model.trainable_variables)
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(32, 4)).astype(np.float32)
        self.y = self.x @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)
        self.state = run.new_run_state()
        self.steps, self.global_batch = 4, 8 * self.world
        self.finished = False

    def fit(self):
        return run.Run(self.cfg, self.rank, self.world).fit(self)

    def checkpoint_objects(self):
        return {"model": variables_by_path(self.model.variables),
                "optimizer": variables_by_path(self.optimizer.variables)}

    def seed_variables(self):
        return run.seed_states(self.model)

    def broadcast_variables(self):
        return list(self.model.variables) + list(self.optimizer.variables)

    def finite_variables(self):
        return self.model.weights

    def resolved(self):
        return {"workers": self.world}

    def outputs(self):
        return ("final.npz",)

    def begin(self):
        pass

    def describe(self):
        return "toy: 5 params"

    def train_epoch(self, epoch, progress):
        import tensorflow as tf

        losses = []
        for s in range(self.steps):
            x, y = self.x[s * 8:(s + 1) * 8], self.y[s * 8:(s + 1) * 8]
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((self.model(x) - y) ** 2)
            self.optimizer.apply(tape.gradient(loss, self.model.trainable_variables),
                                 self.model.trainable_variables)
            losses.append(float(loss))
            self.state["global_step"] += 1
            progress.update(1)
        return {"train_loss": float(np.mean(losses))}

    def end_epoch(self, record):
        return {}

    def after_epoch(self, record, decision):
        pass

    def finish(self):
        np.savez(os.path.join(self.cfg.out, "final.npz"), *[v.numpy() for v in self.model.weights])
        self.finished = True

    def summary(self, record):
        return f"epoch {record['epoch']}: loss {record['train_loss']:.4f}"


def _weights(trainer):
    return [v.numpy() for v in trainer.model.weights + trainer.optimizer.variables]


def test_a_third_trainer_plugs_in_and_resumes_exactly(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)                       # a relative --out, as a user types it
    full = ToyTrainer(ToyConfig(out="full", epochs=3))
    state = full.fit()
    losses = [h["train_loss"] for h in state["history"]]
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3] and losses[2] < losses[0] / 2
    assert json.loads((tmp_path / "full" / "history.json").read_text()) == state["history"]
    assert sorted(os.listdir(tmp_path / "full")) == ["checkpoints", "config.yaml", "final.npz",
                                                     "history.json", "tensorboard"]
    err = capsys.readouterr().err
    assert "tfxr: toy: 5 params" in err and err.count("tfxr: epoch 3: loss") == 1
    ToyTrainer(ToyConfig(out="part", epochs=2)).fit()
    resumed = ToyTrainer(ToyConfig(out="part", epochs=3, resume=True))
    assert resumed.fit()["epoch"] == 3 and resumed.finished
    assert "resumed from" in capsys.readouterr().err
    for a, b in zip(_weights(full), _weights(resumed)):
        np.testing.assert_array_equal(a, b)
    config = yaml.safe_load((tmp_path / "part" / "config.yaml").read_text())
    assert config["epochs"] == 3 and config["_resumed"] == [
        {"epoch": 2, "checkpoint": "ckpt-2", "changed": {"epochs": [2, 3], "resume": [False, True]}}]


def test_resume_refuses_other_settings_listing_each(tmp_path):
    out = str(tmp_path / "run")
    ToyTrainer(ToyConfig(out=out, epochs=1)).fit()
    before = (tmp_path / "run" / "config.yaml").read_text()
    with pytest.raises(RunFolderError) as refused:
        ToyTrainer(ToyConfig(out=out, epochs=2, resume=True, lr=0.5, seed=3)).fit()
    message = str(refused.value)
    assert "lr: 0.05 -> 0.5" in message and "seed: 0 -> 3" in message and "epochs" not in message.split(".")[0]
    assert (tmp_path / "run" / "config.yaml").read_text() == before          # nothing rewritten
    assert not (tmp_path / "run" / run.LOCK_NAME).exists()


def test_config_changes_compare_data_folders_by_real_path(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(data, tmp_path / "link")
    old = {"data": str(data), "epochs": 2, "pipeline": {"batch_size": 16}, "_resolved": {"workers": 2}}
    same = {"data": str(tmp_path / "link"), "epochs": 3, "pipeline": {"batch_size": 16},
            "_resolved": {"workers": 2, "base_lr": 0.1}}
    assert run.config_changes(old, same) == {"epochs": (2, 3)}
    other = {**same, "data": str(tmp_path), "pipeline": {"batch_size": 8}, "_resolved": {"workers": 1}}
    assert set(run.config_changes(old, other)) == {"data", "epochs", "pipeline.batch_size", "_resolved.workers"}


def test_an_existing_run_is_refused_unless_resume_or_overwrite(tmp_path):
    out = tmp_path / "run"
    ToyTrainer(ToyConfig(out=str(out), epochs=1)).fit()
    (out / "notes.txt").write_text("mine")
    history = (out / "history.json").read_text()
    with pytest.raises(RunFolderError, match="already holds a run .*--resume.*--overwrite"):
        ToyTrainer(ToyConfig(out=str(out), epochs=2)).fit()
    assert (out / "history.json").read_text() == history
    with pytest.raises(ConfigError, match="--resume and --overwrite"):
        ToyTrainer(ToyConfig(out=str(out), epochs=2, resume=True, overwrite=True)).fit()
    state = ToyTrainer(ToyConfig(out=str(out), epochs=2, overwrite=True)).fit()
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    assert sorted(p.name for p in (out / "checkpoints").glob("*.index")) == ["ckpt-1.index", "ckpt-2.index"]
    assert (out / "notes.txt").read_text() == "mine"                     # not a run's file: kept
    with pytest.raises(RunFolderError, match="is not a folder"):
        ToyTrainer(ToyConfig(out=str(out / "notes.txt"))).fit()


def test_a_second_run_into_a_locked_folder_is_refused_and_a_kill_releases_it(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tfxr.training.run import RunFolder; "
         f"f = RunFolder({str(out)!r}, resume=False, overwrite=False); f.acquire(); "
         "print('locked', flush=True); sys.stdin.read()"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=f"another run is writing into this folder \\(pid {holder.pid}"):
            ToyTrainer(ToyConfig(out=str(out), epochs=1)).fit()
        assert not (out / "history.json").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert (out / run.LOCK_NAME).exists()              # a killed run leaves the file, not the lock
    assert ToyTrainer(ToyConfig(out=str(out), epochs=1)).fit()["epoch"] == 1
    assert not (out / run.LOCK_NAME).exists()


def test_a_diverging_run_stops_before_saving_the_bad_epoch(tmp_path):
    out = tmp_path / "run"
    trainer = ToyTrainer(ToyConfig(out=str(out), epochs=5, lr=1e30))
    with pytest.raises(TrainingDiverged, match="training diverged in epoch 1: .*not finite") as stopped:
        trainer.fit()
    assert stopped.value.exit_code == 3
    assert not (out / "final.npz").exists() and not (out / "checkpoints").exists() and not trainer.finished
    assert not (out / "history.json").exists() and not (out / run.LOCK_NAME).exists()


def test_empty_or_damaged_checkpoint_index_is_a_checkpoint_error(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    index = out / "checkpoints" / "checkpoint"
    for text in ("", "\n", "model_checkpoint_path: \"ckpt-1\"\n", "%%% not a proto"):
        index.write_text(text)
        for resume in (False, True):
            with pytest.raises(CheckpointError, match=str(index)):
                ToyTrainer(ToyConfig(out=str(out), resume=resume)).fit()


def test_float_options_are_finite_and_seeds_bounded():
    for cls in (TrainConfig, GanConfig):
        for args, message in ((["--set", "seed=-1"], "seed: -1 is below the minimum 0"),
                              (["--seed", str(2**40)], f"seed: {2**40} is above the maximum 2147483647")):
            with pytest.raises(ConfigError, match=message):
                parse_config(cls, args, "t")
    for value in ("nan", "inf", "-inf"):
        with pytest.raises(ConfigError, match="lr: .* is not a finite number"):
            parse_config(TrainConfig, ["--set", f"lr={value}"], "t")
        with pytest.raises(ConfigError, match="pipeline.augment"):
            parse_config(TrainConfig, ["--set", f"pipeline.augment.noise_std={value}"], "t")


# ---------------------------------------------------------------- the commands, as a user runs them
def _cli(data, out, *extra, **kw):
    return tfxr("tfxr.train", "--model", "tb_cnn", "--data", str(data), "--out", str(out), "--batch-size", "8",
                "--set", "steps_per_epoch=2", "--val-split", "", "--no-progress", *extra, check=False, **kw)


def _main(capsys, data, out, *extra) -> tuple[int, str]:
    """``_cli``'s command line through ``tfxr.train.main`` in this process (the CLI's run_main:
    exit code and error lines); returns (exit code, stderr)."""
    capsys.readouterr()
    code = train_main(["--model", "tb_cnn", "--data", str(data), "--out", str(out), "--batch-size", "8",
                       "--set", "steps_per_epoch=2", "--val-split", "", "--no-progress", *extra])
    return code, capsys.readouterr().err


def test_train_cli_run_folders_resume_settings_and_nan(synthetic_tfrec, tmp_path, monkeypatch, capsys):
    """The first run and the diverging one as processes (exit codes 0 and 3); the refusals in
    between through tfxr.train.main in this process, from the same working directory."""
    r = _cli(synthetic_tfrec, "run", "--epochs", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    history = (tmp_path / "run" / "history.json").read_text()
    monkeypatch.chdir(tmp_path)
    code, err = _main(capsys, synthetic_tfrec, "run", "--epochs", "1")
    assert code == 2 and "already holds a run (config.yaml, history.json)" in err
    code, err = _main(capsys, synthetic_tfrec, "run", "--epochs", "2", "--resume", "--set", "lr=0.01", "--seed", "4",
                      "--batch-size", "4")
    assert code == 2 and err.count("tfxr: error:") == 1 and "Traceback" not in err
    for change in ("lr: 0.001 -> 0.01", "seed: 0 -> 4", "pipeline.batch_size: 8 -> 4"):
        assert change in err
    assert (tmp_path / "run" / "history.json").read_text() == history
    # an empty index: one line, with --resume and without (a folder holding only checkpoints/)
    index = tmp_path / "run" / "checkpoints" / "checkpoint"
    index.write_bytes(b"")
    code, err = _main(capsys, synthetic_tfrec, "run", "--epochs", "2", "--resume")
    assert code == 2 and "checkpoint index is empty" in err and "Traceback" not in err
    (tmp_path / "bare" / "checkpoints").mkdir(parents=True)
    (tmp_path / "bare" / "checkpoints" / "checkpoint").write_bytes(b"")
    code, err = _main(capsys, synthetic_tfrec, "bare", "--epochs", "1")
    assert code == 2 and "checkpoint index is empty" in err and "Traceback" not in err
    # a huge learning rate: exit 3, no NaN model saved as best.keras or final.keras
    nan = _cli(synthetic_tfrec, "nan", "--epochs", "2", "--optimizer", "sgd", "--set", "lr=1e30", cwd=tmp_path)
    assert nan.returncode == 3 and "tfxr: error: training diverged in epoch 1" in nan.stderr, nan.stderr[-2000:]
    assert not (tmp_path / "nan" / "best.keras").exists() and not (tmp_path / "nan" / "final.keras").exists()


@pytest.mark.mpi
def test_two_ranks_refuse_an_existing_run_with_one_line(synthetic_tfrec, tmp_path):
    """Rank 0 decides (lock, existing run); both ranks stop, and the error is said once."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "history.json").write_text("[]\n")
    r = tfxr("tfxr.train", "--model", "tb_cnn", "--data", str(synthetic_tfrec), "--out", "run", "--epochs", "1",
             "--no-progress", np=2, cwd=tmp_path, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.count("tfxr: error: --out run already holds a run (history.json)") == 1
    assert sorted(os.listdir(tmp_path / "run")) == ["history.json"]


def test_resume_reads_an_older_run_config_with_a_renamed_key():
    """A run written before pipeline.synthetic_fraction became generated_fraction resumes: the
    former key compares equal to today's, a changed value is still listed."""
    old = {"epochs": 2, "pipeline": {"synthetic_fraction": -1.0}, "_resolved": {"workers": 1}}
    new = {"epochs": 3, "pipeline": {"generated_fraction": -1.0}, "_resolved": {"workers": 1}}
    renamed = {"pipeline.synthetic_fraction": "pipeline.generated_fraction"}
    assert run.config_changes(old, new, renamed) == {"epochs": (2, 3)}
    assert set(run.config_changes(old, new)) == {"epochs", "pipeline.synthetic_fraction", "pipeline.generated_fraction"}
    changed = {**new, "pipeline": {"generated_fraction": 0.0}}
    assert run.config_changes(old, changed, renamed)["pipeline.generated_fraction"] == (-1.0, 0.0)
