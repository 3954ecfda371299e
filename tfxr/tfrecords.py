r"""``python -m tfxr.tfrecords``: raw images + label files -> sharded TFRecords + manifest.

    python -m tfxr.tfrecords write --source nih --images RAW/images \
        --labels RAW/Data_Entry_2017_v2020.csv --bbox RAW/BBox_List_2017.csv \
        --out tfrec/nih224 --image-size 224 --shards 16
    mpirun -np 4 python -m tfxr.tfrecords write ...      # ranks split the shards
    python -m tfxr.tfrecords verify tfrec/nih224         # re-check every shard's sha256

A killed or interrupted conversion leaves only finished shards: re-run the same
command and it reuses them, removes the leftover temporaries and writes the rest.

Exit status: 0 success; 1 an unexpected failure (traceback); 2 unusable arguments or
data sets (one line naming the option or file); 3 the result is not acceptable: more
inputs than --max-rejects were rejected (shards and manifest are still written), or
`verify` found a missing or damaged shard.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from tfxr.cli import EXIT_OK, EXIT_REJECTED, run_main
from tfxr.data import sources, splits as splitlib
from tfxr.data.records import (ShardWriter, build_manifest, plan_shards, read_manifest,
                               remove_stale_temporaries, shard_problems, write_manifest)
from tfxr.data.types import OFFICIAL_SPLITS, Source
from tfxr.launch import mpi_comm
from tfxr.errors import ConfigError, SourceError
from tfxr.progress import progress_bar
from tfxr import log

DEFAULT_SHARDS = 8
EXIT_CODES = __doc__[__doc__.index("Exit status:"):]


def load_source(args) -> Source:
    source = _read_source(args)
    source.info["dicom_voi"] = "full-range" if args.dicom_ignore_window else "window"
    return source


def _read_source(args) -> Source:
    """The Source of ``--source NAME``: its reader (``tfxr.data.sources.READERS``), built from the options."""
    reader = sources.READERS.get(args.source)
    if reader is None:
        raise ConfigError(f"--source: unknown value {args.source!r}")
    return reader.from_args(args).read()


def check_arguments(args) -> None:
    """Reject option values and combinations that cannot work, before any file is written."""
    if args.image_size < 8:
        raise ConfigError(f"--image-size must be >= 8, got {args.image_size}")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.shards is not None and args.format == "raw":
        raise ConfigError("--shards does not apply to --format raw (one CSV index per split); drop it")
    if args.encoding != "png" and args.format == "raw":
        raise ConfigError("--encoding applies to TFRecord shards; a raw-image index (--format raw) "
                          "lists the image files: drop one of them")
    if args.shards is not None and args.shards < 1:
        raise ConfigError(f"--shards must be >= 1, got {args.shards}")
    if args.num_images < 1:
        raise ConfigError(f"--num-images must be >= 1, got {args.num_images}")
    if not 0.0 <= args.prevalence <= 1.0:
        raise ConfigError(f"--prevalence must be within 0..1, got {args.prevalence}")


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's kill, mpirun aborting) unwinds like Ctrl-C: the pool workers
    are terminated and temporaries removed instead of being left behind."""
    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def convert(args, argv: list[str]) -> int:
    comm = mpi_comm()
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm else (0, 1)
    t0 = time.perf_counter()
    source = load_source(args)
    if not source.items:
        raise SourceError(f"--source {args.source}: no usable images found "
                          f"({len(source.rejects)} rejected)")
    fractions = splitlib.parse_fractions(args.split_fractions)
    if args.remap_splits:
        remap = dict(splitlib.parse_split_assignment(x, "--remap-splits") for x in args.remap_splits.split(","))
        bad = [v for v in remap.values() if v not in OFFICIAL_SPLITS]
        if bad:
            raise ConfigError(f"--remap-splits: unknown target split(s) {bad} "
                              f"(allowed: {', '.join(OFFICIAL_SPLITS)})")
        for it in source.items:
            it.split = remap.get(it.split, it.split)
    assigned = splitlib.assign_splits(source.items, fractions, args.seed,
                                      use_official=not args.ignore_official_splits,
                                      stratify=not args.no_stratify)
    plans = plan_shards(assigned, args.shards or DEFAULT_SHARDS, args.seed, fmt=args.format)
    os.makedirs(args.out, exist_ok=True)
    mine = plans[rank::size]
    total = sum(len(p.items) for p in mine)
    if rank == 0:
        log.info(f"{source.name}: {len(source.items)} images, {len(source.rejects)} rejected inputs; "
              f"{len(plans)} shards " + ", ".join(f"{k}={len(v)}" for k, v in assigned.items())
              + (f"; {size} ranks" if size > 1 else "") + f"; {args.workers} workers/rank")
    bar = progress_bar(total, "convert", enabled=(rank == 0 and not args.quiet))
    with ShardWriter(args.out, args.image_size, len(source.label_names), args.workers,
                     bar.update, fmt=args.format, encoding=args.encoding,
                     dicom_window=not args.dicom_ignore_window) as writer:
        results = [writer.write(p) for p in mine]
    bar.close()
    if comm:
        gathered = comm.gather(results, root=0)
        results = [r for part in gathered for r in part] if rank == 0 else []
    if rank != 0:
        return EXIT_OK
    stale = remove_stale_temporaries(args.out)  # every rank has finished writing
    manifest = build_manifest(source, results, image_size=args.image_size, seed=args.seed,
                              fractions=fractions, command=["python", "-m", "tfxr.tfrecords", *argv],
                              fmt=args.format, source_rejects=source.rejects, encoding=args.encoding)
    seconds = time.perf_counter() - t0
    n_in = len(source.items)
    reused = sum(r.reused for r in results)
    manifest["conversion"] = {"seconds": round(seconds, 3), "images": n_in,
                              "images_per_s": round(n_in / seconds, 2), "ranks": size,
                              "workers_per_rank": args.workers, "shards_reused": reused}
    path = write_manifest(args.out, manifest)
    for r in source.rejects:
        log.info(f"rejected {r.file}: {r.reason}")
    n_rej = len(manifest["rejected"])
    log.info(f"wrote {path}: " + ", ".join(f"{k} {v['count']}" for k, v in manifest["splits"].items())
          + f"; {n_rej} rejected" + (f"; {reused} shards reused from an earlier run" if reused else "")
          + (f"; {stale} leftover temporary file(s) removed" if stale else "")
          + f"; {seconds:.1f} s ({n_in / seconds:.1f} images/s)")
    if args.max_rejects >= 0 and n_rej > args.max_rejects:
        log.error(f"{n_rej} rejected inputs exceed --max-rejects {args.max_rejects} "
              f"(see 'rejected' in {path})")
        return EXIT_REJECTED
    return EXIT_OK


