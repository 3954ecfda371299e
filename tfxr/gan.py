"""``python -m tfxr.gan``: a DCGAN for the minority class, and balancing with its images.

    python -m tfxr.gan train --data tfrec/pneu --out runs/gan --epochs 50 --optimizer rmsprop
    mpirun -np 4 python -m tfxr.gan train --data tfrec/pneu --out runs/gan --epochs 50
    python -m tfxr.gan sample --generator runs/gan/generator.keras --n 64 --out samples/
    python -m tfxr.gan balance --data tfrec/pneu --generator runs/gan/generator.keras \
        --out tfrec/pneu-balanced --target-ratio 0.5
    python -m tfxr.gan compare-optimizers --data tfrec/pneu --out runs/gan-cmp --epochs 50

``train`` takes the same config system as ``tfxr.train`` (``--config``, ``--set``, one flag
per field; ``python -m tfxr.gan train --help``).  By default it trains on the minority
class of the training split.  Rank 0 writes ``OUT/config.yaml``, ``history.json``,
TensorBoard logs, ``losses.png``, ``samples/epoch-NNNN.png`` (fixed noise), ``checkpoints/``
(``--resume``) and ``generator.keras``; an ``OUT`` holding a run is refused unless
``--resume`` or ``--overwrite`` (see ``python -m tfxr.train``'s help for the rules).

``sample`` and ``balance`` rebuild the generator from its run's ``config.yaml`` and read only
its weights; a generator file of no tfxr run is refused unless ``--trust-model-file`` is
given (see :mod:`tfxr.models.loading`).
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import sys
import time

import numpy as np

from tfxr import distributed as dist
from tfxr import files, log, plots
from tfxr.cli import run_command
from tfxr.config import parse_config
from tfxr.configs import BalanceConfig, GanConfig, SampleConfig
from tfxr.errors import ConfigError

PROG = "python -m tfxr.gan"

# Each command imports what needs TensorFlow/Keras (the trainer, the generator's loader, the
# balancer, the evaluator) in its body, after parse_config: deliberately lazy, so that a bad
# option is answered without TensorFlow's start-up.


def _module_doc(name: str) -> str:
    """Module ``name``'s docstring read from its source without importing it (for ``--help``)."""
    with open(importlib.util.find_spec(name).origin, encoding="utf-8") as fh:
        return ast.get_docstring(ast.parse(fh.read()), clean=False)


def train(argv: list[str]) -> int:
    cfg, _ = parse_config(GanConfig, argv, f"{PROG} train", __doc__)
    from tfxr.training.gan import GanTrainer   # lazy: TensorFlow after the options are checked

    GanTrainer(cfg).fit()
    return 0


def sample(argv: list[str]) -> int:
    """Write N generated images (the one sampler, seeded by --seed) as PNG files and one grid."""
    cfg, _ = parse_config(SampleConfig, argv, f"{PROG} sample", SampleConfig.__doc__)
    from tfxr.data.balance import generate_images   # lazy: Keras/TensorFlow after the options are checked
    from tfxr.data.imageio import encode_png
    from tfxr.models.loading import load_generator
    from tfxr.training.gan import image_grid

    generator = load_generator(cfg.generator, cfg.trust_model_file)
    os.makedirs(cfg.out, exist_ok=True)
    images = generate_images(generator, cfg.n, cfg.seed)
    for i, img in enumerate(images):
        files.write_bytes(files.path_in(cfg.out, f"{cfg.prefix}-{i:05d}", ".png"), encode_png(img))
    files.write_bytes(os.path.join(cfg.out, "grid.png"),
                   encode_png(image_grid(images[:64, ..., None].astype("float32") / 127.5 - 1.0)))
    log.info(f"wrote {cfg.n} images and grid.png to {cfg.out}")
    return 0


