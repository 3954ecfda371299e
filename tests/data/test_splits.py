"""Patient-wise splits: no patient in two splits, stratified by label signature, seeded."""
from __future__ import annotations

import numpy as np

from tfxr.data.splits import assign_splits, patient_overlap
from tfxr.data.types import Item


def _items(n_patients=300, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for p in range(n_patients):
        pos = rng.random() < 0.2
        for k in range(rng.integers(1, 4)):
            items.append(Item(f"p{p}_{k}", f"p{p}", (float(pos),), "x.png"))
    return items


def test_stratified_split_keeps_prevalence_and_patients_apart():
    items = _items()
    prev = np.mean([it.labels[0] for it in items])
    sp = assign_splits(items, seed=3)
    assert sum(map(len, sp.values())) == len(items)
    assert set(patient_overlap(sp).values()) == {0}
    for split, v in sp.items():
        p = np.mean([it.labels[0] for it in v])
        assert abs(p - prev) < 0.03, (split, p, prev)
    for split, frac in zip(("train", "val", "test"), (0.7, 0.1, 0.2)):
        assert abs(len(sp[split]) / len(items) - frac) < 0.02


def test_unstratified_split_also_patient_wise_and_seeded():
    items = _items(seed=1)
    a = assign_splits(items, seed=5, stratify=False)
    b = assign_splits(items, seed=5, stratify=False)
    assert {k: [i.image_id for i in v] for k, v in a.items()} == {k: [i.image_id for i in v] for k, v in b.items()}
    assert set(patient_overlap(a).values()) == {0}
