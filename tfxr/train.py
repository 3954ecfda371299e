"""``python -m tfxr.train``: one data-parallel training loop for every tfxr classifier.

    python -m tfxr.train --model tb_cnn --data tfrec/tb --out runs/tb --epochs 10
    mpirun -np 4 python -m tfxr.train --config configs/chexnet_nih.yaml --data tfrec/nih224 \\
        --out runs/chexnet --set compression=fp16 --set pipeline.shuffle_buffer=512
    python -m tfxr.distributed --np 4 -- tfxr.train ...     (the same mpirun line, built for you)

Config: dataclass defaults < ``--config run.yaml`` < flags < ``--set key=value``.  The
input pipeline's options form the ``pipeline:`` section (``--batch-size``, ``--image-size``,
``--channels``, ``--cache [auto|true|false]``, ``--deterministic``, ``--shuffle-buffer`` set them directly).
The options are :class:`tfxr.configs.TrainConfig`'s.  Rank 0 alone writes
``OUT/config.yaml``, ``history.json``, TensorBoard logs, ``checkpoints/`` (resumable with
``--resume``), ``best.keras`` and ``final.keras``.  Every option is checked before
anything is written; an ``OUT`` that holds a run is refused unless ``--resume`` or
``--overwrite``, and so is an ``OUT`` another run is writing.  A run whose loss or
weights become NaN stops with exit code 3 (nothing of that epoch saved).
"""
from __future__ import annotations

import sys

from tfxr.cli import lazy_exports, run_main
from tfxr.config import parse_config
from tfxr.configs import TrainConfig

__all__ = ["TrainConfig", "Trainer", "class_weights", "main", "weighted_bce"]

#: re-exported from tfxr.training.classifier (TensorFlow): imported when first asked for
__getattr__ = lazy_exports(__name__, "tfxr.training.classifier", ("Trainer", "class_weights", "weighted_bce"))


def main(argv: list[str] | None = None) -> int:
    def body():
        cfg, _ = parse_config(TrainConfig, argv, "python -m tfxr.train", __doc__)
        from tfxr.training.classifier import Trainer   # lazy: TensorFlow after the options are checked

        Trainer(cfg).fit()
    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
