"""``python -m tfxr.train``: one data-parallel training loop for every tfxr classifier.

    python -m tfxr.train --model tb_cnn --data tfrec/tb --out runs/tb --epochs 10
    mpirun -np 4 python -m tfxr.train --model chexnet --data tfrec/nih224 --out runs/chexnet \
        --batch-size 16 --set compression=fp16 --set mixed_precision=true
    horovodrun -np 4 python -m tfxr.train ...

Config: dataclass defaults < ``--config run.yaml`` < flags < ``--set key=value``.
Rank 0 alone writes ``OUT/config.yaml``, ``history.json``, TensorBoard logs,
``checkpoints/`` (atomic, resumable with ``--resume``) and ``best.keras``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from tfxr.config import ConfigError, parse_config, to_dict
from tfxr.data.augment import AugmentConfig
from tfxr.evaluation.metrics import auroc_per_label, nanmean


@dataclass
class TrainConfig:
    model: str = "tb_cnn"              # tb_cnn | pneumonia_cnn | chexnet
    data: str = ""                     # TFRecord (or raw index) directory with manifest.json
    out: str = "runs/train"
    epochs: int = 10
    batch_size: int = 32               # per worker
    image_size: int = 0                # 0: as stored in the data
    channels: int = 1
    lr: float = 1e-3                   # per-worker base learning rate
    lr_scaling: bool = True            # multiply lr by the number of workers (Goyal et al.)
    warmup_epochs: float = 1.0         # ramp lr from lr to lr*workers (Horovod's warm-up)
    optimizer: str = "adam"            # adam | sgd | rmsprop
    weight_decay: float = 0.0
    plateau_factor: float = 0.1        # CheXNet: lr / 10 when validation stops improving
    plateau_patience: int = 1
    min_lr: float = 1e-7
    early_stopping_patience: int = 4   # epochs without val improvement; 0 = off
    monitor: str = "auroc"             # auroc (mean validation AUROC) | loss (validation loss)
    class_weighting: str = "balanced"  # balanced | none
    dropout: float = 0.5
    weights: str = "none"              # chexnet: none | imagenet | PATH
    compression: str = "none"          # allreduce compression: none | fp16
    mixed_precision: bool = False      # bf16 on CPU, fp16 (+ loss scaling) on GPU
    xla: bool = False                  # jit-compile the forward/backward pass
    resume: bool = False
    seed: int = 0
    deterministic: bool = False
    steps_per_epoch: int = 0           # 0: one pass over the smallest rank's share
    val_split: str = "val"             # '' to skip validation
    cache: bool = False
    shuffle_buffer: int = 2048
    keep_checkpoints: int = 2
    progress: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)


from tfxr.errors import CheckpointError  # noqa: E402 - raised by restore()


# --------------------------------------------------------------------------- helpers
def weighted_bce(pos_weight, neg_weight):
    """Class-weighted binary cross-entropy on probabilities (CheXNet's loss)."""
    import tensorflow as tf

    pw = tf.constant(pos_weight, tf.float32)
    nw = tf.constant(neg_weight, tf.float32)

    def loss(y, p):
        p = tf.clip_by_value(tf.cast(p, tf.float32), 1e-7, 1 - 1e-7)
        y = tf.cast(y, tf.float32)
        per = -(pw * y * tf.math.log(p) + nw * (1 - y) * tf.math.log(1 - p))
        return tf.reduce_mean(per)
    return loss


def class_weights(positives: np.ndarray, total: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-label (w+, w-).  'balanced' gives each class half the weight: w+ = N/2P, w- = N/2(N-P),
    the same ratio as CheXNet's w+ = |N|/(|P|+|N|), w- = |P|/(|P|+|N|) but mean-preserving."""
    if mode == "none":
        return np.ones_like(positives), np.ones_like(positives)
    if mode != "balanced":
        raise ConfigError(f"class_weighting: unknown mode {mode!r} (balanced, none)")
    p = np.clip(positives, 1, None)
    n = np.clip(total - positives, 1, None)
    return total / (2 * p), total / (2 * n)


def _atomic_json(path: str, obj) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path) or ".")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, allow_nan=True)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Model, optimizer, the distributed step and the run state (resumable)."""

    def __init__(self, cfg: TrainConfig, manifest: dict | None = None):
        import keras
        import tensorflow as tf

        from tfxr import distributed as dist
        from tfxr.data.pipeline import DataConfig, label_counts
        from tfxr.data.tfrecord import read_manifest
        from tfxr.models import build_model

        self.cfg, self.dist, self.tf = cfg, dist, tf
        dist.init()
        self.rank, self.world = dist.rank(), dist.size()
        if cfg.deterministic and cfg.xla:
            raise ConfigError("xla=true with deterministic=true: TensorFlow has no deterministic XLA "
                              "MaxPool gradient; turn one of them off")
        if cfg.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(cfg.seed)
        if cfg.mixed_precision:
            gpu = bool(tf.config.list_physical_devices("GPU"))
            keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
        self.manifest = manifest or read_manifest(cfg.data)
        self.label_names = list(self.manifest["label_names"])
        self.image_size = cfg.image_size or int(self.manifest["image_size"])
        self.data_cfg = DataConfig(batch_size=cfg.batch_size, image_size=self.image_size,
                                   channels=cfg.channels, shuffle_buffer=cfg.shuffle_buffer,
                                   cache=cfg.cache, deterministic=cfg.deterministic, augment=cfg.augment)
        extra = {"weights": cfg.weights} if cfg.model == "chexnet" else {}
        try:
            self.model = build_model(cfg.model, self.image_size, channels=cfg.channels,
                                     num_outputs=len(self.label_names), dropout=cfg.dropout, **extra)
        except (RuntimeError, ValueError, FileNotFoundError) as e:   # bad weights file, offline, sizes
            raise ConfigError(f"cannot build --model {cfg.model}: {e}") from None
        pos, total = label_counts(self.manifest, "train")
        self.pos_weight, self.neg_weight = class_weights(pos, total, cfg.class_weighting)
        self.loss_fn = weighted_bce(self.pos_weight, self.neg_weight)
        self.base_lr = cfg.lr * (self.world if cfg.lr_scaling else 1)
        self.optimizer = self._make_optimizer()
        self.optimizer.build(self.model.trainable_variables)
        # gradient sources are the backing tf.Variables (see tfxr.distributed)
        self._sources = dist.backing_variables(self.model.trainable_variables)
        self.state = {"epoch": 0, "global_step": 0, "lr_multiplier": 1.0, "best": None,
                      "best_epoch": None, "since_best": 0, "plateau_wait": 0, "history": []}
        self._offset_seed_states()
        if cfg.xla:
            self._grads = tf.function(self._local_grads, jit_compile=True, reduce_retracing=True)
            self._train_step = tf.function(self._step_xla, reduce_retracing=True)
        else:
            self._train_step = tf.function(self._step, reduce_retracing=True)
        self._predict = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    # ---- optimizer and learning rate
    def _make_optimizer(self):
        import keras

        opt = self.cfg.optimizer.lower()
        kw = {"learning_rate": self.base_lr}
        if self.cfg.weight_decay:
            kw["weight_decay"] = self.cfg.weight_decay
        if opt == "adam":
            o = keras.optimizers.Adam(**kw)
        elif opt == "sgd":
            o = keras.optimizers.SGD(momentum=0.9, nesterov=True, **kw)
        elif opt == "rmsprop":
            o = keras.optimizers.RMSprop(**kw)
        else:
            raise ConfigError(f"optimizer: unknown {self.cfg.optimizer!r} (adam, sgd, rmsprop)")
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            o = keras.optimizers.LossScaleOptimizer(o)
        return o

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """Horovod-style warm-up from lr to lr*workers, times the plateau multiplier."""
        warm = self.cfg.warmup_epochs * steps_per_epoch
        p = 1.0 if warm <= 0 or self.world == 1 else min(1.0, (step + 1) / warm)
        lr = self.base_lr * (p + (1 - p) / self.world) * self.state["lr_multiplier"]
        return max(lr, self.cfg.min_lr)

    # ---- the distributed step
    def _forward(self, tape, x, y):
        with tape:
            loss = self.loss_fn(y, self.model(x, training=True))
            scaled = self.optimizer.scale_loss(loss)   # loss scaling under mixed_float16
        return loss, scaled

    def _step(self, x, y):
        tape = self.tf.GradientTape()
        loss, scaled = self._forward(tape, x, y)
        tape = self.dist.distributed_tape(tape, self.cfg.compression)   # HVD: ring-allreduce
        grads = tape.gradient(scaled, self._sources)
        self.optimizer.apply(grads, self.model.trainable_variables)
        return loss

    def _local_grads(self, x, y):
        tape = self.tf.GradientTape()
        loss, scaled = self._forward(tape, x, y)
        return loss, tape.gradient(scaled, self._sources)

    def _step_xla(self, x, y):
        """XLA variant: compiled forward/backward, then the same grouped allreduce."""
        loss, grads = self._grads(x, y)
        grads = self.dist.allreduce_gradients(grads, self.cfg.compression)   # HVD: ring-allreduce
        self.optimizer.apply(grads, self.model.trainable_variables)
        return loss

    def train_step(self, x, y) -> float:
        return float(self._train_step(x, y))

    def _seed_states(self) -> list:
        return [v for v in self.model.non_trainable_variables if "seed_generator_state" in v.path]

    def _offset_seed_states(self) -> None:
        """Give each rank its own dropout stream ([seed, counter] -> [seed + rank*K, counter])."""
        if self.rank:
            for v in self._seed_states():
                v.assign(v.numpy() + np.array([self.rank * 1_000_003, 0]).astype(v.dtype))

    def broadcast(self) -> None:
        """Rank 0's model and optimizer state on every rank (dropout streams stay per rank)."""
        own = {id(v) for v in self._seed_states()}
        self.dist.broadcast_variables([v for v in self.model.variables if id(v) not in own]
                                      + list(self.optimizer.variables))

    # ---- data
    def dataset(self, split: str, training: bool, epoch: int = 0, steps: int | None = None):
        from tfxr.data.pipeline import build_dataset

        return build_dataset(self.cfg.data, split, self.data_cfg, training=training, rank=self.rank,
                             world=self.world, seed=self.cfg.seed, epoch=epoch, manifest=self.manifest,
                             repeat_steps=steps)

    def steps_per_epoch(self) -> int:
        from tfxr.data.pipeline import split_steps

        return self.cfg.steps_per_epoch or split_steps(self.cfg.data, "train", self.manifest,
                                                       self.cfg.batch_size, self.world)

    def predict(self, split: str):
        """Predictions and labels of a whole split, gathered from every rank (same on all)."""
        from tfxr.evaluate import predict_split

        return predict_split(lambda x: self._predict(x).numpy(), self.cfg.data, split, self.data_cfg,
                             self.manifest, self.rank, self.world)

    # ---- checkpoints (rank 0 writes, everyone reads)
    def ckpt_dir(self) -> str:
        return os.path.join(self.cfg.out, "checkpoints")

    def save_checkpoint(self) -> str | None:
        if self.rank != 0:
            return None
        root = self.ckpt_dir()
        os.makedirs(root, exist_ok=True)
        name = f"epoch-{self.state['epoch']:04d}"
        tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=root)
        np.savez(os.path.join(tmp, "model.npz"), *[np.asarray(v.numpy()) for v in self.model.variables])
        np.savez(os.path.join(tmp, "optimizer.npz"), *[np.asarray(v.numpy()) for v in self.optimizer.variables])
        _atomic_json(os.path.join(tmp, "state.json"), self.state)
        final = os.path.join(root, name)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        with open(os.path.join(root, ".latest.tmp"), "w") as fh:
            fh.write(name)
        os.replace(os.path.join(root, ".latest.tmp"), os.path.join(root, "latest"))
        done = sorted(d for d in os.listdir(root) if d.startswith("epoch-"))
        for old in done[:-self.cfg.keep_checkpoints]:
            shutil.rmtree(os.path.join(root, old), ignore_errors=True)
        return final

    def latest_checkpoint(self) -> str | None:
        p = os.path.join(self.ckpt_dir(), "latest")
        if not os.path.exists(p):
            return None
        with open(p) as fh:
            d = os.path.join(self.ckpt_dir(), fh.read().strip())
        return d if os.path.isdir(d) else None

    def restore(self, path: str) -> None:
        def load(file, variables, what):
            with np.load(file) as z:
                arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
            if len(arrays) != len(variables):
                raise CheckpointError(f"{file}: checkpoint has {len(arrays)} {what} variables, "
                                   f"the {what} has {len(variables)} (different model or config?)")
            for v, a in zip(variables, arrays):
                if tuple(v.shape) != a.shape:
                    raise CheckpointError(f"{file}: {what} variable {v.path} has shape {a.shape} in the "
                                       f"checkpoint, {tuple(v.shape)} in the {what}")
                v.assign(a)
        load(os.path.join(path, "model.npz"), self.model.variables, "model")
        load(os.path.join(path, "optimizer.npz"), self.optimizer.variables, "optimizer")
        with open(os.path.join(path, "state.json")) as fh:
            self.state = json.load(fh)
        self._offset_seed_states()   # the checkpoint holds rank 0's dropout stream

    # ---- the loop
    def fit(self) -> dict:
        import keras
        tf = self.tf
        cfg, chief = self.cfg, self.rank == 0
        if chief:
            os.makedirs(cfg.out, exist_ok=True)
            import yaml
            with open(os.path.join(cfg.out, "config.yaml"), "w") as fh:
                yaml.safe_dump({**to_dict(cfg), "_resolved": {
                    "workers": self.world, "base_lr": self.base_lr, "image_size": self.image_size,
                    "label_names": self.label_names, "pos_weight": self.pos_weight.tolist(),
                    "neg_weight": self.neg_weight.tolist()}}, fh, sort_keys=False)
        if cfg.resume:
            path = self.dist.broadcast_object(self.latest_checkpoint() if chief else None)
            if path:
                self.restore(path)
                if chief:
                    print(f"tfxr: resumed from {path} (epoch {self.state['epoch']})", file=sys.stderr)
        self.broadcast()   # HVD: identical start on every rank
        steps = self.steps_per_epoch()
        writer = tf.summary.create_file_writer(os.path.join(cfg.out, "tensorboard")) if chief else None
        from tfxr.progress import progress_bar

        if chief:
            from tfxr.models import model_report
            rep = model_report(self.model)
            print(f"tfxr: {cfg.model}: {rep['params']:,} params, {rep['flops_per_image'] / 1e9:.3f} GFLOPs/image; "
                  f"{self.world} worker(s) x batch {cfg.batch_size}, {steps} steps/epoch, "
                  f"lr {self.base_lr:g}", file=sys.stderr)
        while self.state["epoch"] < cfg.epochs:
            epoch = self.state["epoch"]
            t0 = time.perf_counter()
            bar = progress_bar(steps, f"epoch {epoch + 1}/{cfg.epochs}", enabled=chief and cfg.progress, unit="step")
            losses = []
            for x, y in self.dataset("train", True, epoch, steps):
                self.optimizer.learning_rate.assign(self.lr_at(self.state["global_step"], steps))
                losses.append(self.train_step(x, y))
                self.state["global_step"] += 1
                bar.update(1)
                if len(losses) % 10 == 0:
                    bar.set_postfix_str(f"loss {np.mean(losses[-10:]):.4f}")
            bar.close()
            train_time = time.perf_counter() - t0
            train_loss = float(self.dist.allreduce_mean(float(np.mean(losses)) if losses else 0.0))
            rec = {"epoch": epoch + 1, "train_loss": train_loss,
                   "lr": float(self.optimizer.learning_rate.numpy()),
                   "images_per_s": steps * cfg.batch_size * self.world / train_time,
                   "epoch_time_s": train_time}
            if cfg.val_split and cfg.val_split in self.manifest["splits"]:
                p, y, _ = self.predict(cfg.val_split)
                aucs = auroc_per_label(y, p)
                rec["val_loss"] = float(self.loss_fn(y, p))
                rec["val_auroc"] = dict(zip(self.label_names, aucs))
                rec["val_mean_auroc"] = nanmean(aucs)
                rec["val_accuracy"] = float(np.mean((p >= 0.5) == (y >= 0.5)))
            rec["epoch_time_s"] = time.perf_counter() - t0
            stop = self._after_epoch(rec)
            if chief:
                self._log(writer, rec)
            self.state["epoch"] = epoch + 1
            self.save_checkpoint()
            if chief:
                _atomic_json(os.path.join(cfg.out, "history.json"), self.state["history"])
            if stop:
                if chief:
                    print(f"tfxr: early stopping after epoch {epoch + 1} (best epoch "
                          f"{self.state['best_epoch']})", file=sys.stderr)
                break
        if chief:
            final = os.path.join(cfg.out, "final.keras")
            self.model.save(final + ".tmp.keras")
            os.replace(final + ".tmp.keras", final)
            if not os.path.exists(os.path.join(cfg.out, "best.keras")):
                shutil.copyfile(final, os.path.join(cfg.out, "best.keras"))
        keras.mixed_precision.set_global_policy("float32")
        return self.state

    def _after_epoch(self, rec: dict) -> bool:
        """Best model, reduce-on-plateau and early stopping (same decision on every rank)."""
        st, cfg = self.state, self.cfg
        st["history"].append(rec)
        if "val_loss" not in rec:
            return False
        metric = rec["val_mean_auroc"] if cfg.monitor == "auroc" else -rec["val_loss"]
        if math.isnan(metric):
            metric = -rec["val_loss"]
        if st["best"] is None or metric > st["best"] + 1e-4:
            st.update(best=metric, best_epoch=rec["epoch"], since_best=0, plateau_wait=0)
            if self.rank == 0:
                path = os.path.join(cfg.out, "best.keras")
                self.model.save(path + ".tmp.keras")
                os.replace(path + ".tmp.keras", path)
            return False
        st["since_best"] += 1
        st["plateau_wait"] += 1
        if cfg.plateau_patience and st["plateau_wait"] >= cfg.plateau_patience:
            st["lr_multiplier"] *= cfg.plateau_factor
            st["plateau_wait"] = 0
        return bool(cfg.early_stopping_patience and st["since_best"] >= cfg.early_stopping_patience)

    def _log(self, writer, rec: dict) -> None:
        tf = self.tf
        with writer.as_default():
            for k, v in rec.items():
                if isinstance(v, dict):
                    for n, a in v.items():
                        tf.summary.scalar(f"{k}/{n}", a, step=rec["epoch"])
                elif k != "epoch":
                    tf.summary.scalar(k, v, step=rec["epoch"])
        writer.flush()
        msg = f"epoch {rec['epoch']}: loss {rec['train_loss']:.4f}"
        if "val_loss" in rec:
            msg += f", val loss {rec['val_loss']:.4f}, val AUROC {rec['val_mean_auroc']:.4f}, val acc {rec['val_accuracy']:.4f}"
        msg += f", lr {rec['lr']:.2e}, {rec['images_per_s']:.1f} img/s, {rec['epoch_time_s']:.1f} s"
        print("tfxr: " + msg, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from tfxr.data.sources import SourceError
    from tfxr.data.tfrecord import ManifestError

    try:
        cfg, _ = parse_config(TrainConfig, argv, "python -m tfxr.train", __doc__)
        if not cfg.data:
            raise ConfigError("--data is required (a directory written by `python -m tfxr.tfrecords write`)")
        from tfxr.models import MODELS
        if cfg.model not in MODELS:
            raise ConfigError(f"--model {cfg.model!r}: unknown (known: {', '.join(sorted(MODELS))})")
        Trainer(cfg).fit()
    except (ConfigError, ManifestError, SourceError, CheckpointError) as e:
        print(f"tfxr: error: {e}", file=sys.stderr)
        return 2
    finally:
        from tfxr import distributed
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
