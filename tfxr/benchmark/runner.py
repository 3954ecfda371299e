"""Runs measurements in fresh processes and collects their result lines.

Every variant runs in new processes (oneDNN is chosen when TensorFlow is imported);
layouts measured in the same run so that they share the machine's state:

* ``all-cores``: one process, TensorFlow's default threads on every core;
* ``one-core``: one process pinned to one core (``os.sched_setaffinity``), 1 thread;
* ``independent``: N such one-core processes at once, no communication; their summed
  rate is the hardware bound for N ranks;
* ``ranks``: ``mpirun -np N`` bound one core per rank (or ``horovodrun --gloo``), the
  real Horovod step.

A failed measurement is recorded with its error, never raised: one broken setting does
not lose the others.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace

from tfxr import cpu
from tfxr.benchmark.analysis import Variant, combine_independent, summarize
from tfxr.benchmark.workers import RESULT_MARK
from tfxr.errors import ConfigError
from tfxr.launch import clean_launch_env, launch_command
from tfxr import log


@dataclass(frozen=True)
class Timing:
    """How long each training measurement runs (steps per window, windows, warm-up)."""

    steps: int = 20
    repeats: int = 5
    warmup: int = 5
    timeout_s: int = 3600


def launcher_for(np_: int) -> str:
    """One process: plain ``python``; more: ``mpirun`` (the benchmark's layouts are local ones,
    also inside a Slurm job)."""
    return "python" if np_ == 1 else "mpirun"


def worker_argv(v: Variant, timing: Timing, data: str) -> list[str]:
    argv = ["tfxr.benchmark", "_worker", "--model", v.model, "--image-size", str(v.image_size),
            "--batch-size", str(v.batch_size), "--input", v.input, "--precision", v.precision,
            "--steps", str(timing.steps), "--repeats", str(timing.repeats), "--warmup", str(timing.warmup)]
    if v.input != "random":
        argv += ["--data", data]
    if v.xla:
        argv.append("--xla")
    return argv


def variant_env(v: Variant) -> dict:
    env = clean_launch_env()
    env["TF_ENABLE_ONEDNN_OPTS"] = "1" if v.onednn else "0"
    env.update(dict(v.env))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def parse_worker_output(stdout: str) -> dict:
    """The worker's result line (horovodrun prefixes lines with '[0]<stdout>:')."""
    for line in reversed(stdout.splitlines()):
        if RESULT_MARK in line:
            return json.loads(line.split(RESULT_MARK, 1)[1])
    raise ValueError("the worker printed no result line")


def failure(cmd: list[str], returncode: int, stderr: str | None) -> str:
    return f"exit {returncode}: {' '.join(cmd)}\n{(stderr or '')[-2000:]}"


def run_one(cmd: list[str], env: dict, timing: Timing) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timing.timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(failure(cmd, proc.returncode, proc.stderr))
    return parse_worker_output(proc.stdout)


def run_concurrently(cmds: list[list[str]], env: dict, timeout_s: float, pin: bool = True) -> list[str]:
    """Start every command at once (command i pinned to core i); their stdouts, in order."""
    procs = []
    for i, cmd in enumerate(cmds):
        core = {i % (os.cpu_count() or 1)}
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                      preexec_fn=(lambda c=core: os.sched_setaffinity(0, c)) if pin else None))
    try:
        outputs = [p.communicate(timeout=timeout_s) for p in procs]
    finally:
        for p in procs:   # a timeout or an interrupt leaves none of them running
            if p.poll() is None:
                p.kill()
                p.wait()
    for cmd, p, (_, err) in zip(cmds, procs, outputs):
        if p.returncode != 0:
            raise RuntimeError(failure(cmd, p.returncode, err))
    return [out for out, _ in outputs]


def run_independent(v: Variant, timing: Timing, data: str, env: dict) -> tuple[list[str], dict]:
    """N one-core processes at once, each on its own core, started behind a file barrier."""
    sync = tempfile.mkdtemp(prefix="tfxr-bench-sync-")
    try:
        cmds = [[sys.executable, "-m", *worker_argv(v, timing, data), "--pin-core", str(i),
                 "--sync-dir", sync, "--sync-count", str(v.workers), "--index", str(i)] for i in range(v.workers)]
        outputs = run_concurrently(cmds, env, timing.timeout_s, pin=False)   # the workers pin themselves
    finally:
        shutil.rmtree(sync, ignore_errors=True)
    results = [parse_worker_output(out) for out in outputs]
    return cmds[0], {"rates": combine_independent([r["rates"] for r in results]),
                     "per_process": [r["rates"] for r in results],
                     "flops_per_image": results[0]["flops_per_image"]}


