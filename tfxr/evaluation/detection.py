"""Detection metrics: COCO AP (pycocotools), the RSNA challenge metric, FROC, random boxes.

Every function takes plain Python: per image, ground truth ``[(label, (xmin, ymin, xmax,
ymax)), ...]`` and detections ``[(label, box, score), ...]``, boxes normalised to 0..1
(tfxr's TFRecord convention), images in one fixed order.

* :func:`coco_ap` - AP per class, mAP@0.5 and mAP@[0.5:0.95] computed by **pycocotools**
  (``COCOeval``, area range "all", up to 100 detections per image), the field's reference
  implementation; boxes are handed to it in pixels of a nominal ``size`` (AP does not
  depend on it).  A class without ground truth has AP NaN and is left out of the means
  (pycocotools' -1).  No detection at all: every AP is 0 (pycocotools cannot load an
  empty result list).
* :func:`rsna_score` - the RSNA Pneumonia Detection Challenge metric (Kaggle 2018): per
  image, the mean over IoU thresholds 0.40, 0.45, ..., 0.75 of TP / (TP + FP + FN), where
  predictions are matched in descending score order, each to the unmatched ground-truth
  box of highest IoU if that IoU exceeds the threshold; averaged over images.  An image
  without ground truth counts only when it has predictions (then it scores 0); an image
  with neither is skipped.  Detections below ``min_score`` are dropped first (the
  challenge scored the boxes a team submitted: choose the cut on another split).
* :func:`froc` - free-response ROC: over all images, detections in descending score
  order; a detection is a true positive when it hits (IoU >= ``iou``) a ground-truth box of
  its class not hit before, a false positive when it hits none, and ignored when it only
  hits boxes already found (duplicates).  Sensitivity at 0.125, 0.25, 0.5, 1, 2, 4 and 8
  false positives per image (the highest sensitivity at or below each rate) and their mean
  (the "CPM" of LUNA16).
* :func:`bootstrap_ci` - 95 % percentile-bootstrap intervals of all of these, resampling
  images (``tfxr.evaluate detection --bootstrap N``, the same resamples for every method).
* :func:`box_fit` - why a method scores what it does, at any score cut: predictions per
  image, the median predicted and ground-truth box areas, and the share of ground-truth
  boxes some prediction of their class overlaps at IoU >= 0.5 (the recall no score cut
  can exceed at mAP@0.5's threshold).
* :func:`random_detections` - the floor: boxes of the ground truth's sizes at random
  places (inside a region mask when given, e.g. the phantoms' lung fields), random scores.
"""
from __future__ import annotations

import contextlib
import io
import math
import os

import numpy as np
import tensorflow as tf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tfxr import distributed as dist
from tfxr import plots
from tfxr.configs import DetectionEvalConfig
from tfxr.data.pipeline import DataConfig, build_dataset
from tfxr.data.records import read_manifest
from tfxr.errors import ConfigError, ManifestError
from tfxr.evaluation.boxes import boxes_from_heatmap, iou, random_placement, read_boxed_images
from tfxr.evaluation.cam import ClassActivationMaps
from tfxr.evaluation.classifier import open_model_and_data
from tfxr.evaluation.localization import phantom_lung_fields
from tfxr.files import write_json, write_text
from tfxr.models.detector import decode, load_detector

RSNA_THRESHOLDS = tuple(round(0.4 + 0.05 * k, 2) for k in range(8))
FROC_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: the pixel size boxes are handed to pycocotools in (AP is scale-free; area range "all")
COCO_SIZE = 1024


