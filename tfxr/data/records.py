"""TFRecord schema, the one shard writer and the one reader of tfxr data directories.

Layout written to ``OUT``::

    OUT/train-00000-of-00016.tfrecord ...   one tf.train.Example per image
    OUT/manifest.json                         what is in the shards, how it was made
    OUT/.tfxr-shards/<shard>.json             per-shard record of a finished shard (resume)

Shard contents depend only on the inputs, the seed and the options, never on the
number of MPI ranks or pool workers, so every way of running produces the same bytes.
Each shard is written to a temporary name and renamed when complete (``tfxr.files``), so
an interrupted run leaves only finished shards (reused by the next run) and hidden
``.tmp-*`` files (removed by the next run).  The manifest records each shard's size and
sha256: :func:`check_shards` is the cheap check before training (existence and size),
``python -m tfxr.tfrecords verify`` the full one (sha256); both are :func:`verify_shards`.

:func:`read_examples` is the one reader: every consumer (the training pipeline, the GAN,
localization, balancing, stats, the TFDS builder) reads a split through it, with one rule
for splitting records across ranks (:func:`rank_assignment`) and one decode/resize
(:func:`decode_image`).  Every shard or image path it reads from a manifest or index is
confined to the data directory first (:mod:`tfxr.data.paths`).

TensorFlow is imported inside the functions that need it, deliberately: the writer's
spawned worker processes import this module to decode images and must not pay for (or
hold the memory of) a TensorFlow import.
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import multiprocessing as mp
import os
import signal
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from tfxr import files as tfxr_files
from tfxr.data import imageio, paths
from tfxr.data.types import ORIGINS, SPLITS, Item, Reject, Source, normalise_boxes
from tfxr.errors import ManifestError
from tfxr import log

SCHEMA_VERSION = 1
STATE_DIR = ".tfxr-shards"
#: How ``image/encoded`` holds the pixels: PNG bytes (default) or raw uint8 at the stored size.
ENCODINGS = ("png", "raw")


# --------------------------------------------------------------------------- schema
def shard_name(split: str, index: int, total: int, fmt: str = "tfrecord") -> str:
    return f"{split}-{index:05d}-of-{total:05d}.{'tfrecord' if fmt == 'tfrecord' else 'csv'}"


def make_example(png: bytes, size: int, labels, image_id: str, patient_id: str,
                 boxes=(), origin: str = "real", encoding: str = "png", *, view: str | None = None,
                 pixel_spacing: tuple[float, float] | None = None,
                 original_size: tuple[int, int] | None = None,
                 age: float | None = None, sex: str | None = None) -> bytes:
    """One serialised tf.train.Example; ``image/synthetic`` is 1 exactly for generated images.

    ``png`` holds the pixels as ``encoding`` says (:data:`ENCODINGS`): PNG bytes, or
    ``raw`` uint8 pixels, row-major, ``size`` x ``size`` (``image/format`` says which).
    Optional fields, written only when known (older records simply lack them):
    ``image/view`` (PA, AP, ...), ``image/pixel_spacing`` (row, column mm of the *stored*
    image), ``image/original_size`` (rows, columns before resizing), ``patient/age`` and
    ``patient/sex`` (only when the conversion was asked for demographics).  A label may be
    NaN: unknown for that image (e.g. CheXpert's uncertain label under ``ignore``).
    """
    import tensorflow as tf

    if origin not in ORIGINS:
        raise ValueError(f"origin {origin!r} is not one of {ORIGINS}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding {encoding!r} is not one of {ENCODINGS}")

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=v))

    def f(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v))

    feat = {
        "image/encoded": b([png]),
        "image/format": b([encoding.encode()]),
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


def plan_hash(plan: ShardPlan, image_size: int, encoding: str = "png") -> str:
    h = hashlib.sha256()
    h.update(json.dumps([SCHEMA_VERSION, plan.fmt, image_size, plan.name]).encode())
    if encoding != "png":    # PNG shards keep the hashes they had before encodings existed
        h.update(json.dumps({"encoding": encoding}).encode())
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
    """Worker: load + resize + encode one item (no TensorFlow here).

    mode: ``png`` or ``raw`` (a shard's encoding: PNG bytes or the resized uint8 pixels,
    with ``facts``: the decoded image's ``shape`` and (DICOM) ``pixel_spacing``), ``index``
    (a raw-image index entry: the original's shape, PNG bytes for in-memory images).
    ``dicom_window=False`` ignores DICOM VOI LUTs and windows.
    """
    ref, size, mode, *rest = args
    dicom_window = rest[0] if rest else True
    try:
        grey, facts = imageio.load_image_meta(ref, dicom_window)
        if mode == "index":
            return True, (grey.shape, imageio.encode_png(grey) if not isinstance(ref, str) else None)
        small = imageio.resize(grey, size)
        pixels = np.ascontiguousarray(small, np.uint8).tobytes() if mode == "raw" else imageio.encode_png(small)
        return True, (pixels, facts)
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


def write_shard(path: str, records) -> tuple[int, int, str]:
    """Write serialized examples to one TFRecord shard; (records, bytes, sha256) of the file.

    The one way a shard file is written (``tfrecords write`` and ``gan balance``): under a
    temporary name renamed into place when complete (``tfxr.files.atomic_path``), so a reader
    never sees a half shard and an interrupted write leaves the previous file untouched.
    """
    import tensorflow as tf

    count = 0
    with tfxr_files.atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in records:
                writer.write(record)
                count += 1
    return count, os.path.getsize(path), tfxr_files.sha256_file(path)


class ShardWriter:
    """Writes planned shards with a process pool; reuses shards finished earlier.

    The pool is a ``multiprocessing.Pool`` (spawned workers): a normal exit closes it,
    any exception leaving the ``with`` block (Ctrl-C, or SIGTERM turned into SystemExit
    by the CLI) terminates it, so no worker outlives the conversion.  :meth:`write_all`
    keeps the workers busy across shards: the images of the next ``AHEAD`` x workers
    shards are queued while this process serialises and writes the current one (results
    come back in order, so the bytes are those of one worker).
    """

    #: shards queued ahead per pool worker (bounds the decoded images held in memory)
    AHEAD = 2

    def __init__(self, out: str, image_size: int, num_labels: int, workers: int = 1,
                 progress=None, fmt: str = "tfrecord", encoding: str = "png", dicom_window: bool = True):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding {encoding!r} is not one of {ENCODINGS}")
        self.out, self.size, self.num_labels, self.encoding = out, image_size, num_labels, encoding
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
        """Write one planned shard (or reuse it): :meth:`write_all` of one plan."""
        return self.write_all([plan])[0]

    def write_all(self, plans: list[ShardPlan]) -> list[ShardResult]:
        """Write (or reuse) every planned shard, in order; the pool works ahead across shards."""
        hashes = [self._plan_hash(p) for p in plans]     # once per shard: it fingerprints every image file
        results: list[ShardResult | None] = [self._reused(p, h) for p, h in zip(plans, hashes)]
        todo = [k for k, r in enumerate(results) if r is None]
        ahead = 1 if self._pool is None else self.AHEAD * self.workers
        queued: deque = deque()   # (plan index, its images being prepared), in plan order
        following = iter(todo)
        for _ in todo:
            while len(queued) < ahead and (k := next(following, None)) is not None:
                queued.append((k, self._queue(plans[k])))
            index, prepared = queued.popleft()
            results[index] = self._write_prepared(plans[index], prepared, hashes[index])
        return results

    def _state_path(self, plan: ShardPlan) -> str:
        return os.path.join(self.out, STATE_DIR, plan.name + ".json")

    def _plan_hash(self, plan: ShardPlan) -> str:
        phash = plan_hash(plan, self.size, self.encoding)
        if not self.dicom_window:
            phash = hashlib.sha256((phash + ":dicom-full-range").encode()).hexdigest()
        return phash

    def _reused(self, plan: ShardPlan, phash: str) -> ShardResult | None:
        """The result of a shard finished earlier with the same plan, or None (write it)."""
        final, state_path = os.path.join(self.out, plan.name), self._state_path(plan)
        if os.path.exists(final) and os.path.exists(state_path):
            st = _read_state(state_path)
            # a state from before origins were counted is not reused: its counts would be missing
            if (st.get("plan_hash") == phash and "origins" in st
                    and st.get("sha256") == tfxr_files.sha256_file(final)):
                if self.progress:
                    self.progress(len(plan.items))
                res = ShardResult(**{k: v for k, v in st.items() if k not in ("plan_hash", "reused")})
                res.bytes = os.path.getsize(final)
                res.reused = True
                return res
        return None

    def _queue(self, plan: ShardPlan):
        """Start preparing a shard's images (in the pool: queued now; in-process: lazily)."""
        mode = "index" if self.fmt == "raw" else self.encoding
        return self._map(_prepare, [(it.image, self.size, mode, self.dicom_window) for it in plan.items])

    def _write_prepared(self, plan: ShardPlan, prepared, phash: str) -> ShardResult:
        final, state_path = os.path.join(self.out, plan.name), self._state_path(plan)
        tally = _Tally(self.num_labels, self.progress)
        good = tally.accepted(plan.items, prepared)
        if self.fmt == "raw":
            with tfxr_files.atomic_path(final) as tmp:
                self._write_raw(tmp, good)
            sha, size = tfxr_files.sha256_file(final), os.path.getsize(final)
        else:
            _, size, sha = write_shard(final, (
                make_example(pixels, self.size, it.labels, it.image_id, it.patient_id,
                             normalise_boxes(it.boxes, it.box_space, facts["shape"]), it.origin, self.encoding,
                             **_optional_fields(it, facts, self.size))
                for it, (pixels, facts) in good))
        res = ShardResult(plan.name, plan.split, tally.kept, sha, tally.rejects,
                          tally.label_counts.tolist(), sorted(tally.patients),
                          {o: tally.origins[o] for o in ORIGINS}, size,
                          label_masked=tally.masked.tolist(), box_counts=dict(sorted(tally.boxes.items())),
                          images_with_boxes=tally.images_with_boxes)
        os.makedirs(os.path.dirname(state_path), exist_ok=True)
        tfxr_files.write_json(state_path, {**res.__dict__, "plan_hash": phash})
        return res

    def _write_raw(self, tmp, good) -> None:
        """Raw-image index: a CSV of file paths; in-memory images are saved as PNG files."""
        img_dir = os.path.join(self.out, "images")
        os.makedirs(img_dir, exist_ok=True)
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            rows = csv.writer(fh, lineterminator="\n")      # quotes a comma or quote in a path or id
            rows.writerow(["path", "image_id", "patient_id", "origin", "labels"])
            for it, (_shape, png) in good:
                if png is None:
                    path = os.path.abspath(it.image)
                else:
                    safe = it.image_id.replace("/", "__")
                    path = os.path.join(img_dir, safe if safe.endswith(".png") else safe + ".png")
                    tfxr_files.write_bytes(path, png)
                    path = os.path.abspath(path)
                rows.writerow([path, it.image_id, it.patient_id, it.origin,
                               " ".join(repr(float(x)) for x in it.labels)])


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
                log.info(f"rejected {_ref_name(it)}: {payload}", all_ranks=True)   # each rank rejects its own shards' inputs
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
                   fractions, command: list[str], fmt: str, source_rejects: list[Reject],
                   encoding: str = "png") -> dict:
    splits = {}
    for split in SPLITS:
        rs = sorted((r for r in results if r.split == split), key=lambda r: r.name)
        if not rs:
            continue
        counts = np.sum([r.label_counts for r in rs], axis=0)
        masked = np.sum([r.label_masked or [0.0] * len(source.label_names) for r in rs], axis=0)
        total = sum(r.count for r in rs)
        known = total - masked    # per label: images whose label is known (a masked NaN label is not a negative)
        splits[split] = {
            "count": total,
            "patients": len(set().union(*[set(r.patients) for r in rs])),
            "label_counts": {n: int(c) for n, c in zip(source.label_names, counts)},
            "prevalence": {n: (float(c) / k if k else 0.0) for n, c, k in zip(source.label_names, counts, known)},
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
        "encoding": encoding if fmt == "tfrecord" else "files",
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
    tfxr_files.write_json(path, manifest)
    return path


def remove_stale_temporaries(out: str) -> int:
    """Remove the hidden temporaries an interrupted conversion left in ``out``.

    Call only when no writer is running (after every rank finished): every temporary
    of this run has been renamed or removed by then, so what remains is stale.
    """
    removed = 0
    for directory in (out, os.path.join(out, STATE_DIR), os.path.join(out, "images")):
        if os.path.isdir(directory):
            removed += tfxr_files.remove_stale_temporaries(directory)
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
        if not isinstance(info, dict):
            missing.append(f"splits.{split} (not a mapping)")
            continue
        missing += [f"splits.{split}.{k}" for k in SPLIT_KEYS if k not in info]
        shards = info.get("shards")
        for n, shard in enumerate(shards if isinstance(shards, list) else []):
            if not isinstance(shard, dict):
                missing.append(f"splits.{split}.shards[{n}] (not a mapping)")
                continue
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
    wrong = _schema_problems(m)
    if wrong:
        raise ManifestError(f"{path}: damaged manifest: {'; '.join(wrong[:3])}"
                            + (f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""))
    for split, info in m["splits"].items():      # every shard stays inside data_dir
        for shard in info["shards"]:
            paths.inside(data_dir, shard["file"], path, f"shard of split '{split}'")
    return m


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and bool(np.isfinite(v))


def _schema_problems(m: dict) -> list[str]:
    """Values of the wrong type or out of range, each naming its key (the keys exist)."""
    bad: list[str] = []
    if m["format"] not in ("tfrecord", "raw"):
        bad.append(f"format: {m['format']!r} is not 'tfrecord' or 'raw'")
    if not _is_int(m["image_size"]) or m["image_size"] < 1:
        bad.append(f"image_size: {m['image_size']!r} is not a positive integer")
    if "channels" in m and m["channels"] != 1:
        bad.append(f"channels: {m['channels']!r} is not 1 (tfxr stores grey images)")
    if "encoding" in m and m["encoding"] not in ENCODINGS + ("files",):
        bad.append(f"encoding: {m['encoding']!r} is not one of {', '.join(ENCODINGS + ('files',))}")
    names = m["label_names"]
    if (not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names)
            or len(set(names)) != len(names)):
        return bad + [f"label_names: {names!r} is not a list of distinct label names"]
    for split, info in m["splits"].items():
        key = f"splits.{split}"
        if split not in SPLITS:
            bad.append(f"{key}: unknown split (allowed: {', '.join(SPLITS)})")
        if not isinstance(info, dict):
            bad.append(f"{key}: not a mapping")
            continue
        for k in ("count", "patients"):
            if not _is_int(info[k]) or info[k] < 0:
                bad.append(f"{key}.{k}: {info[k]!r} is not a count")
        for k in ("label_counts", "prevalence"):
            v = info[k]
            if not isinstance(v, dict) or set(v) != set(names):
                got = sorted(v) if isinstance(v, dict) else v
                bad.append(f"{key}.{k}: labels {got!r} are not label_names {names!r}")
            elif not all(_is_number(x) and x >= 0 for x in v.values()):
                bad.append(f"{key}.{k}: values {list(v.values())!r} are not non-negative numbers")
        if "origins" in info and (not isinstance(info["origins"], dict)
                                  or not all(o in ORIGINS and _is_int(c) for o, c in info["origins"].items())):
            bad.append(f"{key}.origins: {info['origins']!r} is not a count per origin ({', '.join(ORIGINS)})")
        shards = info["shards"]
        if not isinstance(shards, list):
            bad.append(f"{key}.shards: not a list")
            continue
        for n, shard in enumerate(shards):
            sk = f"{key}.shards[{n}]"
            if not isinstance(shard, dict):
                bad.append(f"{sk}: not a mapping")
                continue
            if not isinstance(shard["file"], str) or not shard["file"]:
                bad.append(f"{sk}.file: {shard['file']!r} is not a file name")
            if not _is_int(shard["count"]) or shard["count"] < 0:
                bad.append(f"{sk}.count: {shard['count']!r} is not a count")
            if not isinstance(shard["sha256"], str) or len(shard["sha256"]) != 64:
                bad.append(f"{sk}.sha256: {shard['sha256']!r} is not a sha256 digest")
            if "bytes" in shard and (not _is_int(shard["bytes"]) or shard["bytes"] < 0):
                bad.append(f"{sk}.bytes: {shard['bytes']!r} is not a size")
            for flag in ("synthetic", "oversampled"):
                if flag in shard and not isinstance(shard[flag], bool):
                    bad.append(f"{sk}.{flag}: {shard[flag]!r} is not true or false")
    balancing = m.get("balancing")
    if balancing is not None:
        try:
            ok = (balancing["class"]["label"] in names and balancing["class"]["value"] in (0, 1)
                  and _is_int(balancing["added"]["train"]["synthetic"])
                  and balancing["added"]["train"]["label_value"] in (0, 1))
        except (KeyError, TypeError):
            ok = False
        if not ok:
            bad.append("balancing: not a block written by `tfxr.gan balance` (class.label, class.value, "
                       "added.train.synthetic, added.train.label_value)")
    return bad


# --------------------------------------------------------------------------- shards of a split
#: Which shards of a split :func:`read_examples` reads: ``all`` as written; ``real`` without
#: the generated (GAN) shards and records; ``generated`` only those; ``original`` only what
#: ``tfrecords write`` wrote (no generated and no oversampled shards, no generated records).
SHARD_SELECTIONS = ("all", "real", "generated", "original")


def _manifest_path(data_dir: str) -> str:
    return os.path.join(data_dir, "manifest.json")


def shard_files(data_dir: str, split: str, manifest: dict, shards: str = "all") -> list[tuple[str, int]]:
    """(path, record count) of a split's shards (or raw index files), in manifest order.

    Shards flagged ``"synthetic": true`` (written by ``tfxr.gan balance``) may only be in
    ``train``: a manifest listing them elsewhere is refused.
    """
    if shards not in SHARD_SELECTIONS:
        raise ValueError(f"shards={shards!r}: one of {SHARD_SELECTIONS}")
    if split not in manifest["splits"]:
        raise ManifestError(f"{data_dir}: no '{split}' split (has {sorted(manifest['splits'])})")
    entries = manifest["splits"][split]["shards"]
    listed_in = _manifest_path(data_dir)
    for s in entries:
        paths.inside(data_dir, s["file"], listed_in, f"shard of split '{split}'")
    flagged = [s["file"] for s in entries if s.get("synthetic")]
    if flagged and split != "train":
        raise ManifestError(f"{_manifest_path(data_dir)} lists generated (\"synthetic\": true) shards in the '{split}' split "
                            f"({', '.join(sorted(flagged))}); generated images belong to 'train' only")
    keep = {"all": lambda s: True,
            "real": lambda s: not s.get("synthetic"),
            "generated": lambda s: bool(s.get("synthetic")),
            "original": lambda s: not s.get("synthetic") and not s.get("oversampled")}[shards]
    return [(os.path.join(data_dir, s["file"]), int(s["count"])) for s in entries if keep(s)]


def rank_assignment(files: list[tuple[str, int]], rank: int, world: int):
    """Files this rank reads, whether it must further shard by record, its record count.

    The one rule for splitting records across ranks: whole shards (round robin) when
    every rank gets at least one; otherwise every rank reads all shards in the same fixed
    order and keeps every world-th record, which is disjoint and complete only because
    that order is fixed.
    """
    if world > 1 and len(files) >= world:
        mine = files[rank::world]
        return [f for f, _ in mine], False, sum(c for _, c in mine)
    total = sum(c for _, c in files)
    return [f for f, _ in files], world > 1, len(range(rank, total, world))


def rank_share(data_dir: str, split: str, manifest: dict, rank: int = 0, world: int = 1,
               shards: str = "all") -> int:
    """How many records :func:`read_examples` gives this rank (before the record filter)."""
    return rank_assignment(shard_files(data_dir, split, manifest, shards), rank, world)[2]


# --------------------------------------------------------------------------- the reader
#: Every shard :func:`read_examples` handed to tf.data in this process, with its data
#: directory and manifest entry: what :func:`explain_data_loss` checks when a read fails.
_OPENED: dict[str, tuple[str, dict]] = {}
#: What :func:`read_examples` can return per example (a dict with these keys).
FIELDS = ("image", "encoded", "labels", "image_id", "patient_id", "origin", "synthetic", "boxes")
DEFAULT_FIELDS = ("image", "labels", "image_id", "patient_id")
_FEATURE_OF = {"image": "image/encoded", "encoded": "image/encoded", "labels": "labels",
               "image_id": "image/id", "patient_id": "patient/id", "origin": "image/origin",
               "synthetic": "image/synthetic"}
BOX_KEYS = ("label", "xmin", "ymin", "xmax", "ymax")


def resize_u8(image, size: int):
    """uint8 HxWxC -> uint8 size x size x C: antialiased bilinear, rounded (the one resize)."""
    import tensorflow as tf

    img = tf.image.resize(tf.cast(image, tf.float32), [size, size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)


def manifest_encoding(manifest: dict) -> str:
    """How a TFRecord directory's records hold their pixels (PNG unless the manifest says raw)."""
    return "raw" if manifest.get("encoding") == "raw" else "png"


def decode_image(encoded, stored: int, size: int, encoding: str = "png"):
    """A record's pixels (PNG bytes, or raw uint8 at the stored size) -> uint8 (size, size, 1);
    resized only when size != stored."""
    import tensorflow as tf

    if encoding == "raw":      # no PNG decode: the bytes are the pixels
        img = tf.reshape(tf.io.decode_raw(encoded, tf.uint8), [stored, stored, 1])
    else:
        img = tf.ensure_shape(tf.io.decode_png(encoded, channels=1), [stored, stored, 1])
    return img if size == stored else resize_u8(img, size)


def _grey(image):
    """HxWxC (C in 1..4) float -> HxWx1 grey (raw-index images are any PNG/JPEG)."""
    import tensorflow as tf

    c = tf.shape(image)[-1]
    return tf.case([(tf.equal(c, 1), lambda: image),
                    (tf.equal(c, 2), lambda: image[..., :1]),
                    (tf.equal(c, 3), lambda: tf.image.rgb_to_grayscale(image))],
                   default=lambda: tf.image.rgb_to_grayscale(image[..., :3]))


def _decode_file(path, size: int):
    """A raw-index image file (original size, any format) -> uint8 (size, size, 1)."""
    import tensorflow as tf

    img = tf.io.decode_image(tf.io.read_file(path), channels=0, dtype=tf.float32, expand_animations=False)
    img = tf.image.resize(_grey(img), [size, size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img * 255.0), 0, 255), tf.uint8)


def _record_parser(fields, num_labels: int, stored: int, size: int, encoding: str):
    import tensorflow as tf

    full = feature_spec(num_labels)
    wanted = {_FEATURE_OF[f] for f in fields if f in _FEATURE_OF}
    if "boxes" in fields:
        wanted |= {f"bbox/{k}" for k in BOX_KEYS}
    spec = {k: v for k, v in full.items() if k in wanted}

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
        out = {}
        for f in fields:
            if f == "image":
                out[f] = decode_image(ex["image/encoded"], stored, size, encoding)
            elif f == "boxes":
                out[f] = {k: tf.sparse.to_dense(ex[f"bbox/{k}"]) for k in BOX_KEYS}
            else:
                out[f] = ex[_FEATURE_OF[f]]
        return out
    return parse


def _is_real(record):
    """Record-level guard: False for a record flagged ``image/synthetic=1``, wherever it sits."""
    import tensorflow as tf

    spec = {"image/synthetic": tf.io.FixedLenFeature([], tf.int64, default_value=0)}
    return tf.equal(tf.io.parse_single_example(record, spec)["image/synthetic"], 0)


def read_raw_index(data_dir: str, split: str, manifest: dict, files: list[str] | None = None) -> dict:
    """The rows of a split's raw-image index: {path, labels, image_id, patient_id, origin}.

    Every image path must resolve inside ``data_dir`` or inside the image folder the
    conversion named (``source.images`` in the manifest); anything else is refused.
    """
    roots = [data_dir] + [r for r in [(manifest.get("source") or {}).get("images")]
                          if isinstance(r, str) and r]
    cols: dict[str, list] = {"path": [], "labels": [], "image_id": [], "patient_id": [], "origin": []}
    for index in files if files is not None else [f for f, _ in shard_files(data_dir, split, manifest)]:
        with open(index, newline="", encoding="utf-8") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                path = row.get("path") or ""
                if not any(paths.is_inside(os.path.join(root, path), root) for root in roots):
                    raise ManifestError(f"{index}:{line}: image path {path!r} resolves outside {data_dir} "
                                        f"and the converted image folder; refused")
                cols["path"].append(path)
                cols["labels"].append([float(x) for x in (row.get("labels") or "").split()])
                cols["image_id"].append(row.get("image_id") or "")
                cols["patient_id"].append(row.get("patient_id") or "")
                cols["origin"].append(row.get("origin") or "real")
    n = len(cols["path"])
    cols["labels"] = np.asarray(cols["labels"], np.float32).reshape(n, len(manifest["label_names"]))
    return cols


def read_examples(data_dir: str, split: str, *, fields=DEFAULT_FIELDS, rank: int = 0, world: int = 1,
                  image_size: int = 0, manifest: dict | None = None, shards: str = "all",
                  file_seed: int | None = None, cycle_length: int = 1, deterministic: bool = True):
    """The one reader: a ``tf.data.Dataset`` of this rank's examples of a split, as dicts.

    fields: any of :data:`FIELDS`: ``image`` uint8 (size, size, 1), decoded from PNG and
    resized (antialiased, rounded) only when ``image_size`` (0: as stored) differs from
    the stored size; ``encoded`` the stored bytes (PNG, or raw
    pixels when the manifest says ``encoding: raw``); ``labels`` float32; ``image_id``,
    ``patient_id``, ``origin`` strings; ``synthetic`` int64 (1 for generated images);
    ``boxes`` a dict of 1-D tensors ``label, xmin, ymin, xmax, ymax`` (normalised).
    rank/world: this rank's disjoint part (:func:`rank_assignment`).  shards: which
    shards (:data:`SHARD_SELECTIONS`).  file_seed: shuffle the read order before decoding
    (the shard order for whole shards; the rows of a raw index); None keeps manifest order.
    cycle_length: shards read in parallel (interleaved; with record-level splitting the
    interleave is always deterministic so that every rank counts the same order).
    A raw-image index (``--format raw``) gives the same fields except ``encoded`` and ``boxes``.
    """
    import tensorflow as tf

    manifest = manifest or read_manifest(data_dir)
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        raise ValueError(f"fields {unknown}: not in {FIELDS}")
    stored = int(manifest["image_size"])
    size = image_size or stored
    autotune = tf.data.AUTOTUNE
    files, record_level, count = rank_assignment(shard_files(data_dir, split, manifest, shards), rank, world)
    entries = {os.path.join(data_dir, s["file"]): s for s in manifest["splits"][split]["shards"]}
    for f in files:
        _OPENED[f] = (data_dir, entries[f])

    if manifest.get("format", "tfrecord") == "raw":
        missing = [f for f in fields if f in ("encoded", "boxes")]
        if missing:
            raise ManifestError(f"{data_dir}: a raw-image index (--format raw) has no {', '.join(missing)}; "
                                f"convert to TFRecords for this")
        cols = read_raw_index(data_dir, split, manifest, files)
        cols["synthetic"] = np.zeros(len(cols["path"]), np.int64)
        ds = tf.data.Dataset.from_tensor_slices(cols)
        if record_level:
            ds = ds.shard(world, rank)
        if file_seed is not None:       # shuffle the cheap paths before decoding
            ds = ds.shuffle(max(1, count), seed=file_seed)

        def parse_row(row):
            return {f: (_decode_file(row["path"], size) if f == "image" else row[f]) for f in fields}
        return ds.map(parse_row, num_parallel_calls=autotune, deterministic=deterministic)

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(files, tf.string))
    if file_seed is not None and not record_level:
        ds = ds.shuffle(max(1, len(files)), seed=file_seed)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=max(1, min(cycle_length, len(files))),
                       num_parallel_calls=autotune, deterministic=record_level or deterministic)
    if record_level:
        ds = ds.shard(world, rank)
    if shards in ("real", "original"):
        ds = ds.filter(_is_real)
    return ds.map(_record_parser(tuple(fields), len(manifest["label_names"]), stored, size,
                                 manifest_encoding(manifest)),
                  num_parallel_calls=autotune, deterministic=deterministic)


