"""Patient-wise, seeded train/val/test assignment."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from tfxr.data.types import OFFICIAL_SPLITS, SPLITS, Item
from tfxr.errors import ConfigError, SourceError

DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)


def parse_fractions(text: str, option: str = "--split-fractions") -> tuple[float, float, float]:
    """'0.7,0.1,0.2' -> (0.7, 0.1, 0.2): train, val, test fractions of the images."""
    problem = f"{option} must be three non-negative numbers summing to 1 (train,val,test), got {text!r}"
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise ConfigError(problem) from None
    if len(parts) != 3 or any(not p >= 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise ConfigError(problem)
    return parts[0], parts[1], parts[2]


def parse_split_assignment(text: str, option: str = "--split-list") -> tuple[str, str]:
    """'SPLIT=VALUE' -> (SPLIT, VALUE), SPLIT one of the official splits (train, val, test, trainval)."""
    if "=" not in text:
        raise ConfigError(f"{option} takes SPLIT=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    if k not in OFFICIAL_SPLITS:
        raise ConfigError(f"{option}: unknown split {k!r} (allowed: {', '.join(OFFICIAL_SPLITS)})")
    return k, v


def _assign(patients: dict[str, int], names: tuple[str, ...], fractions: tuple[float, ...],
            seed: int) -> dict[str, str]:
    """Greedy patient assignment: shuffled patients fill splits to their image targets."""
    order = sorted(patients)
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    total = sum(patients.values())
    targets = [f * total for f in fractions]
    filled = [0.0] * len(names)
    out: dict[str, str] = {}
    for pid in order:
        # the split furthest below its target (relative) takes the next patient
        k = min(range(len(names)), key=lambda i: (filled[i] - targets[i]) / max(targets[i], 1e-9)
                if targets[i] > 0 else float("inf"))
        out[pid] = names[k]
        filled[k] += patients[pid]
    return out


def _strata(items: list[Item]) -> dict[str, tuple]:
    """Each patient's label signature: which labels any of their images has (<= 4 labels),
    or just whether any finding is present (more labels)."""
    sig: dict[str, np.ndarray] = {}
    for it in items:
        lab = np.asarray(it.labels, float) >= 0.5
        sig[it.patient_id] = sig[it.patient_id] | lab if it.patient_id in sig else lab
    return {p: (tuple(v.tolist()) if len(v) <= 4 else (bool(v.any()),)) for p, v in sig.items()}


def _assign_stratified(patients: dict[str, int], strata: dict[str, tuple], names, fractions,
                       seed: int) -> dict[str, str]:
    out: dict[str, str] = {}
    groups: dict[tuple, dict[str, int]] = defaultdict(dict)
    for pid, n in patients.items():
        groups[strata.get(pid, ())][pid] = n
    for k, key in enumerate(sorted(groups)):
        out.update(_assign(groups[key], names, fractions, seed * 1000 + k))
    return out


def assign_splits(items: list[Item], fractions=DEFAULT_FRACTIONS, seed: int = 0,
                  use_official: bool = True, stratify: bool = True) -> dict[str, list[Item]]:
    """Split items so that no patient appears in two splits.

    Items with an official split ('train'/'val'/'test') keep it when ``use_official``;
    'trainval' items are divided into train and val in the ratio of the first two
    fractions; items without one are divided by all three fractions.  With ``stratify``
    patients are assigned within groups of equal label signature, so small data sets get
    the same prevalence in every split.
    """
    fractions = tuple(fractions)
    out: dict[str, list[Item]] = {s: [] for s in SPLITS}
    pending: dict[str, dict[str, int]] = {"all": defaultdict(int), "trainval": defaultdict(int)}
    for it in items:
        official = it.split if use_official else None
        if official in SPLITS:
            continue
        pending["trainval" if official == "trainval" else "all"][it.patient_id] += 1
    strata = _strata(items) if stratify else {}
    pat_split = {}
    if pending["all"]:
        pat_split.update(_assign_stratified(pending["all"], strata, SPLITS, fractions, seed))
    if pending["trainval"]:
        tv = fractions[0] + fractions[1]
        tv_fr = (fractions[0] / tv, fractions[1] / tv) if tv > 0 else (1.0, 0.0)
        tv_assign = _assign_stratified(pending["trainval"], strata, ("train", "val"), tv_fr, seed + 1)
        clash = set(tv_assign) & set(pat_split)
        if clash:
            raise SourceError(f"patients in both the trainval list and unlisted items: {sorted(clash)[:5]}")
        pat_split.update(tv_assign)
    for it in items:
        official = it.split if use_official else None
        split = official if official in SPLITS else pat_split[it.patient_id]
        out[split].append(it)
    return out


def patient_overlap(splits: dict[str, list]) -> dict[str, int]:
    """Number of patients shared by each pair of splits (0 for a patient-wise split)."""
    pats = {s: {it.patient_id if isinstance(it, Item) else it for it in v} for s, v in splits.items()}
    names = sorted(pats)
    return {f"{a}&{b}": len(pats[a] & pats[b]) for i, a in enumerate(names) for b in names[i + 1:]}
