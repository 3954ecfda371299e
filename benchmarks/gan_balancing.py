"""The GAN-balancing experiment of docs/RESULTS.md (run through benchmarks/gan_balancing.sh).

For each data variant and seed: write the TFRecords (PneumoniaMNIST: the official val set
is the TEST set, a validation set is carved patient-wise from train; the minority class
'normal' is first cut to a percentage of the training split), train one DCGAN on the
training split's minority class, then train the same classifier under six arms with the
same budget and evaluate it on the test split:

  none        no balancing (class weights off, augmentation off)
  cw          balanced class weights
  oversample  duplicates of real minority images, count-matched to the GAN arm
  augment     classic augmentation (flip, rotation, zoom, brightness, gamma, noise)
  gan         generated minority images added to the training split
  gan_cw      the GAN arm's data plus balanced class weights

oversample/gan/gan_cw add the images that bring the minority to ``--target-ratio`` of the
training split (default 0.25, so class weights still have something to do in gan_cw).  Where
the minority already is that large (PneumoniaMNIST's full split: 25.8 % normal; the TB set:
~46 % TB) the variant is listed in ``--balance-to-half`` and the arms bring it to 0.5.
Thresholds are chosen on validation (Youden), never on test.  Everything runs in one
process with tfxr's own functions; the equivalent CLI commands are written to
``OUT/commands.txt``.  ``summarize`` turns ``OUT/**/metrics.json`` into the table and plot.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys

import numpy as np

ARMS = ("none", "cw", "oversample", "augment", "gan", "gan_cw")
NPZ = "pneumoniamnist/pneumoniamnist_28_trainval.npz"


def log_command(out: str, text: str) -> None:
    with open(os.path.join(out, "commands.txt"), "a") as fh:
        fh.write(text + "\n")


def cut_minority_npz(src: str, dst: str, percent: float, seed: int) -> dict:
    """Keep ``percent`` % of the training normals (label 0), chosen by ``seed``; val untouched."""
    data = dict(np.load(src))
    labels = data["train_labels"].reshape(-1)
    normals = np.flatnonzero(labels == 0)
    keep_n = int(round(len(normals) * percent / 100))
    keep = np.sort(np.concatenate([np.flatnonzero(labels == 1),
                                   np.random.default_rng([seed, 5]).choice(normals, keep_n, replace=False)]))
    data["train_images"], data["train_labels"] = data["train_images"][keep], data["train_labels"][keep]
    np.savez(dst, **data)
    return {"train_normals": keep_n, "train_pneumonia": int((labels == 1).sum())}


def prepare_data(args, variant: str, seed: int, work: str) -> str:
    from tfxr import tfrecords

    data = os.path.join(work, "data")
    if os.path.exists(os.path.join(data, "manifest.json")):
        return data
    if args.dataset == "pneumoniamnist":
        percent = float(variant)
        npz = os.path.join(work, f"pneumoniamnist_cut{variant}.npz")
        info = cut_minority_npz(os.path.join(args.shared, NPZ), npz, percent, seed)
        argv = ["write", "--source", "npz", "--npz", npz, "--image-size", "28", "--shards", "4",
                "--remap-splits", "train=trainval,val=test", "--seed", str(seed), "--out", data, "--quiet"]
        log_command(args.out, f"# {variant}% of the training normals kept: {info}")
    else:   # the small TB set: patient-wise 70/10/20 splits per seed, no cut
        tb = os.path.join(args.shared, "tb_cxr")
        argv = ["write", "--source", "tb", "--images", f"{tb}/images", "--labels", f"{tb}/labels.csv",
                "--image-size", "64", "--shards", "2", "--seed", str(seed), "--out", data, "--quiet"]
    log_command(args.out, "python -m tfxr.tfrecords " + " ".join(argv))
    if tfrecords.main(argv) != 0:
        raise SystemExit(f"tfrecords write failed for {work}")
    return data


def train_gan(args, data: str, seed: int, work: str) -> str:
    from tfxr.training.gan import GanConfig, GanTrainer

    out = os.path.join(work, "gan-train")   # not "gan": that is the gan arm's classifier run
    generator = os.path.join(out, "generator.keras")
    if os.path.exists(generator):
        return generator
    cfg = GanConfig(data=data, out=out, overwrite=True, epochs=args.gan_epochs, batch_size=16,
                    optimizer=args.gan_optimizer, loss="hinge", g_lr=1e-3, d_lr=4e-4, g_filters=32, d_filters=32, seed=seed,
                    sample_epochs=[1, args.gan_epochs], progress=False)
    log_command(args.out, f"python -m tfxr.gan train --data {data} --out {out} --epochs {cfg.epochs} "
                          f"--batch-size 16 --optimizer {cfg.optimizer} --loss hinge --g-lr 1e-3 --d-lr 4e-4 "
                          f"--set g_filters=32 --set d_filters=32 --seed {seed}")
    GanTrainer(cfg).fit()
    return generator


def target_ratio(args, variant: str) -> float:
    return 0.5 if variant in args.balance_to_half else args.target_ratio


def balanced_data(args, variant: str, data: str, method: str, generator: str | None, seed: int, work: str) -> str:
    from tfxr.data.balance import Balancer

    out = os.path.join(work, f"data-{method}")
    ratio = target_ratio(args, variant)
    if not os.path.exists(os.path.join(out, "manifest.json")):
        log_command(args.out, f"python -m tfxr.gan balance --data {data} --out {out} --method {method} "
                              f"--target-ratio {ratio} --seed {seed}"
                              + (f" --generator {generator}" if generator else "") + " --link")
        Balancer(data, out, method=method, generator=generator, target_ratio=ratio, seed=seed, link=True).run()
    return out


def train_and_evaluate(args, arm: str, data: str, seed: int, work: str) -> dict:
    from tfxr.data.augment import AugmentConfig
    from tfxr.data.pipeline import DataConfig
    from tfxr.evaluate import EvalConfig, evaluate
    from tfxr.train import TrainConfig, Trainer

    out = os.path.join(work, arm)
    metrics = os.path.join(out, "eval-test", "metrics.json")
    if os.path.exists(metrics):
        with open(metrics) as fh:
            return json.load(fh)
    model = "pneumonia_cnn" if args.dataset == "pneumoniamnist" else "tb_cnn"
    cfg = TrainConfig(model=model, data=data, out=out, overwrite=True, epochs=args.clf_epochs, seed=seed,
                      class_weighting="balanced" if arm in ("cw", "gan_cw") else "none",
                      pipeline=DataConfig(batch_size=args.batch_size, augment=AugmentConfig(enabled=arm == "augment")),
                      progress=False, early_stopping_patience=3)
    log_command(args.out, f"python -m tfxr.train --model {model} --data {data} --out {out} --epochs {cfg.epochs} "
                          f"--batch-size {cfg.pipeline.batch_size} --seed {seed} --class-weighting {cfg.class_weighting} "
                          f"--set pipeline.augment.enabled={str(arm == 'augment').lower()} --set early_stopping_patience=3")
    Trainer(cfg).fit()
    log_command(args.out, f"python -m tfxr.evaluate --model {out}/best.keras --data {data} --split test "
                          f"--set bootstrap={args.bootstrap}")
    return evaluate(EvalConfig(model=os.path.join(out, "best.keras"), data=data, split="test",
                               out=os.path.join(out, "eval-test"), bootstrap=args.bootstrap, seed=seed))


def run(args) -> None:
    os.makedirs(args.out, exist_ok=True)
    for variant in args.variants:
        for seed in args.seeds:
            work = os.path.join(args.out, f"{args.dataset}-{variant}", f"seed-{seed}")
            os.makedirs(work, exist_ok=True)
            data = prepare_data(args, variant, seed, work)
            generator = train_gan(args, data, seed, work) if {"gan", "gan_cw"} & set(args.arms) else None
            for arm in args.arms:
                arm_data = data
                if arm == "oversample":
                    arm_data = balanced_data(args, variant, data, "oversample", None, seed, work)
                elif arm in ("gan", "gan_cw"):
                    arm_data = balanced_data(args, variant, data, "gan", generator, seed, work)
                train_and_evaluate(args, arm, arm_data, seed, work)
                print(f"done: {variant} seed {seed} {arm}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- summary
def summarize(out: str, label: str) -> str:
    """Markdown table (mean +- sd over seeds, paired differences vs cw) and a PNG plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    rows = {}
    for variant_dir in sorted(d for d in os.listdir(out) if os.path.isdir(os.path.join(out, d))):
        for seed_dir in sorted(os.listdir(os.path.join(out, variant_dir))):
            for arm in ARMS:
                path = os.path.join(out, variant_dir, seed_dir, arm, "eval-test", "metrics.json")
                if os.path.exists(path):
                    with open(path) as fh:
                        m = json.load(fh)["labels"][label]
                    rows.setdefault((variant_dir, arm), {})[seed_dir] = m
    lines = ["| data | arm | seeds | test AUROC mean ± sd | AUROC 95% CI (bootstrap, per seed) | sensitivity "
             "(val threshold) | specificity | Δ AUROC vs cw (paired) | p | Δ AUROC vs oversample (paired) | p |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    fig, ax = plt.subplots(figsize=(8, 3.8))

    def order(variant: str):   # pneumoniamnist-5 < -10 < -100; other names after, by name
        tail = variant.rsplit("-", 1)[-1]
        return (0, float(tail), variant) if tail.replace(".", "", 1).isdigit() else (1, 0.0, variant)

    def paired(runs: dict, control: dict) -> tuple[str, str]:
        """Mean ± sd of the per-seed AUROC difference and the paired t-test's p (seeds in both)."""
        common = [s for s in sorted(runs) if s in control]
        if len(common) < 2:
            return "", ""
        diff = np.array([runs[s]["auroc"] - control[s]["auroc"] for s in common])
        return f"{diff.mean():+.3f} ± {np.std(diff, ddof=1):.3f}", f"{stats.ttest_rel(diff, 0 * diff).pvalue:.2f}"

    variants = sorted({v for v, _ in rows}, key=order)
    for vi, variant in enumerate(variants):
        for ai, arm in enumerate(ARMS):
            runs = rows.get((variant, arm))
            if not runs:
                continue
            seeds = sorted(runs)
            auc = np.array([runs[s]["auroc"] for s in seeds])
            sens = np.array([runs[s]["at_val_threshold"]["sensitivity"] for s in seeds])
            spec = np.array([runs[s]["at_val_threshold"]["specificity"] for s in seeds])
            cis = "; ".join(f"{runs[s]['auroc_ci95'][0]:.3f}–{runs[s]['auroc_ci95'][1]:.3f}" for s in seeds)
            vs_cw = paired(runs, rows.get((variant, "cw"), {})) if arm != "cw" else ("", "")
            vs_over = (paired(runs, rows.get((variant, "oversample"), {})) if arm in ("gan", "gan_cw")
                       else ("", ""))
            sd = lambda x: f"{np.std(x, ddof=1):.3f}" if len(x) > 1 else "n/a"  # noqa: E731
            lines.append(f"| {variant} | {arm} | {len(seeds)} | {auc.mean():.3f} ± {sd(auc)} | {cis} | "
                         f"{sens.mean():.2f} ± {sd(sens)} | {spec.mean():.2f} ± {sd(spec)} | "
                         f"{vs_cw[0]} | {vs_cw[1]} | {vs_over[0]} | {vs_over[1]} |")
            x = vi * (len(ARMS) + 1) + ai
            ax.scatter(np.full(len(auc), x), auc, s=12, color=f"C{ai}", alpha=0.6)
            ax.errorbar(x, auc.mean(), yerr=np.std(auc, ddof=1) if len(auc) > 1 else 0, fmt="o",
                        color=f"C{ai}", label=arm if vi == 0 else None, capsize=3)
    ax.set_xticks([vi * (len(ARMS) + 1) + (len(ARMS) - 1) / 2 for vi in range(len(variants))], variants)
    ax.set(ylabel="test AUROC", title="Balancing arms: test AUROC per seed (dots), mean ± sd")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "gan_balancing.png"), dpi=100)
    plt.close(fig)
    table = "\n".join(lines) + "\n"
    with open(os.path.join(out, "summary.md"), "w") as fh:
        fh.write(table)
    return table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("run", "summarize"))
    p.add_argument("--out", default="/tmp/tfxr-gan-balancing")
    p.add_argument("--dataset", choices=("pneumoniamnist", "tb"), default="pneumoniamnist")
    p.add_argument("--variants", nargs="+", default=["5", "10", "100"],
                   help="pneumoniamnist: %% of training normals kept; tb: 'all'")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    p.add_argument("--shared", default=os.environ.get("TFXR_SHARED_DATA", "../shared/data"))
    p.add_argument("--gan-epochs", type=int, default=150)
    p.add_argument("--gan-optimizer", choices=("adam", "rmsprop"), default="rmsprop")
    p.add_argument("--clf-epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--target-ratio", type=float, default=0.25)
    p.add_argument("--balance-to-half", nargs="*", default=["100", "all"],
                   help="variants whose minority already reaches --target-ratio: balanced to 0.5 instead")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--label", default=None, help="label to report (default: the data set's only label)")
    args = p.parse_args(argv)
    if args.command == "run":
        run(args)
    label = args.label or ("pneumonia" if args.dataset == "pneumoniamnist" else "Tuberculosis")
    print(summarize(args.out, label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
