"""Weakly supervised localization: Grad-CAM heatmaps, boxes from them, and their scores.

Method
------
* Class activation maps from gradients at the last convolutional feature map (found
  automatically, or named with ``--layer``), ReLU'd, upsampled (bilinear) to the image
  and scaled to a maximum of 1.  ``--cam gradcam`` is Grad-CAM (Selvaraju et al. 2017):
  the gradient averaged over space weights each channel.  ``--cam hirescam`` (the
  default) is HiResCAM (Draelos & Carin 2020): gradient times activation element-wise,
  summed over channels.  For a head that global-average-pools the feature map (CheXNet)
  the two are the same map; for a Flatten + Dense head (tfxr's small CNNs) averaging the
  gradient discards where each weight looks: on the phantoms (a 12-epoch tb_cnn, 122
  image-finding pairs) Grad-CAM's maxima fell on the image border (pointing game 0 of 122) while
  HiResCAM's fell inside a box of the finding in 40 of 122 (random points in the lungs: about 1 in 10).
* Boxes: the heatmap is cut at a fraction ``t`` of its maximum and every connected
  region (8-connectivity) gives one box, as Wang et al. 2017 turn heatmaps into several
  boxes.  ``t`` is chosen per finding on the **validation** split (the grid value with the
  best mean IoU of the best-matching box), never on the scored split; a finding without
  validation boxes uses the value chosen over all findings.
* Scores, per finding, over the ground-truth boxes of the scored split (the heatmap of a
  box's own finding, whatever the model predicts -- as in Wang et al. 2017):
  accuracy at T(IoBB) in {0.1, 0.25, 0.5, 0.75, 0.9} (a box is found when some predicted
  box has intersection / predicted-box area > T, Wang et al.'s Table 4), IoU hit rates at
  0.1..0.5, and the pointing game (the heatmap's maximum falls inside the box).  Per
  (image, finding) pair, the false positives at each T(IoBB): predicted boxes whose IoBB
  with every ground-truth box of that finding in that image is <= T; their mean over the
  pairs is the AFP of Wang et al.'s Table 4 (which increases with T, as theirs does).
* Baseline: the same predicted boxes moved to random positions (centres drawn inside the
  lung fields on the phantoms; inside the image otherwise), 20 draws averaged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from tfxr import plots
from tfxr.config import option, seed_option
from tfxr.data.records import read_examples
from tfxr.errors import ConfigError, ManifestError
from tfxr.io import path_in

IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)
IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
CAM_METHODS = ("hirescam", "gradcam")
BOX_THRESHOLD_GRID = tuple(round(0.1 * k, 1) for k in range(1, 10))

#: Wang et al. 2017, "ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on
#: Weakly-Supervised Classification and Localization of Common Thorax Diseases" (CVPR),
#: Table 4: localization accuracy ("Acc.") at each T(IoBB), ResNet-50 heatmaps, on NIH's
#: box-annotated images.
WANG2017_TABLE4_ACC = {
    0.1: {"Atelectasis": 0.7277, "Cardiomegaly": 0.9931, "Effusion": 0.7124, "Infiltration": 0.7886,
          "Mass": 0.4352, "Nodule": 0.1645, "Pneumonia": 0.7500, "Pneumothorax": 0.4591},
    0.25: {"Atelectasis": 0.5500, "Cardiomegaly": 0.9794, "Effusion": 0.5424, "Infiltration": 0.5772,
           "Mass": 0.2823, "Nodule": 0.0506, "Pneumonia": 0.5583, "Pneumothorax": 0.3469},
    0.5: {"Atelectasis": 0.2833, "Cardiomegaly": 0.8767, "Effusion": 0.3333, "Infiltration": 0.4227,
          "Mass": 0.1411, "Nodule": 0.0126, "Pneumonia": 0.3833, "Pneumothorax": 0.1836},
    0.75: {"Atelectasis": 0.1666, "Cardiomegaly": 0.7260, "Effusion": 0.2418, "Infiltration": 0.3252,
           "Mass": 0.1176, "Nodule": 0.0126, "Pneumonia": 0.2583, "Pneumothorax": 0.1020},
    0.9: {"Atelectasis": 0.1333, "Cardiomegaly": 0.6849, "Effusion": 0.2091, "Infiltration": 0.2520,
          "Mass": 0.0588, "Nodule": 0.0126, "Pneumonia": 0.2416, "Pneumothorax": 0.0816},
}

#: The same table's "AFP" rows: the average number of false-positive boxes per image.
WANG2017_TABLE4_AFP = {
    0.1: {"Atelectasis": 0.8323, "Cardiomegaly": 0.3506, "Effusion": 0.7998, "Infiltration": 0.5589,
          "Mass": 0.6423, "Nodule": 0.6047, "Pneumonia": 0.9055, "Pneumothorax": 0.4776},
    0.25: {"Atelectasis": 0.9167, "Cardiomegaly": 0.4553, "Effusion": 0.8598, "Infiltration": 0.6077,
           "Mass": 0.6707, "Nodule": 0.6158, "Pneumonia": 0.9614, "Pneumothorax": 0.5000},
    0.5: {"Atelectasis": 1.0203, "Cardiomegaly": 0.5630, "Effusion": 0.9268, "Infiltration": 0.6585,
          "Mass": 0.6941, "Nodule": 0.6189, "Pneumonia": 1.0132, "Pneumothorax": 0.5285},
    0.75: {"Atelectasis": 1.0619, "Cardiomegaly": 0.6616, "Effusion": 0.9603, "Infiltration": 0.6921,
           "Mass": 0.7043, "Nodule": 0.6199, "Pneumonia": 1.0569, "Pneumothorax": 0.5396},
    0.9: {"Atelectasis": 1.0752, "Cardiomegaly": 0.7226, "Effusion": 0.9797, "Infiltration": 0.7124,
          "Mass": 0.7144, "Nodule": 0.6199, "Pneumonia": 1.0732, "Pneumothorax": 0.5437},
}

Box = tuple  # (xmin, ymin, xmax, ymax), normalised 0..1


# --------------------------------------------------------------------------- box geometry
def box_area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection(a: Box, b: Box) -> float:
    return box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def iobb(truth: Box, predicted: Box) -> float:
    """Intersection over the predicted (detected) box's area, Wang et al.'s IoBB."""
    area = box_area(predicted)
    return intersection(truth, predicted) / area if area > 0 else 0.0


def iou(a: Box, b: Box) -> float:
    inter = intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def boxes_from_heatmap(heatmap: np.ndarray, threshold: float) -> list[Box]:
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


def inside(point: tuple[float, float], box: Box) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


# --------------------------------------------------------------------------- Grad-CAM
def find_last_conv_layer(model) -> str:
    """Name of the last convolution layer (searching nested models too)."""
    def convs(m):
        for layer in m.layers:
            if hasattr(layer, "layers"):
                yield from convs(layer)
            elif "Conv" in type(layer).__name__ and len(layer.output.shape) == 4:
                yield layer
    found = list(convs(model))
    if not found:
        raise ConfigError(f"model {model.name}: no convolution layer for Grad-CAM; name one with --layer")
    return found[-1].name


class GradCAM:
    """Grad-CAM heatmaps of a Keras model at one 4-D layer (top level or in a nested model)."""

    def __init__(self, model, layer: str = "", method: str = "hirescam"):
        import keras

        if method not in CAM_METHODS:
            raise ConfigError(f"--cam {method}: unknown (allowed: {', '.join(CAM_METHODS)})")
        self.method = method
        self.model = model
        self.layer = layer or find_last_conv_layer(model)
        owner = self._owner(model, self.layer)
        if owner is model:
            self.stages = [keras.Model(model.inputs, [model.get_layer(self.layer).output, model.output])]
            self.before, self.after = [], []
        else:   # a nested backbone (CheXNet's DenseNet121): the outer graph before and after it
            node = owner._inbound_nodes[-1]
            self.before = [keras.Model(model.inputs, node.input_tensors[0])]
            self.after = [keras.Model(node.output_tensors[0], model.outputs[0])]
            self.stages = [keras.Model(owner.inputs, [owner.get_layer(self.layer).output, owner.output])]
        shape = self.stages[0].outputs[0].shape
        if len(shape) != 4:
            raise ConfigError(f"--layer {self.layer}: output shape {tuple(shape)} is not a 4-D feature map")

    @staticmethod
    def _owner(model, name: str):
        for layer in model.layers:
            if layer.name == name:
                return model
        for layer in model.layers:
            if hasattr(layer, "layers"):
                try:
                    layer.get_layer(name)
                    return layer
                except ValueError:
                    continue
        raise ConfigError(f"--layer {name}: no such layer in model {model.name}")

    def _forward(self, x):
        for layer in self.before:
            x = layer(x, training=False)
        features, out = self.stages[0](x, training=False)
        for layer in self.after:
            out = layer(out, training=False)
        return features, out

    def __call__(self, images: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray]:
        """(heatmaps (N, H, W) in [0, 1] at the image size, probabilities (N, labels))."""
        import tensorflow as tf

        x = tf.convert_to_tensor(images, tf.float32)
        with tf.GradientTape() as tape:
            features, out = self._forward(x)
            target = tf.reduce_sum(out[:, label])   # images are independent: per-image gradients
        grads = tape.gradient(target, features)
        if self.method == "gradcam":
            grads = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(grads * features, axis=-1, keepdims=True))
        cam = tf.image.resize(cam, images.shape[1:3], method="bilinear")[..., 0].numpy()
        peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
        return np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0), np.asarray(out)


# --------------------------------------------------------------------------- data with boxes
@dataclass
class BoxedImage:
    image_id: str
    image: np.ndarray                 # (H, W, C) float [0, 1]
    labels: np.ndarray
    boxes: list[tuple[int, Box]] = field(default_factory=list)   # (label index, box)


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


def heatmaps_for(cam: GradCAM, items: list[BoxedImage], labels: list[int], batch_size: int = 32):
    """{(image index, label): heatmap} for each requested label of each item, and probabilities."""
    heat, probs = {}, {}
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        x = np.stack([it.image for it in chunk])
        for label in labels:
            wanted = [i for i, it in enumerate(chunk) if label in {b[0] for b in it.boxes}]
            if not wanted:
                continue
            maps, p = cam(x[wanted], label)
            for local, i in enumerate(wanted):
                heat[(start + i, label)] = maps[local]
                probs[start + i] = p[local]
    return heat, probs


# --------------------------------------------------------------------------- threshold + scoring
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


def score_box(truth: Box, predicted: list[Box], point: tuple[float, float] | None) -> dict:
    """Hit flags of one ground-truth box against the boxes of its finding's heatmap."""
    out = {f"iobb_{t}": bool(any(iobb(truth, p) > t for p in predicted)) for t in IOBB_THRESHOLDS}
    out.update({f"iou_{t}": bool(any(iou(truth, p) > t for p in predicted)) for t in IOU_THRESHOLDS})
    if point is not None:
        out["pointing"] = bool(inside(point, truth))
    return out


