"""Weakly supervised localization: class activation maps of a classifier, boxes cut from
them, and their scores against the ground-truth boxes (``python -m tfxr.localize``).

The pieces live apart: the maps in :mod:`tfxr.evaluation.cam`, box geometry and scoring in
:mod:`tfxr.evaluation.boxes`, Wang et al.'s published Table 4 in
:mod:`tfxr.evaluation.published`; this module runs them over a split and writes the report.

Method
------
* Heatmaps: HiResCAM by default, Grad-CAM with ``--cam gradcam`` (:mod:`tfxr.evaluation.cam`).
  For tfxr's small CNNs (a Flatten + Dense head) the choice matters: on the phantoms (a
  12-epoch tb_cnn, 122 image-finding pairs) Grad-CAM's maxima fell on the image border
  (pointing game 0 of 122) while HiResCAM's fell inside a box of the finding in 40 of 122
  (random points in the lungs: about 1 in 10).
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

import os

import numpy as np

from tfxr import distributed as dist
from tfxr import plots
from tfxr.configs import LocalizeConfig
from tfxr.data import phantom_drawing
from tfxr.errors import ConfigError, ManifestError
from tfxr.evaluation.boxes import (IOBB_THRESHOLDS, IOU_THRESHOLDS, BoxCoords, BoxedImage, boxes_from_heatmap,
                                   choose_box_thresholds, read_boxed_images, score_items, summarise)
from tfxr.evaluation.cam import ClassActivationMaps
from tfxr.evaluation.classifier import open_model_and_data
from tfxr.evaluation.published import WANG2017_TABLE4_ACC, WANG2017_TABLE4_AFP
from tfxr.files import path_in, write_json, write_text


def heatmaps_for(cam: ClassActivationMaps, items: list[BoxedImage], labels: list[int], batch_size: int = 32):
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


# --------------------------------------------------------------------------- phantom lung fields
def phantom_lung_fields(manifest: dict, image_ids: list[str], size: int) -> dict[str, np.ndarray]:
    """Lung-field masks of phantom images (from the phantom's own anatomy), else {}.

    Only for data written by ``--source phantoms`` (manifest source name ``synthetic``, its
    former name, or ``phantoms``): the image id carries the phantom's index and the manifest
    its seed, task and prevalence.
    """
    source = manifest.get("source", {})
    if source.get("name") not in ("phantoms", "synthetic"):
        return {}
    seed, task, prevalence = int(source["seed"]), source["task"], float(source["prevalence"])
    masks = {}
    for image_id in image_ids:
        index = int(image_id.rsplit("_", 1)[-1])
        masks[image_id] = phantom_drawing.lung_field_mask(seed, index, size, task, prevalence)
    return masks


# --------------------------------------------------------------------------- report
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


def save_overlay(path: str, image: np.ndarray, heatmap: np.ndarray, predicted: list[BoxCoords],
                 truths: list[BoxCoords], title: str) -> None:
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
def localize(cfg: LocalizeConfig) -> dict:
    """CAM localization of ``cfg.model`` scored on ``cfg.split``; rank 0 writes the outputs."""
    if not cfg.box_threshold and cfg.threshold_split == cfg.split:
        raise ConfigError(f"--threshold-split {cfg.threshold_split}: box thresholds must be chosen on "
                          f"another split than the scored one (--split {cfg.split})")
    path, model, size, channels, manifest = open_model_and_data(cfg.model, cfg.data, cfg.trust_model_file)
    rank, world = dist.rank(), dist.size()
    names = list(manifest["label_names"])
    cam = ClassActivationMaps(model, cfg.layer, cfg.cam)
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


def chosen_box_thresholds(cfg: LocalizeConfig, cam: ClassActivationMaps, manifest: dict, size: int, channels: int,
                          labels: list[int]) -> dict[int, float]:
    """Per-finding box thresholds chosen on ``cfg.threshold_split`` (its boxes from every rank)."""
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


def write_overlays(cam: ClassActivationMaps, items: list[BoxedImage], names: list[str], thresholds: dict,
                   folder: str) -> list[str]:
    """One PNG per (image, finding the model predicts at p >= 0.5, else its top finding)."""
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
