"""Classification metrics as papers report them (scikit-learn underneath)."""
from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def auroc_per_label(y: np.ndarray, p: np.ndarray) -> list[float]:
    """AUROC of each column; NaN where a label has only one class in y."""
    out = []
    for j in range(y.shape[1]):
        yj = y[:, j] >= 0.5
        out.append(float(roc_auc_score(yj, p[:, j])) if 0 < yj.sum() < len(yj) else float("nan"))
    return out


def nanmean(values) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def bootstrap_auroc_ci(y: np.ndarray, p: np.ndarray, n: int = 1000, seed: int = 0,
                       alpha: float = 0.05) -> list[tuple[float, float]]:
    """Percentile bootstrap (resampling images) confidence interval of each label's AUROC."""
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


def sens_spec(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    yt, yp = y >= 0.5, p >= threshold
    tp, fn = int(np.sum(yt & yp)), int(np.sum(yt & ~yp))
    tn, fp = int(np.sum(~yt & ~yp)), int(np.sum(~yt & yp))
    return {"threshold": float(threshold), "tp": tp, "fn": fn, "tn": tn, "fp": fp,
            "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
            "specificity": tn / (tn + fp) if tn + fp else float("nan"),
            "accuracy": (tp + tn) / len(yt) if len(yt) else float("nan")}


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1 (pick it on validation data)."""
    yt = y >= 0.5
    if yt.all() or (~yt).all():
        return 0.5
    fpr, tpr, thr = roc_curve(yt, p)
    k = int(np.argmax(tpr - fpr))
    return float(min(thr[k], 1.0))


def plot_roc(y: np.ndarray, p: np.ndarray, names: list[str], path: str, title: str = "") -> str:
    """ROC curves of every label with its AUROC, written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aucs = auroc_per_label(y, p)
    fig, ax = plt.subplots(figsize=(6.4, 6.4) if len(names) <= 4 else (8, 8), dpi=110)
    for j, name in enumerate(names):
        yt = y[:, j] >= 0.5
        if math.isnan(aucs[j]):
            continue
        fpr, tpr, _ = roc_curve(yt, p[:, j])
        ax.plot(fpr, tpr, lw=1.6, label=f"{name} (AUROC {aucs[j]:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set(xlabel="1 - specificity (false-positive rate)", ylabel="sensitivity (true-positive rate)",
           xlim=(0, 1), ylim=(0, 1.01), title=title or f"ROC, mean AUROC {nanmean(aucs):.3f}")
    ax.legend(loc="lower right", fontsize=8 if len(names) > 4 else 10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
