"""Boxes for weak localization: geometry (IoU, IoBB), boxes cut from a heatmap, the
ground-truth boxes of a split, and the scores of predicted boxes against them.

A box here is its four corners alone, :data:`BoxCoords` ``(xmin, ymin, xmax, ymax)`` as
fractions (0..1) of the image; the label travels beside it (``(label, coords)`` pairs).
The labelled box the data sources produce is :class:`tfxr.data.types.Box`, stored in the
records as ``bbox/label``, ``bbox/xmin`` ...; :func:`read_boxed_images` reads it back as pairs.
The scores and their definitions are described in :mod:`tfxr.evaluation.localization`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from tfxr.data.records import read_examples
from tfxr.errors import ManifestError

IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)
IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
BOX_THRESHOLD_GRID = tuple(round(0.1 * k, 1) for k in range(1, 10))

#: A box's corners without its label: (xmin, ymin, xmax, ymax), fractions 0..1 of the image.
BoxCoords = tuple[float, float, float, float]


# --------------------------------------------------------------------------- geometry
def box_area(box: BoxCoords) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection(a: BoxCoords, b: BoxCoords) -> float:
    return box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def iobb(truth: BoxCoords, predicted: BoxCoords) -> float:
    """Intersection over the predicted (detected) box's area, Wang et al.'s IoBB."""
    area = box_area(predicted)
    return intersection(truth, predicted) / area if area > 0 else 0.0


def iou(a: BoxCoords, b: BoxCoords) -> float:
    inter = intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def boxes_from_heatmap(heatmap: np.ndarray, threshold: float) -> list[BoxCoords]:
    """One box per connected region of ``heatmap >= threshold * max`` (normalised coords)."""
    peak = float(heatmap.max())
    if peak <= 0:
        return []
    labelled, _count = ndimage.label(heatmap >= threshold * peak, structure=np.ones((3, 3)))
    height, width = heatmap.shape
    return [(sl[1].start / width, sl[0].start / height, sl[1].stop / width, sl[0].stop / height)
            for sl in ndimage.find_objects(labelled) if sl is not None]


def peak_point(heatmap: np.ndarray) -> tuple[float, float]:
    """(x, y) of the heatmap's maximum, normalised to the pixel centre."""
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return float((col + 0.5) / heatmap.shape[1]), float((row + 0.5) / heatmap.shape[0])


def inside(point: tuple[float, float], box: BoxCoords) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


# --------------------------------------------------------------------------- images with their boxes
@dataclass
class BoxedImage:
    image_id: str
    image: np.ndarray                 # (H, W, C) float [0, 1]
    labels: np.ndarray
    boxes: list[tuple[int, BoxCoords]] = field(default_factory=list)   # (label index, box)


def read_boxed_images(data_dir: str, split: str, manifest: dict, size: int, channels: int,
                      rank: int = 0, world: int = 1, only_boxed: bool = True) -> list[BoxedImage]:
    """This rank's images of a split (the one reader's rank split) with their ground-truth boxes."""
    if manifest.get("format", "tfrecord") != "tfrecord":
        raise ManifestError(f"{data_dir}: localization needs TFRecords with bbox/* features, "
                            f"not a {manifest.get('format')} index")
    ds = read_examples(data_dir, split, fields=("image", "labels", "image_id", "boxes"), rank=rank,
                       world=world, image_size=size, manifest=manifest)
    out = []
    for ex in ds.as_numpy_iterator():
        labels = ex["boxes"]["label"]
        if only_boxed and len(labels) == 0:
            continue
        img = ex["image"].astype(np.float32) / 255.0
        if channels == 3:
            img = np.repeat(img, 3, axis=-1)
        coords = [ex["boxes"][c] for c in ("xmin", "ymin", "xmax", "ymax")]
        boxes = [(int(lab), tuple(float(c[i]) for c in coords)) for i, lab in enumerate(labels)]
        out.append(BoxedImage(ex["image_id"].decode(), img, ex["labels"], boxes))
    return out


