"""Classifier evaluation: the numbers and tables a paper prints, from a saved model.

Predictions of a split are gathered from every rank and put in image-id order before
any metric is computed, so ``mpirun -np N`` gives exactly the numbers of one process
(the bootstrap resamples the same images in the same order).  The operating threshold
of each label is chosen on the validation split (Youden's J), never on the scored one.

Outputs (rank 0): ``metrics.json``, ``report.md`` (CheXNet's label order, n+ per label,
published CheXNet AUROCs beside ours when the labels are NIH's), ``roc.png`` and
``predictions.csv``.

Across data sets: when the model was trained on other labels than the data set has
(``--model RUN --data OTHER_SET``), both are mapped onto the one label vocabulary
(:mod:`tfxr.data.sources.vocabulary`) and only the shared labels are scored; the report
lists which labels were left out and why.  The model's labels are read from its run
directory (``config.yaml``'s resolved ``label_names`` and the training data's manifest).
"""
from __future__ import annotations

import csv
import io
import math
import os

import numpy as np
import tensorflow as tf

from tfxr import distributed as dist
from tfxr.config import load_yaml_file, to_dict
from tfxr.configs import EvalConfig
from tfxr.data.pipeline import DataConfig, build_dataset
from tfxr.data.records import read_manifest
from tfxr.data.sources.vocabulary import shared_labels
from tfxr.errors import ConfigError, ManifestError
from tfxr.evaluation.metrics import (auprc_per_label, auroc_per_label, bootstrap_auroc_ci, defined_mean,
                                     is_defined, plot_roc, threshold_metrics, wilson_ci, youden_threshold)
from tfxr.files import atomic_path, write_json, write_text
from tfxr.models import CHEXNET_LABELS
from tfxr.models.loading import load_run_model, resolve_model_path  # noqa: F401 - re-exported

#: Rajpurkar et al. 2017, "CheXNet: Radiologist-Level Pneumonia Detection on Chest X-Rays
#: with Deep Learning" (arXiv:1711.05225), Table 2: CheXNet's test AUROC per pathology.
CHEXNET_PUBLISHED_AUROC = {
    "Atelectasis": 0.8094, "Cardiomegaly": 0.9248, "Effusion": 0.8638, "Infiltration": 0.7345,
    "Mass": 0.8676, "Nodule": 0.7802, "Pneumonia": 0.7680, "Pneumothorax": 0.8887,
    "Consolidation": 0.7901, "Edema": 0.8878, "Emphysema": 0.9371, "Fibrosis": 0.8047,
    "Pleural_Thickening": 0.8062, "Hernia": 0.9164,
}


# --------------------------------------------------------------------------- model + data
#: the old name of the one model loader (tfxr.models.loading), kept for callers and notebooks
load_model = load_run_model


def run_labels(model_path: str) -> tuple[list[str], str | None] | None:
    """(label names, source name) a saved model was trained on, from its run directory.

    None when the model file has no readable tfxr ``config.yaml`` beside it.  The source
    is the training data's manifest's (None when that directory is no longer there).
    """
    config = os.path.join(os.path.dirname(os.path.abspath(model_path)), "config.yaml")
    try:
        cfg = load_yaml_file(config)
        names = [str(n) for n in cfg["_resolved"]["label_names"]]
    except (ConfigError, KeyError, TypeError):
        return None
    data = run_data_dir(model_path)
    source = None
    if data:
        try:
            source = read_manifest(data).get("source", {}).get("name")
        except (ManifestError, OSError):
            source = None
    return names, source


def run_data_dir(model_path: str) -> str | None:
    """The training data directory of a model's run (``config.yaml``'s ``data``), if it exists.

    A relative path is tried as given (from the current folder) and then beside the run
    directory (where it was, when training ran next to it); None when neither exists.
    """
    run = os.path.dirname(os.path.abspath(model_path))
    try:
        data = (load_yaml_file(os.path.join(run, "config.yaml")) or {}).get("data")
    except (ConfigError, AttributeError):
        return None
    if not isinstance(data, str) or not data:
        return None
    for candidate in (data, os.path.join(os.path.dirname(run), data)):
        if os.path.isfile(os.path.join(candidate, "manifest.json")):
            return candidate
    return None