# --------------------------------------------------------------------------- COCO AP
def coco_inputs(truths: list, detections: list, num_classes: int, size: int = COCO_SIZE) -> tuple[dict, list]:
    """The COCO ground-truth dict and result list pycocotools reads (boxes in pixels, xywh)."""
    def xywh(b):
        return [float(b[0] * size), float(b[1] * size), float((b[2] - b[0]) * size), float((b[3] - b[1]) * size)]

    images = [{"id": i + 1, "width": size, "height": size} for i in range(len(truths))]
    annotations = []
    for i, boxes in enumerate(truths):
        for label, box in boxes:
            w = xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label) + 1,
                                "bbox": w, "area": w[2] * w[3], "iscrowd": 0})
    categories = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]
    results = [{"image_id": i + 1, "category_id": int(label) + 1, "bbox": xywh(box), "score": float(score)}
               for i, dets in enumerate(detections) for label, box, score in dets]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def run_cocoeval(gt: dict, results: list):
    """pycocotools' COCOeval (bbox) on these inputs, evaluated, accumulated, summarised (quietly)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def coco_ap(truths: list, detections: list, label_names: list[str], size: int = COCO_SIZE) -> dict:
    """``{"map_50", "map_50_95", "per_class": {name: {"ap_50", "ap_50_95", "boxes"}}}`` by pycocotools."""
    if len(truths) != len(detections):
        raise ValueError(f"{len(truths)} images of ground truth but {len(detections)} of detections")
    counts = [sum(1 for boxes in truths for label, _ in boxes if label == k) for k in range(len(label_names))]
    gt, results = coco_inputs(truths, detections, len(label_names), size)
    nan = float("nan")
    if not results:
        per = {n: {"ap_50": 0.0 if c else nan, "ap_50_95": 0.0 if c else nan, "boxes": c}
               for n, c in zip(label_names, counts)}
        value = 0.0 if any(counts) else nan
        return {"map_50": value, "map_50_95": value, "per_class": per}
    ev = run_cocoeval(gt, results)
    precision = ev.eval["precision"]          # [T IoU thresholds, R recalls, K classes, A areas, M maxDets]

    def ap(values):
        values = values[values > -1]
        return float(np.mean(values)) if values.size else nan

    per = {}
    for k, name in enumerate(label_names):
        per[name] = {"ap_50": ap(precision[0, :, k, 0, -1]), "ap_50_95": ap(precision[:, :, k, 0, -1]),
                     "boxes": counts[k]}

    def stat(v):
        return float(v) if v > -1 else nan
    return {"map_50": stat(ev.stats[1]), "map_50_95": stat(ev.stats[0]), "per_class": per}


# --------------------------------------------------------------------------- RSNA metric
def _matches(truth: list, preds: list, threshold: float) -> int:
    """True positives of score-ordered ``preds`` against ``truth`` boxes at IoU > threshold."""
    free = list(range(len(truth)))
    tp = 0
    for box in preds:
        best, best_iou = None, threshold
        for j in free:
            value = iou(truth[j], box)
            if value > best_iou:
                best, best_iou = j, value
        if best is not None:
            free.remove(best)
            tp += 1
    return tp


def rsna_image_score(truth: list, preds: list) -> float | None:
    """One image's RSNA score (``truth``: boxes; ``preds``: (box, score)); None when skipped."""
    if not truth and not preds:
        return None
    if not truth or not preds:
        return 0.0
    ordered = [box for box, _ in sorted(preds, key=lambda p: -p[1])]
    scores = []
    for t in RSNA_THRESHOLDS:
        tp = _matches(truth, ordered, t)
        scores.append(tp / (tp + (len(ordered) - tp) + (len(truth) - tp)))
    return float(np.mean(scores))


def rsna_score(truths: list, detections: list, min_score: float = 0.0) -> dict:
    """``{"score", "images_scored", "per_image"}`` (class-agnostic, as the challenge: one class)."""
    per_image = []
    for truth, dets in zip(truths, detections, strict=True):
        preds = [(box, score) for _, box, score in dets if score >= min_score]
        per_image.append(rsna_image_score([box for _, box in truth], preds))
    scored = [s for s in per_image if s is not None]
    return {"score": float(np.mean(scored)) if scored else float("nan"), "images_scored": len(scored),
            "min_score": min_score, "per_image": per_image}


def choose_min_score(truths: list, detections: list, grid=tuple(round(0.05 * k, 2) for k in range(1, 20))) -> float:
    """The score cut with the best RSNA score on these images (use a split other than the scored one)."""
    best, best_value = grid[0], -1.0
    for cut in grid:
        value = rsna_score(truths, detections, cut)["score"]
        if not math.isnan(value) and value > best_value:
            best, best_value = cut, value
    return best


