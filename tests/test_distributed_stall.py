"""No silent hangs: a rank that stops (SIGSTOP) ends a 2-rank job within the bound, naming the rank."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from tests.conftest import REPO
from tfxr import distributed as dist
from tfxr.launch import clean_launch_env, command_for

BOUND_S = 10          # --set stall_timeout
MARGIN_S = 90         # the VM is shared and loaded: process start-up, mpirun's clean-up


def test_stall_environment_defaults_and_the_users_own_setting():
    assert dist.stall_environment(None, env={}) == {"HOROVOD_STALL_CHECK_TIME_SECONDS": "60",
                                                     "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": "600"}
    assert dist.stall_environment(10, env={}) == {"HOROVOD_STALL_CHECK_TIME_SECONDS": "2",
                                                   "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": "10"}
    assert dist.stall_environment(0, env={})["HOROVOD_STALL_SHUTDOWN_TIME_SECONDS"] == "0"   # never shut down
    assert dist.stall_environment(10, env={"HOROVOD_STALL_CHECK_TIME_SECONDS": "5"}) == {
        "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": "10"}


def test_watchdog_names_the_rank_whose_heartbeat_stopped(tmp_path, capsys):
    exits = []
    dog = dist.StallWatchdog(str(tmp_path / "hb"), 2.0, rank=0, world=3, exit=exits.append)
    with dog:
        pass                                            # a normal step: nothing happens
    (tmp_path / "hb" / "rank-1").touch()
    old = time.time() - 60
    (tmp_path / "hb" / "rank-2").touch()
    os.utime(tmp_path / "hb" / "rank-2", (old, old))
    assert dog.stalled_ranks() == [2]
    with dog:                                           # a step that never ends
        for _ in range(100):
            os.utime(tmp_path / "hb" / "rank-1")        # rank 1 alive, rank 2 not
            if exits:
                break
            time.sleep(0.1)
    assert exits == [1]
    assert "rank 0: a training step has waited 2 s (stall_timeout): rank(s) 2 stopped responding" \
        in capsys.readouterr().err
    dog.close()
    assert not (tmp_path / "hb" / "rank-0").exists()


def _rank_pid(root: int, rank: int) -> int | None:
    """The pid of MPI rank ``rank`` among the descendants of process ``root``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if f"OMPI_COMM_WORLD_RANK={rank}".encode() in fh.read().split(b"\0"):
                    return pid
        except OSError:
            pass
        todo += children.get(pid, [])
    return None


@pytest.mark.mpi
def test_a_stopped_rank_ends_the_job_within_the_bound(synthetic_tfrec, tmp_path):
    out = tmp_path / "run"
    cmd = command_for(2, ["tfxr.train", "--data", str(synthetic_tfrec), "--out", str(out), "--epochs", "1",
                          "--batch-size", "8", "--val-split", "", "--no-progress",
                          "--set", "steps_per_epoch=1000000", "--set", f"stall_timeout={BOUND_S}"])
    log = tmp_path / "job.log"
    with open(log, "w") as fh:
        job = subprocess.Popen(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**clean_launch_env(), "PYTHONUNBUFFERED": "1"})
    rank1 = None
    try:
        deadline = time.monotonic() + 600
        while "steps/epoch" not in log.read_text() and job.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        assert job.poll() is None, log.read_text()[-3000:]
        while not (out / ".tfxr-heartbeat" / "rank-1").exists() and time.monotonic() < deadline:
            time.sleep(0.5)                             # rank 1 has started its first step
        time.sleep(10)                                  # usually past the first (tracing) steps
        rank1 = _rank_pid(job.pid, 1)
        assert rank1, "rank 1 not found"
        os.kill(rank1, signal.SIGSTOP)
        stopped = time.monotonic()
        job.wait(timeout=4 * BOUND_S + MARGIN_S)
        elapsed = time.monotonic() - stopped
    finally:
        if rank1:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(rank1, sig)
                except ProcessLookupError:
                    pass
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    text = log.read_text()
    assert job.returncode != 0, text[-3000:]
    found = re.search(r"tfxr: error: rank 0: a training step has waited (\d+) s \(stall_timeout\): "
                      r"rank\(s\) 1 stopped responding", text)
    assert found, text[-3000:]
    # the bound, or four times it when the stop hit a first step (which traces the step function)
    waited = int(found.group(1))
    assert waited in (BOUND_S, 4 * BOUND_S)
    assert elapsed < waited + MARGIN_S
