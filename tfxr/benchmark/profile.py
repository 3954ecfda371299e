"""``python -m tfxr.benchmark profile``: where a training step's time goes, per op type.

The worker (``_profile``, a fresh process so that oneDNN is chosen as measured) builds
the very step ``tfxr.train`` runs (:func:`tfxr.benchmark.workers.classifier_step`),
runs ``--warmup`` untimed steps, then ``--steps`` steps under the TensorFlow profiler
(``tf.profiler.experimental``), and reads the trace it wrote (``*.xplane.pb``, kept under
``OUT/profile-trace`` for TensorBoard's profile plugin).  Every TensorFlow op the
executor ran is an event ``name:type`` on an executor thread of the host plane; its
self time is its duration less that of the op events nested in it on the same thread.
:func:`op_type_summary` sums them per op type: calls and self time per step, and each
type's share of the total (what the table shows, largest first).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from dataclasses import dataclass

from tfxr.benchmark import report
from tfxr.benchmark.analysis import MODELS, PRECISIONS, Variant
from tfxr.benchmark.runner import Timing, failure, variant_env
from tfxr.config import option, parse_config
from tfxr.errors import ConfigError
from tfxr.launch import launch_command

RESULT_MARK = "TFXR_PROFILE "
#: op types shown by name in the table; the rest are summed into one row
TOP = 25


@dataclass
class ProfileConfig:
    """One profiled process (see :func:`run_profile_worker`)."""

    model: str = option("chexnet", choices=MODELS)
    image_size: int = option(224, minimum=8)
    batch_size: int = option(16, minimum=1)
    precision: str = option("fp32", choices=PRECISIONS)
    steps: int = option(3, minimum=1)
    warmup: int = option(2, minimum=1)
    logdir: str = ""


def op_events(xspace) -> list[tuple[str, str, int, int]]:
    """(thread, op type, start ps, duration ps) of every TensorFlow op event of the host
    plane (names ``op_name:OpType``; the runtime's ``Class::method`` events are not ops)."""
    out = []
    for plane in xspace.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            for e in line.events:
                name = plane.event_metadata[e.metadata_id].name
                if ":" not in name or "::" in name:
                    continue
                out.append((f"{line.id}", name.rsplit(":", 1)[1], line.timestamp_ns * 1000 + e.offset_ps,
                            e.duration_ps))
    return out


def self_times(events: list[tuple[str, str, int, int]]) -> list[tuple[str, int]]:
    """(op type, self time ps) per event: its duration less its directly nested op events'
    on the same thread."""
    result = []
    by_thread: dict[str, list] = {}
    for ev in events:
        by_thread.setdefault(ev[0], []).append(ev)
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e[2], -e[3]))
        stack: list[list] = []     # [type, end, self]
        for _, kind, start, dur in evs:
            while stack and stack[-1][1] <= start:
                done = stack.pop()
                result.append((done[0], done[2]))
            if stack:
                stack[-1][2] -= dur
            stack.append([kind, start + dur, dur])
        result += [(kind, self_ps) for kind, _, self_ps in stack]
    return result


def op_type_summary(events: list[tuple[str, str, int, int]], steps: int) -> list[dict]:
    """Per op type: ``calls`` and ``self_ms`` per step and ``share`` of all ops' self time,
    largest first."""
    totals: dict[str, list] = {}
    for kind, ps in self_times(events):
        t = totals.setdefault(kind, [0, 0])
        t[0] += 1
        t[1] += max(0, ps)
    whole = sum(ps for _, ps in totals.values()) or 1
    rows = [{"op_type": kind, "calls_per_step": calls / steps, "self_ms_per_step": ps / 1e9 / steps,
             "share": ps / whole} for kind, (calls, ps) in totals.items()]
    return sorted(rows, key=lambda r: -r["share"])


