"""The real GanTrainer's step with gradient accumulation on fixed batches; dumps both networks' weights.

    python -m tests.mpi_scripts.gan_accumulate_check OUT 4,1         # K=4 micro-batches of 16/K per update, then K=1
    mpirun -np 2 python -m tests.mpi_scripts.gan_accumulate_check OUT 4,1   # rank r: its own batches

Every rank sees the same 3 batches of 16 real images and 16 noise vectors per update whatever
K is; K=4 trains on them as 4 micro-batches of 4, K=1 as one batch of 16.  No batch norm and
no dropout (their statistics / masks are per micro-batch by design).  Each K builds its own
GanTrainer (the same seed) in this one process.  Prints the allreduce rounds of each.
"""
import sys

import numpy as np
import tensorflow as tf

from tfxr.training.gan import GanConfig, GanTrainer

updates, per_update, size, latent = 3, 16, 28, 100


def check(out: str, k: int) -> None:
    micro = per_update // k
    cfg = GanConfig(out=out, batch_size=micro, epochs=1, steps_per_epoch=updates * k, g_filters=8, d_filters=8,
                    batch_norm=False, d_dropout=0.0, g_lr=1e-3, d_lr=1e-3, deterministic=True, seed=3,
                    accumulate_steps=k)
    rng = np.random.default_rng(11)
    tr = GanTrainer(cfg, images=rng.uniform(-1, 1, (per_update, size, size, 1)).astype(np.float32))
    tr.broadcast()
    np.savez(f"{out}/gan-init-w{tr.world}-{tr.rank}.npz",
             *[v.numpy() for v in tr.generator.trainable_variables + tr.discriminator.trainable_variables])
    rng = np.random.default_rng(5 + tr.rank)
    real = rng.uniform(-1, 1, (updates, per_update, size, size, 1)).astype(np.float32)
    noise = rng.standard_normal((updates, per_update, latent)).astype(np.float32)
    for u in range(updates):
        for m in range(k):
            part = slice(m * micro, (m + 1) * micro)
            tr.step(tf.constant(real[u, part]), tf.constant(noise[u, part]), tf.constant(0.0),
                    tf.constant(u * k + m, tf.int64))
    weights = [v.numpy() for v in tr.generator.trainable_variables + tr.discriminator.trainable_variables]
    np.savez(f"{out}/gan-k{k}-w{tr.world}-{tr.rank}.npz", *weights)
    sys.stdout.write(f"k {k} world {tr.world} allreduces {int(tr.step.allreduces.numpy())}\n")


for k in sys.argv[2].split(","):
    check(sys.argv[1], int(k))
