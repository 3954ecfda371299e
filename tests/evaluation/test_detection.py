"""Detection metrics: the mAP wrapper against pycocotools run directly, RSNA and FROC by hand."""
import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tfxr.evaluation.detection import (bootstrap_ci, box_fit, coco_ap, detection_report, froc, random_detections,
                                       rsna_score)

SIZE = 200   # pixels of the hand-built COCO files (the wrapper uses its own nominal size)


def direct(truths, detections, num_classes, cat=None):
    """pycocotools on hand-written COCO dicts (pixel xywh), no tfxr code: (mAP@.5, mAP@[.5:.95])."""
    images = [{"id": 10 + i} for i in range(len(truths))]
    anns, n = [], 0
    for i, boxes in enumerate(truths):
        for label, (x0, y0, x1, y1) in boxes:
            n += 1
            w, h = (x1 - x0) * SIZE, (y1 - y0) * SIZE
            anns.append({"id": n, "image_id": 10 + i, "category_id": 7 + label, "bbox": [x0 * SIZE, y0 * SIZE, w, h],
                         "area": w * h, "iscrowd": 0})
    res = [{"image_id": 10 + i, "category_id": 7 + label, "score": s,
            "bbox": [x0 * SIZE, y0 * SIZE, (x1 - x0) * SIZE, (y1 - y0) * SIZE]}
           for i, dets in enumerate(detections) for label, (x0, y0, x1, y1), s in dets]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": 7 + k} for k in range(num_classes)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(res), "bbox")
        if cat is not None:
            ev.params.catIds = [7 + cat]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[1], ev.stats[0]


