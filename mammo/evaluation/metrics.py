"""Metrics and bootstrap confidence intervals of out-of-fold predictions.

Density is ordinal (BI-RADS 1-4, or 1-3 on mini-MIAS): accuracy, balanced accuracy,
quadratic-weighted Cohen's kappa (QWK, which charges a 1-vs-4 error more than a 2-vs-3
one), macro-F1 and the confusion matrix. Tumour is binary: ROC-AUC with a 95% bootstrap
CI that resamples GROUPS (patients / originals), because images of one group are not
independent; sensitivity at 90% specificity, balanced accuracy, Brier score and a
calibration curve. Subgroups (site, machine, view, ...) get the per-image metric of each
level with its patient-grouped CI (:func:`subgroup_metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    brier_score_loss,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

__all__ = [
    "density_metrics",
    "tumour_metrics",
    "sensitivity_at_specificity",
    "bootstrap_ci",
    "fast_auc",
    "fast_qwk",
    "per_breast_tumour",
    "unit_means",
    "fold_summary",
    "subgroup_metrics",
    "answer_change",
    "PRIMARY_METRIC",
]

#: The metric that selects the final candidate per task.
PRIMARY_METRIC = {"density": "qwk", "tumour": "auc"}


def density_metrics(
    y_true: Sequence[int], proba: np.ndarray, classes: Sequence[int], y_pred: Sequence[int] | None = None
) -> dict[str, Any]:
    """Ordinal-class metrics of class predictions (by default the most probable class).

    Parameters
    ----------
    y_true : (n,) int labels
    proba : (n, k) probabilities, columns in the order of ``classes``
    classes : the k class labels
    y_pred : (n,) predicted labels, optional
        The model's own decision (e.g. cut points on the expected grade); default argmax of ``proba``.

    Returns
    -------
    dict with n, accuracy, balanced_accuracy, qwk, macro_f1, confusion_matrix (rows = truth)
    """
    y = np.asarray(y_true)
    classes = np.asarray(classes)
    pred = classes[np.argmax(np.asarray(proba), axis=1)] if y_pred is None else np.asarray(y_pred)
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(_balanced_accuracy(y, pred)),
        "qwk": float(_qwk(y, pred, classes)),
        "macro_f1": float(f1_score(y, pred, labels=classes, average="macro", zero_division=0)),
        "confusion_matrix": confusion_matrix(y, pred, labels=classes).tolist(),
        "classes": [int(c) for c in classes],
    }


def _qwk(y, pred, classes) -> float:
    if len(np.unique(np.concatenate([y, pred]))) < 2:
        return float("nan")  # kappa is undefined when both raters use a single class
    return cohen_kappa_score(y, pred, labels=classes, weights="quadratic")


def _balanced_accuracy(y, pred) -> float:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true" in small folds
        return balanced_accuracy_score(y, pred)


def sensitivity_at_specificity(y_true: Sequence[int], score: Sequence[float], specificity: float = 0.9) -> float:
    """Highest sensitivity among ROC thresholds whose specificity is at least ``specificity``."""
    y = np.asarray(y_true)
    if len(np.unique(y)) < 2:
        return float("nan")
    fpr, tpr, _ = roc_curve(y, score)
    ok = fpr <= 1 - specificity + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def tumour_metrics(
    y_true: Sequence[int],
    p_malignant: Sequence[float],
    y_pred: Sequence[int] | None = None,
    *,
    threshold: float = 0.5,
    n_bins: int = 10,
) -> dict[str, Any]:
    """Binary metrics of P(malignant).

    ``y_pred`` (e.g. thresholded at each fold's training prevalence, the model's own
    rule) gives the balanced accuracy; without it ``p >= threshold`` does.
    Returns n, n_pos, auc, sens_at_90spec, balanced_accuracy, brier, calibration
    (mean predicted and observed frequency per quantile bin).
    """
    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(p_malignant, dtype=float), 0.0, 1.0)
    pred = (p >= threshold).astype(int) if y_pred is None else np.asarray(y_pred).astype(int)
    two = len(np.unique(y)) == 2
    out: dict[str, Any] = {
        "n": int(len(y)),
        "n_pos": int(y.sum()),
        "auc": float(roc_auc_score(y, p)) if two else float("nan"),
        "sens_at_90spec": sensitivity_at_specificity(y, p, 0.9),
        "balanced_accuracy": float(_balanced_accuracy(y, pred)),
        "brier": float(brier_score_loss(y, p)) if len(y) else float("nan"),
    }
    if two and len(y) >= 2 * n_bins:
        obs, mean_pred = calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
        out["calibration"] = {"mean_predicted": mean_pred.tolist(), "observed": obs.tolist()}
    return out


def per_breast_tumour(
    y_true: Sequence[int],
    p_malignant: Sequence[float],
    breasts: Sequence,
    groups: Sequence,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Tumour metrics per breast, from the mean P(malignant) of each breast's images (its views).

    The CI resamples whole ``groups`` (patients) of breasts. Returns None when a
    breast's images disagree on the label (the label is then not per breast).
    """
    y = np.asarray(y_true).astype(int)
    _, first, p, n = unit_means(p_malignant, breasts)
    label = unit_means(y, breasts)[2]
    if not np.all((label == 0) | (label == 1)):
        return None
    label = label.astype(int)
    unit_groups = np.asarray(groups).astype(str)[first]
    out = {k: v for k, v in tumour_metrics(label, p).items() if k in ("n", "n_pos", "auc", "sens_at_90spec", "brier")}
    out["views_per_breast"] = float(n.mean())
    if len(np.unique(label)) == 2:
        out["auc_ci95"] = list(bootstrap_ci(label, p, groups=unit_groups, n_boot=n_boot, seed=seed))
    return out