def balance(argv: list[str]) -> int:
    """A new TFRecord directory: the real shards plus minority-class training shards."""
    cfg, _ = parse_config(BalanceConfig, argv, f"{PROG} balance", _module_doc("tfxr.data.balance"))
    if cfg.target_ratio is not None and cfg.num is not None:
        raise ConfigError("--target-ratio and --num: give one of them (a fraction to reach, or a count to add)")
    from tfxr.data.balance import SPLIT, Balancer   # lazy: Keras/TensorFlow after the options are checked

    ratio = 0.5 if cfg.target_ratio is None and cfg.num is None else cfg.target_ratio
    manifest = Balancer(cfg.data, cfg.out, method=cfg.method, generator=cfg.generator or None,
                        label=cfg.class_label or None, value=cfg.class_value, target_ratio=ratio, num=cfg.num,
                        shards=cfg.shards, seed=cfg.seed, link=cfg.link, overwrite=cfg.overwrite,
                        command=["python", "-m", "tfxr.gan", "balance", *argv],
                        trust_model_file=cfg.trust_model_file).run()
    info = manifest["balancing"]
    log.info(f"added {info['added'][SPLIT]['count']} {cfg.method} '{info['class']['label']}="
             f"{info['class']['value']}' training images to {cfg.out} (minority fraction "
             f"{info['minority_fraction']['before']:.3f} -> {info['minority_fraction']['after']:.3f})")
    return 0


def image_statistics_gap(real: np.ndarray, fake: np.ndarray) -> dict:
    """Simple, self-contained distances between generated and real images in [-1, 1]:
    the mean absolute gap of the mean images, and the 1-D Wasserstein distance of the
    pixel intensity distributions.  Not FID: they ignore structure, but need no network."""
    from scipy.stats import wasserstein_distance   # lazy: SciPy only for the comparison

    return {"mean_image_gap": float(np.abs(fake.mean(axis=0) - real.mean(axis=0)).mean()),
            "pixel_wasserstein": float(wasserstein_distance(real.ravel()[::7], fake.ravel()[::7]))}


def evaluator_scores(cfg, real: np.ndarray, fakes: dict[str, np.ndarray]) -> list[dict]:
    """FID and IS of each optimizer's samples (images in [-1, 1]) with tfxr's evaluator:
    InceptionV3 when ``--inception-weights`` is given, the domain variant with a trained
    tfxr classifier when ``--feature-model`` is; each beside the real-vs-real baseline."""
    from tfxr.evaluation import generative          # lazy: TensorFlow, imported by the command that scores
    from tfxr.models.loading import load_run_model

    extractors = []
    if cfg.feature_model:
        model = load_run_model(cfg.feature_model, "classifier", what="--feature-model")
        extractors.append(generative.ClassifierExtractor(model, model.name))
    if cfg.inception_weights:
        extractors.append(generative.InceptionExtractor(cfg.inception_weights))

    def unit(images):   # the evaluator takes images in [0, 1]
        return (np.asarray(images, np.float32) + 1.0) / 2.0
    return [generative.evaluate_generated(extractor, unit(real), {k: unit(v) for k, v in fakes.items()},
                                          seed=cfg.seed) for extractor in extractors]


def compare_optimizers(argv: list[str]) -> int:
    """Adam and RMSProp on the same data, budget and seed; a Markdown + PNG side-by-side."""
    base, _ = parse_config(GanConfig, argv, f"{PROG} compare-optimizers",
                           "Train the same DCGAN with Adam and with RMSProp and compare them.")
    from tfxr.models import dcgan                 # lazy: TensorFlow after the options are checked
    from tfxr.training.gan import GanTrainer

    results, fakes = {}, {}
    for optimizer in ("adam", "rmsprop"):
        cfg = dataclasses.replace(base, optimizer=optimizer, out=os.path.join(base.out, optimizer))
        trainer = GanTrainer(cfg)
        start = time.perf_counter()
        state = trainer.fit()
        seconds = time.perf_counter() - start
        if dist.rank() == 0:
            fake = dcgan.generate(trainer.generator, 256, cfg.seed)   # the one sampler, as gan sample
            real = trainer.images[:256]
            results[optimizer] = {"history": state["history"], "wall_time_s": seconds, "out": cfg.out,
                                  **image_statistics_gap(real, fake)}
            fakes[optimizer] = fake
    if dist.rank() == 0:
        scores = evaluator_scores(base, real, fakes)
        for result in scores:
            for optimizer in results:
                row = result["rows"][optimizer]
                results[optimizer].setdefault("scores", {})[result["fid_label"]] = {
                    "fid": row["fid"], "n": row["n"], "n_reference": row["n_reference"],
                    "real_vs_real_fid": result["rows"]["real (half A) [baseline]"]["fid"],
                    result["score_label"]: [row["score_mean"], row["score_sd"]]}
        files.write_json(os.path.join(base.out, "comparison.json"), results)
        _plot_comparison(results, os.path.join(base.out, "comparison.png"))
        files.write_text(os.path.join(base.out, "comparison.md"), _comparison_markdown(base, results, argv))
        log.info(f"wrote {base.out}/comparison.md and comparison.png")
    return 0


