"""Accuracy against the number of workers (issue 18; docs/RESULTS.md, run by accuracy_vs_workers.sh).

Does test AUROC survive scaling out?  On 2 cores, more workers are simulated the way Horovod's
``backward_passes_per_step`` does it: 2 MPI ranks (``python -m tfxr.launch --np 2``), each
accumulating ``accumulate_steps`` K micro-batches per allreduce, so one optimizer step sees
2K micro-batches -- the step of 2K workers.  Effective workers 1 is one process, K = 1.

Per data set, effective worker count W in ``--workers`` (default 1 2 4 8 16), LR mode and seed:

  scaled    lr x W with Horovod's warm-up over ``--warmup-epochs`` (tfxr's default policy)
  unscaled  lr as for one worker, no warm-up (``--no-lr-scaling --warmup-epochs 0``)

every run trains the same model for the same fixed number of epochs (no plateau schedule, no
early stopping: the number of optimizer steps per epoch falls as 1/W, which is the point) and
its final model is scored on the **test** split (``python -m tfxr.evaluate --split test``);
validation AUROC of the last epoch is kept beside it (history.json) and never mixed up with it.
At W = 1 the two modes are the same run (lr x 1, no warm-up), trained once per seed.

Data:
  pneumoniamnist  ../shared/data's npz; the official val split is the TEST set, a validation
                  set is carved from train (``--remap-splits train=trainval,val=test``).
  phantoms        tfxr's synthetic binary task (``--synthetic-task tb``, lesion-or-not).

``run`` skips cells whose ``eval-test/metrics.json`` exists (restartable); ``summarize``
writes ``results.csv``, ``results.json``, ``table.md`` (mean +- sd over seeds, with which
cells are done) and ``accuracy_vs_workers.png``.  Every command is appended to
``OUT/commands.txt``.  ``--previous CSV`` (a ``results.csv`` of an earlier OUT, e.g. the
committed ``docs/results/accuracy_vs_workers.csv``) counts its done cells as done: ``run``
skips them and ``summarize`` takes their values (marked ``from = previous`` in the new CSV)
where OUT has none, so an experiment can be finished in a new folder.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys

import numpy as np

NPZ = "pneumoniamnist/pneumoniamnist_28_trainval.npz"
MODES = ("scaled", "unscaled")


def log_command(out: str, argv: list[str]) -> None:
    with open(os.path.join(out, "commands.txt"), "a") as fh:
        fh.write(" ".join(shlex.quote(a) for a in argv) + "\n")


def run_cmd(out: str, argv: list[str]) -> None:
    log_command(out, argv)
    proc = subprocess.run(argv)
    if proc.returncode != 0:
        raise SystemExit(f"accuracy_vs_workers: command failed ({proc.returncode}): {' '.join(argv)}")


def prepare(args, dataset: str) -> str:
    data = os.path.join(args.out, dataset, "data")
    if os.path.exists(os.path.join(data, "manifest.json")):
        return data
    py = [args.python, "-m", "tfxr.tfrecords", "write"]
    if dataset == "pneumoniamnist":
        argv = py + ["--source", "npz", "--npz", os.path.join(args.shared, NPZ), "--image-size", "28",
                     "--shards", "4", "--remap-splits", "train=trainval,val=test", "--seed", "0",
                     "--out", data, "--quiet"]
    else:
        argv = py + ["--source", "synthetic", "--synthetic-task", "tb", "--prevalence", "0.5",
                     "--num-images", str(args.phantom_images), "--image-size", str(args.phantom_size),
                     "--shards", "4", "--seed", "0", "--out", data, "--quiet"]
    run_cmd(args.out, argv)
    return data


def settings(args, dataset: str) -> dict:
    if dataset == "pneumoniamnist":
        return {"model": "pneumonia_cnn", "epochs": args.pmnist_epochs, "batch": args.batch_size}
    return {"model": "tb_cnn", "epochs": args.phantom_epochs, "batch": args.batch_size}


def cell_dir(args, dataset: str, workers: int, mode: str, seed: int) -> str:
    mode = "scaled" if workers == 1 else mode     # W = 1: one run serves both modes
    return os.path.join(args.out, dataset, f"w{workers}-{mode}", f"seed-{seed}")


def previous_cells(args) -> dict:
    """The done cells of ``--previous`` (a results.csv): {(dataset, W, mode, seed): row}."""
    if not args.previous:
        return {}
    cells = {}
    with open(args.previous, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["done"] != "True":
                continue
            row = {"dataset": r["dataset"], "effective_workers": int(r["effective_workers"]),
                   "lr_mode": r["lr_mode"], "seed": int(r["seed"]), "done": True, "label": r["label"],
                   "test_auroc": float(r["test_auroc"]), "test_auroc_ci95": json.loads(r["test_auroc_ci95"] or "null"),
                   "val_auroc_last_epoch": float(r["val_auroc_last_epoch"]) if r["val_auroc_last_epoch"] else None,
                   "epochs": int(r["epochs"]), "lr_last": float(r["lr_last"]), "from": "previous"}
            cells[row["dataset"], row["effective_workers"], row["lr_mode"], row["seed"]] = row
    return cells


def run_cell(args, dataset: str, data: str, workers: int, mode: str, seed: int) -> None:
    run = cell_dir(args, dataset, workers, mode, seed)
    if os.path.exists(os.path.join(run, "eval-test", "metrics.json")):
        return
    if (dataset, workers, "scaled" if workers == 1 else mode, seed) in previous_cells(args):
        return
    s = settings(args, dataset)
    if workers == 1:
        launch, k = [args.python, "-m", "tfxr.train"], 1
    else:
        if workers % 2:
            raise SystemExit(f"accuracy_vs_workers: effective workers {workers} is not 1 or a multiple of 2")
        launch, k = [args.python, "-m", "tfxr.launch", "--np", "2", "--", "tfxr.train"], workers // 2
    argv = launch + ["--model", s["model"], "--data", data, "--out", run, "--overwrite",
                     "--epochs", str(s["epochs"]), "--batch-size", str(s["batch"]), "--lr", str(args.lr),
                     "--cache", "--no-progress", "--seed", str(seed),
                     "--set", "plateau_patience=0", "--set", "early_stopping_patience=0",
                     "--set", f"accumulate_steps={k}"]
    if mode == "unscaled" or workers == 1:
        argv += ["--no-lr-scaling", "--warmup-epochs", "0"]
    else:
        argv += ["--warmup-epochs", str(args.warmup_epochs)]
    run_cmd(args.out, argv)
    evaluate_test(args, data, run, seed)


def evaluate_test(args, data: str, run: str, seed: int) -> None:
    """``python -m tfxr.evaluate --split test`` on the run's final model, called in this process
    (tfxr.evaluate.main: the same code as the CLI, without a TensorFlow start-up per cell)."""
    from tfxr import evaluate   # lazy: TensorFlow loads only when a cell is evaluated

    argv = ["--model", os.path.join(run, "final.keras"), "--data", data, "--split", "test",
            "--out", os.path.join(run, "eval-test"), "--bootstrap", "200", "--seed", str(seed)]
    log_command(args.out, ["python", "-m", "tfxr.evaluate"] + argv)
    if evaluate.main(argv) != 0:
        raise SystemExit(f"accuracy_vs_workers: evaluation failed for {run}")


def cmd_run(args) -> None:
    os.makedirs(args.out, exist_ok=True)
    data = {dataset: prepare(args, dataset) for dataset in args.datasets}
    for seed in args.seeds:      # seed-major: a partial run has every cell of the first seeds
        for dataset in args.datasets:
            for workers in args.workers:
                for mode in (MODES[:1] if workers == 1 else args.modes):
                    run_cell(args, dataset, data[dataset], workers, mode, seed)
            cmd_summarize(args)


def read_cell(run: str) -> dict | None:
    path = os.path.join(run, "eval-test", "metrics.json")
    if not os.path.exists(path):
        return None
    labels = json.load(open(path))["labels"]
    (name, m), = labels.items()           # both data sets are one-label tasks
    hist = json.load(open(os.path.join(run, "history.json")))
    epochs = hist["epochs"] if isinstance(hist, dict) and "epochs" in hist else hist
    last = epochs[-1]
    return {"label": name, "test_auroc": m["auroc"], "test_auroc_ci95": m.get("auroc_ci95"),
            "val_auroc_last_epoch": last.get("val_mean_auroc"), "epochs": last.get("epoch"),
            "lr_last": last.get("lr")}


def cmd_summarize(args) -> None:
    rows = []
    previous = previous_cells(args)
    for dataset in args.datasets:
        for workers in args.workers:
            for mode in args.modes:
                for seed in args.seeds:
                    cell = read_cell(cell_dir(args, dataset, workers, mode, seed))
                    if cell is None and (dataset, workers, mode, seed) in previous:
                        rows.append(previous[dataset, workers, mode, seed])
                        continue
                    rows.append({"dataset": dataset, "effective_workers": workers, "lr_mode": mode,
                                 "seed": seed, "done": cell is not None, **(cell or {}),
                                 "from": "this run" if cell is not None else ""})
    os.makedirs(args.out, exist_ok=True)
    keys = ["dataset", "effective_workers", "lr_mode", "seed", "done", "test_auroc", "test_auroc_ci95",
            "val_auroc_last_epoch", "epochs", "lr_last", "label", "from"]
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in keys})
    json.dump(rows, open(os.path.join(args.out, "results.json"), "w"), indent=1)

    stats: dict = {}
    tables = {key: table_of(args, rows, key, stats if key == "test_auroc" else {})
              for key in ("test_auroc", "val_auroc_last_epoch")}
    with open(os.path.join(args.out, "table.md"), "w") as fh:
        fh.write("TEST AUROC (official val split of PneumoniaMNIST / the phantoms' test split), mean ± sd over "
                 "seeds " + ", ".join(map(str, args.seeds)) + " (W = effective workers = 2 ranks x "
                 "accumulate_steps; W=1 one process, the same run in both LR modes)\n\n" + tables["test_auroc"]
                 + "\nVALIDATION AUROC of the last epoch (the carved validation split; not used for any choice)"
                   "\n\n" + tables["val_auroc_last_epoch"])
    print(tables["test_auroc"])
    plot(args, stats)


def table_of(args, rows: list, key: str, stats: dict) -> str:
    """A markdown table of ``key`` (mean ± sd over the done seeds) per data set, LR mode and W."""
    lines = ["| data | LR mode | " + " | ".join(f"W={w}" for w in args.workers) + " |",
             "|---|---|" + "---|" * len(args.workers)]
    for dataset in args.datasets:
        for mode in args.modes:
            cells = []
            for workers in args.workers:
                vals = [r[key] for r in rows if r["dataset"] == dataset and r["done"] and r.get(key) is not None
                        and r["effective_workers"] == workers and r["lr_mode"] == mode]
                stats[dataset, mode, workers] = vals
                if not vals:
                    cells.append("not run")
                else:
                    sd = f" ± {np.std(vals, ddof=1):.3f}" if len(vals) > 1 else ""
                    n = "" if len(vals) == len(args.seeds) else f" (partial: {len(vals)} of {len(args.seeds)} seeds)"
                    cells.append(f"{np.mean(vals):.3f}{sd}{n}")
            lines.append(f"| {dataset} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(args, stats: dict) -> None:
    import matplotlib   # lazy: only the summary needs it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.datasets), figsize=(5 * len(args.datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], args.datasets):
        for mode, colour in zip(args.modes, ("tab:blue", "tab:orange")):
            xs, ms, sds = [], [], []
            for w in args.workers:
                vals = stats.get((dataset, mode, w), [])
                for v in vals:
                    ax.scatter([w], [v], color=colour, s=10, alpha=0.5)
                if vals:
                    xs.append(w), ms.append(np.mean(vals)), sds.append(np.std(vals, ddof=1) if len(vals) > 1 else 0)
            if xs:
                label = "lr x W + warm-up" if mode == "scaled" else "lr unscaled, no warm-up"
                ax.errorbar(xs, ms, yerr=sds, color=colour, marker="o", capsize=3, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(args.workers, [str(w) for w in args.workers])
        ax.set_xlabel("effective workers (2 ranks x accumulate_steps)")
        ax.set_ylabel("test AUROC")
        ax.set_title(f"{dataset}, {settings(args, dataset)['epochs']} epochs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "accuracy_vs_workers.png"), dpi=120)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("run", "summarize"))
    p.add_argument("--out", required=True)
    p.add_argument("--shared", default=os.environ.get("SHARED", "../shared/data"))
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--datasets", nargs="+", default=["pneumoniamnist", "phantoms"],
                   choices=("pneumoniamnist", "phantoms"))
    p.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--batch-size", type=int, default=16, help="per-rank micro-batch")
    p.add_argument("--lr", type=float, default=1e-3, help="the one-worker learning rate")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--pmnist-epochs", type=int, default=3)
    p.add_argument("--phantom-epochs", type=int, default=12)
    p.add_argument("--phantom-images", type=int, default=800)
    p.add_argument("--phantom-size", type=int, default=64)
    p.add_argument("--previous", default="", help="results.csv of an earlier OUT: its done cells count as done")
    args = p.parse_args(argv)
    (cmd_run if args.command == "run" else cmd_summarize)(args)


if __name__ == "__main__":
    main()
