r"""``python -m tfxr.benchmark``: honest throughput measurements (table, JSON, PNG).

    # the issue-10 targets in one run (what `make benchmark` runs): benchmarks/results/suite.*
    python -m tfxr.benchmark suite
    # training images/s: settings side by side and, for --np, the three baselines
    python -m tfxr.benchmark train --model tb_cnn --image-size 128 --batch-size 32 --np 1,2 \
        --input synthetic,pipeline --onednn on,off --precision fp32,bf16 --xla off,on
    # conversion: raw images -> TFRecords, images/s per pool-worker / MPI-rank count
    python -m tfxr.benchmark convert --workers 1,2 --np 1,2 -- --source nih \
        --images ../shared/data/nih_chestxray14_sample/images \
        --labels ../shared/data/nih_chestxray14_sample/Data_Entry_2017_sample.csv --image-size 224
    # input pipeline alone: TFRecord vs raw image files (same images, same options)
    python -m tfxr.benchmark input --data tfrec/nih224 --raw raw/nih224 --batch-size 32

How a training number is measured: every variant runs in fresh processes (oneDNN is
chosen when TensorFlow is imported), builds the model, runs ``--warmup`` steps that are
not timed (tracing, allocation, oneDNN primitive creation), then ``--repeats`` timed
windows of ``--steps`` steps each; the table gives the median and the min-max of the
windows and the JSON every window.  ``synthetic`` input is one random batch kept in
memory (the model-only rate); ``pipeline`` is the real tf.data pipeline with
augmentation reading TFRecords.  Layouts, measured in the same run so that they share
the machine's state:

* ``all-cores``: one process, TensorFlow's default threads on every core;
* ``one-core``: one process pinned to one core (``os.sched_setaffinity``), 1 thread;
* ``independent``: N such one-core processes at once, no communication; their summed
  rate is the hardware bound for N ranks (a shared start barrier, and each keeps
  stepping until all are done, so the load is the same throughout every window);
* ``ranks``: ``mpirun -np N`` bound one core per rank (or ``horovodrun --gloo``), the
  real Horovod step; ``vs bound`` = its rate / the independent bound.

FLOP fraction = images/s x 3 x forward FLOPs per image (``tfxr.models.model_report``;
a training step is about 3x the forward pass) / (cores used x clock x fp32 FLOPs per
cycle, see ``tfxr.cpu.fp32_ceiling``).  Every result file records the command, the
machine, the CPU and the settings.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace

from tfxr import cpu
from tfxr.cli import run_main
from tfxr.distributed import clean_launch_env, mpirun_command
from tfxr.errors import ConfigError
from tfxr.io import atomic_path, write_json, write_text

RESULT_MARK = "TFXR_BENCH "   # the worker's result line (horovodrun prefixes output lines)
TRAINING_FLOPS_PER_FORWARD = 3  # forward + backward (2x forward) per training image
LAYOUTS = ("all-cores", "one-core", "independent", "ranks")
LOOPS = (("fp32", 1), ("fp32", 2), ("bf16", 2))   # (precision, processes) of the suite's tfxr.train loops


# --------------------------------------------------------------------------- bookkeeping
@dataclass(frozen=True)
class Variant:
    """One training measurement: what runs, on which input, in which process layout."""

    model: str = "tb_cnn"
    image_size: int = 128
    batch_size: int = 32          # per process
    input: str = "synthetic"      # synthetic (random batch in memory) | pipeline (tf.data + augmentation)
    precision: str = "fp32"       # fp32 | bf16 (Keras mixed_bfloat16)
    onednn: bool = True           # TF_ENABLE_ONEDNN_OPTS
    xla: bool = False             # jit-compiled forward/backward
    layout: str = "all-cores"     # see LAYOUTS
    workers: int = 1              # processes (independent) or ranks
    launcher: str = "mpirun"      # ranks only: mpirun | gloo (horovodrun --gloo)
    env: tuple = ()               # ranks only: extra (NAME, value) settings, e.g. HOROVOD_FUSION_THRESHOLD

    def cores(self, machine_cores: int) -> int:
        """Cores the variant computes on (for its FLOP ceiling)."""
        return machine_cores if self.layout == "all-cores" else self.workers

    def label(self) -> str:
        what = f"{self.model} {self.image_size}px b{self.batch_size} {self.input} " + setting_text(asdict(self))
        where = {"all-cores": "1 process, all cores", "one-core": "1 process, 1 core",
                 "independent": f"{self.workers} x 1-core processes (bound)",
                 "ranks": f"{self.launcher} -np {self.workers}, 1 core/rank"}[self.layout]
        where += "".join(f" {name}={value}" for name, value in self.env)
        return f"{what} | {where}"


def summarize(rates: list[float]) -> dict:
    """Median, spread (min, max, quartiles) of repeated measurements."""
    if not rates:
        raise ValueError("no measurements to summarize")
    ordered = sorted(rates)
    quartiles = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1],
            "q1": quartiles[0], "q3": quartiles[2], "repeats": list(rates)}


def combine_independent(per_process: list[list[float]]) -> list[float]:
    """Window-by-window sum of N concurrent processes' rates (their windows overlap)."""
    counts = {len(r) for r in per_process}
    if len(counts) != 1:
        raise ValueError(f"independent processes reported different repeat counts: {sorted(counts)}")
    return [sum(window) for window in zip(*per_process)]


def flop_fraction(images_per_s: float, forward_flops: float, ceiling_flops_per_s: float) -> float:
    """Share of the fp32 peak a training rate reaches (training ~ 3x forward FLOPs)."""
    return images_per_s * forward_flops * TRAINING_FLOPS_PER_FORWARD / ceiling_flops_per_s