def variant_command(v: Variant, timing: Timing, data: str) -> list[str]:
    """The command of a single-command layout (all-cores, one-core, ranks)."""
    argv = worker_argv(v, timing, data)
    if v.layout == "all-cores":
        return launch_command(1, argv, "python")
    if v.layout == "one-core":
        return launch_command(1, argv + ["--pin-core", "0"], "python")
    if v.launcher == "gloo":   # horovodrun does not bind: each rank pins itself to its local rank's core
        return launch_command(v.workers, argv + ["--pin-local-rank"], "horovodrun")
    return launch_command(v.workers, argv, "mpirun", cores_per_rank=1)


def run_variant(v: Variant, timing: Timing, data: str) -> dict:
    """Measure one variant in fresh process(es); a failure is recorded, not raised.

    The record carries ``cores`` (what it computed on) and ``flops_per_image``; its FLOP
    fraction is set once the run's ceiling is known (analysis.add_flop_fractions).
    """
    env = variant_env(v)
    record = {"variant": asdict(v), "label": v.label(), "timing": asdict(timing)}
    try:
        if v.layout == "independent":
            cmd, result = run_independent(v, timing, data, env)
        else:
            cmd = variant_command(v, timing, data)
            result = run_one(cmd, env, timing)
    except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as e:
        record["error"] = str(e)
        return record
    record.update(command=" ".join(cmd), images_per_s=summarize(result["rates"]),
                  flops_per_image=result["flops_per_image"], cores=v.cores(cpu.available_cores()))
    if "per_process" in result:
        record["per_process"] = result["per_process"]
    return record


