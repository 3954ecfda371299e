"""When to change the learning rate and when to stop: pure policy, no TensorFlow.

* :class:`WarmupSchedule` - Horovod's warm-up (Goyal et al. 2017): the learning rate
  ramps from ``lr`` to ``lr * workers`` over the first epochs, then follows a multiplier
  that reduce-on-plateau lowers.
* :class:`PlateauPolicy` - after each validation: keep the best epoch, divide the learning
  rate by ``1 / factor`` after ``patience`` epochs without improvement (CheXNet's lr / 10),
  stop early after ``stop_patience`` such epochs.

The policy's memory lives in the run-state dict that checkpoints save, so a resumed run
takes exactly the decisions the uninterrupted one would have.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

#: the keys of the run state this module reads and updates
POLICY_STATE = {"lr_multiplier": 1.0, "best": None, "best_epoch": None, "since_best": 0, "plateau_wait": 0}


@dataclass
class WarmupSchedule:
    base_lr: float            # lr * workers when lr scaling is on
    workers: int
    warmup_epochs: float
    min_lr: float = 0.0

    def lr(self, step: int, steps_per_epoch: int, multiplier: float = 1.0) -> float:
        """Learning rate of global step ``step`` (0-based), times the plateau multiplier."""
        warm = self.warmup_epochs * steps_per_epoch
        progress = 1.0 if warm <= 0 or self.workers == 1 else min(1.0, (step + 1) / warm)
        lr = self.base_lr * (progress + (1 - progress) / self.workers) * multiplier
        return max(lr, self.min_lr)


@dataclass
class Decision:
    improved: bool            # a new best epoch: save best.keras
    stop: bool                # early stopping triggered


@dataclass
class PlateauPolicy:
    monitor: str = "auroc"          # auroc (higher is better) | loss (lower is better)
    factor: float = 0.1
    patience: int = 1               # 0: never reduce the learning rate
    stop_patience: int = 0          # 0: never stop early
    min_delta: float = 1e-4

    def score(self, record: dict) -> float | None:
        """Higher-is-better value of an epoch record; None when it has no validation.

        A NaN AUROC (a validation split with one class only) falls back to the loss.
        """
        if "val_loss" not in record:
            return None
        if self.monitor == "auroc" and not math.isnan(record.get("val_mean_auroc", math.nan)):
            return float(record["val_mean_auroc"])
        return -float(record["val_loss"])

    def update(self, state: dict, record: dict) -> Decision:
        """Fold one epoch's record into ``state`` (mutated) and decide."""
        for key, default in POLICY_STATE.items():
            state.setdefault(key, default)
        score = self.score(record)
        if score is None:
            return Decision(improved=False, stop=False)
        if state["best"] is None or score > state["best"] + self.min_delta:
            state.update(best=score, best_epoch=record["epoch"], since_best=0, plateau_wait=0)
            return Decision(improved=True, stop=False)
        state["since_best"] += 1
        state["plateau_wait"] += 1
        if self.patience and state["plateau_wait"] >= self.patience:
            state["lr_multiplier"] *= self.factor
            state["plateau_wait"] = 0
        return Decision(improved=False, stop=bool(self.stop_patience and state["since_best"] >= self.stop_patience))
