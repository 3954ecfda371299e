r"""``python -m tfxr.predict``: a trained model's probabilities for raw image files.

    python -m tfxr.predict --model runs/rsna IMAGES_OR_DIRS... --out preds.csv [--heatmaps DIR]

PNG, JPEG and DICOM files (folders are searched recursively) go through exactly the
preprocessing of the run: decoded to one grey plane as the converter does (DICOM with
the window/full-range choice the training data was written with), stretched to the
training data's stored size with the converter's resize, then to the model's input
size with the pipeline's resize, scaled to 0..1 and repeated to the model's channels.
Images are scored in batches; ``preds.csv`` has one row per image: the path, each
label's probability and, when the run has been evaluated (``RUN/eval-*/metrics.json``
with thresholds chosen on the validation split, or ``--thresholds FILE``), that
threshold and the 0/1 call.  ``--heatmaps DIR`` writes a CAM overlay per image and label
(tfxr.evaluation.localization's CAM).  Files that cannot be read are listed on stderr
with the reason and skipped.

Exit status: 0 success; 2 bad options, no model, or no readable image; 3 some
images were unreadable and were skipped (``--max-rejects``, default: any is fine: -1).
"""
from __future__ import annotations

import csv
import glob
import json
import os
import sys

import numpy as np

from tfxr import log
from tfxr.cli import EXIT_OK, EXIT_REJECTED, run_main
from tfxr.config import parse_config
from tfxr.configs import PredictConfig
from tfxr.errors import ConfigError
from tfxr.files import atomic_path, path_in

# TensorFlow, Keras and the modules that import them (the model's loader, CAM, the
# pipeline's resize), and the image readers (pydicom, Pillow; pandas beside the list of
# image extensions) are imported in the functions that use them: deliberately lazy, so
# that a bad option or a missing image is answered without their start-up.


def find_images(inputs: list[str]) -> list[str]:
    """Image files named or found (recursively, sorted) under the folders named."""
    from tfxr.data.sources.common import IMAGE_EXTENSIONS   # lazy (see the top)

    files: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = [p for p in glob.glob(os.path.join(glob.escape(item), "**", "*"), recursive=True)
                     if os.path.isfile(p) and p.lower().endswith(IMAGE_EXTENSIONS)
                     and not os.path.basename(p).startswith(".")]
            files += sorted(found)
        elif os.path.exists(item):
            files.append(item)
        else:
            raise ConfigError(f"{item}: no such file or folder")
    return files


def run_preprocessing(model_path: str, model) -> dict:
    """What the run's data looked like: stored size, DICOM VOI choice, label names, source."""
    from tfxr.evaluation.classifier import run_data_dir, run_labels   # lazy: TensorFlow (see the top)

    shape = tuple(model.input_shape)
    if len(shape) != 4 or None in shape[1:] or shape[1] != shape[2]:
        raise ConfigError(f"{model_path}: input shape {shape} is not a fixed square image")
    size, channels = int(shape[1]), int(shape[-1])
    info = {"size": size, "channels": channels, "stored": size, "dicom_window": True,
            "labels": [f"label_{k}" for k in range(int(model.output_shape[-1]))], "data": None}
    trained = run_labels(model_path)
    if trained:
        info["labels"] = trained[0]
    data = run_data_dir(model_path)
    try:
        with open(os.path.join(data, "manifest.json"), encoding="utf-8") as fh:
            manifest = json.load(fh)
        info.update(stored=int(manifest["image_size"]), data=data,
                    dicom_window=(manifest.get("source") or {}).get("dicom_voi", "window") != "full-range")
    except (OSError, TypeError, ValueError, KeyError):
        log.warning(f"the run's training data directory is not found (config.yaml beside "
              f"{model_path}); images are resized straight to the model's {size} px, the converter's "
              f"stored size being unknown")
    if len(info["labels"]) != int(model.output_shape[-1]):
        raise ConfigError(f"{model_path}: {model.output_shape[-1]} outputs but the run lists "
                          f"{len(info['labels'])} labels")
    return info


def run_thresholds(model_path: str, labels: list[str], explicit: str) -> tuple[list[float] | None, str | None]:
    """Per-label thresholds chosen on the validation split by ``tfxr.evaluate``, if any."""
    candidates = [explicit] if explicit else sorted(glob.glob(os.path.join(
        glob.escape(os.path.dirname(os.path.abspath(model_path))), "eval-*", "metrics.json")))
    for path in candidates:
        try:
            with open(path, encoding="utf-8") as fh:
                m = json.load(fh)
            if m.get("threshold_split") != "val" or m.get("cross_dataset"):
                raise ValueError("thresholds not chosen on this run's validation split")
            return [float(m["labels"][n]["at_val_threshold"]["threshold"]) for n in labels], path
        except (OSError, ValueError, KeyError, TypeError) as e:
            if explicit:
                raise ConfigError(f"--thresholds {explicit}: no validation-chosen threshold per label "
                                  f"({type(e).__name__}: {e})") from None
    return None, None