# --------------------------------------------------------------------------- thresholds and scores
def choose_box_thresholds(items: list[BoxedImage], heat: dict, num_labels: int) -> dict[int, float]:
    """Per label, the grid threshold with the best mean IoU of the best-matching box."""
    per_label = {t: {j: [] for j in range(num_labels)} for t in BOX_THRESHOLD_GRID}
    for i, it in enumerate(items):
        for label, truth in it.boxes:
            for t in BOX_THRESHOLD_GRID:
                preds = boxes_from_heatmap(heat[(i, label)], t)
                per_label[t][label].append(max((iou(truth, p) for p in preds), default=0.0))
    overall = {t: np.mean([v for j in range(num_labels) for v in per_label[t][j]] or [0.0])
               for t in BOX_THRESHOLD_GRID}
    default = max(BOX_THRESHOLD_GRID, key=lambda t: overall[t])
    chosen = {}
    for j in range(num_labels):
        if per_label[default][j]:
            chosen[j] = max(BOX_THRESHOLD_GRID, key=lambda t: np.mean(per_label[t][j]))
        else:
            chosen[j] = default
    return chosen


def score_box(truth: BoxCoords, predicted: list[BoxCoords], point: tuple[float, float] | None) -> dict:
    """Hit flags of one ground-truth box against the boxes of its finding's heatmap."""
    out = {f"iobb_{t}": bool(any(iobb(truth, p) > t for p in predicted)) for t in IOBB_THRESHOLDS}
    out.update({f"iou_{t}": bool(any(iou(truth, p) > t for p in predicted)) for t in IOU_THRESHOLDS})
    if point is not None:
        out["pointing"] = bool(inside(point, truth))
    return out


def false_positives(truths: list[BoxCoords], predicted: list[BoxCoords]) -> dict[str, int]:
    """Per T(IoBB): predicted boxes of one (image, finding) that match none of its truths."""
    return {f"fp_{t}": sum(1 for p in predicted if all(iobb(truth, p) <= t for truth in truths))
            for t in IOBB_THRESHOLDS}


def random_placement(box: BoxCoords, region: np.ndarray | None, rng: np.random.Generator) -> BoxCoords:
    """The same-size box with its centre drawn in ``region`` (a boolean mask) or the image."""
    width, height = box[2] - box[0], box[3] - box[1]
    if region is not None and region.any():
        rows, cols = np.nonzero(region)
        k = rng.integers(len(rows))
        cx, cy = (cols[k] + rng.random()) / region.shape[1], (rows[k] + rng.random()) / region.shape[0]
    else:
        cx, cy = rng.random(), rng.random()
    cx = min(max(cx, width / 2), 1 - width / 2)
    cy = min(max(cy, height / 2), 1 - height / 2)
    return (float(cx - width / 2), float(cy - height / 2), float(cx + width / 2), float(cy + height / 2))


def score_items(items: list[BoxedImage], heat: dict, thresholds: dict[int, float],
                regions: dict[str, np.ndarray] | None = None, draws: int = 20, seed: int = 0) -> list[dict]:
    """One record per ground-truth box: hits of the model's boxes and of the random baseline."""
    rng = np.random.default_rng(seed)
    records = []
    for i, it in enumerate(items):
        for label, truth in it.boxes:
            heatmap = heat[(i, label)]
            predicted = boxes_from_heatmap(heatmap, thresholds[label])
            record = {"image_id": it.image_id, "label": label, "box": list(truth),
                      "predicted": [list(p) for p in predicted], "threshold": thresholds[label],
                      **score_box(truth, predicted, peak_point(heatmap))}
            region = (regions or {}).get(it.image_id)
            baseline = []
            for _ in range(draws):
                moved = [random_placement(p, region, rng) for p in predicted]
                point = random_placement((0, 0, 0, 0), region, rng)[:2]
                baseline.append(score_box(truth, moved, point))
            record["random"] = {k: float(np.mean([b[k] for b in baseline])) for k in baseline[0]}
            records.append(record)
    return records


def summarise(records: list[dict], names: list[str]) -> dict:
    """Per finding: n boxes, hit rates of the model and of the random baseline."""
    keys = [f"iobb_{t}" for t in IOBB_THRESHOLDS] + [f"iou_{t}" for t in IOU_THRESHOLDS] + ["pointing"]
    table = {}
    for j, name in enumerate(names):
        mine = [r for r in records if r["label"] == j]
        if not mine:
            continue
        pairs = {}   # image -> (its truths of this finding, the finding's predicted boxes)
        for r in mine:
            pairs.setdefault(r["image_id"], ([], [tuple(p) for p in r["predicted"]]))[0].append(tuple(r["box"]))
        afp = [false_positives(truths, predicted) for truths, predicted in pairs.values()]
        table[name] = {"boxes": len(mine), "images": len(pairs),
                       "model": {k: float(np.mean([r[k] for r in mine])) for k in keys},
                       "random": {k: float(np.mean([r["random"][k] for r in mine])) for k in keys},
                       "afp": {k: float(np.mean([a[k] for a in afp])) for k in afp[0]}}
    return table