A, B, C = (0.1, 0.1, 0.4, 0.5), (0.5, 0.5, 0.8, 0.9), (0.2, 0.6, 0.3, 0.7)
NEAR_A = (0.12, 0.1, 0.42, 0.52)      # IoU with A about 0.81
CASES = {
    "perfect": ([[(0, A)], [(0, B), (0, C)]], [[(0, A, 0.9)], [(0, B, 0.8), (0, C, 0.7)]]),
    "empty image": ([[(0, A)], [], [(0, B)]], [[(0, A, 0.9)], [], [(0, B, 0.6)]]),
    "one miss": ([[(0, A)], [(0, B), (0, C)]], [[(0, A, 0.9)], [(0, B, 0.8)]]),
    "one false positive": ([[(0, A)], [(0, B)]], [[(0, A, 0.5), (0, C, 0.95)], [(0, B, 0.6)]]),
    "loose boxes": ([[(0, A)], [(0, B)]], [[(0, NEAR_A, 0.9)], [(0, (0.5, 0.45, 0.8, 0.85), 0.8)]]),
    "crowd of overlapping boxes": (
        [[(0, (0.10 + 0.03 * k, 0.10, 0.40 + 0.03 * k, 0.40)) for k in range(5)]],
        [[(0, (0.10 + 0.025 * k, 0.11, 0.40 + 0.025 * k, 0.41), 0.9 - 0.1 * k) for k in range(7)]]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_map_agrees_with_pycocotools(name):
    truths, detections = CASES[name]
    ours = coco_ap(truths, detections, ["finding"])
    ap50, ap = direct(truths, detections, 1)
    assert ours["map_50"] == pytest.approx(ap50, abs=1e-9)
    assert ours["map_50_95"] == pytest.approx(ap, abs=1e-9)
    assert ours["per_class"]["finding"]["ap_50"] == pytest.approx(ap50, abs=1e-9)
    if name == "perfect":
        assert ours["map_50"] == pytest.approx(1.0) and ours["map_50_95"] == pytest.approx(1.0)
    if name == "one miss":   # recall stops at 2/3 with precision 1: 101-point interpolation
        assert ours["map_50"] == pytest.approx(67 / 101)


def test_per_class_ap_and_classes_without_boxes():
    truths = [[(0, A), (1, B)], [(1, C)]]
    detections = [[(0, A, 0.9), (1, (0.0, 0.0, 0.1, 0.1), 0.95), (1, B, 0.5)], [(1, C, 0.4)]]
    ours = coco_ap(truths, detections, ["a", "b", "c"])
    for k, name in enumerate("ab"):
        ap50, ap = direct(truths, detections, 3, cat=k)
        assert ours["per_class"][name]["ap_50"] == pytest.approx(ap50)
        assert ours["per_class"][name]["ap_50_95"] == pytest.approx(ap)
    assert math.isnan(ours["per_class"]["c"]["ap_50"]) and ours["per_class"]["c"]["boxes"] == 0
    assert ours["map_50"] == pytest.approx(direct(truths, detections, 3)[0])


def test_no_detections_at_all_is_zero():
    ours = coco_ap([[(0, A)], []], [[], []], ["finding"])
    assert ours["map_50"] == 0.0 and ours["map_50_95"] == 0.0


def test_rsna_metric_by_hand():
    gt = (0.0, 0.0, 0.5, 0.5)
    iou62 = (0.0, 0.0, 0.5, 0.31)        # IoU 0.62: a hit at thresholds 0.40 .. 0.60 (5 of 8)
    far = (0.7, 0.7, 0.9, 0.9)
    one = rsna_score([[(0, gt)]], [[(0, iou62, 0.9)]])
    assert one["score"] == pytest.approx(5 / 8)
    # no truth and no prediction: skipped; no truth with predictions: 0; truth without: 0
    mixed = rsna_score([[(0, gt)], [], [], [(0, gt)]], [[(0, iou62, 0.9)], [], [(0, far, 0.8)], []])
    assert mixed["images_scored"] == 3 and mixed["per_image"][1] is None
    assert mixed["score"] == pytest.approx((5 / 8 + 0 + 0) / 3)
    # two truths, three predictions (exact, IoU 0.62, a false positive):
    # t <= 0.60: TP 2, FP 1, FN 0 -> 2/3; t > 0.62: TP 1, FP 2, FN 1 -> 1/4
    gt2 = (0.5, 0.5, 1.0, 1.0)
    two = rsna_score([[(0, gt), (0, gt2)]], [[(0, gt2, 0.9), (0, iou62, 0.8), (0, far, 0.7)]])
    assert two["score"] == pytest.approx((5 * 2 / 3 + 3 * 1 / 4) / 8)
    # the score cut drops the false positive: t <= 0.60 -> 1, t > 0.62 -> TP 1, FP 1, FN 1 -> 1/3
    cut = rsna_score([[(0, gt), (0, gt2)]], [[(0, gt2, 0.9), (0, iou62, 0.8), (0, far, 0.7)]], min_score=0.75)
    assert cut["score"] == pytest.approx((5 * 1 + 3 / 3) / 8)
    # one prediction cannot match two truths; the higher-scored one is matched first
    greedy = rsna_score([[(0, gt)]], [[(0, iou62, 0.5), (0, gt, 0.9)]])
    assert greedy["score"] == pytest.approx(1 / 2)   # TP 1, FP 1, FN 0 at every threshold


def test_froc_by_hand():
    truths = [[(0, A)], [(0, B)]]
    detections = [[(0, A, 0.9), (0, C, 0.8), (0, A, 0.75)],      # hit, FP, duplicate hit (ignored)
                  [(0, (0.0, 0.0, 0.05, 0.05), 0.7), (0, B, 0.6)]]   # FP, hit
    result = froc(truths, detections)
    # curve: 1 TP at 0 FP/image, 0.5 FP/image after two FPs at 0.5, then the second TP at 1.0
    assert result["sensitivity"] == {0.125: 0.5, 0.25: 0.5, 0.5: 0.5, 1.0: 1.0, 2.0: 1.0, 4.0: 1.0, 8.0: 1.0}
    assert result["mean_sensitivity"] == pytest.approx((3 * 0.5 + 4 * 1.0) / 7)


def test_random_boxes_are_a_low_floor():
    rng = np.random.default_rng(0)
    truths = []
    for _ in range(40):
        x, y = rng.uniform(0.1, 0.6, 2)
        truths.append([(0, (x, y, x + 0.15, y + 0.2))])
    floor = random_detections(truths, [(0.15, 0.2)], per_image=3, seed=1)
    assert all(len(d) == 3 and all(0 <= c <= 1 for c in d[0][1]) for d in floor)
    assert coco_ap(truths, floor, ["x"])["map_50"] < 0.1
    perfect = [[(0, box, 1.0) for _, box in t] for t in truths]
    assert coco_ap(truths, perfect, ["x"])["map_50"] == pytest.approx(1.0)


def test_bootstrap_ci_resamples_images():
    # 40 images with one box each; the first 20 found exactly, the other 20 with no detection:
    # per resample the RSNA score and the sensitivity are the fraction of found images drawn,
    # Binomial(40, 0.5) / 40, whose 95 % interval is about 0.5 +- 1.96 * sqrt(0.25 / 40) = +-0.155
    truths = [[(0, (0.1, 0.1, 0.4, 0.5))] for _ in range(40)]
    dets = [[(0, (0.1, 0.1, 0.4, 0.5), 0.9)] if i < 20 else [] for i in range(40)]
    ci = bootstrap_ci(truths, dets, ["x"], min_score=0.5, n=150, seed=3)   # pycocotools per resample: kept few
    assert ci["resamples"] == 150
    for key in ("rsna", "sens@8", "froc_mean"):
        low, high = ci[key]
        assert low == pytest.approx(0.5 - 0.155, abs=0.06) and high == pytest.approx(0.5 + 0.155, abs=0.06), key
    # AP@0.5 of "half found, every detection right" is 0.5 by pycocotools: the interval holds it
    assert coco_ap(truths, dets, ["x"])["map_50"] == pytest.approx(0.5, abs=0.01)
    assert ci["map_50"][0] < 0.5 < ci["map_50"][1]
    assert bootstrap_ci(truths[:10], dets[:10], ["x"], 0.5, n=12, seed=3) == \
        bootstrap_ci(truths[:10], dets[:10], ["x"], 0.5, n=12, seed=3)
    # perfect detections: a degenerate interval at 1; no boxes at all: undefined
    perfect = [[(0, b, 1.0) for _, b in t] for t in truths]
    assert bootstrap_ci(truths[:10], perfect[:10], ["x"], 0.5, n=12)["map_50"] == (1.0, 1.0)
    empty = bootstrap_ci([[] for _ in range(5)], [[] for _ in range(5)], ["x"], 0.5, n=30)
    assert all(math.isnan(v) for v in empty["map_50"] + empty["sens@1"])


def test_detection_report_prints_the_intervals():
    truths = [[(0, (0.1, 0.1, 0.4, 0.5))] for _ in range(12)]
    dets = [[(0, (0.1, 0.1, 0.4, 0.5), 0.9)] if i < 6 else [] for i in range(12)]
    from tfxr.evaluation.detection import all_metrics
    m = {**all_metrics(truths, dets, ["x"], 0.5, bootstrap=30, seed=0), "min_score_chosen_on_threshold_split": 0.5}
    result = {"split": "test", "data": "d", "images": 12, "images_with_boxes": 12, "boxes": 12, "detector": "r",
              "threshold_split": "val", "random_region": "anywhere", "methods": {"detector": m},
              "label_names": ["x"], "cam_model": None, "seed001_map_50": 0.149}
    text = detection_report(result)
    low, high = m["ci95"]["rsna"]
    assert "percentile bootstrap over the 12 images (30 resamples" in text
    assert f"| detector | [{m['ci95']['map_50'][0]:.3f}, {m['ci95']['map_50'][1]:.3f}] | " in text
    assert f"[{low:.3f}, {high:.3f}]" in text and low < 0.5 < high
    assert "see the bootstrap intervals above" in text
    # half the images have the exact box: 1 prediction on half the images, reachable for half the boxes
    assert "| detector | 0.5 | 0.1200 | 0.500 | 0.500 |" in text and "ground truth: 0.1200" in text


def test_box_fit_by_hand():
    """Two images: one truth box matched exactly by a big-enough prediction and missed by a
    speck inside it; one image with a truth box and no prediction of its class."""
    truths = [[(0, (0.0, 0.0, 0.5, 0.5))], [(0, (0.5, 0.5, 0.7, 0.7))]]
    dets = [[(0, (0.0, 0.0, 0.5, 0.4), 0.2), (0, (0.1, 0.1, 0.15, 0.15), 0.9)],
            [(1, (0.5, 0.5, 0.7, 0.7), 0.9)]]                # the right place, the wrong class
    fit = box_fit(truths, dets)
    assert fit["predictions_per_image"] == 1.5
    assert fit["median_box_area"] == pytest.approx(0.04)        # areas 0.2, 0.0025, 0.04
    assert fit["median_truth_area"] == pytest.approx((0.25 + 0.04) / 2)
    assert fit["median_best_iou"] == pytest.approx((0.8 + 0.0) / 2)   # IoU 0.2/0.25 and none of its class
    assert fit["reachable"] == 0.5
    specks = [[(0, (0.1, 0.1, 0.15, 0.15), 0.9)], []]          # CAM-like specks: nothing reachable
    assert box_fit(truths, specks)["reachable"] == 0.0
    assert math.isnan(box_fit([[]], [[]])["reachable"])
