"""TFRecord schema and the sharded, resumable, rank-parallel writer.

Layout written to ``OUT``::

    OUT/train-00000-of-00016.tfrecord ...   one tf.train.Example per image
    OUT/manifest.json                         what is in the shards, how it was made
    OUT/.tfxr-shards/<shard>.json             per-shard record of a finished shard (resume)

Shard contents depend only on the inputs, the seed and the options, never on the
number of MPI ranks or pool workers, so every way of running produces the same bytes.
Each shard is written to a temporary name and renamed when complete (``tfxr.io``), so
an interrupted run leaves only finished shards (reused by the next run) and hidden
``.tmp-*`` files (removed by the next run).  The manifest records each shard's size and
sha256: :func:`check_shards` is the cheap check before training (existence and size),
``python -m tfxr.tfrecords verify`` the full one (sha256).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import multiprocessing as mp
import os
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from tfxr import io as tfxr_io
from tfxr.data import imageio
from tfxr.data.types import ORIGINS, SPLITS, Item, Reject, Source, normalise_boxes
from tfxr.errors import ManifestError

SCHEMA_VERSION = 1
STATE_DIR = ".tfxr-shards"


# --------------------------------------------------------------------------- schema
def shard_name(split: str, index: int, total: int, fmt: str = "tfrecord") -> str:
    return f"{split}-{index:05d}-of-{total:05d}.{'tfrecord' if fmt == 'tfrecord' else 'csv'}"


def make_example(png: bytes, size: int, labels, image_id: str, patient_id: str,
                 boxes=(), origin: str = "real", *, view: str | None = None,
                 pixel_spacing: tuple[float, float] | None = None,
                 original_size: tuple[int, int] | None = None,
                 age: float | None = None, sex: str | None = None) -> bytes:
    """One serialised tf.train.Example; ``image/synthetic`` is 1 exactly for generated images.

    Optional fields, written only when known (older records simply lack them):
    ``image/view`` (PA, AP, ...), ``image/pixel_spacing`` (row, column mm of the *stored*
    image), ``image/original_size`` (rows, columns before resizing), ``patient/age`` and
    ``patient/sex`` (only when the conversion was asked for demographics).  A label may be
    NaN: unknown for that image (e.g. CheXpert's uncertain label under ``ignore``).
    """
    import tensorflow as tf

    if origin not in ORIGINS:
        raise ValueError(f"origin {origin!r} is not one of {ORIGINS}")

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=v))

    def f(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v))

    feat = {
        "image/encoded": b([png]),
        "image/format": b([b"png"]),
        "image/height": i([size]),
        "image/width": i([size]),
        "image/channels": i([1]),
        "image/id": b([image_id.encode()]),
        "patient/id": b([patient_id.encode()]),
        "image/origin": b([origin.encode()]),
        "image/synthetic": i([int(origin == "generated")]),
        "labels": f([float(x) for x in labels]),
        "bbox/label": i([bx.label for bx in boxes]),
        "bbox/xmin": f([bx.xmin for bx in boxes]),
        "bbox/ymin": f([bx.ymin for bx in boxes]),
        "bbox/xmax": f([bx.xmax for bx in boxes]),
        "bbox/ymax": f([bx.ymax for bx in boxes]),
    }
    if view:
        feat["image/view"] = b([view.encode()])
    if pixel_spacing is not None:
        feat["image/pixel_spacing"] = f([float(v) for v in pixel_spacing])
    if original_size is not None:
        feat["image/original_size"] = i([int(v) for v in original_size])
    if age is not None:
        feat["patient/age"] = f([float(age)])
    if sex:
        feat["patient/sex"] = b([sex.encode()])
    return tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString()


def feature_spec(num_labels: int) -> dict:
    import tensorflow as tf

    return {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/id": tf.io.FixedLenFeature([], tf.string),
        "patient/id": tf.io.FixedLenFeature([], tf.string),
        "image/origin": tf.io.FixedLenFeature([], tf.string, default_value="real"),
        "image/synthetic": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "labels": tf.io.FixedLenFeature([num_labels], tf.float32),
        "bbox/label": tf.io.VarLenFeature(tf.int64),
        "bbox/xmin": tf.io.VarLenFeature(tf.float32),
        "bbox/ymin": tf.io.VarLenFeature(tf.float32),
        "bbox/xmax": tf.io.VarLenFeature(tf.float32),
        "bbox/ymax": tf.io.VarLenFeature(tf.float32),
        # optional (absent in older records and where a set does not say)
        "image/view": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/pixel_spacing": tf.io.VarLenFeature(tf.float32),
        "image/original_size": tf.io.VarLenFeature(tf.int64),
    }


# --------------------------------------------------------------------------- plan
@dataclass
class ShardPlan:
    split: str
    index: int
    total: int
    items: list[Item]
    fmt: str = "tfrecord"

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index, self.total, self.fmt)


def _ref_fingerprint(ref) -> str:
    if isinstance(ref, (str, os.PathLike)):
        try:
            st = os.stat(ref)
            return f"file:{os.path.abspath(ref)}:{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            return f"file:{os.path.abspath(ref)}:missing"
    if isinstance(ref, np.ndarray):
        return "array:" + hashlib.sha256(np.ascontiguousarray(ref).tobytes()).hexdigest()
    return "callable:" + repr(ref)


def plan_hash(plan: ShardPlan, image_size: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([SCHEMA_VERSION, plan.fmt, image_size, plan.name]).encode())
    for it in plan.items:
        h.update(json.dumps([it.image_id, it.patient_id, list(it.labels), it.origin,
                             [[b.label, b.xmin, b.ymin, b.xmax, b.ymax] for b in it.boxes],
                             _ref_fingerprint(it.image)]).encode())
        extra = {k: getattr(it, k) for k in ("box_space", "view", "pixel_spacing", "age", "sex")
                 if getattr(it, k) is not None}
        if extra:  # only items that have them: older plans keep their hashes
            h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()


def plan_shards(splits: dict[str, list[Item]], shards: int, seed: int, fmt: str = "tfrecord") -> list[ShardPlan]:
    """Deterministically shuffle each split and cut it into ``shards`` contiguous shards."""
    plans = []
    for split in SPLITS:
        items = sorted(splits.get(split, []), key=lambda it: it.image_id)
        if not items:
            continue
        perm = np.random.default_rng([seed, SPLITS.index(split)]).permutation(len(items))
        items = [items[i] for i in perm]
        n = min(shards, len(items)) if fmt == "tfrecord" else 1
        for k in range(n):
            plans.append(ShardPlan(split, k, n, items[k * len(items) // n:(k + 1) * len(items) // n], fmt))
    return plans


# --------------------------------------------------------------------------- workers
def _prepare(args):
    """Worker: load + resize + PNG-encode one item (no TensorFlow here).

    A tfrecord result is ``(png, facts)`` with the decoded image's ``shape`` and (DICOM)
    ``pixel_spacing``; ``dicom_window=False`` ignores DICOM VOI LUTs and windows.
    """
    ref, size, mode, *rest = args
    dicom_window = rest[0] if rest else True
    try:
        grey, facts = imageio.load_image_meta(ref, dicom_window)
        if mode == "raw":
            return True, (grey.shape, imageio.encode_png(grey) if not isinstance(ref, str) else None)
        return True, (imageio.encode_png(imageio.resize(grey, size)), facts)
    except imageio.ImageError as e:
        return False, str(e)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a rejected input, not a crash
        return False, f"cannot read image ({type(e).__name__}: {e})"


@dataclass
class ShardResult:
    name: str
    split: str
    count: int
    sha256: str
    rejects: list[dict] = field(default_factory=list)
    label_counts: list[float] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    #: images per origin ('real', 'phantom', 'generated') in this shard
    origins: dict[str, int] = field(default_factory=dict)
    #: size of the shard file in bytes (checked before training by check_shards)
    bytes: int = 0
    reused: bool = False
    #: labels stored as NaN (unknown) per label; empty in states written before it existed
    label_masked: list[float] = field(default_factory=list)
    #: boxes per label index, and images with at least one box
    box_counts: dict[str, int] = field(default_factory=dict)
    images_with_boxes: int = 0


def _worker_ignores_interrupts() -> None:
    """Pool workers leave Ctrl-C and SIGTERM to the parent, which stops them (terminate)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _read_state(path: str) -> dict:
    """A finished shard's record, or {} when it is damaged (the shard is then rewritten)."""
    try:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


class ShardWriter:
    """Writes planned shards with a process pool; reuses shards finished earlier.

    The pool is a ``multiprocessing.Pool`` (spawned workers): a normal exit closes it,
    any exception leaving the ``with`` block (Ctrl-C, or SIGTERM turned into SystemExit
    by the CLI) terminates it, so no worker outlives the conversion.
    """

    def __init__(self, out: str, image_size: int, num_labels: int, workers: int = 1,
                 progress=None, fmt: str = "tfrecord", dicom_window: bool = True):
        self.out, self.size, self.num_labels = out, image_size, num_labels
        self.dicom_window = dicom_window
        self.workers, self.progress, self.fmt = max(1, workers), progress, fmt
        self._pool = None

    def __enter__(self):
        if self.workers > 1:
            self._pool = mp.get_context("spawn").Pool(self.workers, initializer=_worker_ignores_interrupts)
        return self

    def __exit__(self, exc_type, *exc):
        if self._pool:
            if exc_type is None:
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()
            self._pool = None

    def _map(self, fn, args):
        if self._pool is None:
            return map(fn, args)
        return self._pool.imap(fn, args, chunksize=8)

    def write(self, plan: ShardPlan) -> ShardResult:
        final = os.path.join(self.out, plan.name)
        state_path = os.path.join(self.out, STATE_DIR, plan.name + ".json")
        phash = plan_hash(plan, self.size)
        if not self.dicom_window:
            phash = hashlib.sha256((phash + ":dicom-full-range").encode()).hexdigest()
        if os.path.exists(final) and os.path.exists(state_path):
            st = _read_state(state_path)
            # a state from before origins were counted is not reused: its counts would be missing
            if st.get("plan_hash") == phash and "origins" in st and st.get("sha256") == tfxr_io.sha256_file(final):
                if self.progress:
                    self.progress(len(plan.items))
                res = ShardResult(**{k: v for k, v in st.items() if k not in ("plan_hash", "reused")})
                res.bytes = os.path.getsize(final)
                res.reused = True
                return res
        tally = _Tally(self.num_labels, self.progress)
        with tfxr_io.atomic_path(final) as tmp:
            mode = "raw" if self.fmt == "raw" else "tfrecord"
            results = self._map(_prepare, [(it.image, self.size, mode, self.dicom_window) for it in plan.items])
            good = tally.accepted(plan.items, results)
            if self.fmt == "raw":
                self._write_raw(tmp, good)
            else:
                import tensorflow as tf

                with tf.io.TFRecordWriter(tmp) as w:
                    for it, (png, facts) in good:
                        w.write(make_example(png, self.size, it.labels, it.image_id, it.patient_id,
                                             normalise_boxes(it.boxes, it.box_space, facts["shape"]),
                                             it.origin, **_optional_fields(it, facts, self.size)))
        res = ShardResult(plan.name, plan.split, tally.kept, tfxr_io.sha256_file(final), tally.rejects,
                          tally.label_counts.tolist(), sorted(tally.patients),
                          {o: tally.origins[o] for o in ORIGINS}, os.path.getsize(final),
                          label_masked=tally.masked.tolist(), box_counts=dict(sorted(tally.boxes.items())),
                          images_with_boxes=tally.images_with_boxes)
        os.makedirs(os.path.dirname(state_path), exist_ok=True)
        tfxr_io.write_json(state_path, {**res.__dict__, "plan_hash": phash})
        return res

    def _write_raw(self, tmp, good) -> None:
        """Raw-image index: a CSV of file paths; in-memory images are saved as PNG files."""
        img_dir = os.path.join(self.out, "images")
        os.makedirs(img_dir, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("path,image_id,patient_id,origin,labels\n")
            for it, (_shape, png) in good:
                if png is None:
                    path = os.path.abspath(it.image)
                else:
                    safe = it.image_id.replace("/", "__")
                    path = os.path.join(img_dir, safe if safe.endswith(".png") else safe + ".png")
                    tfxr_io.write_bytes(path, png)
                    path = os.path.abspath(path)
                fh.write(f"{path},{it.image_id},{it.patient_id},{it.origin},"
                         f"{' '.join(repr(float(x)) for x in it.labels)}\n")


def _optional_fields(it: Item, facts: dict, size: int) -> dict:
    """The optional record fields of one item: view, spacing (of the stored image), demographics."""
    rows, cols = facts["shape"][:2]
    spacing = facts.get("pixel_spacing") or it.pixel_spacing
    return {"view": it.view, "age": it.age, "sex": it.sex,
            "original_size": (rows, cols) if isinstance(it.image, str) else None,
            "pixel_spacing": (spacing[0] * rows / size, spacing[1] * cols / size) if spacing else None}


class _Tally:
    """Counts what goes into a shard and reports what is rejected (file and reason)."""

    def __init__(self, num_labels: int, progress=None):
        self.rejects: list[dict] = []
        self.label_counts = np.zeros(num_labels)
        #: labels stored as NaN (unknown, masked out of loss and AUROC), per label
        self.masked = np.zeros(num_labels)
        self.boxes: Counter[str] = Counter()
        self.images_with_boxes = 0
        self.patients: set[str] = set()
        self.origins: Counter[str] = Counter()
        self.kept = 0
        self.progress = progress

    def accepted(self, items, results):
        for it, (ok, payload) in zip(items, results):
            if self.progress:
                self.progress(1)
            if not ok:
                self.rejects.append({"file": _ref_name(it), "reason": payload})
                print(f"tfxr: rejected {_ref_name(it)}: {payload}", file=sys.stderr)
                continue
            labels = np.asarray(it.labels, dtype=float)
            self.label_counts += np.nan_to_num(labels, nan=0.0)
            self.masked += np.isnan(labels)
            self.boxes.update(str(b.label) for b in it.boxes)
            self.images_with_boxes += bool(it.boxes)
            self.patients.add(it.patient_id)
            self.origins[it.origin] += 1
            self.kept += 1
            yield it, payload


def _ref_name(it: Item) -> str:
    return it.image if isinstance(it.image, str) else it.image_id


# --------------------------------------------------------------------------- manifest
def build_manifest(source: Source, results: list[ShardResult], *, image_size: int, seed: int,
                   fractions, command: list[str], fmt: str, source_rejects: list[Reject]) -> dict:
    splits = {}
    for split in SPLITS:
        rs = sorted((r for r in results if r.split == split), key=lambda r: r.name)
        if not rs:
            continue
        counts = np.sum([r.label_counts for r in rs], axis=0)
        masked = np.sum([r.label_masked or [0.0] * len(source.label_names) for r in rs], axis=0)
        total = sum(r.count for r in rs)
        splits[split] = {
            "count": total,
            "patients": len(set().union(*[set(r.patients) for r in rs])),
            "label_counts": {n: int(c) for n, c in zip(source.label_names, counts)},
            "prevalence": {n: (float(c) / total if total else 0.0) for n, c in zip(source.label_names, counts)},
            "origins": {o: sum(r.origins.get(o, 0) for r in rs) for o in ORIGINS},
            **({"label_masked": {n: int(c) for n, c in zip(source.label_names, masked)}} if masked.any() else {}),
            **({"boxes": {n: sum(r.box_counts.get(str(k), 0) for r in rs)
                          for k, n in enumerate(source.label_names)},
                "images_with_boxes": sum(r.images_with_boxes for r in rs)}
               if any(r.box_counts for r in rs) else {}),
            "shards": [{"file": r.name, "count": r.count, "bytes": r.bytes, "sha256": r.sha256} for r in rs],
        }
    rejected = [r.as_dict() for r in source_rejects] + [x for r in sorted(results, key=lambda r: r.name)
                                                         for x in r.rejects]
    from tfxr import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "format": fmt,
        "tfxr_version": __version__,
        "image_size": image_size,
        "channels": 1,
        "encoding": "png" if fmt == "tfrecord" else "files",
        "label_names": list(source.label_names),
        "source": {"name": source.name, **{k: v for k, v in source.info.items()}},
        "seed": seed,
        "split_fractions": list(fractions),
        "splits": splits,
        "rejected": rejected,
        "command": " ".join(command),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_manifest(out: str, manifest: dict) -> str:
    path = os.path.join(out, "manifest.json")
    tfxr_io.write_json(path, manifest)
    return path


def remove_stale_temporaries(out: str) -> int:
    """Remove the hidden temporaries an interrupted conversion left in ``out``.

    Call only when no writer is running (after every rank finished): every temporary
    of this run has been renamed or removed by then, so what remains is stale.
    """
    removed = 0
    for directory in (out, os.path.join(out, STATE_DIR), os.path.join(out, "images")):
        if os.path.isdir(directory):
            removed += tfxr_io.remove_stale_temporaries(directory)
    return removed


#: Keys every manifest has, at the top, per split and per shard (``bytes`` is checked
#: when present: manifests written before it was recorded still load).
MANIFEST_KEYS = ("schema_version", "format", "image_size", "label_names", "splits")
SPLIT_KEYS = ("count", "patients", "label_counts", "prevalence", "shards")
SHARD_KEYS = ("file", "count", "sha256")


def _missing_keys(manifest: dict) -> list[str]:
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        return missing if "splits" in missing else missing + ["splits (not a mapping)"]
    for split, info in splits.items():
        missing += [f"splits.{split}.{k}" for k in SPLIT_KEYS if k not in info]
        for n, shard in enumerate(info.get("shards") or []):
            missing += [f"splits.{split}.shards[{n}].{k}" for k in SHARD_KEYS if k not in shard]
    return missing


def read_manifest(data_dir: str) -> dict:
    """The manifest of a tfxr data directory; ManifestError names what is wrong with it."""
    path = os.path.join(data_dir, "manifest.json")
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: no manifest (is {data_dir} a tfxr TFRecord directory? "
                            f"write one with `python -m tfxr.tfrecords write ...`)")
    try:
        with open(path, encoding="utf-8") as fh:
            m = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(m, dict):
        raise ManifestError(f"{path}: not a manifest (a JSON {type(m).__name__}, not an object)")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{path}: schema version {m.get('schema_version')} is not {SCHEMA_VERSION}")
    missing = _missing_keys(m)
    if missing:
        raise ManifestError(f"{path}: damaged manifest, missing key(s): {', '.join(missing)}")
    return m


def check_shards(data_dir: str, manifest: dict, splits: list[str] | None = None) -> None:
    """Check that every shard of ``splits`` (default: all) exists with its recorded size.

    Cheap (no hashing): meant to run before training, so a deleted or truncated shard is
    a clear ManifestError now, not a TensorFlow DataLossError mid-epoch.  The full
    sha256 check is ``python -m tfxr.tfrecords verify``.
    """
    available = manifest["splits"]
    for split in splits if splits is not None else list(available):
        if split not in available:
            raise ManifestError(f"{os.path.join(data_dir, 'manifest.json')}: no split {split!r} "
                                f"(has {', '.join(available) or 'none'})")
        for shard in available[split]["shards"]:
            path = os.path.join(data_dir, shard["file"])
            if not os.path.isfile(path):
                raise ManifestError(f"{path}: shard listed in the manifest is missing "
                                    f"(re-run the conversion into {data_dir})")
            size = os.path.getsize(path)
            if "bytes" in shard and size != shard["bytes"]:
                raise ManifestError(f"{path}: {size} bytes, the manifest says {shard['bytes']} "
                                    f"(truncated or replaced; re-run the conversion into {data_dir})")