SETTING_FIELDS = ("model", "image_size", "batch_size", "input", "precision", "onednn", "xla")


def same_setting(a: dict, b: dict) -> bool:
    """Two variants compute the same thing (model, size, batch, input, precision, oneDNN, XLA)."""
    return all(a[k] == b[k] for k in SETTING_FIELDS)


def setting_text(v: dict) -> str:
    """``bf16 oneDNN on [XLA]`` of a variant."""
    return f"{v['precision']} oneDNN {'on' if v['onednn'] else 'off'}" + (" XLA" if v["xla"] else "")


def baseline_median(measurements: list[dict], setting: dict, layout: str, workers: int = 1) -> float | None:
    """Median images/s of the plain measurement (mpirun, no extra env) at ``setting`` and layout."""
    for m in measurements:
        v = m["variant"]
        if ("images_per_s" in m and v["layout"] == layout and v["workers"] == workers and same_setting(v, setting)
                and v["launcher"] == "mpirun" and not v["env"]):
            return m["images_per_s"]["median"]
    return None


def scaling_rows(measurements: list[dict]) -> list[dict]:
    """Per ``ranks`` measurement: ratios to the baselines measured at the same setting.

    ``measurements`` are result dicts (``variant`` + ``images_per_s`` summary).  For each
    ranks measurement with N workers: ratio to the N-process independent bound (Horovod
    overhead), per-worker efficiency against N x the one-core process, and speed-up
    against the one process using every core -- each baseline with the same model, size,
    batch, input, precision, oneDNN and XLA setting (a bf16 run is never divided by fp32).
    """
    rows = []
    for m in measurements:
        v = m["variant"]
        if v["layout"] != "ranks":
            continue
        n, rate = v["workers"], m["images_per_s"]["median"]
        bound, one_core, all_cores = (baseline_median(measurements, v, layout, workers)
                                      for layout, workers in (("independent", n), ("one-core", 1), ("all-cores", 1)))
        rows.append({"workers": n, "launcher": v["launcher"] + "".join(f" {k}={x}" for k, x in v["env"]),
                     "setting": f"{setting_text(v)} {v['input']}",
                     "images_per_s": rate, "independent_bound": bound,
                     "vs_bound": rate / bound if bound else None,
                     "efficiency_vs_one_core": rate / (n * one_core) if one_core else None,
                     "vs_all_cores_process": rate / all_cores if all_cores else None})
    return rows


# --------------------------------------------------------------------------- output
def _fmt(cell) -> str:
    if cell is None:
        return "-"
    return f"{cell:.2f}" if isinstance(cell, float) else str(cell)