# --------------------------------------------------------------------------- FROC
def froc(truths: list, detections: list, iou_threshold: float = 0.5, rates=FROC_RATES) -> dict:
    """``{"sensitivity": {rate: s}, "mean_sensitivity", "curve": [(fp/image, sensitivity)]}``."""
    total = sum(len(t) for t in truths)
    images = len(truths)
    pooled = sorted(((score, i, label, box) for i, dets in enumerate(detections) for label, box, score in dets),
                    key=lambda d: -d[0])
    found = [set() for _ in truths]
    tp = fp = 0
    curve = [(0.0, 0.0)]
    for _, i, label, box in pooled:
        hits = [j for j, (lab, truth) in enumerate(truths[i]) if lab == label and iou(truth, box) >= iou_threshold]
        fresh = [j for j in hits if j not in found[i]]
        if fresh:
            found[i].add(max(fresh, key=lambda j: iou(truths[i][j][1], box)))
            tp += 1
        elif not hits:
            fp += 1
        else:
            continue
        curve.append((fp / max(images, 1), tp / total if total else float("nan")))
    sensitivity = {}
    for rate in rates:
        ok = [s for f, s in curve if f <= rate]
        sensitivity[rate] = max(ok) if ok and total else float("nan")
    values = list(sensitivity.values())
    return {"sensitivity": sensitivity, "mean_sensitivity": float(np.mean(values)) if total else float("nan"),
            "boxes": total, "images": images, "curve": curve}


# --------------------------------------------------------------------------- box fit
def box_fit(truths: list, detections: list, iou_threshold: float = 0.5) -> dict:
    """How a method's boxes fit the ground truth, whatever their scores:
    ``{"predictions_per_image", "median_box_area", "median_truth_area", "median_best_iou",
    "reachable"}``: the median count of predictions per image, the median area of a
    predicted and of a ground-truth box (fractions of the image), the median over ground-truth
    boxes of the best IoU any prediction of their class reaches, and the share of
    ground-truth boxes where that IoU is >= ``iou_threshold`` (no score cut can recall more
    at that IoU).  NaN where there is nothing to take a median of."""
    if len(truths) != len(detections):
        raise ValueError(f"{len(truths)} images of ground truth but {len(detections)} of detections")

    def area(b):
        return (b[2] - b[0]) * (b[3] - b[1])

    def median(values):
        return float(np.median(values)) if len(values) else float("nan")

    best = [max([iou(t, b) for lab, b, _ in dets if lab == label] or [0.0])
            for truth, dets in zip(truths, detections) for label, t in truth]
    return {"predictions_per_image": median([len(d) for d in detections]),
            "median_box_area": median([area(b) for dets in detections for _, b, _ in dets]),
            "median_truth_area": median([area(b) for truth in truths for _, b in truth]),
            "median_best_iou": median(best),
            "reachable": float(np.mean([v >= iou_threshold for v in best])) if best else float("nan"),
            "iou_threshold": iou_threshold}


