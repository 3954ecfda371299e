"""``python -m tfxr.evaluate``: evaluate a trained model the way papers report it.

    python -m tfxr.evaluate --model runs/tb/best.keras --data tfrec/tb --split test
    mpirun -np 2 python -m tfxr.evaluate --model runs/chexnet --data tfrec/nih224

Writes ``OUT/metrics.json`` (per-label AUROC with bootstrap 95% CI, mean AUROC,
sensitivity/specificity at 0.5 and at the Youden threshold chosen on the validation
split), ``OUT/roc.png`` and ``OUT/predictions.csv``; prints the AUROC table.
Predictions are gathered from every rank before any metric is computed.
"""
from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import dataclass

import numpy as np

from tfxr.config import ConfigError, parse_config, to_dict
from tfxr.metrics import (auroc_per_label, bootstrap_auroc_ci, nanmean, plot_roc, sens_spec,
                          wilson_ci, youden_threshold)


@dataclass
class EvalConfig:
    model: str = ""          # a .keras file, or a run directory (uses its best.keras)
    data: str = ""           # TFRecord / raw index directory
    split: str = "test"
    threshold_split: str = "val"   # where the Youden threshold is chosen ('' = none)
    out: str = ""            # default: <run dir>/eval-<split>
    batch_size: int = 64
    bootstrap: int = 1000
    seed: int = 0


def predict_split(predict_fn, data_dir: str, split: str, data_cfg, manifest: dict, rank: int = 0,
                  world: int = 1):
    """(probabilities, labels, image ids) of a whole split, gathered from all ranks in rank order."""
    from tfxr import distributed as dist
    from tfxr.data.pipeline import build_dataset

    nl = len(manifest["label_names"])
    preds, labels, ids = [], [], []
    ds = build_dataset(data_dir, split, data_cfg, training=False, rank=rank, world=world,
                       manifest=manifest, with_meta=True)
    for b in ds:
        preds.append(np.asarray(predict_fn(b["image"]), np.float32))
        labels.append(b["labels"].numpy())
        ids.extend(x.decode() for x in b["image_id"].numpy())
    mine = (np.concatenate(preds) if preds else np.zeros((0, nl), np.float32),
            np.concatenate(labels) if labels else np.zeros((0, nl), np.float32), ids)
    parts = dist.allgather_object(mine) if world > 1 else [mine]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            [i for p in parts for i in p[2]])


def resolve_model_path(path: str) -> str:
    if os.path.isdir(path):
        for name in ("best.keras", "final.keras"):
            if os.path.exists(os.path.join(path, name)):
                return os.path.join(path, name)
        raise ConfigError(f"{path}: no best.keras or final.keras in this run directory")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such model file")
    return path


def load_model(path: str):
    import keras

    import tfxr.models.layers  # noqa: F401 - registers tfxr's custom layers for deserialisation

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - report any unloadable file plainly
        raise ConfigError(f"{path}: cannot load as a Keras model ({type(e).__name__}: {e})") from None