def unit_means(values: Sequence | np.ndarray, units: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The mean of ``values`` (one row per image, 1-D or 2-D) over each unit's images (a breast's views).

    Returns ``(unit ids (sorted), index of each unit's first image, means, images per unit)``.
    """
    ids, first, inverse = np.unique(np.asarray(units).astype(str), return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    n = np.bincount(inverse, minlength=len(ids))
    v = np.asarray(values, dtype=float)
    columns = v.reshape(len(v), -1)
    means = np.column_stack([np.bincount(inverse, weights=c, minlength=len(ids)) for c in columns.T]) / n[:, None]
    return ids, first, means.reshape((len(ids),) + v.shape[1:]), n


def fast_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC by the Mann-Whitney rank sum (ties count 1/2): same value as roc_auc_score, far less overhead."""
    from scipy.stats import rankdata

    y = np.asarray(y_true).astype(bool)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def fast_qwk(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[int]) -> float:
    """Quadratic-weighted kappa from a numpy confusion matrix: the value of :func:`density_metrics`' QWK
    (cohen_kappa_score) at a fraction of its overhead, for bootstrap resamples; NaN when undefined."""
    classes = np.sort(np.asarray(classes))  # ordinal: weights by the distance between grades
    k = len(classes)
    a, b = np.searchsorted(classes, y_true), np.searchsorted(classes, y_pred)
    if len(np.unique(np.concatenate([a, b]))) < 2:
        return float("nan")
    observed = np.bincount(a * k + b, minlength=k * k).reshape(k, k).astype(float)
    weights = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    chance = (weights * expected).sum()
    return float(1 - (weights * observed).sum() / chance) if chance else float("nan")


def bootstrap_ci(
    y_true: Sequence[int],
    score: Sequence[float],
    metric=fast_auc,
    *,
    groups: Sequence | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric(y, score)``.

    With ``groups`` whole groups are resampled (a cluster bootstrap): copies of one
    mammogram or images of one patient are not independent, and resampling images
    would make the interval too narrow. Resamples with a single class are skipped.
    """
    y = np.asarray(y_true)
    s = np.asarray(score)
    rng = np.random.default_rng(seed)
    if groups is None:
        members = [np.array([i]) for i in range(len(y))]
    else:
        _, inv = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        order = np.argsort(inv, kind="stable")
        members = np.split(order, np.flatnonzero(np.diff(inv[order])) + 1)
    stats = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        idx = np.concatenate([members[k] for k in pick])
        if len(np.unique(y[idx])) < 2:
            continue
        stats.append(metric(y[idx], s[idx]))
    if not stats:
        return float("nan"), float("nan")
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def fold_summary(per_fold: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation over folds of every scalar metric (NaN folds ignored)."""
    out: dict[str, dict[str, float]] = {}
    keys = (
        [k for k, v in per_fold[0].items() if isinstance(v, (int, float)) and k not in ("n", "n_pos")]
        if per_fold
        else []
    )
    for k in keys:
        vals = np.array([f.get(k, np.nan) for f in per_fold], dtype=float)
        vals = vals[~np.isnan(vals)]
        out[k] = {
            "mean": float(vals.mean()) if len(vals) else float("nan"),
            "std": float(vals.std(ddof=1)) if len(vals) > 1 else float("nan"),
        }
    return out


def _level_key(level: str) -> tuple:
    """Numbers in numeric order (machine 21 before 170), then words; "unknown" last."""
    try:
        return (0, float(level), "")
    except ValueError:
        return (2 if level == "unknown" else 1, 0.0, level)


def subgroup_metrics(
    task: str,
    y: Sequence[int],
    groups: Sequence,
    columns: Mapping[str, Sequence],
    *,
    proba: Sequence[float] | None = None,
    pred: Sequence[int] | None = None,
    classes: Sequence[int] = (),
    too_few: Callable[[np.ndarray, np.ndarray], str | None] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """The per-image metric and its 95% CI in every level of every subgroup column.

    ``columns`` maps a subgroup name (site, view, ...) to one level per image. Tumour
    scores ``proba`` (P(malignant), 1-D) by AUC; density scores ``pred`` (the model's
    grades) by QWK, with accuracy beside it. The CI is the percentile bootstrap over
    ``groups`` (patients) of the level. ``too_few(y, groups)`` (e.g.
    :func:`mammo.datasets.too_few_cases`) says why a level's images are too few to score:
    that level is listed with its counts and the reason (``too_few``), its ``value`` and
    ``ci95`` None. Returns ``{name: [{"level", "n", "n_patients", "n_pos" (tumour), "metric",
    "value", "ci95", "accuracy" (density), "too_few"?}]}``, levels sorted (numbers numerically).
    """
    y, groups = np.asarray(y), np.asarray(groups).astype(str)
    scores = np.asarray(proba, dtype=float) if task == "tumour" else np.asarray(pred)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, values in columns.items():
        values = np.asarray(values).astype(str)
        rows = []
        for level in sorted(set(values), key=_level_key):
            m = values == level
            rows.append(_subgroup_row(task, level, y[m], scores[m], groups[m], classes, too_few, n_boot, seed))
        out[name] = rows
    return out


def _subgroup_row(task, level, y, scores, groups, classes, too_few, n_boot: int, seed: int) -> dict[str, Any]:
    row: dict[str, Any] = {"level": level, "n": int(len(y)), "n_patients": int(len(set(groups)))}
    if task == "tumour":
        row["n_pos"] = int((y == 1).sum())
    row["metric"] = PRIMARY_METRIC[task]
    reason = too_few(y, groups) if too_few is not None else None
    if reason:
        return {**row, "value": None, "ci95": None, "too_few": reason}
    if task == "tumour":
        row["value"] = fast_auc(y, scores)
        row["ci95"] = list(bootstrap_ci(y, scores, groups=groups, n_boot=n_boot, seed=seed))
    else:
        qwk = partial(fast_qwk, classes=classes)
        row["value"] = qwk(y, scores)
        row["ci95"] = list(bootstrap_ci(y, scores, qwk, groups=groups, n_boot=n_boot, seed=seed))
        row["accuracy"] = float(np.mean(y == scores))
    return row


def answer_change(task: str, own: np.ndarray, moved: np.ndarray, shift: float) -> dict[str, Any]:
    """How far the answers for the same images moved when their crop moved by ``shift`` pixels.

    ``own``, ``moved``: density grades, or P(malignant), one per image. Density: the share of
    grades unchanged; tumour: the median and 90th percentile of the absolute change.
    """
    own, moved = np.asarray(own), np.asarray(moved)
    out: dict[str, Any] = {"images": int(len(own)), "shift_px": float(shift)}
    if task == "density":
        out["grades_unchanged"] = float(np.mean(own == moved))
    else:
        change = np.abs(moved.astype(float) - own.astype(float))
        out["p_change_median"] = float(np.median(change))
        out["p_change_p90"] = float(np.quantile(change, 0.9))
    return out
