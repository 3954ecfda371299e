"""Classification metrics as papers report them (scikit-learn underneath).

A label whose split has no positive or no negative image has no ROC curve: its AUROC,
AUPRC and bootstrap interval are NaN ("undefined"), and :func:`defined_mean` leaves it
out of the mean and says how many labels the mean covers.

A non-finite label (NaN: unknown for that image, e.g. CheXpert's uncertain label under
the ``ignore`` policy) is left out of that label's metrics (:func:`known`).
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from tfxr import plots


def known(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One label column and its predictions without the images whose label is unknown (NaN)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p)
    keep = np.isfinite(y)
    return (y, p) if keep.all() else (y[keep], p[keep])


def is_defined(y: np.ndarray) -> bool:
    """True when a label column has both a positive and a negative image (unknown ones aside)."""
    y = np.asarray(y, dtype=float)
    positive = y[np.isfinite(y)] >= 0.5
    return bool(0 < positive.sum() < len(positive))


def auroc_per_label(y: np.ndarray, p: np.ndarray) -> list[float]:
    """AUROC of each column over its known labels; NaN where a label has only one class in y."""
    out = []
    for j in range(y.shape[1]):
        yj, pj = known(y[:, j], p[:, j])
        out.append(float(roc_auc_score(yj >= 0.5, pj)) if is_defined(yj) else float("nan"))
    return out


def auprc_per_label(y: np.ndarray, p: np.ndarray) -> list[float]:
    """Area under the precision-recall curve of each column (average precision, the
    step-wise sum sum_n (R_n - R_{n-1}) P_n, no interpolation); NaN where undefined."""
    out = []
    for j in range(y.shape[1]):
        yj, pj = known(y[:, j], p[:, j])
        out.append(float(average_precision_score(yj >= 0.5, pj)) if is_defined(yj) else float("nan"))
    return out


def nanmean(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def defined_mean(values) -> tuple[float, int]:
    """(mean of the defined values, how many there are): a mean always says what it averages."""
    finite = [v for v in values if not math.isnan(v)]
    return (float(np.mean(finite)) if finite else float("nan")), len(finite)


def bootstrap_auroc_ci(y: np.ndarray, p: np.ndarray, n: int = 1000, seed: int = 0,
                       alpha: float = 0.05) -> list[tuple[float, float]]:
    """Percentile bootstrap (resampling images) confidence interval of each label's AUROC.

    Resamples whose draw has a single class for a label are skipped for that label; with
    10 or fewer usable resamples the interval is undefined (NaN).
    """
    rng = np.random.default_rng(seed)
    m = len(y)
    samples = [[] for _ in range(y.shape[1])]
    for _ in range(n):
        idx = rng.integers(0, m, m)
        for j, a in enumerate(auroc_per_label(y[idx], p[idx])):
            if not math.isnan(a):
                samples[j].append(a)
    return [(float(np.quantile(s, alpha / 2)), float(np.quantile(s, 1 - alpha / 2))) if len(s) > 10
            else (float("nan"), float("nan")) for s in samples]


def wilson_ci(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n == 0:
        return float("nan"), float("nan")
    ph = k / n
    d = 1 + z * z / n
    c = (ph + z * z / (2 * n)) / d
    h = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    """Confusion counts and the rates papers print when ``p >= threshold`` calls positive.

    sensitivity (recall) = TP/(TP+FN), specificity = TN/(TN+FP), precision (PPV) =
    TP/(TP+FP), F1 = 2TP/(2TP+FP+FN), accuracy = (TP+TN)/N; NaN when a denominator is 0.
    """
    y, p = known(y, p)
    yt, yp = y >= 0.5, p >= threshold
    tp, fn = int(np.sum(yt & yp)), int(np.sum(yt & ~yp))
    tn, fp = int(np.sum(~yt & ~yp)), int(np.sum(~yt & yp))
    return {"threshold": float(threshold), "tp": tp, "fn": fn, "tn": tn, "fp": fp,
            "sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
            "precision": _ratio(tp, tp + fp), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "accuracy": _ratio(tp + tn, len(yt))}


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1 (pick it on validation data);
    0.5 when the label is undefined there."""
    y, p = known(y, p)
    if not is_defined(y):
        return 0.5
    fpr, tpr, thr = roc_curve(y >= 0.5, p)
    k = int(np.argmax(tpr - fpr))
    return float(min(thr[k], 1.0))


def plot_roc(y: np.ndarray, p: np.ndarray, names: list[str], path: str, title: str = "") -> str:
    """ROC curves of every defined label with its AUROC, written as PNG (atomically)."""
    aucs = auroc_per_label(y, p)
    mean, count = defined_mean(aucs)
    fig, ax = plots.subplots(figsize=(6.4, 6.4) if len(names) <= 4 else (8, 8), dpi=110)
    for j, name in enumerate(names):
        if math.isnan(aucs[j]):
            continue
        yj, pj = known(y[:, j], p[:, j])
        fpr, tpr, _ = roc_curve(yj >= 0.5, pj)
        ax.plot(fpr, tpr, lw=1.6, label=f"{name} (AUROC {aucs[j]:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set(xlabel="1 - specificity (false-positive rate)", ylabel="sensitivity (true-positive rate)",
           xlim=(0, 1), ylim=(0, 1.01),
           title=title or f"ROC, mean AUROC {mean:.3f} over {count} label(s)")
    ax.legend(loc="lower right", fontsize=8 if len(names) > 4 else 10)
    ax.grid(alpha=0.3)
    return plots.save_png(fig, path)
