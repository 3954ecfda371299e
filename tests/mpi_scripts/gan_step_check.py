"""Run N steps of the real GanTrainer on fixed real batches and dump both networks' weights.

    python -m tfxr.distributed --np 2 -- tests.mpi_scripts.gan_step_check OUT dist    # rank r: batch r, its own noise
    python -m tests.mpi_scripts.gan_step_check OUT union # one process, both ranks' batches

Batch norm and dropout are off: their statistics / masks are per rank by design, so only
without them is a 2-rank step bit-comparable with one process on the union batch.
"""
import sys

import numpy as np
import tensorflow as tf

from tfxr.training.gan import GanConfig, GanTrainer, rank_noise

out, mode = sys.argv[1:3]
optimizer = sys.argv[3] if len(sys.argv) > 3 else "adam"
steps, per_rank, size = 3, 4, 28
rng = np.random.default_rng(5)
images = rng.uniform(-1, 1, (steps, 2, per_rank, size, size, 1)).astype(np.float32)
cfg = GanConfig(out=out, batch_size=per_rank, epochs=1, steps_per_epoch=steps, g_filters=8, d_filters=8,
                batch_norm=False, d_dropout=0.0, optimizer=optimizer, g_lr=1e-3, d_lr=1e-3,
                deterministic=True, seed=3)
tr = GanTrainer(cfg, images=images[0, 0])
tr.broadcast()
# the noise each rank draws at each step (rank-keyed); the union process uses both ranks' noise
noise = [[rank_noise(cfg.seed, r, s, per_rank, cfg.latent_dim).numpy() for r in range(2)] for s in range(steps)]
for s in range(steps):
    if mode == "dist":
        assert not np.allclose(noise[s][0], noise[s][1])   # per-rank noise streams differ
        tr.train_step(images[s, tr.rank], step=s)
    else:
        real, z = images[s].reshape(-1, size, size, 1), np.concatenate(noise[s])
        tr.step(tf.constant(real), tf.constant(z), tf.constant(0.0), tf.constant(s, tf.int64))
weights = [v.numpy() for v in tr.generator.trainable_variables + tr.discriminator.trainable_variables]
np.savez(f"{out}/gan-{mode}-{optimizer}-{tr.rank}.npz", *weights)
sys.stdout.write(f"world {tr.world}\n")  # one write: ranks' lines never interleave
