"""``python -m tfxr.data.stats DIR``: per-split prevalence table, origins and patient overlap.

Reads the patient ids from the shards themselves (not from the manifest), so the
overlap it prints is what training would really see.

Exit status: 0 no patient in two splits; 2 unusable directory or options (one line
naming the problem); 3 some patient is in two splits (a leaking split).
"""
from __future__ import annotations

import argparse
import sys

from tfxr import files as tfxr_files
from tfxr.cli import EXIT_OK, EXIT_REJECTED, run_main
from tfxr.data.splits import patient_overlap
from tfxr.data.records import check_shards, read_examples, read_manifest
from tfxr.data.types import ORIGINS, SPLITS
from tfxr.errors import ConfigError


def split_patients(data_dir: str, manifest: dict) -> dict[str, set[str]]:
    """Patient ids per split, read from the shards (or raw index) through the one reader."""
    out: dict[str, set[str]] = {}
    for split in manifest["splits"]:
        ds = read_examples(data_dir, split, fields=("patient_id",), manifest=manifest)
        out[split] = {p.decode() for batch in ds.batch(4096).as_numpy_iterator() for p in batch["patient_id"]}
    return out


def prevalence_table(manifest: dict) -> str:
    splits = [s for s in SPLITS if s in manifest["splits"]]
    names = manifest["label_names"]
    w = max([len(n) for n in names] + [10])
    lines = [f"{'label':<{w}} " + " ".join(f"{s + ' %':>9}" for s in splits)]
    for n in names:
        lines.append(f"{n:<{w}} " + " ".join(
            f"{100 * manifest['splits'][s]['prevalence'][n]:>9.2f}" for s in splits))
    lines.append(f"{'images':<{w}} " + " ".join(f"{manifest['splits'][s]['count']:>9d}" for s in splits))
    lines.append(f"{'patients':<{w}} " + " ".join(f"{manifest['splits'][s]['patients']:>9d}" for s in splits))
    if all("origins" in manifest["splits"][s] for s in splits):
        for origin in ORIGINS:
            lines.append(f"{origin + ' images':<{w}} "
                         + " ".join(f"{manifest['splits'][s]['origins'].get(origin, 0):>9d}" for s in splits))
    if any("label_masked" in manifest["splits"][s] for s in splits):  # NaN labels (e.g. CheXpert 'ignore')
        for n in names:
            lines.append(f"{n + ' masked':<{w}} " + " ".join(
                f"{manifest['splits'][s].get('label_masked', {}).get(n, 0):>9d}" for s in splits))
    if any("boxes" in manifest["splits"][s] for s in splits):
        for n in names:
            lines.append(f"{n + ' boxes':<{w}} " + " ".join(
                f"{manifest['splits'][s].get('boxes', {}).get(n, 0):>9d}" for s in splits))
        lines.append(f"{'images with boxes':<{w}} " + " ".join(
            f"{manifest['splits'][s].get('images_with_boxes', 0):>9d}" for s in splits))
    return "\n".join(lines)


def sample_grid(data_dir: str, manifest: dict, path: str, per_split: int = 8) -> str:
    """PNG grid of the first images of each split with their labels and boxes (a visual check)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    _check_grid_source(manifest, data_dir)
    names = manifest["label_names"]
    splits = [s for s in SPLITS if s in manifest["splits"]]
    fig, axes = plt.subplots(len(splits), per_split, figsize=(1.9 * per_split, 2.2 * len(splits)), dpi=100,
                             squeeze=False)
    for row, split in enumerate(splits):
        ds = read_examples(data_dir, split, fields=("image", "labels", "boxes"), manifest=manifest).take(per_split)
        for col in range(per_split):
            axes[row, col].axis("off")
        for col, ex in enumerate(ds.as_numpy_iterator()):
            ax = axes[row, col]
            img = ex["image"][..., 0]
            ax.imshow(img, cmap="gray", vmin=0, vmax=255)
            h, w = img.shape
            for lab, x0, y0, x1, y1 in zip(*(ex["boxes"][k] for k in ("label", "xmin", "ymin", "xmax", "ymax"))):
                ax.add_patch(patches.Rectangle((x0 * w, y0 * h), (x1 - x0) * w, (y1 - y0) * h, fill=False,
                                               edgecolor="red", lw=1))
            pos = [n for n, v in zip(names, ex["labels"]) if v >= 0.5]
            ax.set_title(f"{split}: " + (", ".join(pos) if pos else "no finding"), fontsize=7)
    fig.tight_layout()
    with tfxr_files.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _check_grid_source(manifest: dict, data_dir: str) -> None:
    if manifest.get("format") == "raw":
        raise ConfigError(f"--grid: {data_dir} is a raw-image index (--format raw), not TFRecords; "
                          f"look at the original image files it lists instead")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tfxr.data.stats", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir")
    p.add_argument("--json", help="also write the numbers to this JSON file")
    p.add_argument("--grid", metavar="PNG", help="also write a grid of sample images (labels, boxes) as PNG "
                                                  "(TFRecord directories only)")
    args = p.parse_args(argv)

    def body() -> int:
        m = read_manifest(args.data_dir)
        if args.grid:
            _check_grid_source(m, args.data_dir)  # before the slow part, not after it
        check_shards(args.data_dir, m)
        print(f"{args.data_dir}: {m.get('source', {}).get('name', '?')}, {m['image_size']} px, "
              f"{sum(s['count'] for s in m['splits'].values())} images, {len(m.get('rejected', []))} rejected")
        print(prevalence_table(m))
        overlap = patient_overlap(split_patients(args.data_dir, m))
        print("patient overlap: " + ", ".join(f"{k} {v}" for k, v in overlap.items()))
        if args.grid:
            print(f"wrote {sample_grid(args.data_dir, m, args.grid)}")
        if args.json:
            tfxr_files.write_json(args.json, {
                "prevalence": {s: m["splits"][s]["prevalence"] for s in m["splits"]},
                "counts": {s: m["splits"][s]["count"] for s in m["splits"]},
                "origins": {s: m["splits"][s].get("origins") for s in m["splits"]},
                "patient_overlap": overlap})
        return EXIT_REJECTED if any(overlap.values()) else EXIT_OK

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