def false_positives(truths: list[Box], predicted: list[Box]) -> dict[str, int]:
    """Per T(IoBB): predicted boxes of one (image, finding) that match none of its truths."""
    return {f"fp_{t}": sum(1 for p in predicted if all(iobb(truth, p) <= t for truth in truths))
            for t in IOBB_THRESHOLDS}


def random_placement(box: Box, region: np.ndarray | None, rng: np.random.Generator) -> Box:
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


# --------------------------------------------------------------------------- phantom lung fields
def phantom_lung_fields(manifest: dict, image_ids: list[str], size: int) -> dict[str, np.ndarray]:
    """Lung-field masks of phantom images (from the phantom's own anatomy), else {}.

    Only for data written by ``--source synthetic``: the image id carries the phantom's
    index and the manifest its seed, task and prevalence.
    """
    source = manifest.get("source", {})
    if source.get("name") != "synthetic":
        return {}
    from tfxr.data import synthetic

    seed, task, prevalence = int(source["seed"]), source["task"], float(source["prevalence"])
    masks = {}
    for image_id in image_ids:
        index = int(image_id.rsplit("_", 1)[-1])
        masks[image_id] = synthetic.lung_field_mask(seed, index, size, task, prevalence)
    return masks


# --------------------------------------------------------------------------- report
def _pct(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def markdown_report(result: dict) -> str:
    """``report.md``: T(IoBB) accuracy beside Wang et al. 2017 Table 4, IoU hits, pointing game."""
    table = result["findings"]
    lines = [f"# Localization of `{result['model']}` on `{result['split']}`", "",
             f"{result['cam']} heatmaps at layer `{result['layer']}`; boxes from each heatmap cut at a fraction of its "
             + (f"maximum chosen per finding on `{result['threshold_split']}` (best mean IoU), never on the "
                "scored split. " if result["threshold_split"] else
                f"maximum fixed in advance at {result['box_threshold']} (`--box-threshold`), not chosen on any "
                "boxes. ")
             + f"{result['boxes']} ground-truth boxes in {result['images']} images. "
             "Random: the same boxes moved to random positions "
             f"({result['random_region']}), 20 draws averaged.", ""]
    def iobb_rows(published: dict, cell, first) -> list[str]:
        """One row per finding: ``first(row)`` cells, then ``cell(row, T)`` beside Wang's value."""
        rows = []
        for name, row in table.items():
            cells = [cell(row, t) + (f"; Wang {published[t][name]:.4f}" if name in published[t] else "")
                     for t in IOBB_THRESHOLDS]
            rows.append(f"| {name} | {first(name, row)} | " + " | ".join(cells) + " |")
        return rows

    thresholds = " | ".join(f"T={t}" for t in IOBB_THRESHOLDS)
    lines += ["## Accuracy at T(IoBB) (Wang et al. 2017, Table 4 definition)", "",
              f"| finding | boxes | box threshold | {thresholds} |", "|---|---:|---:|" + "---:|" * len(IOBB_THRESHOLDS)]
    lines += iobb_rows(WANG2017_TABLE4_ACC,
                       lambda row, t: f"{row['model'][f'iobb_{t}']:.3f} (random {row['random'][f'iobb_{t}']:.3f})",
                       lambda name, row: f"{row['boxes']} | {result['thresholds'][name]:.1f}")
    lines += ["", "## Average false positives per image (AFP) at T(IoBB) (Wang et al. 2017, Table 4)", "",
              f"| finding | images | {thresholds} |", "|---|---:|" + "---:|" * len(IOBB_THRESHOLDS)]
    lines += iobb_rows(WANG2017_TABLE4_AFP, lambda row, t: f"{row['afp'][f'fp_{t}']:.3f}",
                       lambda name, row: f"{row['images']}")
    lines += ["", "## IoU hit rate and pointing game", "",
              "| finding | " + " | ".join(f"IoU>{t}" for t in IOU_THRESHOLDS) + " | pointing game |",
              "|---|" + "---:|" * (len(IOU_THRESHOLDS) + 1)]
    for name, row in table.items():
        cells = [f"{row['model'][f'iou_{t}']:.3f} ({row['random'][f'iou_{t}']:.3f})" for t in IOU_THRESHOLDS]
        cells.append(f"{row['model']['pointing']:.3f} ({row['random']['pointing']:.3f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Values in brackets: the random-placement baseline.", "",
              "## Published reference: Wang et al. 2017 (ChestX-ray8, CVPR), Table 4", "",
              "Their ResNet-50 weakly supervised heatmaps (transition layer) on NIH's "
              "box-annotated images (BBox_List_2017); their boxes come from their own heatmap "
              "thresholding, so compare the trend, not the third digit.", "",
              "| T(IoBB) | " + " | ".join(WANG2017_TABLE4_ACC[0.1]) + " |",
              "|---|" + "---:|" * len(WANG2017_TABLE4_ACC[0.1])]
    for t, row in WANG2017_TABLE4_ACC.items():
        lines.append(f"| {t} Acc. | " + " | ".join(f"{v:.4f}" for v in row.values()) + " |")
        lines.append(f"| {t} AFP | " + " | ".join(f"{v:.4f}" for v in WANG2017_TABLE4_AFP[t].values()) + " |")
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def save_overlay(path: str, image: np.ndarray, heatmap: np.ndarray, predicted: list[Box],
                 truths: list[Box], title: str) -> None:
    """The radiograph with the heatmap (jet, 40 %), predicted boxes (red) and truth (green), PNG."""
    size = image.shape[0]
    fig, ax = plots.subplots(figsize=(4, 4.3), dpi=100)
    ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
    ax.imshow(heatmap, cmap="jet", alpha=0.4, vmin=0, vmax=1)
    for boxes, colour in ((truths, "lime"), (predicted, "red")):
        for b in boxes:
            plots.box(ax, b[0] * size - 0.5, b[1] * size - 0.5, b[2] * size - 0.5, b[3] * size - 0.5, colour)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    plots.save_png(fig, path)


# --------------------------------------------------------------------------- the whole run
@dataclass
class LocalizeConfig:
    model: str = ""            # a .keras file or a run directory (its best.keras)
    data: str = ""             # TFRecord directory with bbox/* features
    split: str = option("test", choices=("train", "val", "test"))        # the scored split
    threshold_split: str = option("val", choices=("train", "val", "test"))  # box thresholds chosen here
    box_threshold: float = option(0.0, minimum=0.0, maximum=0.9)   # > 0: this fixed cut, no threshold split
    out: str = ""              # default: <run dir>/localize-<split>
    layer: str = ""            # CAM layer ('' = the last convolution)
    cam: str = option("hirescam", choices=CAM_METHODS)   # heatmap method (see the module doc)
    overlays: int = option(12, minimum=0)     # overlay PNGs to write (0 = none)
    batch_size: int = option(32, minimum=1)
    seed: int = seed_option()
    trust_model_file: bool = False   # let Keras load a model file of no tfxr run (safe_mode on)


def localize(cfg: LocalizeConfig) -> dict:
    """Grad-CAM localization of ``cfg.model`` scored on ``cfg.split``; rank 0 writes the outputs."""
    import os

    from tfxr import distributed as dist
    from tfxr.evaluation.classifier import open_model_and_data
    from tfxr.io import write_json, write_text

    if not cfg.box_threshold and cfg.threshold_split == cfg.split:
        raise ConfigError(f"--threshold-split {cfg.threshold_split}: box thresholds must be chosen on "
                          f"another split than the scored one (--split {cfg.split})")
    path, model, size, channels, manifest = open_model_and_data(cfg.model, cfg.data, cfg.trust_model_file)
    rank, world = dist.rank(), dist.size()
    names = list(manifest["label_names"])
    cam = GradCAM(model, cfg.layer, cfg.cam)
    labels = list(range(len(names)))

    if cfg.box_threshold:
        thresholds = {j: cfg.box_threshold for j in labels}
    else:
        thresholds = chosen_box_thresholds(cfg, cam, manifest, size, channels, labels)

    items = read_boxed_images(cfg.data, cfg.split, manifest, size, channels, rank, world)
    heat, _ = heatmaps_for(cam, items, labels, cfg.batch_size)
    regions = phantom_lung_fields(manifest, [it.image_id for it in items], size)
    records = score_items(items, heat, thresholds, regions, seed=cfg.seed + rank)
    records = dist.allgather_records(records, key=lambda r: (r["image_id"], r["label"]))
    images = sum(dist.allgather_records([len(items)]))
    if rank != 0:
        return {}
    if not records:
        raise ManifestError(f"{cfg.data}: no ground-truth boxes in the '{cfg.split}' split")
    out = cfg.out or os.path.join(os.path.dirname(os.path.abspath(path)), f"localize-{cfg.split}")
    os.makedirs(out, exist_ok=True)
    result = {"model": os.path.abspath(path), "data": os.path.abspath(cfg.data), "split": cfg.split,
              "threshold_split": "" if cfg.box_threshold else cfg.threshold_split,
              "box_threshold": cfg.box_threshold or None, "layer": cam.layer, "cam": cam.method,
              "images": images, "boxes": len(records),
              "thresholds": {names[j]: t for j, t in thresholds.items()},
              "random_region": "centres inside the phantom's lung fields" if regions
              else "centres anywhere in the image (no lung-field masks for this data)",
              "findings": summarise(records, names)}
    if len(records) < 50:
        result["note"] = (f"Only {len(records)} ground-truth boxes in this split: these rates carry "
                          f"wide uncertainty (e.g. NIH's sample has few boxed images).")
    write_json(os.path.join(out, "localization.json"), {**result, "boxes_scored": records})
    write_text(os.path.join(out, "report.md"), markdown_report(result))
    if cfg.overlays:
        write_overlays(cam, items[:cfg.overlays], names, thresholds, os.path.join(out, "overlays"))
    result["out"] = out
    return result


def chosen_box_thresholds(cfg: LocalizeConfig, cam: GradCAM, manifest: dict, size: int, channels: int,
                          labels: list[int]) -> dict[int, float]:
    """Per-finding box thresholds chosen on ``cfg.threshold_split`` (its boxes from every rank)."""
    from tfxr import distributed as dist

    rank, world = dist.rank(), dist.size()
    val = read_boxed_images(cfg.data, cfg.threshold_split, manifest, size, channels, rank, world)
    val_heat, _ = heatmaps_for(cam, val, labels, cfg.batch_size)
    mine = [(item, {j: val_heat[(i, j)] for j in labels if (i, j) in val_heat}) for i, item in enumerate(val)]
    gathered = dist.allgather_records(mine)   # rank order, as the thresholds were chosen before
    all_val = [item for item, _ in gathered]
    all_heat = {(i, j): h for i, (_, heat) in enumerate(gathered) for j, h in heat.items()}
    if not all_val:
        raise ManifestError(f"{cfg.data}: no ground-truth boxes in the '{cfg.threshold_split}' split to "
                            f"choose box thresholds on (or fix one in advance with --box-threshold, e.g. 0.5)")
    return choose_box_thresholds(all_val, all_heat, len(labels))


def write_overlays(cam: GradCAM, items: list[BoxedImage], names: list[str], thresholds: dict,
                   folder: str) -> list[str]:
    """One PNG per (image, finding the model predicts at p >= 0.5, else its top finding)."""
    import os

    os.makedirs(folder, exist_ok=True)
    written = []
    for it in items:
        _, probs = cam(it.image[None], 0)
        predicted = [j for j in range(len(names)) if probs[0, j] >= 0.5] or [int(np.argmax(probs[0]))]
        for j in predicted:
            heatmap = cam(it.image[None], j)[0][0]
            boxes = boxes_from_heatmap(heatmap, thresholds[j])
            truths = [b for lab, b in it.boxes if lab == j]
            path = path_in(folder, f"{it.image_id}_{names[j]}", ".png")   # ids are data: no '../'
            title = "".join(ch if ch.isprintable() else "?" for ch in f"{it.image_id}: {names[j]}")
            title = title.replace("$", r"\$") + f" p={probs[0, j]:.2f}"   # no mathtext from ids
            save_overlay(path, it.image, heatmap, boxes, truths, title)
            written.append(path)
    return written
