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

from tfxr.cli import run_main
from tfxr.config import parse_config
from tfxr.configs import DetectorConfig
from tfxr.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    def body() -> int:
        if argv[:1] != ["train"]:
            raise ConfigError("usage: python -m tfxr.detect train --data DIR --out OUT [options] "
                              "(python -m tfxr.detect train --help lists them)")
        cfg, _ = parse_config(DetectorConfig, argv[1:], "python -m tfxr.detect train", __doc__)
        from tfxr.training.detector import DetectorTrainer   # TensorFlow and KerasCV after the options

        DetectorTrainer(cfg).fit()
        return 0
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
