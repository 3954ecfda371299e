"""The distributed DCGAN training loop (``python -m tfxr.gan train``).

One ``tf.function`` step per batch: the generator turns this rank's noise into images,
the discriminator scores real and fake, and two tapes give the discriminator's and the
generator's gradients.  Both tapes are wrapped by Horovod (``tfxr.distributed``), so
both sets of gradients are averaged over ranks, and both networks and both optimizers
start from rank 0's values.  With equal per-rank batches, N ranks step exactly like one
process on the union of their batches (tested; batch norm's statistics are per rank,
as with any data-parallel batch norm, and are averaged over ranks after every epoch).

Randomness that must differ per rank (noise, instance noise, dropout) is drawn from
streams keyed by ``(seed, rank, step)``, so a resumed run draws what an uninterrupted
run would have drawn.

:class:`GanTrainer` plugs into the one run scaffold, :mod:`tfxr.training.run`, like the
classifier: seeding, broadcast, the epoch loop, checkpoints and an exact ``--resume``,
``config.yaml``, ``history.json`` and TensorBoard (:class:`~tfxr.training.runlog.RunLog`),
the NaN check, the run-folder lock.  Rank 0 alone writes them, and the GAN's own outputs:
``losses.png``, ``samples/epoch-NNNN.png`` and ``generator.keras``/``discriminator.keras``.
Elastic training (``elastic``, ``elastic_commit_steps``) as for the classifier: at every
(re)start each worker loads its share of the class images for the live world and the steps
are planned from every worker's count (:meth:`GanTrainer.adopt_world`).
The config is :class:`tfxr.configs.GanConfig` (re-exported here).
"""
from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf
from scipy.spatial.distance import pdist

from tfxr import distributed as dist
from tfxr import files, plots
from tfxr.config import ConfigError
from tfxr.configs import GanConfig
from tfxr.data.balance import class_images, minority_value
from tfxr.data.imageio import encode_png
from tfxr.data.records import read_manifest
from tfxr.models import model_report
from tfxr.models.dcgan import build_discriminator, build_generator
from tfxr.training import run
from tfxr.training.checkpoints import variables_by_path
from tfxr.training.schedule import Decision

__all__ = ["GanConfig", "GanStep", "GanTrainer", "gan_losses", "image_grid", "mean_pairwise_distance",
           "plot_due", "plot_history", "rank_noise"]

PLOT_EVERY = 10   # epochs between redraws of losses.png (see GanTrainer.plot_due)

SAMPLE_GRID = 64                 # samples in the fixed-noise grid and the collapse indicator


# --------------------------------------------------------------------------- data
def class_value_and_label(manifest: dict, cfg: GanConfig) -> tuple[int, int]:
    """(label index, class value) to train on; the minority value of the split by default."""
    names = list(manifest["label_names"])
    label = cfg.class_label or names[0]
    if label not in names:
        raise ConfigError(f"--class-label {label!r}: not a label of {cfg.data} (has {', '.join(names)})")
    if cfg.split not in manifest["splits"]:
        raise ConfigError(f"--split {cfg.split!r}: {cfg.data} has splits {sorted(manifest['splits'])}")
    value = cfg.class_value if cfg.class_value >= 0 else minority_value(manifest["splits"][cfg.split], label)
    return names.index(label), value


def load_class_images(data_dir: str, manifest: dict, split: str, label_index: int, value: int,
                      image_size: int, rank: int, world: int) -> np.ndarray:
    """This rank's images of one class, float32 in [-1, 1], shape (n, size, size, 1).

    Ranks read disjoint parts (:func:`tfxr.data.balance.class_images`, the one loader); a GAN
    trains on one class of a few thousand small images at most, so they are held in
    memory, which also makes every epoch's order exactly reproducible.  Generated
    (GAN) images are never learnt from.
    """
    images = class_images(data_dir, split, label_index, value, image_size=image_size, rank=rank, world=world,
                          manifest=manifest)   # the one loader (evaluate gan reads through it too)
    return images.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


# --------------------------------------------------------------------------- randomness
def _stream_key(seed: int, rank: int, stream: int) -> int:
    return seed * 7919 + rank * 104729 + stream


