"""``python -m tfxr.data.stats DIR``: per-split prevalence table and patient overlap.

Reads the patient ids from the shards themselves (not from the manifest), so the
overlap it prints is what training would really see.  Exit status 1 when any patient
is in two splits.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys

from tfxr.data.splits import patient_overlap
from tfxr.data.tfrecord import ManifestError, read_manifest


def split_patients(data_dir: str, manifest: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for split, info in manifest["splits"].items():
        files = [os.path.join(data_dir, s["file"]) for s in info["shards"]]
        if manifest.get("format") == "raw":
            pats = set()
            for f in files:
                with open(f, newline="") as fh:
                    pats |= {row["patient_id"] for row in csv.DictReader(fh)}
            out[split] = pats
            continue
        import tensorflow as tf

        spec = {"patient/id": tf.io.FixedLenFeature([], tf.string)}
        ds = tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, spec)["patient/id"])
        out[split] = {p.decode() for p in ds.batch(4096).as_numpy_iterator() for p in p}
    return out


def prevalence_table(manifest: dict) -> str:
    splits = [s for s in ("train", "val", "test") if s in manifest["splits"]]
    names = manifest["label_names"]
    w = max([len(n) for n in names] + [10])
    lines = [f"{'label':<{w}} " + " ".join(f"{s + ' %':>9}" for s in splits)]
    for n in names:
        lines.append(f"{n:<{w}} " + " ".join(
            f"{100 * manifest['splits'][s]['prevalence'][n]:>9.2f}" for s in splits))
    lines.append(f"{'images':<{w}} " + " ".join(f"{manifest['splits'][s]['count']:>9d}" for s in splits))
    lines.append(f"{'patients':<{w}} " + " ".join(f"{manifest['splits'][s]['patients']:>9d}" for s in splits))
    return "\n".join(lines)


def sample_grid(data_dir: str, manifest: dict, path: str, per_split: int = 8) -> str:
    """PNG grid of the first images of each split with their labels and boxes (a visual check)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt
    import tensorflow as tf

    from tfxr.data.tfrecord import feature_spec

    if manifest.get("format") == "raw":
        raise ValueError("--grid reads TFRecord directories (a raw index has the original files)")
    names = manifest["label_names"]
    splits = [s for s in ("train", "val", "test") if s in manifest["splits"]]
    fig, axes = plt.subplots(len(splits), per_split, figsize=(1.9 * per_split, 2.2 * len(splits)), dpi=100,
                             squeeze=False)
    spec = feature_spec(len(names))
    for row, split in enumerate(splits):
        files = [os.path.join(data_dir, s["file"]) for s in manifest["splits"][split]["shards"]]
        ds = tf.data.TFRecordDataset(files).take(per_split).map(lambda r: tf.io.parse_single_example(r, spec))
        for col in range(per_split):
            axes[row, col].axis("off")
        for col, ex in enumerate(ds):
            ax = axes[row, col]
            img = tf.io.decode_png(ex["image/encoded"]).numpy()[..., 0]
            ax.imshow(img, cmap="gray", vmin=0, vmax=255)
            h, w = img.shape
            for lab, x0, y0, x1, y1 in zip(*(tf.sparse.to_dense(ex[k]).numpy() for k in
                                             ("bbox/label", "bbox/xmin", "bbox/ymin", "bbox/xmax", "bbox/ymax"))):
                ax.add_patch(patches.Rectangle((x0 * w, y0 * h), (x1 - x0) * w, (y1 - y0) * h, fill=False,
                                               edgecolor="red", lw=1))
            pos = [n for n, v in zip(names, ex["labels"].numpy()) if v >= 0.5]
            ax.set_title(f"{split}: " + (", ".join(pos) if pos else "no finding"), fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tfxr.data.stats", description=__doc__)
    p.add_argument("data_dir")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    p.add_argument("--grid", metavar="PNG", help="also write a grid of sample images (labels, boxes) as PNG")
    args = p.parse_args(argv)
    try:
        m = read_manifest(args.data_dir)
    except ManifestError as e:
        print(f"tfxr: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.data_dir}: {m['source']['name']}, {m['image_size']} px, "
          f"{sum(s['count'] for s in m['splits'].values())} images, {len(m['rejected'])} rejected")
    print(prevalence_table(m))
    overlap = patient_overlap(split_patients(args.data_dir, m))
    print("patient overlap: " + ", ".join(f"{k} {v}" for k, v in overlap.items()))
    if args.grid:
        print(f"wrote {sample_grid(args.data_dir, m, args.grid)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"prevalence": {s: m["splits"][s]["prevalence"] for s in m["splits"]},
                       "counts": {s: m["splits"][s]["count"] for s in m["splits"]},
                       "patient_overlap": overlap}, fh, indent=2)
    return 1 if any(overlap.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
