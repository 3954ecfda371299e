"""Run N steps of the real DetectorTrainer on fixed batches and dump the trainable weights.

    mpirun -np 2 python -m tests.mpi_scripts.detector_step_check DATA OUT dist   # rank r: batch r
    python -m tests.mpi_scripts.detector_step_check DATA OUT union               # one process, both
                                                                                 # batches (2 micro-batches)
Batch norm normalises each rank's batch alone, so the single process runs the union in two
micro-batches (its loss the mean of theirs), exactly what two ranks compute together.
"""
import sys

import numpy as np

from tfxr.configs import DetectorConfig
from tfxr.data.pipeline import DataConfig
from tfxr.models.detector import pack_targets
from tfxr.training.detector import DetectorTrainer

data, out, mode = sys.argv[1:4]
steps, per_rank, size = 3, 4, 64
cfg = DetectorConfig(data=data, out=out, lr=0.01, lr_scaling=False, warmup_epochs=0, seed=1, optimizer="sgd",
                     val_split="", pipeline=DataConfig(batch_size=per_rank, deterministic=True, image_size=size))
tr = DetectorTrainer(cfg, micro_batches=1 if mode == "dist" else 2)
tr.steps = steps
from tfxr.training import run  # noqa: E402

run.broadcast(tr)
rng = np.random.default_rng(7)
xs = rng.random((steps, 2, per_rank, size, size, 1), dtype=np.float32)
boxes = []
for _ in range(steps * 2 * per_rank):      # 0-2 random boxes per image (some images negatives)
    n = int(rng.integers(0, 3))
    corner = rng.uniform(0.05, 0.6, (n, 2))
    boxes.append([(0, (*c, *(c + rng.uniform(0.1, 0.35, 2)))) for c in corner])
ys = pack_targets(boxes, 4)
ys = {k: v.reshape(steps, 2, per_rank, *v.shape[1:]) for k, v in ys.items()}
losses = []
for s in range(steps):
    if mode == "dist":
        r = tr.rank
        losses.append(float(tr.train_step(xs[s, r], {k: v[s, r] for k, v in ys.items()})))
    else:
        losses.append(float(tr.train_step(xs[s].reshape(-1, size, size, 1),
                                          {k: v[s].reshape(-1, *v.shape[3:]) for k, v in ys.items()})))
np.savez(f"{out}/det-{mode}-{tr.rank}.npz", *[v.numpy() for v in tr.model.trainable_variables])
sys.stdout.write(f"world {tr.world} losses {losses}\n")