def rank_noise(seed: int, rank: int, step: int, count: int, latent_dim: int):
    """Generator noise of one rank at one global step: stateless, so a resumed run redraws
    exactly what an uninterrupted run drew, and every rank draws its own."""
    return tf.random.stateless_normal([count, latent_dim], seed=[_stream_key(seed, rank, 3), step])


# --------------------------------------------------------------------------- losses
def _bce_logits(target: float, logits):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.fill(tf.shape(logits), tf.constant(target, logits.dtype)), logits=logits))


def gan_losses(kind: str, real_logits, fake_logits, smoothing: float = 0.0):
    """(discriminator loss, generator loss) for 'bce' (non-saturating) or 'hinge'."""
    if kind == "bce":
        d_loss = _bce_logits(1.0 - smoothing, real_logits) + _bce_logits(0.0, fake_logits)
        return d_loss, _bce_logits(1.0, fake_logits)
    if kind == "hinge":
        d_loss = tf.reduce_mean(tf.nn.relu(1.0 - real_logits)) + tf.reduce_mean(tf.nn.relu(1.0 + fake_logits))
        return d_loss, -tf.reduce_mean(fake_logits)
    raise ConfigError(f"loss: unknown {kind!r} (bce, hinge)")


def mean_pairwise_distance(images: np.ndarray) -> float:
    """Mean Euclidean distance between all pairs of images (diversity of a batch)."""
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    return float(pdist(flat).mean()) if len(flat) > 1 else 0.0


