"""A tensorflow-datasets builder for tfxr data directories.

Any directory written by ``python -m tfxr.tfrecords write`` (NIH, TB, Kermany folders,
MedMNIST, phantoms) becomes a TFDS dataset, so code written for ``tfds`` reads the same
examples as tfxr's own pipeline: the same images (tfxr's PNG bytes, stored unchanged),
labels, ids, origins and boxes, split as the manifest splits them::

    from tfxr.data.tfds_builder import tfds_builder
    builder = tfds_builder("tfrec/nih224", tfds_dir="~/tensorflow_datasets")
    ds = builder.as_dataset(split="train", as_supervised=True)    # (image, labels)

or, once prepared, ``tfds.load("tfxr_shards/<config name>", data_dir=...)`` after
``import tfxr.data.tfds_builder`` (which registers the builder).

The tfxr directory is TFDS's *manual download* folder: nothing is downloaded and the
preparation runs offline.  One builder config describes one directory; its name carries
a digest of the shards' sha256 sums, so a re-converted directory is a new config rather
than a stale cache.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from tfxr.data.records import check_shards, manifest_encoding, read_examples, read_manifest
from tfxr.data.types import ORIGINS
from tfxr.errors import ManifestError

BUILDER_VERSION = "1.0.0"


@dataclasses.dataclass(eq=False)
class TfxrShardsConfig(tfds.core.BuilderConfig):
    """What the builder needs to know about one tfxr directory (read from its manifest)."""

    tfxr_dir: str = ""
    image_size: int = 0
    label_names: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()

    @classmethod
    def for_directory(cls, tfxr_dir: str) -> "TfxrShardsConfig":
        manifest = read_manifest(tfxr_dir)
        if manifest.get("format", "tfrecord") != "tfrecord":
            raise ManifestError(f"{tfxr_dir}: a raw-image index (--format raw); the TFDS builder reads "
                                f"TFRecord directories (convert without --format raw)")
        digest = hashlib.sha256("".join(shard["sha256"] for split in sorted(manifest["splits"])
                                        for shard in manifest["splits"][split]["shards"]).encode())
        source = re.sub(r"[^A-Za-z0-9]+", "_", str(manifest.get("source", {}).get("name", "tfxr")))
        return cls(name=f"{source}_{manifest['image_size']}px_{digest.hexdigest()[:12]}",
                   version=BUILDER_VERSION, description=f"tfxr data directory {os.path.abspath(tfxr_dir)}",
                   tfxr_dir=os.path.abspath(tfxr_dir), image_size=int(manifest["image_size"]),
                   label_names=tuple(manifest["label_names"]), splits=tuple(manifest["splits"]))


class TfxrShards(tfds.core.GeneratorBasedBuilder):
    """tfxr TFRecord shards as a TFDS dataset (registered as ``tfxr_shards``)."""

    VERSION = tfds.core.Version(BUILDER_VERSION)
    RELEASE_NOTES = {BUILDER_VERSION: "tfxr manifest schema 1: image, labels, ids, origin, boxes."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = ("Write a tfxr data directory with `python -m tfxr.tfrecords write ...` "
                                    "and pass it as the config (TfxrShardsConfig.for_directory).")

    @property
    def _config(self) -> TfxrShardsConfig:
        if not isinstance(self.builder_config, TfxrShardsConfig) or not self.builder_config.tfxr_dir:
            raise ManifestError("the tfxr_shards builder needs config=TfxrShardsConfig.for_directory(DIR) "
                                "(or use tfxr.data.tfds_builder.tfds_builder(DIR, ...))")
        return self.builder_config

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self._config
        size = cfg.image_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 1), encoding_format="png"),
                "labels": tfds.features.Tensor(shape=(len(cfg.label_names),), dtype=np.float32),
                "image_id": tfds.features.Text(),
                "patient_id": tfds.features.Text(),
                "origin": tfds.features.ClassLabel(names=list(ORIGINS)),
                "boxes": tfds.features.Sequence({
                    "label": tfds.features.ClassLabel(names=list(cfg.label_names)),
                    "bbox": tfds.features.BBoxFeature(),  # (ymin, xmin, ymax, xmax), normalised
                }),
            }),
            supervised_keys=("image", "labels"),
            metadata=tfds.core.MetadataDict(label_names=list(cfg.label_names)),
        )

    def _split_generators(self, dl_manager):
        cfg = self._config
        manifest = read_manifest(cfg.tfxr_dir)
        check_shards(cfg.tfxr_dir, manifest)
        return {split: self._generate_examples(manifest, split) for split in cfg.splits}

    def _generate_examples(self, manifest: dict, split: str):
        """Every record of a split through tfxr's one reader; generated (GAN) images only in
        train, as tfxr's pipeline."""
        # PNG records are passed on as they are; raw-pixel records (--encoding raw) as arrays,
        # which TFDS encodes as PNG (lossless: the same pixels)
        pixels = "encoded" if manifest_encoding(manifest) == "png" else "image"
        ds = read_examples(self._config.tfxr_dir, split, manifest=manifest,
                           fields=(pixels, "labels", "image_id", "patient_id", "origin", "boxes"),
                           shards="all" if split == "train" else "real")
        for ex in ds.as_numpy_iterator():
            boxes = ex["boxes"]
            image_id = ex["image_id"].decode()
            yield image_id, {
                "image": ex[pixels],  # tfxr's PNG bytes, unchanged (or the raw pixels)
                "labels": ex["labels"],
                "image_id": image_id,
                "patient_id": ex["patient_id"].decode(),
                "origin": ex["origin"].decode(),
                "boxes": [{"label": int(label),
                           "bbox": tfds.features.BBox(ymin=float(y0), xmin=float(x0), ymax=float(y1),
                                                      xmax=float(x1))}
                          for label, x0, y0, x1, y1 in zip(boxes["label"], boxes["xmin"], boxes["ymin"],
                                                           boxes["xmax"], boxes["ymax"])],
            }


def tfds_builder(tfxr_dir: str, tfds_dir: str, prepare: bool = True) -> TfxrShards:
    """The TFDS builder for a tfxr directory, prepared (offline) into ``tfds_dir``."""
    builder = TfxrShards(config=TfxrShardsConfig.for_directory(tfxr_dir), data_dir=os.path.expanduser(tfds_dir))
    if prepare:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=tfxr_dir, try_download_gcs=False))
    return builder
