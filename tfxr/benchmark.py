"""``python -m tfxr.benchmark``: throughput tables (printed) and JSON (+ PNG for scaling).

    # conversion: raw images -> TFRecords, images/s per pool-worker / MPI-rank count
    python -m tfxr.benchmark convert --workers 1,2 --np 1,2 -- --source nih \
        --images ../shared/data/nih_chestxray14_sample/images \
        --labels ../shared/data/nih_chestxray14_sample/Data_Entry_2017_sample.csv --image-size 224
    # input pipeline: TFRecord vs raw image files (same images, same options)
    python -m tfxr.benchmark input --data tfrec/nih224 --raw raw/nih224 --batch-size 32
    # training: images/s per worker count under mpirun, speedup and scaling efficiency
    python -m tfxr.benchmark train --data tfrec/nih224 --model chexnet --np 1,2 --steps 20

Every result file records the command that made it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from tfxr.distributed import clean_launch_env, mpirun_command


def _machine() -> dict:
    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def _write(out: str, name: str, result: dict) -> str:
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.json")
    with open(path + ".tmp", "w") as fh:
        json.dump(result, fh, indent=2)
    os.replace(path + ".tmp", path)
    return path


def _table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in r]
                                            for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [" | ".join(c.rjust(w[i]) for i, c in enumerate(r)) for r in cells]
    lines.insert(1, "-+-".join("-" * x for x in w))
    return "\n".join(lines)


# --------------------------------------------------------------------------- convert
def bench_convert(args, rest: list[str]) -> dict:
    rows, runs = [], []
    for np_ in args.np:
        for w in args.workers:
            out = tempfile.mkdtemp(prefix="tfxr-bench-")
            argv = ["tfxr.tfrecords", "write", *rest, "--out", out, "--workers", str(w), "--quiet",
                    "--max-rejects", "-1"]
            cmd = mpirun_command(np_, argv) if np_ > 1 else [sys.executable, "-m", *argv]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env=clean_launch_env())
            dt = time.perf_counter() - t0
            if r.returncode != 0:
                raise SystemExit(f"conversion failed ({' '.join(cmd)}):\n{r.stderr[-3000:]}")
            with open(os.path.join(out, "manifest.json")) as fh:
                conv = json.load(fh)["conversion"]
            shutil.rmtree(out, ignore_errors=True)
            n = conv["images"]
            runs.append({"ranks": np_, "workers_per_rank": w, "images": n, "wall_s": dt, "convert_s": conv["seconds"],
                         "images_per_s": conv["images_per_s"], "images_per_s_wall": n / dt})
            rows.append([np_, w, n, conv["seconds"], conv["images_per_s"], dt, n / dt])
    print(_table(["ranks", "workers/rank", "images", "convert s", "images/s", "wall s", "images/s (wall)"], rows))
    return {"kind": "convert", "runs": runs,
            "note": "convert s: inside the converter (listing, decoding, resizing, encoding, writing, manifest); "
                    "wall s: the whole command, Python/TensorFlow/MPI start-up included"}


# --------------------------------------------------------------------------- input pipeline
def _time_dataset(ds, warmup: int, steps: int, batch: int) -> float:
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        x, _ = next(it)
        n += int(x.shape[0])
    return n / (time.perf_counter() - t0)


def bench_input(args) -> dict:
    from tfxr.data.augment import AugmentConfig
    from tfxr.data.pipeline import DataConfig, build_dataset

    runs, rows = [], []
    for label, d in (("tfrecord", args.data), ("raw", args.raw)):
        if not d:
            continue
        for aug in (False, True):
            cfg = DataConfig(batch_size=args.batch_size, image_size=args.image_size,
                             augment=AugmentConfig(enabled=aug))
            ds = build_dataset(d, args.split, cfg, training=True, repeat_steps=args.steps + args.warmup)
            ips = _time_dataset(ds, args.warmup, args.steps, args.batch_size)
            runs.append({"input": label, "augment": aug, "images_per_s": ips, "data": os.path.abspath(d)})
            rows.append([label, "on" if aug else "off", ips])
    print(_table(["input", "augment", "images/s"], rows))
    return {"kind": "input", "batch_size": args.batch_size, "steps": args.steps, "runs": runs}


# --------------------------------------------------------------------------- training scaling
def _train_worker(args) -> None:
    """Runs inside mpirun: times args.steps training steps after args.warmup."""
    from tfxr import distributed as dist
    from tfxr.train import TrainConfig, Trainer

    from tfxr.data.pipeline import DataConfig

    cfg = TrainConfig(model=args.model, data=args.data, out=tempfile.mkdtemp(), progress=False, val_split="",
                      pipeline=DataConfig(batch_size=args.batch_size, image_size=args.image_size))
    tr = Trainer(cfg)
    tr.broadcast()
    ds = iter(tr.dataset("train", True, 0, steps=args.steps + args.warmup))
    for _ in range(args.warmup):
        tr.train_step(*next(ds))
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        tr.train_step(*next(ds))
    dist.barrier()
    dt = time.perf_counter() - t0
    if dist.rank() == 0:
        print(json.dumps({"workers": dist.size(), "seconds": dt,
                          "images_per_s": args.steps * args.batch_size * dist.size() / dt}))


def bench_train(args) -> dict:
    runs = []
    for np_ in args.np:
        argv = ["tfxr.benchmark", "_train_worker", "--data", args.data, "--model", args.model,
                "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
                "--image-size", str(args.image_size)]
        cmd = mpirun_command(np_, argv) if np_ > 1 else [sys.executable, "-m", *argv]
        r = subprocess.run(cmd, capture_output=True, text=True, env=clean_launch_env())
        if r.returncode != 0:
            raise SystemExit(f"training benchmark failed ({' '.join(cmd)}):\n{r.stderr[-3000:]}")
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1]
        runs.append(json.loads(line))
    base = runs[0]["images_per_s"] / runs[0]["workers"]
    rows = []
    for run in runs:
        run["speedup"] = run["images_per_s"] / runs[0]["images_per_s"] * runs[0]["workers"]
        run["efficiency"] = run["images_per_s"] / (base * run["workers"])
        rows.append([run["workers"], run["images_per_s"], run["images_per_s"] / run["workers"], run["speedup"],
                     run["efficiency"]])
    print(_table(["workers", "images/s", "images/s/worker", "speedup", "efficiency"], rows))
    return {"kind": "train", "model": args.model, "batch_size_per_worker": args.batch_size, "runs": runs}


def plot_scaling(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = [r["workers"] for r in result["runs"]]
    s = [r["speedup"] for r in result["runs"]]
    fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
    ax.plot(w, s, "o-", label="measured")
    ax.plot(w, w, "k--", lw=0.8, label="linear")
    ax.set(xlabel="workers", ylabel="speedup", title=f"{result['model']} training scaling")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    p = argparse.ArgumentParser(prog="python -m tfxr.benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results", help="directory for the JSON/PNG results")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="conversion throughput; converter arguments after --")
    c.add_argument("--workers", type=ints, default=[1, 2])
    c.add_argument("--np", type=ints, default=[1])
    for name in ("input", "train", "_train_worker"):
        s = sub.add_parser(name)
        s.add_argument("--data", required=True)
        s.add_argument("--batch-size", type=int, default=32)
        s.add_argument("--steps", type=int, default=30)
        s.add_argument("--warmup", type=int, default=5)
        s.add_argument("--image-size", type=int, default=0)
        if name == "input":
            s.add_argument("--raw", help="raw index dir (tfrecords write --format raw) of the same images")
            s.add_argument("--split", default="train")
        else:
            s.add_argument("--model", default="tb_cnn")
            s.add_argument("--np", type=ints, default=[1, 2])
    args = p.parse_args(argv)
    if args.cmd == "_train_worker":
        _train_worker(args)
        return 0
    if args.cmd == "convert":
        if not rest:
            p.error("convert needs the converter's arguments after --")
        result = bench_convert(args, rest)
    elif args.cmd == "input":
        result = bench_input(args)
    else:
        result = bench_train(args)
    result.update(command="python -m tfxr.benchmark " + " ".join(sys.argv[1:] if argv is None else
                                                                  argv + (["--", *rest] if rest else [])),
                  machine=_machine(), time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    path = _write(args.out, args.cmd, result)
    if args.cmd == "train":
        plot_scaling(result, os.path.join(args.out, "train_scaling.png"))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
