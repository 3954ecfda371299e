"""Elastic training (``--set elastic=true`` under ``horovodrun --min-np/--max-np
--host-discovery-script``): a job that loses a worker mid-epoch goes on with the rest from the
last commit, and takes a worker back when its host returns.

Two workers on this machine under two host names (``localhost`` and ``127.0.0.1``: Horovod
blacklists the host of a failed worker, so one name per worker); the discovery script prints
the lines of a file the test edits, as a cluster's script would follow its nodes.
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

import pytest

from tests.conftest import REPO, tfxr

EPOCHS, LR = 6, 0.002
STEPS = 60          # steps per epoch: a few seconds an epoch, so the kill lands inside one


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


def _kill_tree(root: int) -> None:
    for pid in [root] + _descendants(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.mpi
@pytest.mark.slow
def test_a_killed_worker_leaves_the_run_to_the_rest_and_a_returning_one_joins(synthetic_tfrec, tmp_path):
    returning = socket.gethostname()
    if returning in ("localhost", "127.0.0.1"):
        pytest.skip("the host's name must differ from localhost to stand for a third host")
    hosts = tmp_path / "hosts"
    hosts.write_text("localhost:1\n127.0.0.1:1\n")
    script = tmp_path / "discover_hosts.sh"
    script.write_text(f"#!/bin/sh\ncat {hosts}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "job.log"
    cmd = [sys.executable, "-m", "tfxr.launch", "--launcher", "horovodrun", "--np", "2", "--min-np", "1",
           "--max-np", "2", "--host-discovery-script", "discover_hosts.sh", "--",
           "tfxr.train", "--data", str(synthetic_tfrec), "--out", "run", "--epochs", str(EPOCHS), "--batch-size", "8",
           "--lr", str(LR), "--val-split", "", "--no-progress", "--set", "warmup_epochs=0", "--set", "elastic=true",
           "--set", f"steps_per_epoch={STEPS}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
           "TFXR_CPU_THREADS": "1"}
    out = tmp_path / "run"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait("epoch 1 in history.json", lambda: len(_history(out)) >= 1, proc)
        time.sleep(0.7)      # into epoch 2 (an epoch of 2 workers takes longer)
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
        if proc.poll() is None:
            _kill_tree(proc.pid)
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text[-6000:]
    history = _history(out)
    # every epoch once, in order: committed epochs were not trained again
    assert [e["epoch"] for e in history] == list(range(1, EPOCHS + 1)), history
    worlds = [e["world"] for e in history]
    assert worlds[0] == 2 and 1 in worlds and worlds[-1] == 2, worlds
    changes = [(e["epoch"], e["world_change"]) for e in history if "world_change" in e]
    first_alone = worlds.index(1) + 1
    assert changes[0] == (first_alone, {"from": 2, "to": 1, "restarted_epoch": first_alone,
                                        "committed_epoch": first_alone - 1}), changes
    assert first_alone - 1 >= committed    # the epochs committed before the kill stayed
    back = worlds.index(2, first_alone - 1) + 1
    assert changes[1] == (back, {"from": 1, "to": 2, "restarted_epoch": back, "committed_epoch": back - 1}), changes
    for e in history:      # the learning rate follows the live world (lr x workers, no warm-up)
        assert e["lr"] == pytest.approx(LR * e["world"]), history
    assert f"world size changed: 2 -> 1 worker(s); epoch {first_alone} runs from the commit of epoch " \
           f"{first_alone - 1}" in text, text[-6000:]
    assert "world size changed: 1 -> 2 worker(s)" in text
    assert (out / "final.keras").exists() and (out / "checkpoints" / f"ckpt-{EPOCHS}.index").exists()
    print("\n".join(line for line in text.splitlines() if "world size changed" in line or "epoch " in line))


def test_elastic_outside_horovods_elastic_driver_is_refused_before_writing(synthetic_tfrec, tmp_path):
    r = tfxr("tfxr.train", "--data", str(synthetic_tfrec), "--out", "run", "--set", "elastic=true", "--no-progress",
             cwd=tmp_path, check=False)
    assert r.returncode == 2 and "elastic=true: this process was not started by Horovod's elastic driver" in r.stderr, \
        r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not (tmp_path / "run").exists()
