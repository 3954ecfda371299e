r"""``python -m tfxr.tfrecords``: raw images + label files -> sharded TFRecords + manifest.

    python -m tfxr.tfrecords write --source nih --images RAW/images \
        --labels RAW/Data_Entry_2017_v2020.csv --bbox RAW/BBox_List_2017.csv \
        --out tfrec/nih224 --image-size 224 --shards 16
    mpirun -np 4 python -m tfxr.tfrecords write ...      # ranks split the shards
    python -m tfxr.tfrecords verify tfrec/nih224         # re-check every shard's sha256

A killed or interrupted conversion leaves only finished shards: re-run the same
command and it reuses them, removes the leftover temporaries and writes the rest.
The options are :class:`tfxr.configs.WriteConfig`'s and :class:`~tfxr.configs.VerifyConfig`'s
(``write --help``; ``--config FILE.yaml`` and ``--set key=value`` as for every command).

Exit status: 0 success; 1 an unexpected failure (traceback); 2 unusable arguments or
data sets (one line naming the option or file); 3 the result is not acceptable: more
inputs than --max-rejects were rejected (shards and manifest are still written), or
`verify` found a missing or damaged shard.
"""
from __future__ import annotations

import os
import signal
import sys
import time

from tfxr.cli import EXIT_OK, EXIT_REJECTED, run_command
from tfxr.config import parse_config
from tfxr.configs import DEFAULT_SHARDS, VerifyConfig, WriteConfig
from tfxr.data import splits as splitlib
from tfxr.data.types import OFFICIAL_SPLITS, Source
from tfxr.launch import mpi_comm
from tfxr.errors import ConfigError, SourceError
from tfxr.progress import progress_bar
from tfxr import log

PROG = "python -m tfxr.tfrecords"
EXIT_CODES = __doc__[__doc__.index("Exit status:"):]

# The data set readers (pandas) and the shard writer (pydicom, Pillow; TensorFlow when it
# writes) are imported in the functions that use them: deliberately lazy, so that a bad
# option is answered without their start-up.


def load_source(args: WriteConfig) -> Source:
    source = _read_source(args)
    source.info["dicom_voi"] = "full-range" if args.dicom_ignore_window else "window"
    return source


def _read_source(args) -> Source:
    """The Source of ``--source NAME``: its reader (``tfxr.data.sources.READERS``), built from the options."""
    from tfxr.data import sources   # lazy (see the top)

    reader = sources.READERS.get("synthetic" if args.source == "phantoms" else args.source)  # the older name
    if reader is None:
        raise ConfigError(f"--source: unknown value {args.source!r}")
    return reader.from_args(args).read()


def check_arguments(args: WriteConfig) -> None:
    """Reject option combinations that cannot work, before any file is written (each value's
    own bounds are :class:`~tfxr.configs.WriteConfig`'s, checked as it is parsed)."""
    if args.shards is not None and args.format == "raw":
        raise ConfigError("--shards does not apply to --format raw (one CSV index per split); drop it")
    if args.encoding != "png" and args.format == "raw":
        raise ConfigError("--encoding applies to TFRecord shards; a raw-image index (--format raw) "
                          "lists the image files: drop one of them")


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's kill, mpirun aborting) unwinds like Ctrl-C: the pool workers
    are terminated and temporaries removed instead of being left behind."""
    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def convert(args: WriteConfig, argv: list[str]) -> int:
    from tfxr.data.records import (ShardWriter, build_manifest, plan_shards,  # lazy (see the top)
                                   remove_stale_temporaries, write_manifest)

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
                                      stratify=args.stratify)
    plans = plan_shards(assigned, args.shards or DEFAULT_SHARDS, args.seed, fmt=args.format)
    os.makedirs(args.out, exist_ok=True)
    mine = plans[rank::size]
    total = sum(len(p.items) for p in mine)
    if rank == 0:
        log.info(f"{source.name}: {len(source.items)} images, {len(source.rejects)} rejected inputs; "
              f"{len(plans)} shards " + ", ".join(f"{k}={len(v)}" for k, v in assigned.items())
              + (f"; {size} ranks" if size > 1 else "") + f"; {args.workers} workers/rank")
    t_import = time.perf_counter()
    if args.format != "raw":   # the shard writer's TensorFlow: a start-up cost, kept out of the conversion's clock
        import tensorflow  # noqa: F401
    startup = time.perf_counter() - t_import
    bar = progress_bar(total, "convert", enabled=(rank == 0 and not args.quiet))
    with ShardWriter(args.out, args.image_size, len(source.label_names), args.workers,
                     bar.update, fmt=args.format, encoding=args.encoding,
                     dicom_window=not args.dicom_ignore_window) as writer:
        results = writer.write_all(mine)
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
    seconds = time.perf_counter() - t0 - startup
    n_in = len(source.items)
    reused = sum(r.reused for r in results)
    manifest["conversion"] = {"seconds": round(seconds, 3), "images": n_in,
                              "images_per_s": round(n_in / seconds, 2), "ranks": size,
                              "workers_per_rank": args.workers, "shards_reused": reused,
                              "tensorflow_import_s_excluded": round(startup, 3)}
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
    from tfxr.data.records import read_manifest, shard_problems   # lazy (see the top)

    problems = shard_problems(data_dir, read_manifest(data_dir), hashes=True)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{data_dir}: {'OK' if not problems else f'{len(problems)} bad shard(s)'}")
    return EXIT_REJECTED if problems else EXIT_OK


def write(argv: list[str]) -> int:
    """``tfrecords write OPTIONS``: check every option, then convert."""
    cfg, _ = parse_config(WriteConfig, argv, f"{PROG} write",
                          "Convert a data set into sharded TFRecords (or a raw-image index).", EXIT_CODES)
    check_arguments(cfg)
    _stop_on_sigterm()
    return convert(cfg, ["write", *argv])


def verify_command(argv: list[str]) -> int:
    """``tfrecords verify DIR``."""
    cfg, _ = parse_config(VerifyConfig, argv, f"{PROG} verify",
                          "Check every shard against the manifest's sha256 (exit 3 if not).", EXIT_CODES)
    return verify(cfg.data_dir)


COMMANDS = {"write": write, "verify": verify_command}


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, COMMANDS, PROG, __doc__)


if __name__ == "__main__":
    sys.exit(main())
