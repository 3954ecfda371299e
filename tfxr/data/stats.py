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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tfxr.data.stats", description=__doc__)
    p.add_argument("data_dir")
    p.add_argument("--json", help="also write the numbers to this JSON file")
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
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"prevalence": {s: m["splits"][s]["prevalence"] for s in m["splits"]},
                       "counts": {s: m["splits"][s]["count"] for s in m["splits"]},
                       "patient_overlap": overlap}, fh, indent=2)
    return 1 if any(overlap.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