def slow_setting_timing(v: Variant, timing: Timing) -> Timing:
    """Fewer steps per window for settings known to be many times slower on some CPUs (bf16
    without AMX, XLA on CPU), so that they cost minutes, not tens of minutes; the window
    count stays."""
    if v.precision == "bf16" or v.xla:
        return replace(timing, steps=max(2, timing.steps // 4))
    return timing


def run_plan(plan: list[Variant], timing: Timing, data: str) -> list[dict]:
    results = []
    for i, v in enumerate(plan, 1):
        log.info(f"benchmark [{i}/{len(plan)}] {v.label()} ...")
        r = run_variant(v, slow_setting_timing(v, timing), data)
        shown = (f"{r['images_per_s']['median']:.1f} images/s" if "images_per_s" in r
                 else "FAILED: " + [line for line in r["error"].splitlines() if line.strip()][-1])
        log.info(f"benchmark [{i}/{len(plan)}] {shown}")
        results.append(r)
    return results


def scaling_plan(base: Variant, nps: list[int], launchers: list[str], rank_envs: list[tuple] = ((),)
                 ) -> list[Variant]:
    """The baselines of a scaling measurement: one-core, and per N > 1 the bound and the ranks
    (one per launcher and per set of Horovod settings)."""
    plan = [replace(base, layout="one-core", workers=1)]
    for n in nps:
        if n > 1:
            plan.append(replace(base, layout="independent", workers=n))
            plan += [replace(base, layout="ranks", workers=n, launcher=launcher, env=tuple(env))
                     for launcher in launchers for env in rank_envs]
    return plan


def measure_gemm(timing: Timing, size: int = 2048) -> dict:
    """The fp32 GEMM rate of one process on all cores (oneDNN on): the measured ceiling."""
    cmd = launch_command(1, ["tfxr.benchmark", "_gemm", str(size), str(max(3, timing.repeats))], "python")
    record = {"label": f"fp32 matmul {size}x{size}, 1 process, all cores (GFLOP/s)", "command": " ".join(cmd),
              "cores": cpu.available_cores()}
    try:
        record["gflops"] = summarize(run_one(cmd, variant_env(Variant()), timing)["rates"])
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
        record["error"] = str(e)
    return record


def measure_training_loop(model: str, data: str, image_size: int, batch_size: int, repeats: int,
                          steps_per_epoch: int, timing: Timing, onednn: bool = True, precision: str = "fp32",
                          workers: int = 1, accumulate_steps: int = 1, augment: bool = True) -> dict:
    """The real ``python -m tfxr.train`` loop (pipeline, augmentation, validation, checkpoints).

    One process on all cores (``workers=1``) or ``workers`` ranks of one core each, launched
    by tfxr's own mpirun line (as a user runs it on a CPU node); bf16 is ``mixed_precision``.
    ``accumulate_steps`` K: micro-batches per gradient allreduce (``steps_per_epoch`` a
    multiple of K).  ``augment=False``: ``pipeline.augment.enabled=false`` (input
    ``pipeline-noaug``).  Runs ``repeats + 1`` epochs; the first is the warm-up.  From
    history.json, per epoch: the training rate (``images_per_s``, every rank's images), the
    whole epoch's rate including validation and the checkpoint (steps x batch x ranks /
    ``epoch_time_s``) and the gradient allreduces run (``allreduces``).
    """
    out = tempfile.mkdtemp(prefix="tfxr-bench-loop-")
    layout = "all-cores" if workers == 1 else "ranks"
    v = Variant(model=model, image_size=image_size, batch_size=batch_size,
                input="pipeline" if augment else "pipeline-noaug", onednn=onednn,
                precision=precision, layout=layout, workers=workers)
    argv = ["tfxr.train", "--model", model, "--data", data, "--out", out,
            "--epochs", str(repeats + 1), "--batch-size", str(batch_size), "--image-size", str(image_size),
            "--set", f"steps_per_epoch={steps_per_epoch}", "--set", "progress=false",
            "--set", "early_stopping_patience=0", "--set", f"mixed_precision={str(precision == 'bf16').lower()}"]
    if accumulate_steps > 1:
        argv += ["--set", f"accumulate_steps={accumulate_steps}"]
    if not augment:
        argv += ["--set", "pipeline.augment.enabled=false"]
    cmd = launch_command(workers, argv, launcher_for(workers))
    record = {"variant": {**asdict(v), "layout": "train-loop", "loop_layout": layout,
                          "accumulate_steps": accumulate_steps},
              "label": f"{v.label()} | python -m tfxr.train loop"
                       + (f" accumulate_steps={accumulate_steps}" if accumulate_steps > 1 else ""),
              "command": " ".join(cmd)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=variant_env(v), timeout=timing.timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(failure(cmd, proc.returncode, proc.stderr))
        with open(os.path.join(out, "history.json")) as fh:
            epochs = json.load(fh)[1:]
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
        record["error"] = str(e)
        return record
    finally:
        shutil.rmtree(out, ignore_errors=True)
    record["images_per_s"] = summarize([e["images_per_s"] for e in epochs])
    record["whole_epoch_images_per_s"] = summarize([steps_per_epoch * batch_size * workers / e["epoch_time_s"]
                                                    for e in epochs])
    if all("allreduces" in e for e in epochs):
        record["allreduces_per_epoch"] = summarize([e["allreduces"] for e in epochs])
    return record


# --------------------------------------------------------------------------- conversion
def _manifest_conversion(out: str) -> dict:
    with open(os.path.join(out, "manifest.json")) as fh:
        return json.load(fh)["conversion"]


def _converter_argv(source_args: list[str], out: str, workers: int) -> list[str]:
    return ["tfxr.tfrecords", "write", *source_args, "--out", out, "--workers", str(workers), "--quiet",
            "--max-rejects", "-1"]


def run_conversion(source_args: list[str], layout: str, processes: int, workers: int, repeats: int,
                   timeout_s: float = 3600) -> dict:
    """``repeats`` conversions of the same images, images/s of each (the converter's own clock).

    ``layout``: ``pool`` (1 process, ``workers`` pool workers), ``ranks`` (``mpirun -np
    processes``, ``workers`` each) or ``independent`` (``processes`` one-worker conversions
    at once, each pinned to its own core, each of every image into its own directory: the
    bound for that many ranks; their rates are summed).  A failed conversion raises
    ConfigError with the converter's error output (the converter's input is the user's).
    """
    if layout not in ("pool", "ranks", "independent"):
        raise ValueError(f"unknown conversion layout {layout!r}")
    runs = []
    env = clean_launch_env()
    for _ in range(repeats):
        outs = [tempfile.mkdtemp(prefix="tfxr-bench-convert-") for _ in range(processes if layout == "independent"
                                                                               else 1)]
        try:
            if layout == "independent":
                cmds = [launch_command(1, _converter_argv(source_args, o, 1), "python") for o in outs]
            else:
                n = processes if layout == "ranks" else 1
                cmds = [launch_command(n, _converter_argv(source_args, outs[0], workers), launcher_for(n))]
            start = time.perf_counter()
            try:
                run_concurrently(cmds, env, timeout_s, pin=layout == "independent")
            except RuntimeError as e:
                raise ConfigError(f"conversion failed: {e}") from None
            wall = time.perf_counter() - start
            convs = [_manifest_conversion(o) for o in outs]
        finally:
            for o in outs:
                shutil.rmtree(o, ignore_errors=True)
        images = sum(c["images"] for c in convs)
        runs.append({"images": convs[0]["images"], "images_per_s": sum(c["images_per_s"] for c in convs),
                     "convert_s": max(c["seconds"] for c in convs), "wall_s": wall,
                     "images_per_s_wall": images / wall, "command": " ".join(cmds[0])})
    where = {"pool": f"1 process, {workers} pool worker(s)", "ranks": f"mpirun -np {processes}, {workers} worker(s)/rank",
             "independent": f"{processes} x 1-worker processes at once, 1 core each (bound)"}[layout]
    return {"layout": layout, "processes": processes, "workers_per_process": workers if layout != "independent" else 1,
            "label": where, "images": runs[0]["images"], "command": runs[0]["command"],
            "images_per_s": summarize([r["images_per_s"] for r in runs]),
            "images_per_s_wall": summarize([r["images_per_s_wall"] for r in runs]), "runs": runs}
