"""``python -m tfxr.detect``: train the box detector (KerasCV's YOLOv8) data-parallel.

    python -m tfxr.detect train --data tfrec/phantoms --out runs/det --epochs 30 --image-size 256
    mpirun -np 2 python -m tfxr.detect train --data tfrec/rsna --out runs/det-rsna --batch-size 8
    python -m tfxr.distributed --np 2 -- tfxr.detect train ...   (the same mpirun line, built for you)

The options are :class:`tfxr.configs.DetectorConfig`'s (``--help``); the data are any
tfxr TFRecords whose records carry boxes (``bbox/*``: the phantoms' lesions, NIH's
BBox_List_2017, ...), images without boxes trained on as negatives.  Rank 0 alone writes
``OUT/config.yaml``, ``history.json`` (train loss, val mAP@0.5 per epoch), TensorBoard
logs, ``checkpoints/`` (``--resume``), ``best.weights.h5`` (best val mAP@0.5) and
``final.weights.h5``.  Evaluate with ``python -m tfxr.evaluate detection --detector OUT ...``.
"""
from __future__ import annotations

import sys

from tfxr.cli import run_command
from tfxr.config import parse_config
from tfxr.configs import DetectorConfig

PROG = "python -m tfxr.detect"


def train(argv: list[str]) -> int:
    cfg, _ = parse_config(DetectorConfig, argv, f"{PROG} train", __doc__)
    from tfxr.training.detector import DetectorTrainer   # lazy: TensorFlow and KerasCV after the options

    DetectorTrainer(cfg).fit()
    return 0


COMMANDS = {"train": train}


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, COMMANDS, PROG, __doc__)


if __name__ == "__main__":
    sys.exit(main())
