"""Run N training steps of the real Trainer on fixed batches and dump the weights.

    mpirun -np 2 python -m tests.mpi_scripts.step_check DATA OUT dist   # rank r trains on batch r
    python -m tests.mpi_scripts.step_check DATA OUT union               # one process, both batches
"""
import sys

import numpy as np

from tfxr.data.pipeline import DataConfig
from tfxr.train import TrainConfig, Trainer

data, out, mode = sys.argv[1:4]
extra = dict(a.split("=", 1) for a in sys.argv[4:])   # e.g. xla=1 compression=fp16
steps, per_rank = 4, 8
cfg = TrainConfig(model="tb_cnn", data=data, out=out, lr=3e-3, lr_scaling=False, warmup_epochs=0, dropout=0.0,
                  seed=1, xla=extra.get("xla") == "1", compression=extra.get("compression", "none"),
                  optimizer=extra.get("optimizer", "adam"),
                  pipeline=DataConfig(batch_size=per_rank, deterministic=extra.get("deterministic", "1") == "1"))
tr = Trainer(cfg)
tr.broadcast()
np.savez(f"{out}/weights-{mode}{extra.get('tag', '')}-init-{tr.rank}.npz",   # the common start (rank 0's)
         *[v.numpy() for v in tr.model.trainable_variables])
rng = np.random.default_rng(7)
xs = rng.random((steps, 2, per_rank, 64, 64, 1), dtype=np.float32)
ys = (rng.random((steps, 2, per_rank, 1)) < 0.4).astype(np.float32)
losses = []
for s in range(steps):
    if mode == "dist":
        r = tr.rank
        losses.append(float(tr.train_step(xs[s, r], ys[s, r])))
    else:
        losses.append(float(tr.train_step(xs[s].reshape(-1, 64, 64, 1), ys[s].reshape(-1, 1))))
np.savez(f"{out}/weights-{mode}{extra.get('tag', '')}-{tr.rank}.npz", *[v.numpy() for v in tr.model.trainable_variables])
sys.stdout.write(f"world {tr.world} losses {losses}\n")  # one write: ranks' lines never interleave