def verify(data_dir: str) -> int:
    """Full check: every shard exists and has the size and sha256 the manifest records."""
    problems = shard_problems(data_dir, read_manifest(data_dir), hashes=True)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{data_dir}: {'OK' if not problems else f'{len(problems)} bad shard(s)'}")
    return EXIT_REJECTED if problems else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tfxr.tfrecords", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="convert a data set into sharded TFRecords (or a raw-image index)",
                       epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("--source", required=True, choices=["nih", "tb", "folder", "npz", "synthetic", "rsna",
                                                       "chexpert", "mimic-cxr-jpg", "vindr", "tbx11k"])
    w.add_argument("--images", help="image folder (PNG, JPEG or DICOM .dcm files)")
    w.add_argument("--labels", action="append",
                   help="label file: NIH Data_Entry_2017*.csv(.gz), TB labels.csv, RSNA stage_2_train_labels.csv, "
                        "CheXpert train.csv/valid.csv (repeatable), MIMIC mimic-cxr-2.0.0-chexpert.csv, "
                        "VinDr train.csv, TBX11K TBX11K_{train,val}.json (repeatable)")
    w.add_argument("--class-info", help="rsna: stage_2_detailed_class_info.csv (adds the label 'Not Normal')")
    w.add_argument("--mimic-split", help="mimic-cxr-jpg: mimic-cxr-2.0.0-split.csv(.gz)")
    w.add_argument("--mimic-metadata", help="mimic-cxr-jpg: mimic-cxr-2.0.0-metadata.csv(.gz)")
    w.add_argument("--views", metavar="PA,AP", help="keep only these view positions (rsna: from the DICOM "
                   "header; chexpert, mimic-cxr-jpg: from the label files; mimic default PA,AP)")
    w.add_argument("--all-views", action="store_true", help="chexpert: keep lateral images too (default: frontal only)")
    w.add_argument("--uncertainty", default="ones", choices=list(sources.UNCERTAINTY_POLICIES),
                   help="chexpert, mimic-cxr-jpg: the uncertain label (-1) becomes 1, 0, or NaN = masked out of "
                        "the loss and AUROC (default ones)")
    w.add_argument("--fusion", default="keep", choices=list(sources.FUSIONS),
                   help="vindr: keep every reader's boxes, weighted-box fusion, or fused boxes at least "
                        "--min-readers readers agree on")
    w.add_argument("--fusion-iou", type=float, default=0.4, help="vindr: IoU above which readings fuse")
    w.add_argument("--min-readers", type=int, default=2, help="vindr --fusion agreement: readers needed")
    w.add_argument("--missing-images", default="reject", choices=["reject", "skip"],
                   help="label rows without an image (rsna, chexpert, mimic-cxr-jpg, vindr, tbx11k): rejected, "
                        "or skipped and counted in the manifest (an image folder holding part of a set)")
    w.add_argument("--demographics", action="store_true",
                   help="rsna, chexpert: store patient age and sex in the records (not stored unless asked)")
    w.add_argument("--dicom-ignore-window", action="store_true",
                   help="DICOM: ignore VOI LUT and Window Center/Width, map the full stored range instead")
    w.add_argument("--bbox", help="NIH BBox_List_2017.csv(.gz)")
    w.add_argument("--split-list", action="append", metavar="SPLIT=FILE",
                   help="official split list (NIH train_val_list.txt as trainval=, test_list.txt as test=, "
                        "or CheXNet-style train=/val=/test= lists); repeatable")
    w.add_argument("--npz", help="MedMNIST .npz file")
    w.add_argument("--negative-class", default="NORMAL", help="folder source: the class that is 'no finding'")
    w.add_argument("--num-images", type=int, default=600, help="synthetic: number of images")
    w.add_argument("--synthetic-task", default="tb", choices=["tb", "multilabel"],
                   help="synthetic: which phantom labels (choices: %(choices)s)")
    w.add_argument("--synthetic-size", type=int, default=0, help="synthetic: render size (default: --image-size)")
    w.add_argument("--prevalence", type=float, default=0.35, help="synthetic: positive rate per label")
    w.add_argument("--out", required=True, help="output directory")
    w.add_argument("--image-size", type=int, default=224)
    w.add_argument("--shards", type=int, default=None,
                   help=f"shards per split, capped by its image count (default {DEFAULT_SHARDS}; "
                        f"not with --format raw)")
    w.add_argument("--workers", type=int, default=1, help="decode/encode processes per rank")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--split-fractions", default="0.7,0.1,0.2", help="train,val,test fractions of images")
    w.add_argument("--ignore-official-splits", action="store_true",
                   help="re-split patient-wise even where the data set has official splits")
    w.add_argument("--no-stratify", action="store_true",
                   help="do not balance label signatures across splits (patient-wise either way)")
    w.add_argument("--remap-splits", metavar="OLD=NEW,...",
                   help="rename official splits first, e.g. 'train=trainval,val=test' keeps the official "
                        "val set untouched as test and carves a patient-wise val out of train")
    w.add_argument("--max-rejects", type=int, default=100,
                   help="exit 3 when more inputs than this are rejected (-1: no bound)")
    w.add_argument("--format", default="tfrecord", choices=["tfrecord", "raw"],
                   help="'raw' writes CSV indexes of the image files instead of shards")
    w.add_argument("--encoding", default="png", choices=["png", "raw"],
                   help="how records hold the pixels: 'png' (compressed) or 'raw' (uint8 at --image-size, "
                        "no PNG decode when read; larger shards)")
    w.add_argument("--quiet", action="store_true")
    v = sub.add_parser("verify", help="check every shard against the manifest's sha256 (exit 3 if not)")
    v.add_argument("data_dir")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)

    def body() -> int:
        if args.cmd == "verify":
            return verify(args.data_dir)
        check_arguments(args)
        _stop_on_sigterm()
        return convert(args, argv)

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
