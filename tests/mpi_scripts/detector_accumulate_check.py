"""The real DetectorTrainer's step with gradient accumulation; dumps the trainable weights.

    python -m tests.mpi_scripts.detector_accumulate_check DATA OUT k2,micro2

``k2``: 2 micro-batches of 4 per update; ``micro2``: one batch of 8 in 2 parts (each mode its
own DetectorTrainer, the same seed, in this one process).  Batch norm normalises each
micro-batch alone in both, so accumulating K=2 batches of 4 equals one step on the batch of
8 split into ``micro_batches=2`` (its loss the mean of the parts').
"""
import sys

import numpy as np

from tfxr.configs import DetectorConfig
from tfxr.data.pipeline import DataConfig
from tfxr.models.detector import pack_targets
from tfxr.training import run
from tfxr.training.detector import DetectorTrainer

updates, per_update, size = 3, 8, 64


def check(data: str, out: str, mode: str) -> None:
    k = 2 if mode == "k2" else 1
    cfg = DetectorConfig(data=data, out=out, lr=0.01, lr_scaling=False, warmup_epochs=0, seed=1, optimizer="sgd",
                         val_split="", accumulate_steps=k,
                         pipeline=DataConfig(batch_size=per_update // k, deterministic=True, image_size=size))
    tr = DetectorTrainer(cfg, micro_batches=1 if mode == "k2" else 2)
    run.broadcast(tr)
    rng = np.random.default_rng(7)
    xs = rng.random((updates, per_update, size, size, 1), dtype=np.float32)
    boxes = []
    for _ in range(updates * per_update):      # 0-2 random boxes per image (some images negatives)
        n = int(rng.integers(0, 3))
        corner = rng.uniform(0.05, 0.6, (n, 2))
        boxes.append([(0, (*c, *(c + rng.uniform(0.1, 0.35, 2)))) for c in corner])
    ys = {key: v.reshape(updates, per_update, *v.shape[1:]) for key, v in pack_targets(boxes, 4).items()}
    micro = per_update // k
    for u in range(updates):
        for m in range(k):
            part = slice(m * micro, (m + 1) * micro)
            tr.train_step(xs[u, part], {key: v[u, part] for key, v in ys.items()})
    np.savez(f"{out}/det-{mode}.npz", *[v.numpy() for v in tr.model.trainable_variables])
    sys.stdout.write(f"{mode} world {tr.world} allreduces {int(tr.step.allreduces.numpy())}\n")


for name in sys.argv[3].split(","):
    check(sys.argv[1], sys.argv[2], name)