def preprocess(path: str, info: dict) -> np.ndarray:
    """One file as the model's input (S, S, C) float32 in 0..1, as the pipeline feeds it
    (the reader's own :func:`~tfxr.data.records.resize_u8`, so the numbers match)."""
    import tensorflow as tf   # lazy (see the top); loaded by then: predict() imported the model's loader

    from tfxr.data import imageio
    from tfxr.data.records import resize_u8

    grey = imageio.load_image(path, dicom_window=info["dicom_window"])
    stored = imageio.resize(grey, info["stored"])            # the converter's resize
    img = tf.convert_to_tensor(stored[..., None])
    if info["size"] != info["stored"]:
        img = resize_u8(img, info["size"])
    img = tf.cast(img, tf.float32) / 255.0
    if info["channels"] == 3:
        img = tf.repeat(img, 3, axis=-1)
    return img.numpy()


def predict(cfg: PredictConfig) -> int:
    if not cfg.model:
        raise ConfigError("--model is required")
    if not cfg.images:
        raise ConfigError("name at least one image file or folder")
    files = find_images(cfg.images)
    import tensorflow as tf   # lazy: after the options and the image list are checked (see the top)

    from tfxr.data import imageio
    from tfxr.evaluation.cam import ClassActivationMaps
    from tfxr.evaluation.classifier import resolve_model_path
    from tfxr.models.loading import load_run_model

    path = resolve_model_path(cfg.model)
    model = load_run_model(path, "classifier", cfg.trust_model_file, "--model")   # weights only (tfxr.models.loading)
    info = run_preprocessing(path, model)
    names = info["labels"]
    thresholds, source = run_thresholds(path, names, cfg.thresholds)
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    cam = None
    if cfg.heatmaps:
        cam = ClassActivationMaps(model, method=cfg.cam)
        os.makedirs(cfg.heatmaps, exist_ok=True)
    rows, rejected = [], []
    for start in range(0, len(files), cfg.batch_size):
        batch, kept = [], []
        for f in files[start:start + cfg.batch_size]:
            try:
                batch.append(preprocess(f, info))
                kept.append(f)
            except imageio.ImageError as e:
                rejected.append((f, str(e)))
                log.info(f"rejected {f}: {e}")
        if not batch:
            continue
        x = np.stack(batch)
        probs = np.asarray(forward(x), np.float64)
        rows += list(zip(kept, probs))
        if cam is not None:
            _overlays(cam, x, kept, names, cfg.heatmaps, start)
    if not rows:
        raise ConfigError(f"no readable image among {len(files)} file(s)" +
                          (f" (first: {rejected[0][0]}: {rejected[0][1]})" if rejected else ""))
    header = ["path"] + [f"p_{n}" for n in names]
    if thresholds:
        header += [f"threshold_{n}" for n in names] + [f"positive_{n}" for n in names]
    os.makedirs(os.path.dirname(os.path.abspath(cfg.out)), exist_ok=True)
    with atomic_path(cfg.out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for f, p in rows:
            row = [f] + [f"{v:.6f}" for v in p]
            if thresholds:
                row += [f"{t:.6f}" for t in thresholds] + [int(v >= t) for v, t in zip(p, thresholds)]
            w.writerow(row)
    log.info(f"wrote {cfg.out}: {len(rows)} image(s), {len(rejected)} unreadable skipped; "
          + (f"thresholds from {source}" if thresholds else
             "no validation-chosen thresholds (run `python -m tfxr.evaluate` on the run first)"))
    if cfg.max_rejects >= 0 and len(rejected) > cfg.max_rejects:
        return EXIT_REJECTED
    return EXIT_OK


def _overlays(cam, x: np.ndarray, files: list[str], names: list[str], out: str, start: int) -> None:
    from tfxr.evaluation.localization import save_overlay   # lazy: TensorFlow (see the top)

    for j, name in enumerate(names):
        heat, probs = cam(x, j)
        for k, f in enumerate(files):
            stem = f"{start + k:05d}_{os.path.splitext(os.path.basename(f))[0]}"
            title = "".join(c if c.isprintable() else "?" for c in f"{os.path.basename(f)}: {name}")
            save_overlay(path_in(out, f"{stem}_{name}", ".png"), x[k], heat[k], [], [],
                         title.replace("$", r"\$") + f" p={probs[k, j]:.3f}")


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: predict(parse_config(PredictConfig, argv, "python -m tfxr.predict", __doc__)[0]))


if __name__ == "__main__":
    sys.exit(main())