# --------------------------------------------------------------------------- checks
def shard_problems(data_dir: str, manifest: dict, splits: list[str] | None = None, *,
                   hashes: bool = False, first: bool = False) -> list[str]:
    """What is wrong with the shards of ``splits`` (default: all), one line per shard.

    The one shard check, behind both :func:`check_shards` (before every read: presence,
    a regular file, the recorded size) and ``python -m tfxr.tfrecords verify``
    (``hashes=True``: also the recorded sha256).  A shard name that leaves ``data_dir``
    is not a problem to list but a refused manifest (ManifestError).  ``first`` stops
    at the first problem.
    """
    available = manifest["splits"]
    listed_in = _manifest_path(data_dir)
    problems: list[str] = []
    for split in splits if splits is not None else list(available):
        if split not in available:
            raise ManifestError(f"{listed_in}: no split {split!r} (has {', '.join(available) or 'none'})")
        for shard in available[split]["shards"]:
            path = paths.inside(data_dir, shard["file"], listed_in, f"shard of split '{split}'")
            problem = _shard_problem(data_dir, path, shard, hashes)
            if problem:
                problems.append(problem)
                if first:
                    return problems
    return problems


def _shard_problem(data_dir: str, path: str, shard: dict, hashes: bool) -> str | None:
    """What is wrong with one shard file against its manifest entry, or None."""
    again = f"re-run the conversion into {data_dir}"
    if not os.path.lexists(path):
        return f"{path}: shard listed in the manifest is missing ({again})"
    if os.path.isdir(path):
        return f"{path}: a directory, not a shard file ({again})"
    if not os.path.isfile(path):
        return f"{path}: not a regular file ({again})"
    size = os.path.getsize(path)
    wrong_size = "bytes" in shard and size != shard["bytes"]
    if hashes and tfxr_files.sha256_file(path) != shard["sha256"]:
        return (f"{path}: sha256 differs from the manifest"
                + (f" ({size} bytes, the manifest says {shard['bytes']})" if wrong_size else "")
                + f" (damaged or replaced; {again})")
    if wrong_size:
        return f"{path}: {size} bytes, the manifest says {shard['bytes']} (truncated or replaced; {again})"
    return None