def read_trace(logdir: str):
    """The XSpace the profiler wrote under ``logdir`` (the newest, if several)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2   # TensorFlow's own trace schema

    files = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
    if not files:
        raise RuntimeError(f"the profiler wrote no trace under {logdir}")
    space = xplane_pb2.XSpace()
    with open(files[-1], "rb") as fh:
        space.ParseFromString(fh.read())
    return space


def run_profile_worker(argv: list[str]) -> int:
    """Warm up, profile ``steps`` training steps, print the per-op-type summary (one line)."""
    cfg, _ = parse_config(ProfileConfig, argv, "python -m tfxr.benchmark _profile")
    # TensorFlow is imported deliberately late: `python -m tfxr.benchmark` itself never needs it
    import keras
    import numpy as np
    import tensorflow as tf

    from tfxr import distributed as dist
    from tfxr.benchmark.workers import WorkerConfig, classifier_step

    dist.init()
    if cfg.precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    worker = WorkerConfig(model=cfg.model, image_size=cfg.image_size, batch_size=cfg.batch_size, input="random")
    step, flops = classifier_step(worker, dist, keras, np, tf)
    for _ in range(cfg.warmup):
        loss = step()
    float(loss)
    tf.profiler.experimental.start(cfg.logdir)
    for _ in range(cfg.steps):
        loss = step()
    float(loss)
    tf.profiler.experimental.stop()
    events = op_events(read_trace(cfg.logdir))
    print(RESULT_MARK + json.dumps({"ops": op_type_summary(events, cfg.steps), "flops_per_image": flops}), flush=True)
    return 0


def bench_profile(cfg) -> dict:
    """Profile a few training steps in a fresh process; the per-op-type table."""
    model = "chexnet" if cfg.model == "densenet121" else cfg.model
    if model in ("dcgan", "detector"):
        raise ConfigError(f"--model {model}: profile runs the classifiers' training step (tb_cnn, pneumonia_cnn, "
                          "chexnet/densenet121)")
    logdir = os.path.join(cfg.out, "profile-trace")
    shutil.rmtree(logdir, ignore_errors=True)
    os.makedirs(logdir, exist_ok=True)
    argv = ["tfxr.benchmark", "_profile", "--model", model, "--image-size", str(cfg.image_size),
            "--batch-size", str(cfg.batch_size), "--precision", cfg.precision, "--steps", str(cfg.steps),
            "--warmup", str(cfg.warmup), "--logdir", os.path.abspath(logdir)]
    cmd = launch_command(1, argv, "python")
    v = Variant(model=model, image_size=cfg.image_size, batch_size=cfg.batch_size, precision=cfg.precision,
                onednn=cfg.onednn == "on")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=variant_env(v), timeout=Timing().timeout_s)
    if proc.returncode != 0:
        raise ConfigError(f"the profiled step failed: {failure(cmd, proc.returncode, proc.stderr)}")
    line = [ln for ln in proc.stdout.splitlines() if RESULT_MARK in ln][-1]
    ops = json.loads(line.split(RESULT_MARK, 1)[1])["ops"]
    shown = ops[:TOP]
    rest = ops[TOP:]
    rows = [[r["op_type"], r["calls_per_step"], r["self_ms_per_step"], f"{100 * r['share']:.1f}%"] for r in shown]
    if rest:
        rows.append([f"({len(rest)} other op types)", sum(r["calls_per_step"] for r in rest),
                     sum(r["self_ms_per_step"] for r in rest), f"{100 * sum(r['share'] for r in rest):.1f}%"])
    title = (f"{v.label().split(' | ')[0]}: {cfg.steps} profiled training step(s), self time per op type "
             f"(executor threads; trace in {logdir})")
    return {"kind": "profile", "variant": {"model": model, "image_size": cfg.image_size, "batch_size": cfg.batch_size,
                                           "precision": cfg.precision, "onednn": cfg.onednn == "on"},
            "steps": cfg.steps, "command": " ".join(cmd), "ops": ops, "trace": os.path.abspath(logdir),
            "table": f"{title}\n\n" + report.table(["op type", "calls/step", "self ms/step", "share"], rows)}