# --------------------------------------------------------------------------- the floor
def random_detections(truths: list, sizes: list[tuple[float, float]], per_image: int, seed: int = 0,
                      regions: list | None = None, num_classes: int = 1) -> list:
    """Per image, ``per_image`` boxes with (width, height) drawn from ``sizes`` at random
    centres (inside ``regions[i]``, a boolean mask, when given), random labels and scores."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(len(truths)):
        region = regions[i] if regions is not None else None
        dets = []
        for _ in range(per_image):
            w, h = sizes[rng.integers(len(sizes))] if sizes else (0.2, 0.2)
            box = random_placement((0.0, 0.0, w, h), region, rng)
            dets.append((int(rng.integers(num_classes)), box, float(rng.random())))
        out.append(dets)
    return out


def all_metrics(truths: list, detections: list, label_names: list[str], min_score: float,
                bootstrap: int = 0, seed: int = 0) -> dict:
    """COCO AP, the RSNA score at ``min_score`` and FROC of one set of detections; with
    ``bootstrap`` > 0 also their 95 % intervals (:func:`bootstrap_ci`) under ``"ci95"``."""
    out = {"coco": coco_ap(truths, detections, label_names), "rsna": rsna_score(truths, detections, min_score),
           "froc": froc(truths, detections), "fit": box_fit(truths, detections)}
    if bootstrap:
        out["ci95"] = bootstrap_ci(truths, detections, label_names, min_score, bootstrap, seed)
    return out


#: the metrics :func:`bootstrap_ci` gives intervals for
CI_METRICS = ("map_50", "map_50_95", "rsna", "froc_mean") + tuple(f"sens@{r:g}" for r in FROC_RATES)


def _point(truths: list, detections: list, label_names: list[str], min_score: float) -> dict:
    coco, fr = coco_ap(truths, detections, label_names), froc(truths, detections)
    return {"map_50": coco["map_50"], "map_50_95": coco["map_50_95"],
            "rsna": rsna_score(truths, detections, min_score)["score"], "froc_mean": fr["mean_sensitivity"],
            **{f"sens@{r:g}": fr["sensitivity"][r] for r in FROC_RATES}}


def bootstrap_ci(truths: list, detections: list, label_names: list[str], min_score: float, n: int = 200,
                 seed: int = 0, alpha: float = 0.05) -> dict:
    """Percentile bootstrap intervals, resampling **images** with replacement (an image drawn
    twice counts twice, its boxes and detections with it), of every metric in
    :data:`CI_METRICS`: ``{metric: (low, high)}`` plus ``"resamples"``.

    The score cut of the RSNA score stays ``min_score`` (chosen on another split, not
    re-chosen per resample).  Resamples where a metric is undefined (no ground-truth box
    drawn) are skipped for it; with 10 or fewer usable resamples its interval is NaN.
    """
    if len(truths) != len(detections):
        raise ValueError(f"{len(truths)} images of ground truth but {len(detections)} of detections")
    rng = np.random.default_rng(seed)
    m = len(truths)
    samples: dict[str, list[float]] = {k: [] for k in CI_METRICS}
    for _ in range(n if m else 0):
        idx = rng.integers(0, m, m)
        values = _point([truths[i] for i in idx], [detections[i] for i in idx], label_names, min_score)
        for k, v in values.items():
            if not math.isnan(v):
                samples[k].append(v)
    out = {k: (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))) if len(v) > 10
           else (float("nan"), float("nan")) for k, v in samples.items()}
    out["resamples"] = n
    return out


# --------------------------------------------------------------------------- running a detector
#: ground-truth boxes per image read for scoring (all of them, in practice)
EVAL_MAX_BOXES = 100


def detect_split(model, data_dir: str, split: str, manifest: dict, data_cfg, rank: int = 0, world: int = 1,
                 predict=None) -> list[tuple[str, list, list]]:
    """``[(image_id, truth, detections)]`` of this rank's share of ``split`` (the one pipeline,
    no augmentation), detections decoded by the model's own NMS decoder.  ``predict``: a
    compiled ``images -> decoded dict`` function (default: built here)."""
    predict = predict or tf.function(lambda x: decode(model, x), reduce_retracing=True)
    ds = build_dataset(data_dir, split, data_cfg, training=False, rank=rank, world=world, with_meta=True,
                       manifest=manifest, boxes=EVAL_MAX_BOXES)
    out = []
    for batch in ds:
        decoded = {k: v.numpy() for k, v in predict(batch["image"]).items()}
        for k, image_id in enumerate(batch["image_id"].numpy()):
            real = batch["classes"].numpy()[k] >= 0
            truth = [(int(c), tuple(float(v) for v in b))
                     for c, b in zip(batch["classes"].numpy()[k][real], batch["boxes"].numpy()[k][real])]
            n = int(decoded["num_detections"][k])
            dets = [(int(decoded["classes"][k, j]), tuple(float(v) for v in np.clip(decoded["boxes"][k, j], 0, 1)),
                     float(decoded["confidence"][k, j])) for j in range(n)]
            out.append((image_id.decode(), truth, dets))
    return out


def by_image_id(record: tuple):
    """The sort key of ``(image_id, ...)`` records gathered across ranks."""
    return record[0]


# --------------------------------------------------------------------------- the evaluation CLI
#: Seed 001's detector (the pneumonia system tfxr replaces): YOLOv8 nano fine-tuned on RSNA's
#: pneumonia boxes on 4 GPUs, its reported validation mAP@0.5 -- other data and splits.
SEED001_MAP50 = 0.149


def _cam_detections(cfg: DetectionEvalConfig, split: str, rank: int, world: int) -> list:
    """``[(image_id, detections)]`` of CAM boxes (tfxr.localize's default HiResCAM heatmaps, cut
    at ``cam_box_threshold``) for every label of every image; score = p(label) x the mean
    heatmap inside the box."""
    _, model, size, channels, manifest = open_model_and_data(cfg.cam_model, cfg.data)
    cam = ClassActivationMaps(model)
    items = read_boxed_images(cfg.data, split, manifest, size, channels, rank, world, only_boxed=False)
    out = []
    for start in range(0, len(items), cfg.batch_size):
        chunk = items[start:start + cfg.batch_size]
        x = np.stack([it.image for it in chunk])
        per = [[] for _ in chunk]
        for label in range(len(manifest["label_names"])):
            maps, probs = cam(x, label)
            for k, heat in enumerate(maps):
                for box in boxes_from_heatmap(heat, cfg.cam_box_threshold):
                    y0, y1 = int(box[1] * size), max(int(box[3] * size), int(box[1] * size) + 1)
                    x0, x1 = int(box[0] * size), max(int(box[2] * size), int(box[0] * size) + 1)
                    per[k].append((label, box, float(probs[k, label]) * float(heat[y0:y1, x0:x1].mean())))
        out.extend((it.image_id, dets) for it, dets in zip(chunk, per))
    return out


def _method_metrics(names, truths_val, dets_val, truths, dets, bootstrap: int = 0, seed: int = 0) -> dict:
    cut = choose_min_score(truths_val, dets_val) if any(truths_val) else 0.5
    return {**all_metrics(truths, dets, names, cut, bootstrap, seed), "min_score_chosen_on_threshold_split": cut}


def evaluate_detection(cfg: DetectionEvalConfig) -> dict:
    """Detector, CAM boxes and random boxes on ``cfg.split``; rank 0 writes the outputs."""
    if not cfg.detector or not cfg.data:
        raise ConfigError("detection: --detector (a `tfxr.detect train` run) and --data are required")
    if cfg.threshold_split == cfg.split:
        raise ConfigError(f"--threshold-split {cfg.threshold_split}: score cuts must be chosen on another split "
                          f"than the scored one (--split {cfg.split})")
    manifest = read_manifest(cfg.data)
    for split in (cfg.split, cfg.threshold_split):
        if split not in manifest["splits"]:
            raise ManifestError(f"{cfg.data}: no '{split}' split (has {sorted(manifest['splits'])})")
    dist.init()
    rank, world = dist.rank(), dist.size()
    model = load_detector(cfg.detector)
    names = list(manifest["label_names"])
    if model.label_names != names:
        raise ConfigError(f"--detector {cfg.detector} was trained on labels {model.label_names}, "
                          f"--data {cfg.data} has {names}")
    size = int(model.input_shape[1])
    data_cfg = DataConfig(batch_size=cfg.batch_size, image_size=size, deterministic=True)
    runs = {s: dist.allgather_records(detect_split(model, cfg.data, s, manifest, data_cfg, rank, world),
                                      by_image_id) for s in (cfg.threshold_split, cfg.split)}
    cams = {}
    if cfg.cam_model:
        cams = {s: dict(dist.allgather_records(_cam_detections(cfg, s, rank, world), by_image_id))
                for s in (cfg.threshold_split, cfg.split)}
    if rank != 0:
        return {}
    val, test = runs[cfg.threshold_split], runs[cfg.split]
    ids, truths = [r[0] for r in test], [r[1] for r in test]
    truths_val = [r[1] for r in val]
    sizes = [(b[2] - b[0], b[3] - b[1]) for t in truths_val for _, b in t] or \
        [(b[2] - b[0], b[3] - b[1]) for t in truths for _, b in t]
    regions_test = phantom_lung_fields(manifest, ids, 64)
    regions_val = phantom_lung_fields(manifest, [r[0] for r in val], 64)

    def floor(records, regions, seed):
        masks = [regions.get(r[0]) for r in records] if regions else None
        return random_detections([r[1] for r in records], sizes, cfg.random_boxes, seed, masks, len(names))

    boot = {"bootstrap": cfg.bootstrap, "seed": cfg.seed}    # the same resamples of images for every method
    methods = {"detector": _method_metrics(names, truths_val, [r[2] for r in val], truths, [r[2] for r in test],
                                           **boot)}
    if cams:
        methods["CAM boxes"] = _method_metrics(names, truths_val, [cams[cfg.threshold_split][r[0]] for r in val],
                                               truths, [cams[cfg.split][i] for i in ids], **boot)
    methods["random boxes"] = _method_metrics(names, truths_val, floor(val, regions_val, cfg.seed + 1),
                                              truths, floor(test, regions_test, cfg.seed), **boot)
    out = cfg.out or os.path.join(os.path.dirname(os.path.abspath(cfg.detector.rstrip("/")))
                                  if cfg.detector.endswith(".weights.h5") else os.path.abspath(cfg.detector),
                                  f"detect-{cfg.split}")
    os.makedirs(out, exist_ok=True)
    result = {"detector": os.path.abspath(cfg.detector), "data": os.path.abspath(cfg.data), "split": cfg.split,
              "threshold_split": cfg.threshold_split, "images": len(ids),
              "images_with_boxes": sum(1 for t in truths if t), "boxes": sum(len(t) for t in truths),
              "label_names": names, "cam_model": cfg.cam_model or None, "cam_box_threshold": cfg.cam_box_threshold,
              "random_region": "centres in the phantom's lung fields" if regions_test else "centres anywhere",
              "methods": {m: {k: v for k, v in r.items()} for m, r in methods.items()},
              "seed001_map_50": SEED001_MAP50}
    write_json(os.path.join(out, "detection.json"), _jsonable(result))
    write_text(os.path.join(out, "report.md"), detection_report(result))
    if cfg.overlays:
        cam_boxes = None
        if cams:
            cam_boxes = (cams[cfg.split], methods["CAM boxes"]["min_score_chosen_on_threshold_split"])
        write_detection_overlays(cfg, manifest, test, methods["detector"]["min_score_chosen_on_threshold_split"],
                                 os.path.join(out, "overlays"), size, cam_boxes)
    result["out"] = out
    return result


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _f(value, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def detection_report(result: dict) -> str:
    """``report.md``: the methods side by side (COCO mAP, RSNA score, FROC), per-class AP."""
    lines = [f"# Detection on `{result['split']}` of `{result['data']}`", "",
             f"{result['images']} images ({result['images_with_boxes']} with boxes, {result['boxes']} boxes). "
             f"Detector: `{result['detector']}`. COCO AP by pycocotools; the RSNA score at the score cut chosen "
             f"on `{result['threshold_split']}` (best RSNA score there); FROC: a hit is IoU >= 0.5. "
             f"Random boxes: boxes of the ground truth's sizes at random "
             f"places ({result['random_region']}), random scores.", "",
             "| method | mAP@0.5 | mAP@[.5:.95] | RSNA score (cut) | " +
             " | ".join(f"sens@{r:g} FP" for r in FROC_RATES) + " | FROC mean |",
             "|---|---:|---:|---:|" + "---:|" * (len(FROC_RATES) + 1)]
    for name, m in result["methods"].items():
        sens = m["froc"]["sensitivity"]
        lines.append(f"| {name} | {_f(m['coco']['map_50'])} | {_f(m['coco']['map_50_95'])} | "
                     f"{_f(m['rsna']['score'])} ({m['min_score_chosen_on_threshold_split']:.2f}) | "
                     + " | ".join(_f(sens[r]) for r in FROC_RATES) + f" | {_f(m['froc']['mean_sensitivity'])} |")
    cis = {name: m["ci95"] for name, m in result["methods"].items() if m.get("ci95")}
    if cis:
        n = next(iter(cis.values()))["resamples"]
        lines += ["", f"95 % confidence intervals: percentile bootstrap over the {result['images']} images "
                  f"({n} resamples, the same for every method; the RSNA score cut kept fixed).", "",
                  "| method | mAP@0.5 | mAP@[.5:.95] | RSNA score | sens@1 FP | FROC mean |",
                  "|---|---|---|---|---|---|"]

        def interval(ci, key):
            low, high = ci[key]
            return "-" if math.isnan(low) else f"[{low:.3f}, {high:.3f}]"
        for name, ci in cis.items():
            lines.append(f"| {name} | " + " | ".join(interval(ci, k) for k in
                                                    ("map_50", "map_50_95", "rsna", "sens@1", "froc_mean")) + " |")
    lines += ["", "## How the boxes fit (any score)", "",
              "Per method, whatever the scores: predictions per image and the median box area (of the image; "
              "ground truth: " + _f(next(iter(result["methods"].values()))["fit"]["median_truth_area"], 4) + "), the "
              "median best IoU of a ground-truth box with a prediction of its class, and the share of ground-truth "
              "boxes some prediction overlaps at IoU >= 0.5: no score cut recalls more at mAP@0.5's threshold.", "",
              "| method | predictions / image (median) | median box area | median best IoU | reachable at IoU 0.5 |",
              "|---|---:|---:|---:|---:|"]
    for name, m in result["methods"].items():
        fit = m["fit"]
        lines.append(f"| {name} | {_f(fit['predictions_per_image'], 1)} | {_f(fit['median_box_area'], 4)} | "
                     f"{_f(fit['median_best_iou'])} | {_f(fit['reachable'])} |")
    lines += ["", "## AP per class (pycocotools)", "", "| class | boxes | " +
              " | ".join(f"{m} AP@0.5 | {m} AP@[.5:.95]" for m in result["methods"]) + " |",
              "|---|---:|" + "---:|---:|" * len(result["methods"])]
    for name in result["label_names"]:
        first = next(iter(result["methods"].values()))["coco"]["per_class"][name]
        cells = [f"{_f(m['coco']['per_class'][name]['ap_50'])} | {_f(m['coco']['per_class'][name]['ap_50_95'])}"
                 for m in result["methods"].values()]
        lines.append(f"| {name} | {first['boxes']} | " + " | ".join(cells) + " |")
    if result["cam_model"]:
        lines += ["", f"CAM boxes: the HiResCAM heatmaps of `{result['cam_model']}` (tfxr.localize's) for every "
                  f"label of every image, cut at {result['cam_box_threshold']} of their maximum, one box per "
                  f"connected region, scored p(label) x the mean heatmap inside the box."]
    lines += ["", f"For reference, seed 001's YOLOv8 nano fine-tuned on RSNA (4 GPUs) reported mAP@0.5 = "
              f"{result['seed001_map_50']} -- on RSNA's own split, not these images: a different data set and "
              f"split, so not comparable number for number."]
    if result["boxes"] < 100:
        lines += ["", f"Only {result['boxes']} ground-truth boxes: these numbers carry wide uncertainty"
                  + (" (see the bootstrap intervals above)." if cis else
                     " (no confidence interval computed: --bootstrap 0).")]
    return "\n".join(lines) + "\n"


def draw_detections(ax, found: list, size: int, cut: float, colour: str, linewidth: float,
                    label_names: list[str] | None = None) -> None:
    """Draw the (label, normalised xyxy box, score) detections scoring at or above ``cut`` on
    ``ax`` (an image of ``size`` px), with their label name and score when ``label_names``."""
    for label, b, score in found:
        if score < cut:
            continue
        plots.box(ax, b[0] * size, b[1] * size, b[2] * size, b[3] * size, colour, linewidth=linewidth)
        if label_names is not None:
            ax.text(b[0] * size, b[1] * size - 2, f"{label_names[label]} {score:.2f}", color=colour, fontsize=6)


def write_detection_overlays(cfg, manifest: dict, records: list, min_score: float, folder: str, size: int,
                             cam_boxes: tuple[dict, float] | None = None) -> list:
    """PNGs of the first ``cfg.overlays`` images with boxes: truth green, detections red with
    scores (at or above ``min_score``); with ``cam_boxes`` = ({image_id: detections}, cut)
    also the CAM boxes at or above their cut, in blue."""

    wanted = {r[0]: r for r in records if r[1]}
    items = [it for it in read_boxed_images(cfg.data, cfg.split, manifest, size, 1) if it.image_id in wanted]
    os.makedirs(folder, exist_ok=True)
    written = []
    for it in sorted(items, key=lambda it: it.image_id)[:cfg.overlays]:
        _, truth, dets = wanted[it.image_id]
        fig, ax = plots.subplots(figsize=(4, 4.3), dpi=100)
        ax.imshow(it.image[..., 0], cmap="gray", vmin=0, vmax=1)
        for _, b in truth:
            plots.box(ax, b[0] * size, b[1] * size, b[2] * size, b[3] * size, "lime", linewidth=1.5)
        draw_detections(ax, dets, size, min_score, "red", 1.2, manifest["label_names"])
        title = f"{it.image_id}: truth green, detector red (score >= {min_score:.2f})"
        if cam_boxes is not None:
            cams, cam_cut = cam_boxes
            draw_detections(ax, cams.get(it.image_id, []), size, cam_cut, "deepskyblue", 1.0)
            title += f",\nCAM boxes blue (score >= {cam_cut:.2f})"
        ax.set_title(title, fontsize=7)
        ax.axis("off")
        written.append(plots.save_png(fig, os.path.join(folder, f"{it.image_id}.png")))
    return written