def image_grid(images: np.ndarray, columns: int = 8) -> np.ndarray:
    """(n, h, w, 1) images in [-1, 1] -> one uint8 grid image with 2-px gaps."""
    n, h, w = images.shape[:3]
    rows = -(-n // columns)
    grid = np.zeros((rows * (h + 2) + 2, columns * (w + 2) + 2), np.uint8)
    pixels = np.clip((images[..., 0] + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
    for i, img in enumerate(pixels):
        r, c = divmod(i, columns)
        grid[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + c * (w + 2):2 + c * (w + 2) + w] = img
    return grid


# --------------------------------------------------------------------------- the step
class GanStep(run.AccumulatedStep):
    """The DCGAN's training step (``tf.function``s), shared with ``tfxr.models.report``.

    The generator turns noise into images, the discriminator scores real and fake (with
    instance noise of sd ``sigma`` drawn from ``(seed, rank, step)`` streams), and two
    tapes give both networks' gradients, each allreduced by Horovod, applied by both
    optimizers.  Returns this rank's (d_loss, g_loss, D(real), D(fake)) as tensors.

    Gradient accumulation (``accumulate_steps`` K > 1) and the stall watchdog are the run
    scaffold's :class:`~tfxr.training.run.GradientAccumulation`, as for the classifier: each
    call is one micro-batch, both networks' gradients are accumulated, and every K-th call
    allreduces both means in one round and updates both networks (so every micro-batch of an
    update sees the same D and G, as one batch of K micro-batches would).  Batch norm (in the
    generator) normalises each micro-batch alone.  ``allreduces`` counts the rounds.
    """

    def __init__(self, generator, discriminator, g_optimizer, d_optimizer, *, loss: str = "bce",
                 label_smoothing: float = 0.0, instance_noise: float = 0.0, seed: int = 0, rank: int = 0,
                 compression: str = "none", accumulate_steps: int = 1, watchdog=None):
        self.generator, self.discriminator = generator, discriminator
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.loss, self.label_smoothing, self.instance_noise = loss, label_smoothing, instance_noise
        self.seed, self.rank, self.compression = seed, rank, compression
        self._g_sources = dist.backing_variables(generator.trainable_variables)
        self._d_sources = dist.backing_variables(discriminator.trainable_variables)
        # one call: (real, noise, sigma, step)
        self.accumulate_with([self._d_sources, self._g_sources], accumulate_steps, compression, watchdog,
                             self._step)

    def adopt_world(self, rank: int, world: int) -> None:
        """Elastic training: the watchdog's world, and the instance-noise streams of a new rank
        (keyed by the rank when traced: the step functions are traced again)."""
        super().adopt_world(rank, world)
        if rank != self.rank:
            self.rank = rank
            self._plain = tf.function(self._step, reduce_retracing=True)
            self._accumulate = tf.function(self._step_accumulate, reduce_retracing=True)
            self._apply = tf.function(self._step_accumulate_apply, reduce_retracing=True)

    def _forward(self, g_tape, d_tape, real, noise, sigma, step):
        with g_tape, d_tape:
            fake = self.generator(noise, training=True)
            real_in, fake_in = real, fake
            if self.instance_noise > 0:
                shape = tf.shape(real)
                real_key, fake_key = (tf.constant(_stream_key(self.seed, self.rank, k), tf.int64) for k in (1, 2))
                real_in = real + sigma * tf.random.stateless_normal(shape, seed=tf.stack([real_key, step]))
                fake_in = fake + sigma * tf.random.stateless_normal(shape, seed=tf.stack([fake_key, step]))
            real_logits = self.discriminator(real_in, training=True)
            fake_logits = self.discriminator(fake_in, training=True)
            d_loss, g_loss = gan_losses(self.loss, real_logits, fake_logits, self.label_smoothing)
        numbers = (d_loss, g_loss, tf.reduce_mean(tf.sigmoid(real_logits)), tf.reduce_mean(tf.sigmoid(fake_logits)))
        return d_loss, g_loss, numbers

    def _apply_both(self, d_grads, g_grads):
        self.d_optimizer.apply(d_grads, self.discriminator.trainable_variables)
        self.g_optimizer.apply(g_grads, self.generator.trainable_variables)

    def _step(self, real, noise, sigma, step):
        g_tape, d_tape = tf.GradientTape(), tf.GradientTape()
        d_loss, g_loss, numbers = self._forward(g_tape, d_tape, real, noise, sigma, step)
        d_tape = dist.distributed_tape(d_tape, self.compression)   # HVD: allreduce D's grads
        g_tape = dist.distributed_tape(g_tape, self.compression)   # HVD: allreduce G's grads
        d_grads = d_tape.gradient(d_loss, self._d_sources)
        g_grads = g_tape.gradient(g_loss, self._g_sources)
        self.accumulation.counted()
        self._apply_both(d_grads, g_grads)
        return numbers

    def _local(self, real, noise, sigma, step):
        g_tape, d_tape = tf.GradientTape(), tf.GradientTape()
        d_loss, g_loss, numbers = self._forward(g_tape, d_tape, real, noise, sigma, step)
        return numbers, [d_tape.gradient(d_loss, self._d_sources), g_tape.gradient(g_loss, self._g_sources)]

    def _step_accumulate(self, real, noise, sigma, step):
        """A micro-batch that is not the K-th: both gradient sets added, no communication."""
        numbers, grads = self._local(real, noise, sigma, step)
        self.accumulation.add(grads)
        return numbers

    def _step_accumulate_apply(self, real, noise, sigma, step):
        """The K-th micro-batch: both means allreduced in one round, both networks updated."""
        numbers, grads = self._local(real, noise, sigma, step)
        self._apply_both(*self.accumulation.mean_allreduced(grads))   # HVD: one round per K micro-batches
        return numbers


def gan_optimizer(name: str, lr: float, beta1: float = 0.5):
    """The DCGAN's optimizer: Adam with ``beta_1`` (0.5 as in DCGAN) or RMSProp."""
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr, beta_1=beta1)
    return keras.optimizers.RMSprop(learning_rate=lr)


# --------------------------------------------------------------------------- trainer
class GanTrainer:
    """Both networks, both optimizers, the distributed step and the resumable run state
    (a :class:`tfxr.training.run.Task`)."""

    def __init__(self, cfg: GanConfig, manifest: dict | None = None, images: np.ndarray | None = None):
        self.cfg, self.dist, self.tf = cfg, dist, tf
        self.rank, self.world = run.init_process(stall_timeout=cfg.stall_timeout)   # bounded stalls
        run.seed_process(cfg.seed, cfg.deterministic)
        self.in_memory = images is not None
        if images is None:
            if not cfg.data:
                raise ConfigError("--data is required (a directory written by `python -m tfxr.tfrecords write`)")
            self.manifest = manifest or read_manifest(cfg.data)
            self.label_index, self.class_value = class_value_and_label(self.manifest, cfg)
            stored = int(self.manifest["image_size"])
            self.image_size = cfg.image_size or stored
            if self.image_size not in (28, 64, 128):
                raise ConfigError(f"{cfg.data} stores {stored}-px images; the DCGAN makes 28, 64 or 128 px: "
                                  f"pass --image-size 28|64|128")
            self.images = load_class_images(cfg.data, self.manifest, cfg.split, self.label_index,
                                            self.class_value, self.image_size, self.rank, self.world)
        else:   # in-memory images (tests, notebooks): already this rank's share, in [-1, 1]
            self.manifest, self.label_index, self.class_value = manifest or {}, 0, 1
            self.images = np.asarray(images, np.float32)
            self.image_size = int(self.images.shape[1])
        # an elastic worker that joins a running job must not gather here (the others are in the
        # elastic loop): adopt_world plans the steps there, for the live world
        self.steps, self.global_batch = 0, cfg.batch_size * self.world
        if not cfg.elastic:
            self._plan_steps()
        self.generator = build_generator(self.image_size, cfg.latent_dim, cfg.g_filters, cfg.batch_norm)
        self.discriminator = build_discriminator(self.image_size, cfg.d_filters, cfg.d_dropout,
                                                 seed=cfg.seed + 1)
        self.g_optimizer = gan_optimizer(cfg.optimizer, cfg.g_lr, cfg.beta1)
        self.d_optimizer = gan_optimizer(cfg.optimizer, cfg.d_lr, cfg.beta1)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.step = GanStep(self.generator, self.discriminator, self.g_optimizer, self.d_optimizer,
                            loss=cfg.loss, label_smoothing=cfg.label_smoothing,
                            instance_noise=cfg.instance_noise, seed=cfg.seed, rank=self.rank,
                            compression=cfg.compression, accumulate_steps=cfg.accumulate_steps,
                            watchdog=run.stall_watchdog(cfg, self.rank, self.world))
        self.state = run.new_run_state()
        run.offset_seed_states(self.seed_variables(), self.rank)
        rng = np.random.default_rng([cfg.seed, 2**20])   # the same fixed noise on every rank and run
        self.fixed_noise = rng.standard_normal((SAMPLE_GRID, cfg.latent_dim)).astype(np.float32)
        self.real_diversity = None

    def _plan_steps(self) -> None:
        """Steps per epoch from every rank's image count (a collective: every rank calls it)."""
        cfg = self.cfg
        counts = dist.allgather_object(len(self.images))
        if min(counts) < cfg.batch_size and not cfg.steps_per_epoch:
            raise ConfigError(f"{cfg.data or 'images'}: the class has {counts} image(s) per rank, fewer than "
                              f"--batch-size {cfg.batch_size}; lower the batch size or use fewer ranks")
        if min(counts) == 0:
            raise ConfigError(f"{cfg.data}: a rank has no images of the chosen class (per rank: {counts})")
        steps = cfg.steps_per_epoch or min(counts) // cfg.batch_size
        self.steps = run.whole_updates(steps, cfg.accumulate_steps, cfg.batch_size)
        self.global_batch = cfg.batch_size * self.world

    def adopt_world(self, rank: int, world: int) -> None:
        """Elastic training: this rank's share of the class images for the live rank and world,
        the steps planned from every rank's count, the noise streams of the new rank."""
        if (rank, world) != (self.rank, self.world) and not self.in_memory:   # in-memory images: as given
            self.images = load_class_images(self.cfg.data, self.manifest, self.cfg.split, self.label_index,
                                            self.class_value, self.image_size, rank, world)
            self.real_diversity = None
        self.rank, self.world = rank, world
        self._plan_steps()
        self.step.adopt_world(rank, world)

    # ---- per-rank randomness and rank-0 state
    def broadcast(self) -> None:
        """Rank 0's networks and optimizer states on every rank (dropout streams stay per rank)."""
        run.broadcast(self)

    def average_batch_norm_statistics(self) -> None:
        """Average the generator's moving mean/variance over ranks (each saw its own batches)."""
        if self.world == 1:
            return
        for v in self.generator.non_trainable_variables:
            if "moving" in v.path:
                v.assign(self.dist.allreduce_mean(v.value, name="bn_" + v.path.replace("/", "_")))

    def noise(self, step: int, count: int):
        """This rank's noise for a global step (see :func:`rank_noise`)."""
        return rank_noise(self.cfg.seed, self.rank, step, count, self.cfg.latent_dim)

    # ---- the distributed step
    def train_step(self, real: np.ndarray, step: int | None = None) -> dict:
        """One step on this rank's batch of real images in [-1, 1]; returns this rank's numbers."""
        step = self.state["global_step"] if step is None else step
        total = max(1, self.cfg.epochs * self.steps)
        sigma = self.cfg.instance_noise * max(0.0, 1.0 - step / total)
        out = self.step(tf.convert_to_tensor(real), self.noise(step, len(real)),
                        tf.constant(sigma, tf.float32), tf.constant(step, tf.int64))
        return dict(zip(("d_loss", "g_loss", "d_real", "d_fake"), (float(v) for v in out)))

    def epoch_order(self, epoch: int) -> np.ndarray:
        """This rank's image order in an epoch (seeded by seed, rank and epoch)."""
        return np.random.default_rng([self.cfg.seed, self.rank, epoch]).permutation(len(self.images))

    def batches(self, epoch: int, first: int = 0):
        """This rank's batches of an epoch, from step ``first`` on (elastic: after a commit inside it)."""
        order, b = self.epoch_order(epoch), self.cfg.batch_size
        if self.steps * b > len(order):   # --steps-per-epoch beyond one pass: repeat the order
            order = np.concatenate([order] * (-(-self.steps * b // len(order))))
        for s in range(first, self.steps):
            yield self.images[order[s * b:(s + 1) * b]]

    # ---- what rank 0 looks at
    def samples(self, noise: np.ndarray | None = None) -> np.ndarray:
        noise = self.fixed_noise if noise is None else noise
        return self.generator(noise, training=False).numpy()

    def diversity_ratio(self) -> float:
        """Mode-collapse indicator: fixed-noise samples' mean pairwise distance / real images'."""
        if self.real_diversity is None:
            real = self.images[np.random.default_rng([self.cfg.seed, 2**21]).permutation(len(self.images))[:SAMPLE_GRID]]
            self.real_diversity = mean_pairwise_distance(real)
        return mean_pairwise_distance(self.samples()) / max(self.real_diversity, 1e-12)

    def sample_epochs(self) -> set[int]:
        return set(self.cfg.sample_epochs) if self.cfg.sample_epochs else {1, self.cfg.epochs}

    # ---- the run (tfxr.training.run.Task)
    def fit(self) -> dict:
        """Train to ``cfg.epochs`` in the run scaffold; returns the final run state."""
        try:
            return run.Run(self.cfg, self.rank, self.world).fit(self)
        finally:
            self.step.close()

    def checkpoint_objects(self) -> dict:
        # every Keras variable by path, dropout seed states included (tf.train.Checkpoint
        # does not reach those through a Keras model), as the classifier does
        return {"generator": variables_by_path(self.generator.variables),
                "discriminator": variables_by_path(self.discriminator.variables),
                "g_optimizer": variables_by_path(self.g_optimizer.variables),
                "d_optimizer": variables_by_path(self.d_optimizer.variables)}

    def seed_variables(self) -> list:
        return run.seed_states(self.discriminator)

    def broadcast_variables(self) -> list:
        return (list(self.generator.variables) + list(self.discriminator.variables)
                + list(self.g_optimizer.variables) + list(self.d_optimizer.variables))

    def finite_variables(self) -> list:
        return list(self.generator.weights) + list(self.discriminator.weights)

    def epoch_variables(self) -> list:
        return [self.step.allreduces]   # the epoch's numbers are in EpochSteps.running

    def resolved(self) -> dict:
        return {"workers": self.world, "image_size": self.image_size, "class_value": self.class_value,
                "class_label": (self.manifest.get("label_names") or ["?"])[self.label_index],
                "images_per_rank": len(self.images), "steps_per_epoch": self.steps}

    def outputs(self) -> tuple[str, ...]:
        return ("samples", "losses.png", "generator.keras", "discriminator.keras")

    def begin(self) -> None:
        if self.rank == 0:
            os.makedirs(os.path.join(self.cfg.out, "samples"), exist_ok=True)

    def describe(self) -> str:
        g, d = model_report(self.generator), model_report(self.discriminator)
        return (f"DCGAN {self.image_size} px: generator {g['params']:,} params, discriminator "
                f"{d['params']:,} params; {self.world} worker(s) x batch {self.cfg.batch_size}"
                f"{f' x {self.cfg.accumulate_steps} accumulated' if self.cfg.accumulate_steps > 1 else ''}, "
                f"{self.steps} steps/epoch, {self.cfg.optimizer}, {self.cfg.loss} loss")

    def train_epoch(self, epoch: int, progress) -> dict:
        steps = run.EpochSteps(self, progress, self.cfg.accumulate_steps)   # elastic: from a commit inside it
        rows = steps.running.setdefault("rows", [])          # this rank's numbers per step, committed with it
        allreduces = steps.running.setdefault("allreduces_before", int(self.step.allreduces.numpy()))
        for _, real in zip(steps, self.batches(epoch, steps.first)):   # steps first: it counts the last step
            rows.append(self.train_step(real))
        self.average_batch_norm_statistics()
        numbers = {key: float(self.dist.allreduce_mean(float(np.mean([r[key] for r in rows])), name=key))
                   for key in ("d_loss", "g_loss", "d_real", "d_fake")}
        return {**numbers, "allreduces": int(self.step.allreduces.numpy()) - allreduces}   # gradient rounds run

    def end_epoch(self, record: dict) -> dict:
        if self.rank != 0:
            return {}
        ratio = self.diversity_ratio()
        return {"diversity_ratio": ratio, "collapsed": bool(ratio < self.cfg.collapse_threshold)}

    def after_epoch(self, record: dict, decision: Decision) -> None:
        out = self.cfg.out
        if record["epoch"] in self.sample_epochs():
            files.write_bytes(os.path.join(out, "samples", f"epoch-{record['epoch']:04d}.png"),
                           encode_png(image_grid(self.samples())))
        if plot_due(record["epoch"], self.sample_epochs(), self.cfg.epochs):
            plot_history(self.state["history"], os.path.join(out, "losses.png"), title=f"DCGAN ({self.cfg.optimizer})")

    @staticmethod
    def summary(record: dict) -> str:
        flag = "  MODE COLLAPSE?" if record["collapsed"] else ""
        return (f"epoch {record['epoch']}: D loss {record['d_loss']:.4f}, G loss {record['g_loss']:.4f}, "
                f"D(real) {record['d_real']:.3f}, D(fake) {record['d_fake']:.3f}, diversity "
                f"{record['diversity_ratio']:.2f}{flag}, {record['images_per_s']:.1f} img/s")

    def finish(self) -> None:
        with files.atomic_path(os.path.join(self.cfg.out, "generator.keras"), suffix=".keras") as tmp:
            self.generator.save(tmp)
        with files.atomic_path(os.path.join(self.cfg.out, "discriminator.keras"), suffix=".keras") as tmp:
            self.discriminator.save(tmp)


def plot_due(epoch: int, sample_epochs: set[int], last_epoch: int) -> bool:
    """Redraw ``losses.png`` every PLOT_EVERY epochs, at sample epochs and at the last one.

    Drawing it costs ~0.4 s (measured): done every epoch, that was over half of a
    150-epoch run on a small minority class.  ``history.json`` is still written every epoch.
    """
    return epoch % PLOT_EVERY == 0 or epoch in sample_epochs or epoch == last_epoch


def plot_history(history: list[dict], path: str, title: str = "DCGAN") -> None:
    """Losses, D(real)/D(fake) and the diversity ratio per epoch, as one PNG."""
    epochs = [r["epoch"] for r in history]
    fig, axes = plots.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [r["d_loss"] for r in history], label="discriminator")
    axes[0].plot(epochs, [r["g_loss"] for r in history], label="generator")
    axes[0].set(title="loss", xlabel="epoch")
    axes[1].plot(epochs, [r["d_real"] for r in history], label="D(real)")
    axes[1].plot(epochs, [r["d_fake"] for r in history], label="D(fake)")
    axes[1].set(title="discriminator output (mean)", xlabel="epoch", ylim=(0, 1))
    axes[2].plot(epochs, [r.get("diversity_ratio", np.nan) for r in history], label="samples / real")
    axes[2].set(title="diversity (mean pairwise distance)", xlabel="epoch")
    for ax in axes:
        ax.legend()
    fig.suptitle(title)
    plots.save_png(fig, path, dpi=90)
