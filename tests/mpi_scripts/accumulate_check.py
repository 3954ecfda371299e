"""Train the real Trainer's step on fixed batches with gradient accumulation, dump the weights.

    python -m tests.mpi_scripts.accumulate_check DATA OUT 4,1    # K=4 micro-batches of 16/K per update, then K=1
    mpirun -np 2 python -m tests.mpi_scripts.accumulate_check DATA OUT 4,1    # rank r: its own batches

Every rank sees the same 3 batches of 16 images per update whatever K is; K=4 trains on them
as 4 micro-batches of 4, K=1 as one batch of 16.  Each K builds its own Trainer (the same
seed, so the same initial weights) in this one process.  Prints the allreduces each step ran.
"""
import sys

import numpy as np

from tfxr.data.pipeline import DataConfig
from tfxr.train import TrainConfig, Trainer

updates, per_update = 3, 16


def check(data: str, out: str, k: int) -> None:
    micro = per_update // k
    cfg = TrainConfig(model="tb_cnn", data=data, out=out, lr=3e-3, lr_scaling=False, warmup_epochs=0, dropout=0.0,
                      seed=1, accumulate_steps=k, pipeline=DataConfig(batch_size=micro, deterministic=True))
    tr = Trainer(cfg)
    tr.broadcast()
    np.savez(f"{out}/weights-init-w{tr.world}-{tr.rank}.npz", *[v.numpy() for v in tr.model.trainable_variables])
    rng = np.random.default_rng(7 + tr.rank)
    xs = rng.random((updates, per_update, 64, 64, 1), dtype=np.float32)
    ys = (rng.random((updates, per_update, 1)) < 0.4).astype(np.float32)
    for u in range(updates):
        for m in range(k):
            tr.train_step(xs[u, m * micro:(m + 1) * micro], ys[u, m * micro:(m + 1) * micro])
    np.savez(f"{out}/weights-k{k}-w{tr.world}-{tr.rank}.npz", *[v.numpy() for v in tr.model.trainable_variables])
    sys.stdout.write(f"k {k} world {tr.world} allreduces {int(tr.step.allreduces.numpy())}\n")


for k in sys.argv[3].split(","):
    check(sys.argv[1], sys.argv[2], int(k))
