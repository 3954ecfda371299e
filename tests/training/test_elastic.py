"""Elastic training (``--set elastic=true`` under ``horovodrun --min-np/--max-np
--host-discovery-script``): a job that loses a worker mid-epoch goes on with the rest from the
last commit (``elastic_commit_steps``: inside the epoch), and takes a worker back when its host
returns; the GAN and the detector train elastic in the same scaffold.

Workers on this machine under two host names (``localhost`` and ``127.0.0.1``: Horovod
blacklists the host of a failed worker, so one name per worker); the discovery script prints
the lines of a file the test edits, as a cluster's script would follow its nodes.  What a
surviving worker does at a rollback (restore the commit, go on inside the epoch) is also run
in one process, where it can be compared with the uninterrupted epoch bit for bit.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, tfxr
from tfxr import distributed as dist
from tfxr.configs import TrainConfig
from tfxr.data.pipeline import DataConfig
from tfxr.training import run
from tfxr.training.classifier import Trainer

EPOCHS, LR = 8, 0.002     # the kill lands in epoch 3: epochs 4-8 leave time for a host to come back
STEPS = 60          # steps per epoch: a few seconds an epoch, so the kill lands inside one
COMMIT = 5          # elastic_commit_steps: a lost worker costs at most 5 steps


def _history(out: Path) -> list[dict]:
    try:
        return json.loads((out / "history.json").read_text())
    except (OSError, ValueError):
        return []


def _wait(what, predicate, proc, timeout: float = 900):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the job ended (exit {proc.returncode}) while waiting for {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found += children.get(pid, [])
        todo += children.get(pid, [])
    return found


def _workers(root: int) -> dict[int, dict]:
    """{pid: HOROVOD_* environment} of the job's training processes (horovodrun starts each
    worker in a session of its own, so they are found as descendants)."""
    found = {}
    for pid in _descendants(root):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tfxr.train" not in cmdline:
            continue
        env = dict(e.decode().split("=", 1) for e in environ if e.startswith(b"HOROVOD_") and b"=" in e)
        if env.get("HOROVOD_ELASTIC") == "1" and "HOROVOD_RANK" in env:
            found[pid] = env
    return found


def _discovery(tmp_path: Path, lines: str) -> Path:
    """A discovery script printing the lines of ``hosts`` (the file the test edits)."""
    hosts = tmp_path / "hosts"
    hosts.write_text(lines)
    script = tmp_path / "discover_hosts.sh"
    script.write_text(f"#!/bin/sh\ncat {hosts}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return hosts


def _kill_tree(root: int) -> None:
    for pid in [root] + _descendants(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _start(tmp_path: Path, np_: int, module: list[str], *launch: str) -> tuple[subprocess.Popen, Path]:
    """``python -m tfxr.launch --launcher horovodrun`` elastic (1 to 2 workers) with the test's
    discovery script, typed as a user would, from ``tmp_path``; its output goes to ``job.log``."""
    cmd = [sys.executable, "-m", "tfxr.launch", "--launcher", "horovodrun", "--np", str(np_), "--min-np", "1",
           "--max-np", "2", "--host-discovery-script", "discover_hosts.sh", *launch, "--", *module]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
           "TFXR_CPU_THREADS": "1"}
    log = tmp_path / "job.log"
    with open(log, "w") as fh:
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True), log


def _finished(proc: subprocess.Popen, log: Path, out: Path, epochs: int, steps: int) -> tuple[str, list]:
    """A finished elastic job's log and history: it succeeded, every epoch is in
    ``history.json`` once and in order, and every step was run once (``global_step``)."""
    text = log.read_text()
    assert proc.returncode == 0, text[-6000:]
    history = _history(out)
    assert [e["epoch"] for e in history] == list(range(1, epochs + 1)), history
    assert [e["global_step"] for e in history] == [steps * e["epoch"] for e in history], history
    return text, history


def _epochs_and_world_changes(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "world size changed" in line or "epoch " in line)


def _stop(proc: subprocess.Popen) -> None:
    """End a job the test left running (a failed wait or assertion)."""
    if proc.poll() is None:
        _kill_tree(proc.pid)
        proc.wait()


@pytest.mark.mpi
@pytest.mark.slow
def test_a_killed_worker_leaves_the_run_to_the_rest_and_a_returning_one_joins(synthetic_tfrec, tmp_path):
    returning = socket.gethostname()
    if returning in ("localhost", "127.0.0.1"):
        pytest.skip("the host's name must differ from localhost to stand for a third host")
    hosts = _discovery(tmp_path, "localhost:1\n127.0.0.1:1\n")
    proc, log = _start(tmp_path, 2, [
        "tfxr.train", "--data", str(synthetic_tfrec), "--out", "run", "--epochs", str(EPOCHS), "--batch-size", "8",
        "--lr", str(LR), "--val-split", "", "--no-progress", "--set", "warmup_epochs=0", "--set", "elastic=true",
        "--set", f"steps_per_epoch={STEPS}", "--set", f"elastic_commit_steps={COMMIT}"])
    out = tmp_path / "run"
    try:
        _wait("epoch 2 in history.json", lambda: len(_history(out)) >= 2, proc)
        time.sleep(_history(out)[1]["epoch_time_s"] / 2)   # halfway into epoch 3: past a commit inside it
        workers = _workers(proc.pid)
        chief = [pid for pid, e in workers.items() if e["HOROVOD_RANK"] == "0"]
        assert len(workers) == 2 and len(chief) == 1, workers
        killed_host = workers[chief[0]]["HOROVOD_HOSTNAME"]
        committed = len(_history(out))
        os.kill(chief[0], signal.SIGKILL)                     # rank 0: the writer of history.json
        hosts.write_text("".join(line + "\n" for line in ("localhost:1", "127.0.0.1:1")
                                 if not line.startswith(killed_host + ":")))
        _wait("an epoch trained by one worker", lambda: any(e.get("world") == 1 for e in _history(out)), proc)
        hosts.write_text(hosts.read_text() + f"{returning}:1\n")   # a host comes back
        proc.wait(timeout=1200)
    finally:
        _stop(proc)
    # every epoch once, in order, and every step once: committed epochs and steps were not trained again
    text, history = _finished(proc, log, out, EPOCHS, STEPS)
    worlds = [e["world"] for e in history]
    assert worlds[0] == 2 and 1 in worlds and worlds[-1] == 2, worlds
    changes = [(e["epoch"], e["world_change"]) for e in history if "world_change" in e]
    first_alone = worlds.index(1) + 1
    lost = changes[0][1]["committed_step"]     # the epoch went on from the last commit inside it
    assert changes[0] == (first_alone, {"from": 2, "to": 1, "restarted_epoch": first_alone,
                                        "committed_epoch": first_alone - 1, "committed_step": lost}), changes
    assert 0 < lost < STEPS and lost % COMMIT == 0, changes
    assert first_alone - 1 >= committed    # the epochs committed before the kill stayed
    back = worlds.index(2, first_alone - 1) + 1
    joined = changes[1][1]["committed_step"]
    assert changes[1] == (back, {"from": 1, "to": 2, "restarted_epoch": back, "committed_epoch": back - 1,
                                 "committed_step": joined}), changes
    assert 0 <= joined < STEPS and joined % COMMIT == 0, changes
    for e in history:      # the learning rate follows the live world (lr x workers, no warm-up)
        assert e["lr"] == pytest.approx(LR * e["world"]), history
    assert f"world size changed: 2 -> 1 worker(s); epoch {first_alone} goes on from the last commit (epoch " \
           f"{first_alone - 1} done, and {lost} step(s) of epoch {first_alone})" in text, text[-6000:]
    assert "world size changed: 1 -> 2 worker(s)" in text
    assert (out / "final.keras").exists() and (out / "checkpoints" / f"ckpt-{EPOCHS}.index").exists()
    print(_epochs_and_world_changes(text))


def test_elastic_outside_horovods_elastic_driver_is_refused_before_writing(synthetic_tfrec, tmp_path):
    r = tfxr("tfxr.train", "--data", str(synthetic_tfrec), "--out", "run", "--set", "elastic=true", "--no-progress",
             cwd=tmp_path, check=False)
    assert r.returncode == 2 and "elastic=true: this process was not started by Horovod's elastic driver" in r.stderr, \
        r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not (tmp_path / "run").exists()


@pytest.mark.mpi
@pytest.mark.slow
def test_the_gan_trains_elastic_and_takes_a_second_worker_inside_an_epoch(synthetic_tfrec, tmp_path):
    """The GAN in the elastic scaffold: it starts alone; a second host listed after epoch 1
    joins at the next commit (every 2 steps), the GAN's image shards and steps follow the
    world of 2, and every step is run once."""
    hosts = _discovery(tmp_path, "localhost:1\n")
    epochs, steps = 4, 60     # 3 epochs after the host is listed: time for the driver to see it
    proc, log = _start(tmp_path, 1, [
        "tfxr.gan", "train", "--data", str(synthetic_tfrec), "--out", "run", "--epochs", str(epochs),
        "--batch-size", "8", "--set", "g_filters=4", "--set", "d_filters=4", "--no-progress",
        "--set", f"steps_per_epoch={steps}", "--set", "elastic=true", "--set", "elastic_commit_steps=2"],
        "--network-interfaces", "lo")      # one host: name the interface (docs/SCALING.md)
    out = tmp_path / "run"
    try:
        _wait("epoch 1 in history.json", lambda: len(_history(out)) >= 1, proc)
        hosts.write_text("localhost:1\n127.0.0.1:1\n")      # a second host
        proc.wait(timeout=1200)
    finally:
        _stop(proc)
    text, history = _finished(proc, log, out, epochs, steps)
    worlds = [e["world"] for e in history]
    assert worlds[0] == 1 and worlds[-1] == 2, worlds
    (epoch, change), = [(e["epoch"], e["world_change"]) for e in history if "world_change" in e]
    assert change["from"] == 1 and change["to"] == 2 and change["restarted_epoch"] == epoch
    assert change["committed_step"] % 2 == 0 and "world size changed: 1 -> 2 worker(s)" in text
    assert all(np.isfinite(e["d_loss"]) and 0 <= e["d_real"] <= 1 for e in history)
    assert (out / "generator.keras").exists() and (out / "samples" / f"epoch-{epochs:04d}.png").exists()
    print(_epochs_and_world_changes(text))


@pytest.mark.mpi
@pytest.mark.slow
def test_the_detector_trains_elastic_in_the_same_scaffold(synthetic_tfrec, tmp_path):
    """The detector under Horovod's elastic driver: one worker (the classifier's test above
    covers losing and taking back workers in the same scaffold), a commit after every step."""
    _discovery(tmp_path, "localhost:1\n")
    proc, log = _start(tmp_path, 1, [
        "tfxr.detect", "train", "--data", str(synthetic_tfrec), "--out", "run", "--epochs", "2", "--batch-size", "4",
        "--val-split", "", "--no-progress", "--set", "steps_per_epoch=2", "--set", "elastic=true",
        "--set", "elastic_commit_steps=1"], "--network-interfaces", "lo")
    try:
        proc.wait(timeout=1200)
    finally:
        _stop(proc)
    text, history = _finished(proc, log, tmp_path / "run", 2, 2)
    assert [e["world"] for e in history] == [1, 1], history
    assert "1 worker(s) x batch 4" in text and all(np.isfinite(e["train_loss"]) for e in history)
    assert (tmp_path / "run" / "final.weights.h5").exists()


class _Progress:
    def __init__(self, after_step=None):
        self.after_step = after_step

    def update(self, n=1):
        pass


class _LostWorker(Exception):
    pass


def test_a_rollback_inside_an_epoch_goes_on_with_the_uninterrupted_batches_and_runs_each_step_once(
        synthetic_tfrec, tmp_path):
    """What a surviving worker does at a rollback (Run._fit_elastic), in one process: the state
    committed after step 3 of 6 (tfxr's elastic state: model, optimizer, seed streams, the
    epoch's loss sum and allreduce counter, the run state) is restored after a failure in step
    5, and the epoch goes on from step 3: the same weights (bit for bit), loss and allreduce
    count as the epoch without the failure, and 6 steps counted."""
    cfg = TrainConfig(model="tb_cnn", data=str(synthetic_tfrec), out=str(tmp_path / "run"), epochs=1,
                      steps_per_epoch=6, val_split="", progress=False, warmup_epochs=0,
                      pipeline=DataConfig(batch_size=8, deterministic=True))
    tr = Trainer(cfg)
    elastic = dist.elastic_state(tr.broadcast_variables() + tr.epoch_variables(), run=tr.state)

    tr.begin()
    uninterrupted = tr.train_epoch(0, _Progress())
    weights = [v.numpy() for v in tr.model.weights]
    assert tr.state["global_step"] == 6 and run.RUNNING in tr.state

    elastic.restore()                                   # back to the start of the epoch
    tr.state = elastic.run
    assert tr.state["global_step"] == 0 and run.RUNNING not in tr.state

    def commit_at_3_lose_at_5(done):
        if done == 3:
            elastic.run = tr.state
            elastic.commit()
        if done == 5:
            raise _LostWorker
    tr.begin()
    with pytest.raises(_LostWorker):
        tr.train_epoch(0, _Progress(commit_at_3_lose_at_5))
    elastic.restore()                                   # the rollback
    tr.state = elastic.run
    assert tr.state["global_step"] == 3 and tr.state[run.RUNNING]["step"] == 3
    tr.adopt_world(0, 1)
    tr.begin()                                          # skips the 3 committed batches
    resumed = tr.train_epoch(0, _Progress())
    assert tr.state["global_step"] == 6 and resumed == uninterrupted
    for a, b in zip(weights, (v.numpy() for v in tr.model.weights)):
        np.testing.assert_array_equal(a, b)


def test_the_position_inside_an_epoch_keeps_its_fraction_when_the_world_changes_the_epoch():
    state = {run.RUNNING: {"step": 30, "steps": 60, "run": 30}}
    assert run.epoch_position(state, 60) == 30                       # same world: the committed step
    assert run.epoch_position(state, 120, multiple=4) == 60 and state[run.RUNNING]["steps"] == 120
    state = {run.RUNNING: {"step": 25, "steps": 60, "run": 25}}
    assert run.epoch_position(state, 30, multiple=4) == 12            # 12.5 -> a whole update of 4
    assert run.epoch_position({}, 60) == 0                            # between epochs