def cross_dataset_labels(model_path: str, manifest: dict) -> dict | None:
    """The shared-label plan when the model's labels are not the data's, else None."""
    trained = run_labels(model_path)
    data_names = list(manifest["label_names"])
    if trained is None or trained[0] == data_names:
        return None
    model_names, model_source = trained
    data_source = manifest.get("source", {}).get("name") or "unknown"
    pairs, left_out = shared_labels(model_source or "unknown", model_names, data_source, data_names)
    if not pairs:
        raise ConfigError(f"{model_path}: the model's labels ({', '.join(model_names)}) share none with "
                          f"the data's ({', '.join(data_names)}) in tfxr's label vocabulary")
    return {"model_labels": model_names, "model_source": model_source, "data_source": data_source,
            "shared": [{"model": model_names[i], "data": data_names[j], "vocabulary": v} for i, j, v in pairs],
            "model_index": [i for i, _, _ in pairs], "data_index": [j for _, j, _ in pairs],
            "left_out": left_out}


def load_model_for(model_arg: str, data_dir: str, manifest: dict, trust: bool = False):
    """(path, model, image size, channels) of a model that can score ``data_dir``.

    Clear errors for a model whose outputs do not match the data's labels, or whose
    input shape is not fixed (tfxr feeds every image at the model's own size).
    """
    path = resolve_model_path(model_arg)
    model = load_run_model(path, "classifier", trust, "--model")
    names = list(manifest["label_names"])
    if model.output_shape[-1] != len(names):
        raise ConfigError(f"{path}: model has {model.output_shape[-1]} outputs, {data_dir} has "
                          f"{len(names)} labels")
    shape = tuple(model.input_shape)
    if len(shape) != 4 or None in shape[1:] or shape[1] != shape[2]:
        raise ConfigError(f"{path}: input shape {shape} is not a fixed square image (None, S, S, C); "
                          f"rebuild the model with a fixed input size (tfxr models always have one)")
    return path, model, int(shape[1]), int(shape[-1])


def open_model_and_data(model_arg: str, data_dir: str, trust: bool = False):
    """The start of every evaluator CLI: (path, model, size, channels, manifest), Horovod up.

    Arguments and files are checked before Horovod starts, so a bad path is one clear
    line on every rank, not a hang.
    """
    if not model_arg or not data_dir:
        raise ConfigError("--model and --data are required")
    path = resolve_model_path(model_arg)      # file checks before Horovod starts
    manifest = read_manifest(data_dir)
    dist.init()
    path, model, size, channels = load_model_for(path, data_dir, manifest, trust)
    return path, model, size, channels, manifest


def predict_split(predict_fn, data_dir: str, split: str, data_cfg, manifest: dict, rank: int = 0,
                  world: int = 1, label_columns: list[int] | None = None):
    """(probabilities, labels, image ids) of a whole split, gathered from all ranks.

    Every rank returns the same arrays, sorted by image id: the result does not depend
    on how many ranks read the split.  ``label_columns``: keep only these label columns
    (the records still hold all of the data set's labels; ``manifest`` names the kept ones).
    """
    num_labels = len(manifest["label_names"])
    preds, labels, ids = [], [], []
    ds = build_dataset(data_dir, split, data_cfg, training=False, rank=rank, world=world,
                       manifest=manifest, with_meta=True)
    for batch in ds:
        preds.append(np.asarray(predict_fn(batch["image"]), np.float32))
        labels.append(batch["labels"].numpy() if label_columns is None
                      else batch["labels"].numpy()[:, label_columns])
        ids.extend(x.decode() for x in batch["image_id"].numpy())
    mine = list(zip(ids, (row for part in preds for row in part), (row for part in labels for row in part)))
    records = dist.allgather_records(mine, key=lambda r: r[0])   # image-id order: any -np, the same arrays
    if not records:
        return np.zeros((0, num_labels), np.float32), np.zeros((0, num_labels), np.float32), []
    return (np.stack([r[1] for r in records]), np.stack([r[2] for r in records]), [r[0] for r in records])


