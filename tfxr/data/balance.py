"""Balance a TFRecord directory's training split with extra minority-class shards.

``python -m tfxr.gan balance --data REAL --generator G.keras --out NEW --target-ratio 0.5``
writes a NEW directory: the real shards copied byte for byte (or symlinked with
``--link``), plus training shards of generated minority images (``image/origin=generated``,
``image/synthetic=1``), each listed in the manifest with ``"synthetic": true``.  The
manifest keeps the real schema (so ``python -m tfxr.train`` reads it unchanged), with
the training split's counts updated and a ``balancing`` block: real and added counts per
split and label, the generator's path and sha256, the command.

``--method oversample`` is the control arm: the added shards hold duplicates of real
minority images (drawn without replacement as long as possible), flagged
``"oversampled": true`` in the manifest, not synthetic.

Target: ``--target-ratio r`` adds the smallest number of images that makes the minority
class at least a fraction ``r`` of the training split (0.5 = as many as the majority);
``--num N`` adds exactly N.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import shutil
import sys
import warnings

import numpy as np

from tfxr.config import check_seed
from tfxr.errors import ConfigError, ManifestError
from tfxr.io import sha256_file

SPLIT = "train"


def load_generator(path: str, trust: bool = False):
    """A generator saved by ``tfxr.gan train``, rebuilt from its run config (weights only;
    see :mod:`tfxr.models.loading`), or a clear error for anything else."""
    from tfxr.models.loading import load_generator as load

    if not os.path.isfile(path):
        raise ConfigError(f"--generator {path}: no such file (train one with `python -m tfxr.gan train`)")
    return load(path, trust)


def generate_images(generator, count: int, seed: int, batch: int = 256) -> np.ndarray:
    """``count`` uint8 images (count, size, size) from noise seeded by ``seed``."""
    latent = int(generator.inputs[0].shape[-1])
    rng = np.random.default_rng([seed, 0x6A4])
    out = []
    for start in range(0, count, batch):
        noise = rng.standard_normal((min(batch, count - start), latent)).astype(np.float32)
        with warnings.catch_warnings():   # a loaded model names its input; a tensor is fine
            warnings.filterwarnings("ignore", message="The structure of `inputs`")
            images = np.asarray(generator(noise, training=False))[..., 0]
        out.append(np.clip((images + 1.0) * 127.5, 0, 255).round().astype(np.uint8))
    return np.concatenate(out) if out else np.zeros((0, 1, 1), np.uint8)


def minority(manifest: dict, label: str | None, value: int | None) -> tuple[str, int, int, int]:
    """(label, value, its count, split total) in the training split; value defaults to the minority."""
    names = list(manifest["label_names"])
    if len(names) != 1:
        raise ConfigError(f"balancing needs a single-label data set (this one has {len(names)} labels: "
                          f"a generated image's other labels would be unknown)")
    label = label or names[0]
    if label not in names:
        raise ConfigError(f"--class-label {label!r}: not a label of this data set ({', '.join(names)})")
    if SPLIT not in manifest["splits"]:
        raise ManifestError(f"the data set has no '{SPLIT}' split to balance")
    split = manifest["splits"][SPLIT]
    positives, total = int(split["label_counts"][label]), int(split["count"])
    if value is None or value < 0:
        value = 1 if positives <= total - positives else 0
    return label, value, positives if value == 1 else total - positives, total


def count_to_add(minority_count: int, total: int, target_ratio: float | None, num: int | None) -> int:
    """Images to add so the minority is >= target_ratio of the split (or exactly ``num``)."""
    if num is not None:
        if num < 0:
            raise ConfigError(f"--num must be >= 0, got {num}")
        return num
    if target_ratio is None or not 0 < target_ratio < 1:
        raise ConfigError(f"--target-ratio must be in (0, 1), got {target_ratio}")
    return max(0, math.ceil((target_ratio * total - minority_count) / (1 - target_ratio)))


def real_minority_images(data_dir: str, manifest: dict, label_index: int, value: int) -> list[tuple]:
    """(PNG bytes, image id, patient id, origin) of the real training images of the class."""
    import tensorflow as tf

    from tfxr.data.tfrecord import feature_spec

    files = [os.path.join(data_dir, s["file"]) for s in manifest["splits"][SPLIT]["shards"]
             if not s.get("synthetic") and not s.get("oversampled")]
    spec = feature_spec(len(manifest["label_names"]))
    found = []
    for record in tf.data.TFRecordDataset(files).as_numpy_iterator():
        ex = tf.io.parse_single_example(record, spec)
        if int(round(float(ex["labels"][label_index]))) == value and int(ex["image/synthetic"]) == 0:
            found.append((ex["image/encoded"].numpy(), ex["image/id"].numpy().decode(),
                          ex["patient/id"].numpy().decode(), ex["image/origin"].numpy().decode()))
    return found


class Balancer:
    """Copies the real data set and writes the added training shards and the manifest."""

    def __init__(self, data: str, out: str, *, method: str = "gan", generator: str | None = None,
                 label: str | None = None, value: int | None = None, target_ratio: float | None = 0.5,
                 num: int | None = None, shards: int = 2, seed: int = 0, link: bool = False,
                 command: list[str] | None = None, trust_model_file: bool = False):
        from tfxr.data.tfrecord import read_manifest

        if method not in ("gan", "oversample"):
            raise ConfigError(f"--method {method!r}: unknown (allowed: gan, oversample)")
        if method == "gan" and not generator:
            raise ConfigError("--generator is required with --method gan")
        if os.path.abspath(data) == os.path.abspath(out):
            raise ConfigError(f"--out {out}: must differ from --data (the real data set is never modified)")
        if shards < 1:
            raise ConfigError(f"--shards must be >= 1, got {shards}")
        self.data, self.out, self.method, self.generator_path = data, out, method, generator
        self.manifest = read_manifest(data)
        self.label, self.value, self.minority_count, self.total = minority(self.manifest, label, value)
        self.num = count_to_add(self.minority_count, self.total, target_ratio, num)
        self.shards, self.seed, self.link = shards, seed, link
        self.trust_model_file = trust_model_file
        self.command = command or sys.argv

    def _copy_real(self) -> None:
        os.makedirs(self.out, exist_ok=True)
        for split in self.manifest["splits"].values():
            for shard in split["shards"]:
                src, dst = os.path.join(self.data, shard["file"]), os.path.join(self.out, shard["file"])
                if not os.path.isfile(src):
                    raise ManifestError(f"{src}: listed in {self.data}/manifest.json but missing")
                if os.path.lexists(dst):
                    os.unlink(dst)
                if self.link:
                    os.symlink(os.path.abspath(src), dst)
                else:
                    shutil.copyfile(src, dst)

    def _added_records(self) -> list[bytes]:
        from tfxr.data.imageio import encode_png
        from tfxr.data.tfrecord import make_example

        size = int(self.manifest["image_size"])
        if self.method == "gan":
            generator = load_generator(self.generator_path, self.trust_model_file)
            if int(generator.outputs[0].shape[1]) != size:
                raise ConfigError(f"--generator {self.generator_path} makes {generator.outputs[0].shape[1]}-px "
                                  f"images, {self.data} stores {size}-px images")
            images = generate_images(generator, self.num, self.seed)
            return [make_example(encode_png(img), size, [float(self.value)], f"generated-{self.seed}-{i:06d}",
                                 f"generated-{self.seed}-{i:06d}", origin="generated")
                    for i, img in enumerate(images)]
        pool = real_minority_images(self.data, self.manifest, 0, self.value)
        if not pool:
            raise ConfigError(f"{self.data}: no real '{self.label}={self.value}' training images to oversample")
        rng = np.random.default_rng([self.seed, 0x05A])
        picks = np.concatenate([rng.permutation(len(pool)) for _ in range(-(-self.num // len(pool)))])[:self.num]
        return [make_example(pool[k][0], size, [float(self.value)], f"{pool[k][1]}#dup{i}", pool[k][2],
                             origin=pool[k][3])
                for i, k in enumerate(picks)]

    def _write_added(self, records: list[bytes]) -> list[dict]:
        import tensorflow as tf

        from tfxr import io
        from tfxr.data.tfrecord import shard_name

        kind = "synthetic" if self.method == "gan" else "oversampled"
        count = min(self.shards, len(records))
        entries = []
        for k in range(count):
            part = records[k * len(records) // count:(k + 1) * len(records) // count]
            name = shard_name(f"{SPLIT}-{kind}", k, count)
            with io.atomic_path(os.path.join(self.out, name)) as tmp:
                with tf.io.TFRecordWriter(tmp) as writer:
                    for rec in part:
                        writer.write(rec)
            entries.append({"file": name, "count": len(part), "sha256": sha256_file(os.path.join(self.out, name)),
                            kind: True})
        return entries

    def run(self) -> dict:
        from tfxr.data.tfrecord import write_manifest

        self._copy_real()
        entries = self._write_added(self._added_records()) if self.num else []
        manifest = copy.deepcopy(self.manifest)
        train = manifest["splits"][SPLIT]
        train["shards"] = train["shards"] + entries
        train["count"] = self.total + self.num
        train["label_counts"][self.label] += self.num if self.value == 1 else 0
        train["prevalence"] = {n: c / train["count"] for n, c in train["label_counts"].items()}
        real_counts = {s: {"count": v["count"], "label_counts": dict(v["label_counts"])}
                       for s, v in self.manifest["splits"].items()}
        manifest["balancing"] = {
            "method": self.method,
            "real_data": os.path.abspath(self.data),
            "real_shards": "symlinked" if self.link else "copied unchanged",
            "class": {"label": self.label, "value": self.value},
            "real": real_counts,
            "added": {SPLIT: {"count": self.num, "label_value": self.value,
                              "synthetic": self.num if self.method == "gan" else 0,
                              "oversampled": self.num if self.method == "oversample" else 0}},
            "minority_fraction": {"before": self.minority_count / self.total,
                                  "after": (self.minority_count + self.num) / (self.total + self.num)},
            "generator": ({"path": os.path.abspath(self.generator_path),
                           "sha256": sha256_file(self.generator_path)} if self.method == "gan" else None),
            "seed": self.seed,
            "command": " ".join(self.command),
        }
        write_manifest(self.out, manifest)
        return manifest


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tfxr.gan balance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="real TFRecord directory (never modified)")
    p.add_argument("--out", required=True, help="new directory to write")
    p.add_argument("--method", default="gan", help="gan (generated images) | oversample (real duplicates)")
    p.add_argument("--generator", help="generator.keras from `python -m tfxr.gan train` (method gan)")
    p.add_argument("--class-label", help="label to balance (default: the only label)")
    p.add_argument("--class-value", type=int, default=-1, help="0|1; default: the minority value")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-ratio", type=float, default=None,
                        help="minority fraction of the training split to reach (default 0.5)")
    target.add_argument("--num", type=int, default=None, help="exact number of images to add")
    p.add_argument("--shards", type=int, default=2, help="shard files for the added images")
    p.add_argument("--seed", type=int, default=0, help="noise / sampling seed")
    p.add_argument("--link", action="store_true", help="symlink the real shards instead of copying them")
    p.add_argument("--trust-model-file", action="store_true",
                   help="let Keras load a --generator that is not a tfxr run's (safe_mode on; see README)")
    args = p.parse_args(argv)
    check_seed(args.seed)
    ratio = 0.5 if args.target_ratio is None and args.num is None else args.target_ratio
    manifest = Balancer(args.data, args.out, method=args.method, generator=args.generator, label=args.class_label,
                        value=args.class_value, target_ratio=ratio, num=args.num, shards=args.shards,
                        seed=args.seed, link=args.link, command=["python", "-m", "tfxr.gan", "balance", *argv],
                        trust_model_file=args.trust_model_file).run()
    info = manifest["balancing"]
    print(f"tfxr: added {info['added'][SPLIT]['count']} {args.method} '{info['class']['label']}="
          f"{info['class']['value']}' training images to {args.out} (minority fraction "
          f"{info['minority_fraction']['before']:.3f} -> {info['minority_fraction']['after']:.3f})", file=sys.stderr)
    return 0
