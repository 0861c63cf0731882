"""Plots of a training run's out-of-fold predictions, written as PNG files (matplotlib, no display)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = ["plot_roc", "plot_confusion", "plot_calibration", "plot_group_sizes", "plot_subgroups"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers
    import matplotlib.pyplot as plt

    return plt


def _curves_figure(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]]) -> tuple[Any, Any, list]:
    """A figure for one binary curve per candidate, and the ``(name, y, p)`` that have one
    (a candidate whose labels hold a single class has no ROC or reliability curve)."""
    fig, ax = _pyplot().subplots(figsize=(5.5, 5))
    return fig, ax, [(name, y, p) for name, (y, p) in curves.items() if len(np.unique(y)) >= 2]


def _chance_line(ax) -> None:
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)


def plot_roc(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], path, title: str = "ROC (pooled out-of-fold)"
) -> Path:
    """One ROC curve per candidate: ``{name: (y_true, p_malignant)}``."""
    fig, ax, drawable = _curves_figure(curves)
    for name, y, p in drawable:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f})", lw=1.4)
    _chance_line(ax)
    ax.axvline(0.1, ls=":", c="grey", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_confusion(
    matrices: Mapping[str, Sequence[Sequence[int]]], classes: Sequence, path, title: str = "Confusion matrices"
) -> Path:
    """A row-normalised confusion matrix (rows = truth) per candidate, counts annotated."""
    plt = _pyplot()
    n = len(matrices)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (name, cm) in zip(axes.flat, matrices.items()):
        cm = np.asarray(cm, dtype=float)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(
                    j,
                    i,
                    int(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
        ax.set_xticks(range(len(classes)), [str(c) for c in classes])
        ax.set_yticks(range(len(classes)), [str(c) for c in classes])
        ax.set(title=name, xlabel="predicted", ylabel="true")
        ax.title.set_fontsize(8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_calibration(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    path,
    n_bins: int = 10,
    title: str = "Calibration (pooled out-of-fold)",
) -> Path:
    """Reliability diagram (quantile bins) per candidate: ``{name: (y_true, p_malignant)}``."""
    fig, ax, drawable = _curves_figure(curves)
    for name, y, p in drawable:
        obs, pred = calibration_curve(y, np.clip(p, 0, 1), n_bins=n_bins, strategy="quantile")
        ax.plot(pred, obs, marker="o", ms=3, lw=1.2, label=name)
    _chance_line(ax)
    ax.set(
        xlabel="mean predicted P(malignant)",
        ylabel="observed fraction malignant",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_group_sizes(groups: Sequence, path, title: str = "Images per group") -> Path:
    """Histogram of group sizes (images per patient / per original mammogram)."""
    plt = _pyplot()
    _, counts = np.unique(np.asarray(groups).astype(str), return_counts=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bins = np.arange(0.5, counts.max() + 1.5) if counts.max() <= 40 else 40
    ax.hist(counts, bins=bins, color="tab:blue", edgecolor="white")
    ax.set(xlabel="images in group", ylabel="groups", title=f"{title} ({len(counts)} groups, {counts.sum()} images)")
    return _save(fig, path)


def plot_subgroups(
    task: str,
    subgroups: Mapping[str, Sequence[Mapping]],
    path,
    overall: float | None = None,
    title: str = "Per subgroup (95% CI)",
) -> Path:
    """A forest plot: each level of each subgroup (:func:`~.metrics.subgroup_metrics`' rows) as its
    metric (tumour AUC, density QWK) with its CI; levels with too few cases say so in their row.

    ``overall`` (the whole set's value) is drawn dashed, chance (AUC 0.5, QWK 0) dotted.
    """
    metric, chance = ("AUC", 0.5) if task == "tumour" else ("QWK", 0.0)
    plt = _pyplot()
    labels, bold, points = [], [], []
    for name, rows in subgroups.items():
        labels.append(name)
        bold.append(True)
        points.append(None)
        for r in rows:
            labels.append(f"{r['level']}  (n={r['n']}, {r.get('n_patients', '?')} pts)")
            bold.append(False)
            points.append(r)
    fig, ax = plt.subplots(figsize=(6.5, 1.3 + 0.26 * len(labels)))
    ypos = np.arange(len(labels))[::-1]
    for y, r in zip(ypos, points):
        if r is None:
            continue
        if r.get("too_few") or r.get("value") is None:
            ax.text(
                0.5,
                y,
                "too few cases",
                transform=ax.get_yaxis_transform(),
                ha="center",
                va="center",
                fontsize=7,
                color="grey",
                style="italic",
            )
            continue
        lo, hi = r.get("ci95") or (None, None)
        if lo is not None and hi is not None and not (math.isnan(lo) or math.isnan(hi)):
            ax.plot([lo, hi], [y, y], c="tab:blue", lw=1.4)
        ax.plot([r["value"]], [y], "o", c="tab:blue", ms=4)
    for x, style in ((overall, "--"), (chance, ":")):
        if x is not None and not math.isnan(x):
            ax.axvline(x, ls=style, c="grey", lw=0.8)
    ax.set_yticks(ypos, labels, fontsize=7)
    for tick, b in zip(ax.get_yticklabels(), bold):
        tick.set_fontweight("bold" if b else "normal")
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set(xlabel=f"{metric} [95% CI]", title=title)
    ax.title.set_fontsize(9)
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path