def chexnet_order(names: list[str]) -> list[str]:
    """``names`` in CheXNet's label order (case-insensitive), the others after, as given."""
    rank = {n.lower(): k for k, n in enumerate(CHEXNET_LABELS)}
    return sorted(names, key=lambda n: (rank.get(n.lower(), len(rank)), names.index(n)))


# --------------------------------------------------------------------------- the report
def classifier_metrics(y: np.ndarray, p: np.ndarray, names: list[str], thresholds: list[float],
                       bootstrap: int = 1000, seed: int = 0) -> dict:
    """Per-label metrics and their means; undefined labels are NaN and left out of means."""
    aucs, aps = auroc_per_label(y, p), auprc_per_label(y, p)
    cis = bootstrap_auroc_ci(y, p, bootstrap, seed) if bootstrap else [(math.nan, math.nan)] * len(names)
    per = {}
    for j, name in enumerate(names):
        at05 = threshold_metrics(y[:, j], p[:, j], 0.5)
        at_val = threshold_metrics(y[:, j], p[:, j], thresholds[j])
        positives = int((y[:, j] >= 0.5).sum())
        labelled = int(np.isfinite(y[:, j]).sum())    # a masked (NaN) label is neither positive nor negative
        per[name] = {
            "defined": is_defined(y[:, j]), "positives": positives, "labelled": labelled,
            "prevalence": positives / labelled if labelled else math.nan,
            "auroc": aucs[j], "auroc_ci95": list(cis[j]), "auprc": aps[j],
            "at_0.5": at05, "at_val_threshold": at_val,
            "accuracy_ci95": list(wilson_ci(at05["tp"] + at05["tn"], labelled)),
            "accuracy_at_val_threshold_ci95": list(wilson_ci(at_val["tp"] + at_val["tn"], labelled)),
        }
    mean_auroc, count = defined_mean(aucs)
    mean_auprc, _ = defined_mean(aps)
    return {"images": int(len(y)), "labels": per, "mean_auroc": mean_auroc, "mean_auprc": mean_auprc,
            "mean_over_labels": count, "undefined_labels": [n for n in names if not per[n]["defined"]]}


def _num(value: float, fmt: str = ".3f") -> str:
    return "undefined" if value is None or math.isnan(value) else format(value, fmt)


def format_table(result: dict) -> str:
    """The terminal table: AUROC with CI, AUPRC, sens/spec at the validation threshold, n+."""
    names = chexnet_order(list(result["labels"]))
    width = max(len(n) for n in names + ["mean AUROC"])
    lines = [f"{result['split']}: {result['images']} images",
             f"{'label':<{width}}  {'AUROC':>9}  {'95% CI':>15}  {'AUPRC':>9}  {'thr':>5}  "
             f"{'sens':>5}  {'spec':>5}  {'n+':>5}"]
    for n in names:
        r = result["labels"][n]
        lo, hi = r["auroc_ci95"]
        ci = f"[{lo:.3f}, {hi:.3f}]" if not math.isnan(lo) else "-"
        at = r["at_val_threshold"]
        lines.append(f"{n:<{width}}  {_num(r['auroc']):>9}  {ci:>15}  {_num(r['auprc']):>9}  "
                     f"{at['threshold']:>5.3f}  {_num(at['sensitivity'], '.2f'):>5}  "
                     f"{_num(at['specificity'], '.2f'):>5}  {r['positives']:>5d}")
    lines.append(f"{'mean AUROC':<{width}}  {_num(result['mean_auroc']):>9}  "
                 f"(over {result['mean_over_labels']} of {len(names)} labels)")
    return "\n".join(lines)


