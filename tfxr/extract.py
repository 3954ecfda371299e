"""``python -m tfxr.extract``: data set archives (NIH ChestX-ray14's ``images_*.tar.gz``)
unpacked safely into one folder.

    python -m tfxr.extract ARCHIVE_DIR OUT_DIR
    python -m tfxr.extract ARCHIVE.tar.gz [ARCHIVE.tar.gz | ARCHIVE_DIR]... OUT_DIR

(``python -m tfxr.data.extract`` and ``tfrecords/extract_images.sh`` are other names of
this command.)  A directory argument stands for its ``--glob`` files (default
``$ARCHIVE_GLOB`` or ``images_*.tar.gz``), sorted.  Every archive is checked completely
before anything is written, no entry may land outside OUT_DIR or pass through a link, and
an archive extracted before (the same bytes) is skipped: see :mod:`tfxr.data.extract`.
The options are :class:`tfxr.configs.ExtractConfig`'s.

Exit status: 0 every archive extracted or skipped; 2 bad usage or a missing input;
3 at least one archive was refused or could not be read (see ``tfxr.cli``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from tfxr import log
from tfxr.cli import EXIT_OK, EXIT_REJECTED, run_main
from tfxr.config import parse_config
from tfxr.configs import ExtractConfig
from tfxr.data.extract import DEFAULT_GLOB, ArchiveExtractor, find_archives, require_data_filter

PROG = "python -m tfxr.extract"


def extract(cfg: ExtractConfig) -> int:
    """Extract every archive named; EXIT_REJECTED when one was refused or unreadable."""
    require_data_filter()
    archives = find_archives(cfg.inputs, cfg.glob or os.environ.get("ARCHIVE_GLOB") or DEFAULT_GLOB)
    out_dir = Path(cfg.out_dir).absolute()
    failed = ArchiveExtractor(out_dir, show_progress=sys.stderr.isatty()).run(archives)
    if failed:
        log.error(f"{len(failed)} of {len(archives)} archive(s) not extracted: " + " ".join(str(a) for a in failed))
        return EXIT_REJECTED
    print(f"All {len(archives)} archive(s) are extracted in {out_dir}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: extract(parse_config(ExtractConfig, argv, PROG, __doc__)[0]))


if __name__ == "__main__":
    sys.exit(main())
