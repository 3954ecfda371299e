"""Tables and figure of benchmarks/detection_results.sh: OUT/tables.md, OUT/detection_results.png.

Reads ``OUT/eval-{ph,rsna}/detection.json`` (``tfxr.evaluate detection`` on the TEST split,
score cuts chosen on validation, 95 % bootstrap CIs over images) and the detectors'
``OUT/det-*/history.json`` (validation mAP@0.5 per epoch: the best epoch's value is the
VALIDATION figure, printed apart from the test ones).  Seed 001's mAP@0.5 = 0.149 (YOLOv8 nano
on RSNA's own split, 4 GPUs) is drawn beside them: other data, not comparable number for number.

    python benchmarks/detection_results.py OUT
"""
from __future__ import annotations

import json
import math
import os
import sys

SETS = (("ph", "phantoms (test split)"), ("rsna", "RSNA-layout sample (test split)"))
COLUMNS = (("map_50", "mAP@0.5"), ("map_50_95", "mAP@[.5:.95]"), ("rsna", "RSNA score"),
           ("sens@0.5", "sens@0.5 FP"), ("sens@1", "sens@1 FP"), ("sens@4", "sens@4 FP"), ("froc_mean", "FROC mean"))


def point(m: dict, key: str) -> float | None:
    if key == "map_50" or key == "map_50_95":
        return m["coco"][key]
    if key == "rsna":
        return m["rsna"]["score"]
    if key == "froc_mean":
        return m["froc"]["mean_sensitivity"]
    return m["froc"]["sensitivity"][key.split("@")[1] if key.split("@")[1] in m["froc"]["sensitivity"]
                                    else str(float(key.split("@")[1]))]


def cell(m: dict, key: str) -> str:
    v = point(m, key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    ci = (m.get("ci95") or {}).get(key)
    if ci and ci[0] is not None:
        return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{v:.3f}"


def best_val(out: str, name: str) -> tuple[int | None, float | None]:
    path = os.path.join(out, f"det-{name}", "history.json")
    if not os.path.exists(path):
        return None, None
    hist = [r for r in json.load(open(path)) if r.get("val_map_50") is not None]
    if not hist:
        return None, None
    best = max(hist, key=lambda r: r["val_map_50"])
    return best["epoch"], best["val_map_50"]


def main(out: str) -> int:
    lines, results = [], {}
    for name, title in SETS:
        path = os.path.join(out, f"eval-{name}", "detection.json")
        if not os.path.exists(path):
            continue
        r = results[name] = json.load(open(path))
        boot = next(iter(r["methods"].values())).get("ci95", {}).get("resamples")
        lines += [f"### {title}: {r['images']} images, {r['images_with_boxes']} with boxes, {r['boxes']} boxes",
                  "", f"Value [95 % bootstrap CI over the test images, {boot} resamples]; score cuts chosen on "
                  f"`{r['threshold_split']}`.", "",
                  "| method | " + " | ".join(c for _, c in COLUMNS) + " | RSNA cut (val) |",
                  "|---|" + "---|" * (len(COLUMNS) + 1)]
        for method, m in r["methods"].items():
            lines.append(f"| {method} | " + " | ".join(cell(m, k) for k, _ in COLUMNS)
                         + f" | {m['min_score_chosen_on_threshold_split']:.2f} |")
        epoch, val = best_val(out, name)
        if val is not None:
            lines += ["", f"Validation (not test): the detector's best epoch {epoch} had validation mAP@0.5 "
                      f"{val:.3f} (the weights scored above were chosen on it)."]
        lines.append("")
    lines += ["Seed 001 (YOLOv8 nano fine-tuned on RSNA, 4 GPUs): mAP@0.5 = 0.149 on RSNA's own split -- "
              "different data and split, beside these numbers for scale only."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "tables.md"), "w") as fh:
        fh.write(text)
    print(text)
    if results:
        plot(out, results)
    return 0


def plot(out: str, results: dict) -> None:
    import matplotlib   # lazy: only the figure needs it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    titles = dict(SETS)
    for ax, (name, r) in zip(axes[0], results.items()):
        methods = list(r["methods"])
        for j, (key, label) in enumerate((("map_50", "mAP@0.5"), ("rsna", "RSNA score"), ("froc_mean", "FROC mean"))):
            xs = [i + (j - 1) * 0.27 for i in range(len(methods))]
            vals, lows, highs = [], [], []
            for method in methods:
                m = r["methods"][method]
                v = point(m, key)
                v = 0.0 if v is None or math.isnan(v) else v
                ci = (m.get("ci95") or {}).get(key) or [v, v]
                lo, hi = (v, v) if ci[0] is None else ci
                vals.append(v), lows.append(max(v - lo, 0)), highs.append(max(hi - v, 0))
            ax.bar(xs, vals, width=0.25, yerr=[lows, highs], capsize=3, label=label)
        ax.axhline(0.149, color="grey", linestyle="--", linewidth=1, label="seed 001 mAP@0.5 (RSNA, other data)")
        ax.set_xticks(range(len(methods)), methods)
        ax.set_ylim(0, 1)
        ax.set_title(f"{titles[name]}\n{r['images']} images, {r['boxes']} boxes", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "detection_results.png"), dpi=120)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "bench_detection"))
