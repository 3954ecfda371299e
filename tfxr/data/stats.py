"""A TFRecord directory's numbers: per-split prevalence table, origins, patient overlap, a
grid of sample images.  The command is ``python -m tfxr.stats DIR`` (:mod:`tfxr.stats`).

The patient ids are read from the shards themselves (not from the manifest), so the
overlap is what training would really see.
"""
from __future__ import annotations

import sys

from tfxr import plots
from tfxr.data.records import read_examples
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
    check_grid_source(manifest, data_dir)
    names = manifest["label_names"]
    splits = [s for s in SPLITS if s in manifest["splits"]]
    fig, axes = plots.subplots(len(splits), per_split, figsize=(1.9 * per_split, 2.2 * len(splits)), dpi=100,
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
                plots.box(ax, x0 * w, y0 * h, x1 * w, y1 * h, "red", linewidth=1)
            pos = [n for n, v in zip(names, ex["labels"]) if v >= 0.5]
            ax.set_title(f"{split}: " + (", ".join(pos) if pos else "no finding"), fontsize=7)
    return plots.save_png(fig, path)


def check_grid_source(manifest: dict, data_dir: str) -> None:
    if manifest.get("format") == "raw":
        raise ConfigError(f"--grid: {data_dir} is a raw-image index (--format raw), not TFRecords; "
                          f"look at the original image files it lists instead")


def main(argv: list[str] | None = None) -> int:
    """The ``tfxr-stats`` script's entry point (setup.cfg) and ``python -m tfxr.data.stats``,
    the older name of ``python -m tfxr.stats``: :func:`tfxr.stats.main`."""
    from tfxr.stats import main as command   # lazy: the library does not import its command line

    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
