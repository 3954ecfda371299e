"""Balance a TFRecord directory's training split with extra minority-class shards.

``python -m tfxr.gan balance --data REAL --generator G.keras --out NEW --target-ratio 0.5``
(the command line: :mod:`tfxr.gan`; its options :class:`tfxr.configs.BalanceConfig`) writes a NEW directory: the real shards copied byte for byte (or symlinked with
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

import copy
import math
import os
import shutil
import sys

import numpy as np

from tfxr.data.imageio import encode_png
from tfxr.data.paths import inside, is_inside
from tfxr.data.records import (check_shards, make_example, manifest_encoding, read_examples, read_manifest,
                               shard_name, write_manifest, write_shard)
from tfxr.errors import ConfigError, ManifestError
from tfxr.files import TMP_PREFIX, atomic_path, sha256_file
from tfxr.models import dcgan
from tfxr.models.loading import load_generator

SPLIT = "train"


def generate_images(generator, count: int, seed: int) -> np.ndarray:
    """``count`` uint8 images (count, size, size) of the one sampler (:func:`tfxr.models.dcgan.generate`)."""
    images = dcgan.generate(generator, count, seed)[..., 0]
    if not len(images):
        return np.zeros((0, 1, 1), np.uint8)
    return np.clip((images + 1.0) * 127.5, 0, 255).round().astype(np.uint8)


def minority_value(split: dict, label: str) -> int:
    """The label value (0 or 1) fewer images of ``split`` (a manifest split entry) have; 1 on a tie.

    The one minority rule: what ``gan train`` trains on and ``gan balance`` tops up by default."""
    positives = int(split["label_counts"][label])
    return 1 if positives <= int(split["count"]) - positives else 0


def class_images(data_dir: str, split: str, label_index: int | None = None, value: float | None = None, *,
                 image_size: int = 0, rank: int = 0, world: int = 1, manifest: dict | None = None,
                 limit: int = 0) -> np.ndarray:
    """The real images of a split whose label ``label_index`` equals ``value`` (every image when
    ``label_index`` is None), uint8 (n, size, size, 1), held in memory: this rank's disjoint part
    through the one reader (``read_examples``), generated and oversampled shards left out.

    The one loader of the GAN's images: what ``gan train`` learns from and what ``evaluate gan``
    compares generated images with.  ``limit``: stop after that many (0: all).
    """
    ds = read_examples(data_dir, split, fields=("image", "labels"), rank=rank, world=world,
                       image_size=image_size, manifest=manifest, shards="real")
    images = []
    for ex in ds.as_numpy_iterator():
        if label_index is None or float(ex["labels"][label_index]) == float(value):
            images.append(ex["image"])
            if limit and len(images) >= limit:
                break
    if not images:
        size = image_size or int((manifest or read_manifest(data_dir))["image_size"])
        return np.zeros((0, size, size, 1), np.uint8)
    return np.stack(images)


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
        value = minority_value(split, label)
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
    """(stored image bytes, image id, patient id, origin) of the real training images of the class
    (read from the shards ``tfrecords write`` wrote: no generated or oversampled ones)."""
    ds = read_examples(data_dir, SPLIT, fields=("encoded", "labels", "image_id", "patient_id", "origin"),
                       manifest=manifest, shards="original")
    return [(ex["encoded"], ex["image_id"].decode(), ex["patient_id"].decode(), ex["origin"].decode())
            for ex in ds.as_numpy_iterator() if int(round(float(ex["labels"][label_index]))) == value]


def check_generator(generator, path: str, size: int) -> None:
    """A noise-vector -> (size, size, 1) image model, else a ConfigError naming the file."""
    inputs, outputs = generator.inputs, generator.outputs
    if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 2 or len(outputs[0].shape) != 4:
        raise ConfigError(f"--generator {path}: not a tfxr DCGAN generator (it maps "
                          f"{[tuple(i.shape) for i in inputs]} to {[tuple(o.shape) for o in outputs]}, "
                          f"a generator maps a noise vector to one grey image; a classifier is not one)")
    h, w, c = outputs[0].shape[1:]
    if c != 1:
        raise ConfigError(f"--generator {path}: makes {c}-channel images; tfxr data sets are grey (1 channel)")
    if (h, w) != (size, size):
        raise ConfigError(f"--generator {path} makes {h}x{w}-px images, the data set stores {size}-px images")


class Balancer:
    """Copies the real data set and writes the added training shards and the manifest.

    Everything is checked before anything is written (the options, the real data set's
    manifest and shards, the generator and the images it makes); ``--out`` must not be
    ``--data`` (compared after following links) nor lie inside it or contain it, and an
    existing non-empty ``--out`` is refused unless ``overwrite``.  Nothing is ever deleted
    but the files this run created, when it fails.
    """

    def __init__(self, data: str, out: str, *, method: str = "gan", generator: str | None = None,
                 label: str | None = None, value: int | None = None, target_ratio: float | None = 0.5,
                 num: int | None = None, shards: int = 2, seed: int = 0, link: bool = False,
                 overwrite: bool = False, command: list[str] | None = None, trust_model_file: bool = False):
        if method not in ("gan", "oversample"):
            raise ConfigError(f"--method {method!r}: unknown (allowed: gan, oversample)")
        if method == "gan" and not generator:
            raise ConfigError("--generator is required with --method gan")
        if value is not None and value not in (-1, 0, 1):
            raise ConfigError(f"--class-value {value}: not a label value (allowed: 0, 1, or -1 for the minority)")
        if shards < 1:
            raise ConfigError(f"--shards must be >= 1, got {shards}")
        real_data, real_out = os.path.realpath(data), os.path.realpath(out)
        if real_out == real_data:
            raise ConfigError(f"--out {out}: is --data {data}" + (f" (both are {real_out})" if out != data else "")
                              + "; the real data set is never modified, name a new folder")
        if is_inside(real_out, real_data) or is_inside(real_data, real_out):
            raise ConfigError(f"--out {out}: must not lie inside --data {data} or contain it")
        if os.path.lexists(out) and not os.path.isdir(out):
            raise ConfigError(f"--out {out}: exists and is not a directory")
        if os.path.isdir(out) and os.listdir(out) and not overwrite:
            raise ConfigError(f"--out {out}: exists and is not empty (pass --overwrite to write into it)")
        self.data, self.out, self.method, self.generator_path = data, out, method, generator
        self.manifest = read_manifest(data)
        check_shards(data, self.manifest)       # every shard inside --data, present, its recorded size
        self.label, self.value, self.minority_count, self.total = minority(self.manifest, label, value)
        self.num = count_to_add(self.minority_count, self.total, target_ratio, num)
        self.shards, self.seed, self.link = shards, seed, link
        self.trust_model_file = trust_model_file
        self.command = command or sys.argv
        self._created: list[str] = []

    def _added_records(self) -> list[bytes]:
        """The serialized examples to add, made (and the generator checked) before any write."""
        size, encoding = int(self.manifest["image_size"]), manifest_encoding(self.manifest)
        if self.method == "gan":
            generator = load_generator(self.generator_path, self.trust_model_file)   # tfxr.models.loading
            check_generator(generator, self.generator_path, size)
            images = generate_images(generator, self.num, self.seed)
            return [make_example(encode_png(img) if encoding == "png" else np.ascontiguousarray(img).tobytes(),
                                 size, [float(self.value)], f"generated-{self.seed}-{i:06d}",
                                 f"generated-{self.seed}-{i:06d}", origin="generated", encoding=encoding)
                    for i, img in enumerate(images)]
        if not self.num:
            return []
        pool = real_minority_images(self.data, self.manifest, 0, self.value)
        if not pool:
            raise ConfigError(f"{self.data}: no real '{self.label}={self.value}' training images to oversample")
        rng = np.random.default_rng([self.seed, 0x05A])
        picks = np.concatenate([rng.permutation(len(pool)) for _ in range(-(-self.num // len(pool)))])[:self.num]
        return [make_example(pool[k][0], size, [float(self.value)], f"{pool[k][1]}#dup{i}", pool[k][2],
                             origin=pool[k][3], encoding=encoding)
                for i, k in enumerate(picks)]

    def _target(self, name: str) -> str:
        path = inside(self.out, name, os.path.join(self.data, "manifest.json"), "shard")
        if os.path.lexists(path):
            if os.path.isdir(path) and not os.path.islink(path):
                raise ConfigError(f"--out {self.out}: {path} is a directory; refusing to replace it")
        else:
            self._created.append(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def _copy_real(self) -> None:
        for split in self.manifest["splits"].values():
            for shard in split["shards"]:
                src, dst = os.path.join(self.data, shard["file"]), self._target(shard["file"])
                if self.link:      # a link made beside the target, then renamed over it (atomic)
                    tmp = os.path.join(os.path.dirname(dst), f"{TMP_PREFIX}{os.path.basename(dst)}.{os.getpid()}")
                    os.symlink(os.path.abspath(src), tmp)
                    try:
                        os.replace(tmp, dst)
                    finally:
                        if os.path.lexists(tmp):
                            os.unlink(tmp)
                else:
                    with atomic_path(dst) as tmp:
                        shutil.copyfile(src, tmp)

    def _write_added(self, records: list[bytes]) -> list[dict]:
        """The added shards, written by the one shard writer (sizes and sha256 recorded)."""
        kind = "synthetic" if self.method == "gan" else "oversampled"
        count = min(self.shards, len(records))
        entries = []
        for k in range(count):
            part = records[k * len(records) // count:(k + 1) * len(records) // count]
            name = shard_name(f"{SPLIT}-{kind}", k, count)
            n, size, sha = write_shard(self._target(name), part)
            entries.append({"file": name, "count": n, "bytes": size, "sha256": sha, kind: True})
        return entries

    def run(self) -> dict:
        records = self._added_records()     # the generator is checked even when nothing is added
        made_out = not os.path.isdir(self.out)
        os.makedirs(self.out, exist_ok=True)
        try:
            self._copy_real()
            entries = self._write_added(records)
            manifest = self._manifest(entries)
            if not os.path.lexists(os.path.join(self.out, "manifest.json")):
                self._created.append(os.path.join(self.out, "manifest.json"))
            write_manifest(self.out, manifest)
        except BaseException:
            for path in reversed(self._created):     # only what this run created
                if os.path.lexists(path):
                    os.unlink(path)
            if made_out:
                shutil.rmtree(self.out, ignore_errors=True)
            raise
        return manifest

    def _manifest(self, entries: list[dict]) -> dict:
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
        return manifest
