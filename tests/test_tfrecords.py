"""The converter's command line (python -m tfxr.tfrecords): exit codes, refused options,
hostile file names, and a conversion killed with SIGTERM (no orphan workers, no leftovers,
an identical re-run)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from tests.conftest import REPO, shard_hashes, tfxr
from tfxr.data.records import read_manifest


def _class_folders(root: Path) -> Path:
    for cls, value in (("NORMAL", 40), ("PNEUMONIA", 200)):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((12, 12), value + i, np.uint8)).save(root / cls / f"{cls.lower()}{i}.png")
    return root


def test_file_name_not_utf8_does_not_abort_the_conversion(tmp_path):
    images = _class_folders(tmp_path / "set")
    bad = os.path.join(os.fsencode(str(images / "PNEUMONIA")), b"x\xff\xfe.png")
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(bad, format="PNG")
    out = tmp_path / "rec"
    r = tfxr("tfxr.tfrecords", "write", "--source", "folder", "--images", str(images), "--out", str(out),
             "--image-size", "8", "--shards", "1", "--split-fractions", "1,0,0", "--quiet")
    m = read_manifest(str(out))  # the manifest was written
    assert m["splits"]["train"]["count"] == 6
    (reject,) = m["rejected"]
    assert reject["file"].endswith("PNEUMONIA/x\\xff\\xfe.png") and "not valid UTF-8" in reject["reason"]
    assert "x\\xff\\xfe.png" in r.stderr


def test_refused_options_are_one_line_errors_before_anything_is_written(tmp_path):
    images = _class_folders(tmp_path / "set")
    base = ["tfxr.tfrecords", "write", "--source", "folder", "--images", str(images)]
    cases = [
        (["--format", "raw", "--shards", "4"], "--shards does not apply to --format raw"),
        (["--split-fractions", "0.7,0.1,x"], "--split-fractions must be three non-negative numbers"),
        (["--shards", "0"], "shards: 0 is below the minimum 1"),
        (["--remap-splits", "train=holdout"], "unknown target split(s) ['holdout'] (allowed: train, val, test"),
        (["--format", "parquet"], "format: unknown value 'parquet' (allowed: tfrecord, raw)"),
    ]
    for n, (extra, message) in enumerate(cases):
        out = tmp_path / f"out{n}"
        r = tfxr(*base, "--out", str(out), *extra, check=False)
        assert r.returncode == 2, (extra, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)
        assert not (out / "manifest.json").exists()


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_sigterm_stops_workers_and_rerun_is_identical(tmp_path, synthetic_tfrec):
    """Kill a pool conversion with SIGTERM: no worker outlives it, no temporary stays, and
    the re-run (which also clears a temporary a SIGKILL would leave) equals a clean run
    (the session's synthetic set: same options, one process, no pool)."""
    args = [sys.executable, "-m", "tfxr.tfrecords", "write", "--source", "synthetic", "--num-images", "240",
            "--image-size", "64", "--shards", "4", "--workers", "2", "--quiet"]
    out = tmp_path / "killed"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(args + ["--out", str(out)], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)   # its own process group: frozen as a whole below
    workers: list[psutil.Process] = []
    deadline = time.monotonic() + 300  # a bound on waiting, not a speed check
    frozen = False
    while proc.poll() is None and time.monotonic() < deadline:
        workers = _children(proc.pid)
        if len([w for w in workers if "python" in w.name().lower()]) >= 2 and list(out.glob(".tmp-*")):
            try:   # freeze the conversion, then check: no shard can finish between the check and the kill
                os.killpg(proc.pid, signal.SIGSTOP)
            except ProcessLookupError:
                break
            if proc.poll() is None and list(out.glob(".tmp-*")):
                frozen = True
                break
            os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.05)
    assert frozen and proc.poll() is None, f"conversion finished before it could be killed:\n{proc.stderr.read()}"
    proc.send_signal(signal.SIGTERM)
    os.killpg(proc.pid, signal.SIGCONT)   # the pending SIGTERM is handled as it resumes
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    _gone, alive = psutil.wait_procs(workers, timeout=60)
    assert alive == [], f"worker processes outlived the conversion: {alive}"
    assert not list(out.glob(".tmp-*")) and not (out / "manifest.json").exists()
    (out / ".tmp-train-00000-of-00004.tfrecord.abc123").write_bytes(b"left by a SIGKILL")
    rerun = subprocess.run(args + ["--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 leftover temporary file(s) removed" in rerun.stderr
    assert not [p for p in out.rglob(".tmp-*")]
    clean = synthetic_tfrec
    assert shard_hashes(out) == shard_hashes(clean) and len(shard_hashes(clean)) == 12
    killed_m, clean_m = (json.loads((d / "manifest.json").read_text()) for d in (out, clean))
    assert killed_m["splits"] == clean_m["splits"]