def markdown_report(result: dict) -> str:
    """``report.md``: the tables a paper prints, labels in CheXNet's order."""
    names = chexnet_order(list(result["labels"]))
    published = set(names) == set(CHEXNET_PUBLISHED_AUROC)   # NIH's 14 findings (NIH, ChestMNIST)
    thr_src = result.get("threshold_split") or "none (0.5)"
    out = io.StringIO()
    w = out.write
    w(f"# Evaluation of `{os.path.basename(result['model'])}` on `{result['split']}`\n\n")
    w(f"Data: `{result['data']}`, {result['images']} images. Operating thresholds chosen on "
      f"`{thr_src}` (Youden's J), never on the scored split. AUROC 95% CI: percentile bootstrap "
      f"over images ({result['config']['bootstrap']} resamples, seed {result['config']['seed']}).\n\n")
    cross = result.get("cross_dataset")
    if cross:
        w(f"Across data sets: a model trained on `{cross['model_source'] or 'unknown'}` scored on "
          f"`{cross['data_source']}` on the {len(cross['shared'])} label(s) they share in tfxr's vocabulary ("
          + ", ".join(f"{s['model']} = {s['data']}" for s in cross["shared"]) + "). Left out: "
          + ("; ".join(cross["left_out"]) or "none") + ".\n\n")
    head = "| finding | n+ (prevalence) | AUROC [95% CI] | AUPRC |"
    rule = "|---|---:|---:|---:|"
    if published:
        head += " CheXNet (published) |"
        rule += "---:|"
    w(head + "\n" + rule + "\n")
    for n in names:
        r = result["labels"][n]
        lo, hi = r["auroc_ci95"]
        auroc = (f"{r['auroc']:.3f} [{lo:.3f}, {hi:.3f}]" if not math.isnan(lo) else _num(r["auroc"]))
        row = f"| {n} | {r['positives']} ({100 * r['prevalence']:.1f}%) | {auroc} | {_num(r['auprc'])} |"
        if published:
            row += f" {CHEXNET_PUBLISHED_AUROC[n]:.3f} |"
        w(row + "\n")
    mean_row = (f"| **mean** over {result['mean_over_labels']} of {len(names)} labels | | "
                f"{_num(result['mean_auroc'])} | {_num(result['mean_auprc'])} |")
    if published:
        mean_row += f" {np.mean(list(CHEXNET_PUBLISHED_AUROC.values())):.3f} |"
    w(mean_row + "\n\n")
    if result["undefined_labels"]:
        w(f"Undefined (no positive or no negative image in this split, left out of the means): "
          f"{', '.join(result['undefined_labels'])}.\n\n")
    if published:
        w("CheXNet column: Rajpurkar et al. 2017 (arXiv:1711.05225), Table 2, on NIH's "
          "patient-wise test split of its own; a different split, so compare with care.\n\n")
    w("## At an operating threshold\n\n")
    w("| finding | threshold | sensitivity | specificity | precision | F1 | accuracy [95% CI] |\n")
    w("|---|---:|---:|---:|---:|---:|---:|\n")
    for n in names:
        r = result["labels"][n]
        for key, ci_key, label in (("at_val_threshold", "accuracy_at_val_threshold_ci95",
                                    f"{thr_src}-chosen"), ("at_0.5", "accuracy_ci95", "0.5")):
            at = r[key]
            lo, hi = r[ci_key]
            w(f"| {n} | {at['threshold']:.3f} ({label}) | {_num(at['sensitivity'])} | "
              f"{_num(at['specificity'])} | {_num(at['precision'])} | {_num(at['f1'])} | "
              f"{_num(at['accuracy'])} [{_num(lo)}, {_num(hi)}] |\n")
    w("\nAccuracy CI: Wilson score interval.\n")
    return out.getvalue()