def explain_data_loss(error: BaseException) -> str | None:
    """One line naming the damaged shard behind TensorFlow's DataLossError, else None.

    TFRecord's CRCs raise ``DataLossError`` mid-read, without the file's name; this checks
    the shards this process read (their recorded size and sha256, then TFRecord's own
    CRCs) and names the damaged one.  The CLI wrapper calls it for every command, so
    training, evaluation, GAN training and balancing all report a damaged shard the same
    way (exit 2).
    """
    if type(error).__name__ != "DataLossError":
        return None
    import tensorflow as tf

    text = str(getattr(error, "message", "") or error).strip()
    reason = text.splitlines()[0] if text else "DataLossError"
    for path, (data_dir, shard) in list(_OPENED.items()):
        problem = _shard_problem(data_dir, path, shard, hashes=True)
        if problem:
            return f"{problem}; TensorFlow read it as damaged: {reason}"
    for path, (data_dir, _shard) in list(_OPENED.items()):
        try:
            for _ in tf.data.TFRecordDataset(path):
                pass
        except tf.errors.DataLossError as e:
            first = str(e.message).strip().splitlines()[0]
            return (f"{path}: damaged TFRecord shard ({first}), although its sha256 is the manifest's: "
                    f"it was damaged before the manifest was written; re-run the conversion into {data_dir}")
    dirs = sorted({d for d, _ in _OPENED.values()})
    return (f"a damaged TFRecord shard in {', '.join(dirs) or 'the data'} ({reason}); "
            f"check it with `python -m tfxr.tfrecords verify DIR`")


def check_shards(data_dir: str, manifest: dict, splits: list[str] | None = None, *,
                 hashes: bool = False) -> None:
    """Every shard of ``splits`` (default: all) is present with its recorded size (and,
    with ``hashes``, its sha256), else a ManifestError naming the first bad shard.

    Cheap without ``hashes`` (no reading): meant to run before training, so a deleted or
    truncated shard is a clear error now, not a TensorFlow DataLossError mid-epoch.
    """
    problems = shard_problems(data_dir, manifest, splits, hashes=hashes, first=True)
    if problems:
        raise ManifestError(problems[0])