def table(headers: list[str], rows: list[list]) -> str:
    """A markdown table (prints readably and pastes into BENCHMARKS.md)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    def justify(i, c):   # text left, numbers right
        return c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
    lines = ["| " + " | ".join(justify(i, c) for i, c in enumerate(r)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":")
                                   for i, w in enumerate(widths)) + "|")
    return "\n".join(lines)


def measurement_table(measurements: list[dict]) -> str:
    rows = []
    for m in measurements:
        s = m["images_per_s"]
        frac = m.get("flop_fraction")
        rows.append([m["label"], s["median"], f"{s['min']:.1f}-{s['max']:.1f}", len(s["repeats"]),
                     f"{100 * frac:.1f}%" if frac is not None else None])
    return table(["measurement", "images/s (median)", "min-max", "repeats", "of fp32 peak"], rows)


def scaling_table(rows: list[dict]) -> str:
    return table(["ranks", "launcher", "setting", "images/s", "independent bound", "vs bound", "eff. vs 1-core",
                  "vs all-cores process (same setting)"],
                 [[r["workers"], r["launcher"], r["setting"], r["images_per_s"], r["independent_bound"],
                   r["vs_bound"], r["efficiency_vs_one_core"], r["vs_all_cores_process"]] for r in rows])


def plot_scaling(measurements: list[dict], path: str, title: str) -> None:
    """images/s against worker count: ranks, the independent bound, N x one core, all cores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(layout, launcher=None, env=()):
        points = sorted(((m["variant"]["workers"], m["images_per_s"]) for m in measurements
                         if m["variant"]["layout"] == layout and launcher in (None, m["variant"]["launcher"])
                         and tuple(map(tuple, m["variant"]["env"])) == env), key=lambda p: p[0])
        return [p[0] for p in points], [p[1] for p in points]

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    one = [m["images_per_s"]["median"] for m in measurements if m["variant"]["layout"] == "one-core"]
    workers = sorted({m["variant"]["workers"] for m in measurements} | {1})
    if one:
        ax.plot(workers, [one[0] * n for n in workers], "k--", lw=0.8, label="N x one-core process")
    rank_settings = sorted({(m["variant"]["launcher"], tuple(map(tuple, m["variant"]["env"])))
                            for m in measurements if m["variant"]["layout"] == "ranks"})
    curves = [("independent", None, (), "s-")] + [("ranks", launcher, env, "o-") for launcher, env in rank_settings]
    for layout, launcher, env, style in curves:
        xs, stats = series(layout, launcher, env)
        if not xs:
            continue
        med = [s["median"] for s in stats]
        err = [[m - s["min"] for m, s in zip(med, stats)], [s["max"] - m for m, s in zip(med, stats)]]
        name = ("independent 1-core processes (bound)" if layout == "independent"
                else f"Horovod ({launcher}{''.join(f' {k}={v}' for k, v in env)})")
        ax.errorbar(xs, med, yerr=err, fmt=style, capsize=3, label=name)
    ranks = [m["variant"] for m in measurements if m["variant"]["layout"] == "ranks"]
    for m in measurements:
        if m["variant"]["layout"] == "all-cores" and ranks and same_setting(m["variant"], ranks[0]):
            ax.axhline(m["images_per_s"]["median"], color="grey", lw=0.8, label="1 process, all cores (same setting)")
            break
    ax.set(xlabel="processes / ranks (1 core each)", ylabel="images/s (median, min-max)", title=title)
    ax.set_xticks(workers)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def machine_facts() -> dict:
    info = cpu.read_cpuinfo()
    return {"host": platform.node(), "cpu": info.model_name, "vendor": info.vendor,
            "logical_cpus": info.logical_cpus, "available_cores": cpu.available_cores(),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def settings_facts() -> dict:
    """The environment variables that change CPU speed, as this run saw them."""
    names = ("TF_ENABLE_ONEDNN_OPTS", "TFXR_CPU_THREADS", "TFXR_INTER_OP_THREADS", "OMP_NUM_THREADS",
             "HOROVOD_CYCLE_TIME", "HOROVOD_FUSION_THRESHOLD", "HOROVOD_CPU_OPERATIONS")
    return {n: os.environ.get(n) for n in names}


# --------------------------------------------------------------------------- the worker
def _worker_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tfxr.benchmark _worker")
    for name, default in (("--model", "tb_cnn"), ("--input", "synthetic"), ("--precision", "fp32"),
                          ("--data", ""), ("--sync-dir", "")):
        p.add_argument(name, default=default)
    for name, default in (("--image-size", 128), ("--batch-size", 32), ("--steps", 10), ("--repeats", 3),
                          ("--warmup", 3), ("--pin-core", -1), ("--sync-count", 1), ("--index", 0)):
        p.add_argument(name, type=int, default=default)
    p.add_argument("--xla", action="store_true")
    p.add_argument("--pin-local-rank", action="store_true", help="pin to core = local rank (horovodrun)")
    return p


def _file_barrier(directory: str, name: str, index: int, count: int) -> None:
    """Wait until ``count`` processes have each touched ``name.<index>`` in ``directory``."""
    open(os.path.join(directory, f"{name}.{index}"), "w").close()
    while sum(os.path.exists(os.path.join(directory, f"{name}.{i}")) for i in range(count)) < count:
        time.sleep(0.01)


def _all_done(directory: str, count: int) -> bool:
    return all(os.path.exists(os.path.join(directory, f"done.{i}")) for i in range(count))


def run_worker(argv: list[str]) -> int:
    """Time ``repeats`` windows of ``steps`` training steps; print one result line (rank 0)."""
    args = _worker_parser().parse_args(argv)
    if args.pin_local_rank:
        args.pin_core = int(os.environ.get("HOROVOD_LOCAL_RANK", os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", 0)))
    if args.pin_core >= 0:   # before TensorFlow starts its thread pools
        os.sched_setaffinity(0, {args.pin_core % (os.cpu_count() or 1)})
        os.environ["TFXR_CPU_THREADS"] = "1"
    import keras
    import numpy as np
    import tensorflow as tf

    from tfxr import distributed as dist
    from tfxr.models import build_model, model_report
    from tfxr.training.classifier import DistributedStep

    dist.init()
    if args.precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(dist.rank())
    outputs = 14 if args.model == "chexnet" else 1
    model = build_model(args.model, args.image_size, channels=1, num_outputs=outputs)
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    dist.broadcast_variables(list(model.variables) + list(optimizer.variables))
    # the very step tfxr.train runs (model-only: no input pipeline, no validation)
    train_step = DistributedStep(model, optimizer, keras.losses.BinaryCrossentropy(), xla=args.xla)
    if args.input == "synthetic":
        rng = np.random.default_rng(dist.rank())
        x = tf.constant(rng.random((args.batch_size, args.image_size, args.image_size, 1), np.float32))
        y = tf.constant((rng.random((args.batch_size, outputs)) < 0.3).astype(np.float32))
        batches = itertools.repeat((x, y))
    else:
        from tfxr.data.augment import AugmentConfig
        from tfxr.data.pipeline import DataConfig, build_dataset

        cfg = DataConfig(batch_size=args.batch_size, image_size=args.image_size, augment=AugmentConfig())
        batches = iter(build_dataset(args.data, "train", cfg, training=True, rank=dist.rank(),
                                     world=dist.size(), repeat_steps=1 << 30))   # endless
    loss = None
    for _ in range(args.warmup):
        loss = train_step(*next(batches))
    float(loss)
    if args.sync_dir:
        _file_barrier(args.sync_dir, "ready", args.index, args.sync_count)
    dist.barrier()
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = train_step(*next(batches))
        float(loss)          # one host sync per window: all its steps have finished
        dist.barrier()
        rates.append(args.steps * args.batch_size * dist.size() / (time.perf_counter() - start))
    if args.sync_dir:        # keep the load on until every independent process is done
        open(os.path.join(args.sync_dir, f"done.{args.index}"), "w").close()
        while not _all_done(args.sync_dir, args.sync_count):
            train_step(*next(batches))
    if dist.rank() == 0:
        print(RESULT_MARK + json.dumps({"rates": rates, "flops_per_image": model_report(model)["flops_per_image"],
                                        "workers": dist.size()}), flush=True)
    return 0


def run_gemm_worker(argv: list[str]) -> int:
    """Time an fp32 n x n matrix product on every core: what this CPU sustains in practice.

    Prints one result line of GFLOP/s per timed window (2 n^3 FLOPs per product).
    """
    import tensorflow as tf

    size, repeats = (int(x) for x in argv) if argv else (2048, 5)
    a = tf.random.stateless_uniform([size, size], [1, 2])
    b = tf.random.stateless_uniform([size, size], [3, 4])
    products = 10
    step = tf.function(lambda: tf.reduce_sum(tf.stack([tf.matmul(a + float(k), b) for k in range(products)])))
    float(step())   # warm-up (and tracing)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        float(step())
        rates.append(products * 2 * size ** 3 / (time.perf_counter() - start) / 1e9)
    print(RESULT_MARK + json.dumps({"rates": rates, "size": size}), flush=True)
    return 0


def measure_gemm(timing: Timing, size: int = 2048) -> dict:
    """The fp32 GEMM rate of one process on all cores (oneDNN on), beside the nominal peak."""
    cmd = [sys.executable, "-m", "tfxr.benchmark", "_gemm", str(size), str(max(3, timing.repeats))]
    record = {"label": f"fp32 matmul {size}x{size}, 1 process, all cores (GFLOP/s)", "command": " ".join(cmd)}
    try:
        record["gflops"] = summarize(_run_one(cmd, _variant_env(Variant()), timing)["rates"])
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
        record["error"] = str(e)
    return record


# --------------------------------------------------------------------------- running variants
@dataclass(frozen=True)
class Timing:
    """How long each training measurement runs (steps per window, windows, warm-up)."""

    steps: int = 20
    repeats: int = 5
    warmup: int = 5
    timeout_s: int = 3600


def _worker_argv(v: Variant, timing: Timing, data: str) -> list[str]:
    argv = ["tfxr.benchmark", "_worker", "--model", v.model, "--image-size", str(v.image_size),
            "--batch-size", str(v.batch_size), "--input", v.input, "--precision", v.precision,
            "--steps", str(timing.steps), "--repeats", str(timing.repeats), "--warmup", str(timing.warmup)]
    if v.input == "pipeline":
        argv += ["--data", data]
    if v.xla:
        argv.append("--xla")
    return argv


def _variant_env(v: Variant) -> dict:
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


def _failure(cmd: list[str], proc) -> str:
    return f"exit {proc.returncode}: {' '.join(cmd)}\n{(proc.stderr or '')[-2000:]}"


def _run_one(cmd: list[str], env: dict, timing: Timing) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timing.timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(_failure(cmd, proc))
    return parse_worker_output(proc.stdout)


def _run_independent(v: Variant, timing: Timing, data: str, env: dict) -> tuple[list[str], dict]:
    """N one-core processes at once, each on its own core, started behind a file barrier."""
    sync = tempfile.mkdtemp(prefix="tfxr-bench-sync-")
    try:
        procs, cmds = [], []
        for i in range(v.workers):
            cmd = [sys.executable, "-m", *_worker_argv(v, timing, data), "--pin-core", str(i),
                   "--sync-dir", sync, "--sync-count", str(v.workers), "--index", str(i)]
            cmds.append(cmd)
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        outputs = [p.communicate(timeout=timing.timeout_s) for p in procs]
    finally:
        shutil.rmtree(sync, ignore_errors=True)
    for cmd, p, (out, err) in zip(cmds, procs, outputs):
        if p.returncode != 0:
            raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}\n{err[-2000:]}")
    results = [parse_worker_output(out) for out, _ in outputs]
    return cmds[0], {"rates": combine_independent([r["rates"] for r in results]),
                     "per_process": [r["rates"] for r in results],
                     "flops_per_image": results[0]["flops_per_image"]}


def command_for(v: Variant, timing: Timing, data: str) -> list[str]:
    """The command of a single-command layout (all-cores, one-core, ranks)."""
    argv = _worker_argv(v, timing, data)
    if v.layout == "all-cores":
        return [sys.executable, "-m", *argv]
    if v.layout == "one-core":
        return [sys.executable, "-m", *argv, "--pin-core", "0"]
    if v.launcher == "gloo":
        horovodrun = shutil.which("horovodrun") or os.path.join(os.path.dirname(sys.executable), "horovodrun")
        return [horovodrun, "--gloo", "-np", str(v.workers), "-H", f"localhost:{v.workers}",
                sys.executable, "-m", *argv, "--pin-local-rank"]
    return mpirun_command(v.workers, argv, cores_per_rank=1)


def run_variant(v: Variant, timing: Timing, data: str, core_flops: float) -> dict:
    """Measure one variant in fresh process(es); a failure is recorded, not raised."""
    env = _variant_env(v)
    record = {"variant": asdict(v), "label": v.label(), "timing": asdict(timing)}
    try:
        if v.layout == "independent":
            cmd, result = _run_independent(v, timing, data, env)
        else:
            cmd = command_for(v, timing, data)
            result = _run_one(cmd, env, timing)
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
        record["error"] = str(e)
        return record
    summary = summarize(result["rates"])
    record.update(command=" ".join(cmd), images_per_s=summary, flops_per_image=result["flops_per_image"],
                  flop_fraction=flop_fraction(summary["median"], result["flops_per_image"],
                                              core_flops * v.cores(cpu.available_cores())))
    if "per_process" in result:
        record["per_process"] = result["per_process"]
    return record


def measure_training_loop(model: str, data: str, image_size: int, batch_size: int, repeats: int,
                          steps_per_epoch: int, timing: Timing, onednn: bool = True, precision: str = "fp32",
                          workers: int = 1) -> dict:
    """The real ``python -m tfxr.train`` loop (pipeline, augmentation, validation, checkpoints).

    One process on all cores (``workers=1``) or ``workers`` ranks of one core each, launched
    by tfxr's own mpirun line (as a user runs it on a CPU node); bf16 is ``mixed_precision``.
    Runs ``repeats + 1`` epochs; the first is the warm-up.  Two rates per epoch from
    history.json: the training part (``images_per_s``, every rank's images) and the whole
    epoch including validation and the checkpoint (steps x batch x ranks / ``epoch_time_s``).
    """
    out = tempfile.mkdtemp(prefix="tfxr-bench-loop-")
    layout = "all-cores" if workers == 1 else "ranks"
    v = Variant(model=model, image_size=image_size, batch_size=batch_size, input="pipeline", onednn=onednn,
                precision=precision, layout=layout, workers=workers)
    argv = ["tfxr.train", "--model", model, "--data", data, "--out", out,
            "--epochs", str(repeats + 1), "--batch-size", str(batch_size), "--image-size", str(image_size),
            "--set", f"steps_per_epoch={steps_per_epoch}", "--set", "progress=false",
            "--set", "early_stopping_patience=0", "--set", f"mixed_precision={str(precision == 'bf16').lower()}"]
    cmd = mpirun_command(workers, argv) if workers > 1 else [sys.executable, "-m", *argv]
    record = {"variant": {**asdict(v), "layout": "train-loop", "loop_layout": layout},
              "label": f"{v.label()} | python -m tfxr.train loop", "command": " ".join(cmd)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_variant_env(v), timeout=timing.timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(_failure(cmd, proc))
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
    return record


def loop_rows(measurements: list[dict]) -> list[dict]:
    """Each tfxr.train loop beside the model-only step rate of the same setting and layout."""
    rows = []
    for loop in measurements:
        v = loop["variant"]
        if v["layout"] != "train-loop" or "images_per_s" not in loop:
            continue
        reference = baseline_median(measurements, {**v, "input": "synthetic"}, v.get("loop_layout", "all-cores"),
                                    v["workers"])
        rate = loop["images_per_s"]["median"]
        rows.append({"loop": loop["label"], "images_per_s": rate, "model_only": reference,
                     "ratio": rate / reference if reference else None})
    return rows


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


def fastest_single(measurements: list[dict], fallback: Variant) -> Variant:
    """The fastest one-process, all-cores, model-only setting (the base of the scaling runs)."""
    singles = [m for m in measurements if "images_per_s" in m and m["variant"]["layout"] == "all-cores"
               and m["variant"]["input"] == "synthetic"]
    if not singles:
        return fallback
    best = max(singles, key=lambda m: m["images_per_s"]["median"])["variant"]
    return Variant(**{**best, "env": tuple(best["env"])})


def slow_setting_timing(v: Variant, timing: Timing) -> Timing:
    """Fewer steps per window for settings known to be many times slower (bf16 without AMX,
    XLA on CPU), so that they cost minutes, not tens of minutes; the window count stays."""
    if v.precision == "bf16" or v.xla:
        return replace(timing, steps=max(2, timing.steps // 4))
    return timing


def run_plan(plan: list[Variant], timing: Timing, data: str, core_flops: float) -> list[dict]:
    results = []
    for i, v in enumerate(plan, 1):
        print(f"tfxr: benchmark [{i}/{len(plan)}] {v.label()} ...", file=sys.stderr, flush=True)
        r = run_variant(v, slow_setting_timing(v, timing), data, core_flops)
        shown = f"{r['images_per_s']['median']:.1f} images/s" if "images_per_s" in r else "FAILED"
        print(f"tfxr: benchmark [{i}/{len(plan)}] {shown}", file=sys.stderr, flush=True)
        results.append(r)
    return results


def report_lines(measurements: list[dict]) -> list[str]:
    """The measurement table, then a line per failed measurement."""
    ok = [m for m in measurements if "images_per_s" in m]
    lines = [measurement_table(ok)] if ok else []
    lines += [f"FAILED: {m['label']}: {m['error'].splitlines()[0]}" for m in measurements if "error" in m]
    return lines


# --------------------------------------------------------------------------- convert
def bench_convert(args, rest: list[str]) -> dict:
    rows, runs = [], []
    for ranks in args.np:
        for workers in args.workers:
            out = tempfile.mkdtemp(prefix="tfxr-bench-")
            argv = ["tfxr.tfrecords", "write", *rest, "--out", out, "--workers", str(workers), "--quiet",
                    "--max-rejects", "-1"]
            cmd = mpirun_command(ranks, argv) if ranks > 1 else [sys.executable, "-m", *argv]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_launch_env())
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                shutil.rmtree(out, ignore_errors=True)
                raise ConfigError(f"conversion failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
            with open(os.path.join(out, "manifest.json")) as fh:
                conv = json.load(fh)["conversion"]
            shutil.rmtree(out, ignore_errors=True)
            n = conv["images"]
            runs.append({"ranks": ranks, "workers_per_rank": workers, "images": n, "wall_s": wall,
                         "convert_s": conv["seconds"], "images_per_s": conv["images_per_s"],
                         "images_per_s_wall": n / wall})
            rows.append([ranks, workers, n, conv["seconds"], conv["images_per_s"], wall, n / wall])
    text = table(["ranks", "workers/rank", "images", "convert s", "images/s", "wall s", "images/s (wall)"], rows)
    return {"kind": "convert", "runs": runs, "table": text,
            "note": "convert s: inside the converter (listing, decoding, resizing, encoding, writing, manifest); "
                    "wall s: the whole command, Python/TensorFlow/MPI start-up included"}


# --------------------------------------------------------------------------- input pipeline
def _time_dataset(dataset, warmup: int, steps: int, repeats: int) -> list[float]:
    batches = iter(dataset)
    for _ in range(warmup):
        next(batches)
    rates = []
    for _ in range(repeats):
        start, images = time.perf_counter(), 0
        for _ in range(steps):
            x, _ = next(batches)
            images += int(x.shape[0])
        rates.append(images / (time.perf_counter() - start))
    return rates


def bench_input(args) -> dict:
    from tfxr.data.augment import AugmentConfig
    from tfxr.data.pipeline import DataConfig, build_dataset

    runs, rows = [], []
    for label, directory in (("tfrecord", args.data), ("raw", args.raw)):
        if not directory:
            continue
        for aug in (False, True):
            cfg = DataConfig(batch_size=args.batch_size, image_size=args.image_size,
                             augment=AugmentConfig(enabled=aug))
            dataset = build_dataset(directory, args.split, cfg, training=True, repeat_steps=1 << 30)
            summary = summarize(_time_dataset(dataset, args.warmup, args.steps, args.repeats))
            runs.append({"input": label, "augment": aug, "images_per_s": summary,
                         "data": os.path.abspath(directory)})
            rows.append([label, "on" if aug else "off", summary["median"],
                         f"{summary['min']:.1f}-{summary['max']:.1f}"])
    return {"kind": "input", "batch_size": args.batch_size, "steps": args.steps, "runs": runs,
            "table": table(["input", "augment", "images/s (median)", "min-max"], rows)}


# --------------------------------------------------------------------------- training
def _core_flops(args) -> tuple[float, dict]:
    ceiling = cpu.fp32_ceiling(1, ghz=args.clock_ghz, flops_per_cycle=args.flops_per_cycle)
    return ceiling["flops_per_s"], ceiling


def _check_workers(nps: list[int]) -> None:
    cores = cpu.available_cores()
    if any(n < 1 for n in nps):
        raise ConfigError(f"--np {','.join(map(str, nps))}: worker counts must be >= 1")
    if max(nps) > cores:
        raise ConfigError(f"--np {max(nps)}: this machine gives the benchmark {cores} cores and the one-core-per-"
                          f"rank baselines need one core each; use --np up to {cores}")


def _image_size(args) -> int:
    if args.image_size:
        return args.image_size
    if args.data:
        from tfxr.data.records import read_manifest

        return int(read_manifest(args.data)["image_size"])
    return 128


def bench_train(args) -> dict:
    """Settings side by side (one process, all cores), then the scaling baselines."""
    if "pipeline" in args.input and not args.data:
        raise ConfigError("--input pipeline needs --data (a directory written by `python -m tfxr.tfrecords write`)")
    _check_workers(args.np)
    core_flops, ceiling = _core_flops(args)
    timing = Timing(steps=args.steps, repeats=args.repeats, warmup=args.warmup)
    base = Variant(model=args.model, image_size=_image_size(args), batch_size=args.batch_size,
                   input=args.input[0], precision=args.precision[0], onednn=args.onednn[0], xla=args.xla[0])
    plan = [replace(base, input=i, precision=p, onednn=o, xla=x)
            for i, p, o, x in itertools.product(args.input, args.precision, args.onednn, args.xla)]
    measurements = run_plan(plan, timing, args.data, core_flops)
    if len(args.np) > 1 or args.np[0] > 1:
        measurements += run_plan(scaling_plan(base, args.np, args.launcher, [()] + args.rank_env),
                                 timing, args.data, core_flops)
    scaling = scaling_rows([m for m in measurements if "images_per_s" in m])
    lines = report_lines(measurements) + ([scaling_table(scaling)] if scaling else [])
    return {"kind": "train", "timing": asdict(timing), "fp32_ceiling_per_core": ceiling,
            "measurements": measurements, "scaling": scaling, "table": "\n\n".join(lines),
            "_plots": {"train_scaling.png": (measurements, f"{args.model} {base.image_size} px training")}
            if scaling else {}}


# --------------------------------------------------------------------------- the suite
def synthetic_data(out: str, images: int, image_size: int) -> str:
    """TB phantoms as TFRecords (the project's own data), written once and reused."""
    directory = os.path.join(out, f"data-synthetic-{image_size}px-{images}")
    if not os.path.exists(os.path.join(directory, "manifest.json")):
        cmd = [sys.executable, "-m", "tfxr.tfrecords", "write", "--source", "synthetic", "--num-images",
               str(images), "--image-size", str(image_size), "--shards", "8", "--workers", "2",
               "--out", directory, "--quiet"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_launch_env())
        if proc.returncode != 0:
            raise ConfigError(f"could not write the benchmark data: {_failure(cmd, proc)}")
    return directory


def _find(measurements: list[dict], **want) -> dict | None:
    for m in measurements:
        if "images_per_s" in m and all(m["variant"].get(k) == v for k, v in want.items()):
            return m
    return None


def _median(m: dict | None) -> float | None:
    return m["images_per_s"]["median"] if m else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def suite_targets(sections: dict) -> list[dict]:
    """Issue 10's targets from the suite's measurements: value, goal, met."""
    targets = []

    def add(name, value, goal, unit="x"):
        met = None if value is None else value >= goal
        targets.append({"target": name, "value": value, "goal": goal, "unit": unit, "met": met})

    loops = loop_rows(sections.get("tb_cnn_128", []))
    add("tb_cnn 128 px: training loop / model-only step rate (best setting)",
        max((r["ratio"] for r in loops if r["ratio"] is not None), default=None), 0.90)
    add("tb_cnn 128 px: training loop images/s (best setting)",
        max((r["images_per_s"] for r in loops), default=None), 400.0, "images/s")
    for key, model in (("tb_cnn_128", "tb_cnn 128 px"), ("densenet121_128", "DenseNet121 128 px")):
        rows = scaling_rows([m for m in sections.get(key, []) if "images_per_s" in m])
        two = [r for r in rows if r["workers"] == 2]
        best = max(two, key=lambda r: r["images_per_s"]) if two else None
        add(f"{model}: best -np 2 / independent bound", best and best["vs_bound"], 0.90)
        singles = [_median(m) for m in sections.get(key, [])
                   if "images_per_s" in m and m["variant"]["layout"] == "all-cores"]
        add(f"{model}: best -np 2 / best single process (all cores)",
            _ratio(best and best["images_per_s"], max(singles) if singles else None), 0.95)
    big = _find(sections.get("densenet121_224", []), layout="all-cores", precision="fp32")
    add("DenseNet121 224 px training: fraction of fp32 peak", big and big["flop_fraction"], 0.40, "fraction")
    return targets


def targets_table(targets: list[dict]) -> str:
    def show(t):
        if t["value"] is None:
            return None
        return f"{t['value']:.1f}" if t["unit"] == "images/s" else f"{t['value']:.3f}"
    return table(["target", "measured", "goal", "met"],
                 [[t["target"], show(t), t["goal"], {True: "yes", False: "NO", None: "-"}[t["met"]]]
                  for t in targets])


def bench_suite(args) -> dict:
    """Every issue-10 target, measured side by side in one run (see the README for times)."""
    _check_workers([2])
    core_flops, ceiling = _core_flops(args)
    data = args.data or synthetic_data(args.out, args.images, 128)
    small = Timing(steps=args.steps, repeats=args.repeats, warmup=args.warmup)
    large = Timing(steps=max(2, args.steps // 4), repeats=args.repeats, warmup=max(2, args.warmup // 2))
    tb = Variant(model="tb_cnn", image_size=128, batch_size=32)
    dn = Variant(model="chexnet", image_size=128, batch_size=16)
    fusion = [(), (("HOROVOD_FUSION_THRESHOLD", str(8 << 20)),)]   # default 128 MiB vs 8 MiB buckets
    settings = {
        "tb_cnn_128": [tb, replace(tb, input="pipeline"), replace(tb, onednn=False),
                       replace(tb, input="pipeline", onednn=False), replace(tb, precision="bf16"),
                       replace(tb, xla=True), replace(tb, layout="ranks", workers=2)],
        "densenet121_128": [dn, replace(dn, onednn=False), replace(dn, precision="bf16"),
                            replace(dn, precision="bf16", onednn=False)],
        "densenet121_224": [replace(dn, image_size=224), replace(dn, image_size=224, precision="bf16")],
    }
    scaled = {"tb_cnn_128": [()], "densenet121_128": fusion}
    sections, tables = {}, []
    for name, plan in settings.items():
        if args.only and name not in args.only:
            continue
        timing = small if name.startswith("tb_cnn") else large
        plan = plan if args.variants == "all" else plan[:1]
        sections[name] = run_plan(plan, timing, data, core_flops)
        if name in scaled:   # baselines with the fastest single-process setting just measured
            base = fastest_single(sections[name], plan[0])
            sections[name] += run_plan(scaling_plan(base, [2], args.launcher, scaled[name]), timing, data,
                                       core_flops)
        if name == "tb_cnn_128":
            for precision, workers in LOOPS:
                print(f"tfxr: benchmark: the tfxr.train loop, {precision}, {workers} process(es) ...",
                      file=sys.stderr, flush=True)
                sections[name].append(measure_training_loop("tb_cnn", data, 128, 32, args.repeats, args.loop_steps,
                                                            small, precision=precision, workers=workers))
        tables.append(f"## {name}\n\n" + "\n\n".join(report_lines(sections[name])))
        rows = scaling_rows([m for m in sections[name] if "images_per_s" in m])
        if rows:
            tables.append(scaling_table(rows))
        loops = loop_rows(sections[name])
        if loops:
            tables.append(table(["tfxr.train loop", "images/s", "model-only, same setting", "loop / model-only"],
                                [[r["loop"], r["images_per_s"], r["model_only"], r["ratio"]] for r in loops]))
    gemm = measure_gemm(large)
    if "gflops" in gemm:
        nominal = 2 * core_flops / 1e9   # this suite's 2 cores
        tables.append(table(["what sustains fp32 FLOPs here", "GFLOP/s (median)", "min-max", "of nominal peak"],
                            [[gemm["label"], gemm["gflops"]["median"],
                              f"{gemm['gflops']['min']:.1f}-{gemm['gflops']['max']:.1f}",
                              f"{100 * gemm['gflops']['median'] / nominal:.1f}%"]]))
    targets = suite_targets(sections)
    tables.append("## targets (issue 10)\n\n" + targets_table(targets))
    plots = {f"scaling_{name}.png": (ms, f"{name.replace('_', ' ')} px training")
             for name, ms in sections.items() if scaling_rows([m for m in ms if "images_per_s" in m])}
    return {"kind": "suite", "data": os.path.abspath(data), "fp32_ceiling_per_core": ceiling, "gemm": gemm,
            "timing": {"small_models": asdict(small), "densenet121": asdict(large)},
            "sections": sections, "targets": targets, "table": "\n\n".join(tables), "_plots": plots}


# --------------------------------------------------------------------------- command line
def _choices(allowed: tuple[str, ...], convert=str):
    def parse(text: str):
        values = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in values if x not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"{text!r}: allowed values are {', '.join(allowed)}")
        return [convert(x) for x in values]
    return parse


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 1,2") from None


ON_OFF = ("on", "off")


def _settings(text: str) -> tuple:
    pairs = []
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE[,NAME=VALUE]")
        pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tfxr.benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results", help="directory for the JSON/markdown/PNG results")
    sub = p.add_subparsers(dest="cmd", metavar="{suite,train,convert,input}",
                           help="what to measure (default: suite)")

    def timing_options(s, steps, repeats, warmup):
        s.add_argument("--steps", type=int, default=steps, help="steps per timed window")
        s.add_argument("--repeats", type=int, default=repeats, help="timed windows (median and spread)")
        s.add_argument("--warmup", type=int, default=warmup, help="untimed steps first")

    def ceiling_options(s):
        s.add_argument("--clock-ghz", type=float, help="core clock for the FLOP ceiling (default: from the OS)")
        s.add_argument("--flops-per-cycle", type=int, help="fp32 FLOPs/cycle/core (default: from the CPU flags)")

    s = sub.add_parser("suite", help="the issue-10 targets side by side (what `make benchmark` runs)")
    timing_options(s, 20, 5, 5)
    ceiling_options(s)
    s.add_argument("--data", default="", help="TFRecords for the pipeline variants (default: synthetic phantoms)")
    s.add_argument("--images", type=int, default=1600, help="synthetic images to write when --data is not given")
    s.add_argument("--loop-steps", type=int, default=40, help="steps per epoch of the tfxr.train loop measurement")
    s.add_argument("--launcher", type=_choices(("mpirun", "gloo")), default=["mpirun", "gloo"])
    s.add_argument("--only", type=_choices(("tb_cnn_128", "densenet121_128", "densenet121_224")),
                   help="run only these sections")
    s.add_argument("--variants", choices=["all", "base"], default="all",
                   help="base: only the fp32 oneDNN-on setting before the baselines (a quick check)")

    t = sub.add_parser("train", help="training images/s: settings side by side, then scaling baselines for "
                                     "--np with the first value of each setting")
    t.add_argument("--model", default="tb_cnn", choices=["tb_cnn", "pneumonia_cnn", "chexnet"])
    t.add_argument("--data", default="", help="TFRecord directory (needed by --input pipeline)")
    t.add_argument("--image-size", type=int, default=0, help="default: the data's size, else 128")
    t.add_argument("--batch-size", type=int, default=32, help="per process")
    t.add_argument("--np", type=_ints, default=[1, 2], help="worker counts for the scaling baselines")
    t.add_argument("--input", type=_choices(("synthetic", "pipeline")), default=["synthetic"])
    t.add_argument("--precision", type=_choices(("fp32", "bf16")), default=["fp32"])
    t.add_argument("--onednn", type=_choices(ON_OFF, lambda x: x == "on"), default=[True])
    t.add_argument("--xla", type=_choices(ON_OFF, lambda x: x == "on"), default=[False])
    t.add_argument("--launcher", type=_choices(("mpirun", "gloo")), default=["mpirun"])
    t.add_argument("--rank-env", type=_settings, action="append", default=[], metavar="NAME=V[,NAME=V]",
                   help="an extra ranks measurement with these settings, e.g. HOROVOD_FUSION_THRESHOLD=8388608 "
                        "(repeatable)")
    timing_options(t, 20, 5, 5)
    ceiling_options(t)

    c = sub.add_parser("convert", help="conversion throughput; converter arguments after --")
    c.add_argument("--workers", type=_ints, default=[1, 2])
    c.add_argument("--np", type=_ints, default=[1])

    i = sub.add_parser("input", help="input pipeline alone: TFRecord vs raw files, augmentation off/on")
    i.add_argument("--data", required=True)
    i.add_argument("--raw", help="raw index dir (tfrecords write --format raw) of the same images")
    i.add_argument("--split", default="train")
    i.add_argument("--batch-size", type=int, default=32)
    i.add_argument("--image-size", type=int, default=0)
    timing_options(i, 30, 5, 5)
    return p


def _check_timing(args) -> None:
    for name in ("steps", "repeats"):
        if getattr(args, name, 1) < 1:
            raise ConfigError(f"--{name} {getattr(args, name)}: must be >= 1")
    if getattr(args, "repeats", 3) < 3:
        raise ConfigError(f"--repeats {args.repeats}: at least 3 windows are needed for a median and a spread")
    if getattr(args, "warmup", 1) < 1:
        raise ConfigError(f"--warmup {args.warmup}: at least one untimed step (tracing) is needed")


def write_results(out: str, name: str, result: dict, command: str) -> list[str]:
    """``NAME.json`` (everything), ``NAME.md`` (the tables) and the PNGs, all atomic."""
    os.makedirs(out, exist_ok=True)
    plots = result.pop("_plots", {})
    result.update(command=command, machine=machine_facts(), settings=settings_facts(),
                  time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    paths = [os.path.join(out, f"{name}.json"), os.path.join(out, f"{name}.md")]
    write_json(paths[0], result)
    header = (f"`{command}`\n\n{result['machine']['cpu']}, {result['machine']['available_cores']} cores, "
              f"load average {result['machine']['load_average']}, {result['time']}\n\n")
    write_text(paths[1], header + result["table"] + "\n")
    for file_name, (measurements, title) in plots.items():
        paths.append(os.path.join(out, file_name))
        plot_scaling(measurements, paths[-1], title)
    return paths


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_worker"]:      # internal: one measured process (not in --help)
        return run_main(lambda: run_worker(argv[1:]))
    if argv[:1] == ["_gemm"]:        # internal: the measured GEMM ceiling
        return run_main(lambda: run_gemm_worker(argv[1:]))
    rest: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cmd is None:
        args = parser.parse_args(argv + ["suite"])

    def body() -> int:
        _check_timing(args)
        if args.cmd == "convert":
            if not rest:
                raise ConfigError("convert needs the converter's arguments after --")
            result = bench_convert(args, rest)
        elif args.cmd == "input":
            result = bench_input(args)
        elif args.cmd == "train":
            result = bench_train(args)
        else:
            result = bench_suite(args)
        command = "python -m tfxr.benchmark " + " ".join(argv + (["--", *rest] if rest else []))
        print(result["table"])
        for path in write_results(args.out, args.cmd, result, command):
            print(f"tfxr: wrote {path}", file=sys.stderr)
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