def write_predictions(path: str, ids: list[str], y: np.ndarray, p: np.ndarray, names: list[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id"] + [f"y_{n}" for n in names] + [f"p_{n}" for n in names])
        for i, image_id in enumerate(ids):
            writer.writerow([image_id] + ["" if math.isnan(v) else int(v) for v in y[i]]
                            + [f"{v:.6f}" for v in p[i]])


def evaluate(cfg: EvalConfig) -> dict:
    """Evaluate ``cfg.model`` on ``cfg.split``; rank 0 writes the outputs and returns the result."""
    cross = None
    if cfg.model and cfg.data:
        cross = cross_dataset_labels(resolve_model_path(cfg.model), read_manifest(cfg.data))
    if cross is None:
        path, model, size, channels, manifest = open_model_and_data(cfg.model, cfg.data, cfg.trust_model_file)
    else:  # the model's own label count is what load_model_for checks its outputs against
        path, manifest = resolve_model_path(cfg.model), read_manifest(cfg.data)
        dist.init()
        path, model, size, channels = load_model_for(path, cfg.data, {**manifest,
                                                                      "label_names": cross["model_labels"]},
                                                      cfg.trust_model_file)
    rank, world = dist.rank(), dist.size()
    names = list(manifest["label_names"])
    dcfg = DataConfig(batch_size=cfg.batch_size, image_size=size, channels=channels, deterministic=True)
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    predict = lambda x: forward(x).numpy()  # noqa: E731
    if cross:  # score the shared labels only, named by the vocabulary
        keep_model, keep_data = cross["model_index"], cross["data_index"]
        predict = lambda x: forward(x).numpy()[:, keep_model]  # noqa: E731
        names = [s["vocabulary"] for s in cross["shared"]]
    p, y, ids = predict_split(predict, cfg.data, cfg.split, dcfg, manifest, rank, world,
                              label_columns=keep_data if cross else None)
    thresholds = [0.5] * len(names)
    threshold_split = cfg.threshold_split if cfg.threshold_split != "none" else None
    if threshold_split == cfg.split:
        raise ConfigError(f"--threshold-split {threshold_split}: thresholds must be chosen on "
                          f"another split than the scored one (--split {cfg.split})")
    if threshold_split and threshold_split not in manifest["splits"]:
        threshold_split = None   # e.g. PneumoniaMNIST's trainval-only copy: say so in the report
    if threshold_split:
        pv, yv, _ = predict_split(predict, cfg.data, threshold_split, dcfg, manifest, rank, world,
                                  label_columns=keep_data if cross else None)
        thresholds = [youden_threshold(yv[:, j], pv[:, j]) for j in range(len(names))]
    if rank != 0:
        return {}
    result = classifier_metrics(y, p, names, thresholds, cfg.bootstrap, cfg.seed)
    result = {"model": os.path.abspath(path), "data": os.path.abspath(cfg.data), "split": cfg.split,
              "threshold_split": threshold_split, **result, "config": to_dict(cfg)}
    if cross:
        result["cross_dataset"] = {k: v for k, v in cross.items() if not k.endswith("_index")}
    out = cfg.out or os.path.join(os.path.dirname(os.path.abspath(path)), f"eval-{cfg.split}")
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "metrics.json"), result)
    write_text(os.path.join(out, "report.md"), markdown_report(result))
    run_name = os.path.basename(os.path.dirname(os.path.abspath(path)))
    mean, count = result["mean_auroc"], result["mean_over_labels"]
    plot_roc(y, p, names, os.path.join(out, "roc.png"),
             f"{run_name} on {cfg.split}: mean AUROC {_num(mean)} over {count} label(s)")
    write_predictions(os.path.join(out, "predictions.csv"), ids, y, p, names)
    result["out"] = out
    return result