def evaluate(cfg: EvalConfig) -> dict:
    import tensorflow as tf

    from tfxr import distributed as dist
    from tfxr.data.pipeline import DataConfig
    from tfxr.data.tfrecord import read_manifest

    dist.init()
    rank, world = dist.rank(), dist.size()
    path = resolve_model_path(cfg.model)
    model = load_model(path)
    manifest = read_manifest(cfg.data)
    names = manifest["label_names"]
    in_shape = model.input_shape
    size, channels = int(in_shape[1]), int(in_shape[-1])
    if model.output_shape[-1] != len(names):
        raise ConfigError(f"{path}: model has {model.output_shape[-1]} outputs, {cfg.data} has "
                          f"{len(names)} labels")
    dcfg = DataConfig(batch_size=cfg.batch_size, image_size=size, channels=channels, deterministic=True)
    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    p, y, ids = predict_split(lambda x: fn(x).numpy(), cfg.data, cfg.split, dcfg, manifest, rank, world)
    thresholds = [0.5] * len(names)
    if cfg.threshold_split and cfg.threshold_split in manifest["splits"] and cfg.threshold_split != cfg.split:
        pv, yv, _ = predict_split(lambda x: fn(x).numpy(), cfg.data, cfg.threshold_split, dcfg, manifest,
                                  rank, world)
        thresholds = [youden_threshold(yv[:, j], pv[:, j]) for j in range(len(names))]
    if rank != 0:
        return {}
    out = cfg.out or os.path.join(os.path.dirname(os.path.abspath(path)), f"eval-{cfg.split}")
    os.makedirs(out, exist_ok=True)
    aucs = auroc_per_label(y, p)
    cis = bootstrap_auroc_ci(y, p, cfg.bootstrap, cfg.seed) if cfg.bootstrap else [(np.nan, np.nan)] * len(names)
    per = {}
    for j, n in enumerate(names):
        at05 = sens_spec(y[:, j], p[:, j], 0.5)
        aty = sens_spec(y[:, j], p[:, j], thresholds[j])
        k = at05["tp"] + at05["tn"]
        per[n] = {"auroc": aucs[j], "auroc_ci95": list(cis[j]), "positives": int((y[:, j] >= 0.5).sum()),
                  "at_0.5": at05, "at_youden": aty, "accuracy_ci95": list(wilson_ci(k, len(y)))}
    result = {"model": os.path.abspath(path), "data": os.path.abspath(cfg.data), "split": cfg.split,
              "images": int(len(y)), "mean_auroc": nanmean(aucs), "labels": per,
              "threshold_split": cfg.threshold_split or None, "config": to_dict(cfg)}
    tmp = os.path.join(out, ".metrics.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=2)
    os.replace(tmp, os.path.join(out, "metrics.json"))
    plot_roc(y, p, names, os.path.join(out, "roc.png"),
             f"{os.path.basename(os.path.dirname(os.path.abspath(path)))} on {cfg.split}: "
             f"mean AUROC {nanmean(aucs):.3f}")
    with open(os.path.join(out, "predictions.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id"] + [f"y_{n}" for n in names] + [f"p_{n}" for n in names])
        for i, iid in enumerate(ids):
            w.writerow([iid] + [int(v) for v in y[i]] + [f"{v:.6f}" for v in p[i]])
    print(format_table(result))
    print(f"tfxr: wrote {out}/metrics.json, roc.png, predictions.csv", file=sys.stderr)
    result["out"] = out
    return result


def format_table(result: dict) -> str:
    names = list(result["labels"])
    w = max(len(n) for n in names + ["mean AUROC"])
    lines = [f"{result['split']}: {result['images']} images",
             f"{'label':<{w}}  {'AUROC':>6}  {'95% CI':>15}  {'sens@.5':>7}  {'spec@.5':>7}  {'n+':>5}"]
    for n in names:
        r = result["labels"][n]
        lo, hi = r["auroc_ci95"]
        lines.append(f"{n:<{w}}  {r['auroc']:>6.3f}  {f'[{lo:.3f}, {hi:.3f}]':>15}  "
                     f"{r['at_0.5']['sensitivity']:>7.3f}  {r['at_0.5']['specificity']:>7.3f}  {r['positives']:>5d}")
    lines.append(f"{'mean AUROC':<{w}}  {result['mean_auroc']:>6.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from tfxr.data.tfrecord import ManifestError

    try:
        cfg, _ = parse_config(EvalConfig, argv, "python -m tfxr.evaluate", __doc__)
        if not cfg.model or not cfg.data:
            raise ConfigError("--model and --data are required")
        evaluate(cfg)
    except (ConfigError, ManifestError) as e:
        print(f"tfxr: error: {e}", file=sys.stderr)
        return 2
    finally:
        from tfxr import distributed
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