def _plot_comparison(results: dict, path: str) -> None:
    fig, axes = plots.subplots(1, 3, figsize=(13, 3.6))
    for name, res in results.items():
        epochs = [r["epoch"] for r in res["history"]]
        axes[0].plot(epochs, [r["d_loss"] for r in res["history"]], label=f"{name} D")
        axes[0].plot(epochs, [r["g_loss"] for r in res["history"]], "--", label=f"{name} G")
        axes[1].plot(epochs, [r["d_real"] - r["d_fake"] for r in res["history"]], label=name)
        axes[2].plot(epochs, [r["diversity_ratio"] for r in res["history"]], label=name)
    axes[0].set(title="losses", xlabel="epoch")
    axes[1].set(title="D(real) - D(fake)", xlabel="epoch")
    axes[2].set(title="sample diversity / real diversity", xlabel="epoch")
    for ax in axes:
        ax.legend(fontsize=8)
    plots.save_png(fig, path, dpi=90)


def _comparison_markdown(cfg, results: dict, argv: list[str]) -> str:
    lines = ["# DCGAN: Adam vs RMSProp", "",
             f"Same data (`{cfg.data}`), seed {cfg.seed}, {cfg.epochs} epochs, batch {cfg.batch_size} per "
             f"worker, lr G {cfg.g_lr:g} / D {cfg.d_lr:g}, {cfg.loss} loss.", "",
             f"Command: `python -m tfxr.gan compare-optimizers {' '.join(argv)}`", "",
             "| optimizer | final D loss | final G loss | D(real)-D(fake) | diversity | epochs flagged collapsed "
             "| mean-image gap | pixel W1 | wall time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        last = res["history"][-1]
        flagged = sum(r["collapsed"] for r in res["history"])
        lines.append(f"| {name} | {last['d_loss']:.3f} | {last['g_loss']:.3f} | {last['d_real'] - last['d_fake']:.3f} "
                     f"| {last['diversity_ratio']:.2f} | {flagged}/{len(res['history'])} | {res['mean_image_gap']:.4f} "
                     f"| {res['pixel_wasserstein']:.4f} | {res['wall_time_s']:.0f} |")
    scored = [res.get("scores", {}) for res in results.values()]
    if any(scored):
        lines += ["", "| optimizer | metric | value | N (generated / real) | real-vs-real | score (mean ± sd) |",
                  "|---|---|---|---|---|---|"]
        for name, res in results.items():
            for label, row in res.get("scores", {}).items():
                (score_label, (mean, sd)), = [(k, v) for k, v in row.items() if k.startswith("IS")]
                lines.append(f"| {name} | {label} | {row['fid']:.4g} | {row['n']} / {row['n_reference']} "
                             f"| {row['real_vs_real_fid']:.4g} | {score_label} {mean:.3f} ± {sd:.3f} |")
    notes = set() if any(scored) else {
        "FID/IS not computed: give `--inception-weights PATH` (InceptionV3, ImageNet) and/or "
        "`--feature-model RUN` (a trained tfxr classifier, the offline domain variant)."}
    lines += ["", *sorted(notes), "", "![losses, D gap and diversity](comparison.png)", "",
              "Sample grids (same fixed noise):", ""]
    for name, res in results.items():
        grids = sorted(os.listdir(os.path.join(res["out"], "samples")))
        lines.append(f"- {name}: " + ", ".join(f"[{g[:-4]}]({name}/samples/{g})" for g in grids))
    return "\n".join(lines) + "\n"


COMMANDS = {"train": train, "sample": sample, "balance": balance, "compare-optimizers": compare_optimizers}


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, COMMANDS, PROG, __doc__)


if __name__ == "__main__":
    sys.exit(main())
