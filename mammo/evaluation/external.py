"""Scores of a saved model's predictions on labelled data (``mammo evaluate``): per image, per breast
and per patient (subgroups: :func:`~.metrics.subgroup_metrics`, as in training), beside the figures the model's own cross-validation expected.

Like the rest of :mod:`mammo.evaluation` this sees arrays only; the model, the data set
and the command line belong to :mod:`mammo.evaluate`. The metrics are the training
report's (:mod:`.metrics`); only the units they are computed on change:

* **breast** (patient + laterality): its views' predictions averaged, the training
  report's per-breast rule (:func:`~.metrics.per_breast_tumour`, :func:`~.metrics.unit_means`);
* **patient** (the data set's group): density, the mean class probabilities of all its
  images; tumour, the highest of its breasts' mean P(malignant) (a patient is malignant
  when one breast is), labelled malignant when any of its images is; without laterality
  all of a patient's images count as one breast.

A density unit is graded by the model's own rule on its mean probabilities; units
whose images disagree on the true grade are left out and counted. Every 95% CI is a
percentile bootstrap that resamples whole patients (groups).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .metrics import bootstrap_ci, density_metrics, fast_qwk, per_breast_tumour, tumour_metrics, unit_means

__all__ = ["score_density", "score_tumour", "compare_with_cv", "COMPARED"]

#: The metrics set beside the model's cross-validated ones, per task: (key, label).
COMPARED = {
    "density": (
        ("qwk", "QWK"),
        ("accuracy", "accuracy"),
        ("balanced_accuracy", "balanced accuracy"),
        ("macro_f1", "macro-F1"),
    ),
    "tumour": (
        ("auc", "AUC"),
        ("sens_at_90spec", "sensitivity at 90% specificity"),
        ("balanced_accuracy", "balanced accuracy"),
        ("brier", "Brier score"),
    ),
}


def _unit_max(values: Sequence, units: Sequence) -> np.ndarray:
    """The largest of ``values`` per unit, units in :func:`unit_means`' (sorted) order."""
    _, inverse = np.unique(np.asarray(units).astype(str), return_inverse=True)
    inverse = inverse.ravel()
    out = np.full(inverse.max() + 1 if len(inverse) else 0, -np.inf)
    np.maximum.at(out, inverse, np.asarray(values, dtype=float))
    return out


def _several(units: Sequence | None) -> bool:
    """True when some unit holds more than one image (otherwise the unit level repeats the image level)."""
    return units is not None and len(set(np.asarray(units).astype(str))) < len(units)


def _qwk_ci(y, pred, classes, groups, n_boot: int, seed: int) -> list[float]:
    return list(bootstrap_ci(y, pred, lambda a, b: fast_qwk(a, b, classes), groups=groups, n_boot=n_boot, seed=seed))


def _density_level(y, proba, classes, pred, groups, n_boot: int, seed: int) -> dict[str, Any]:
    out = density_metrics(y, proba, classes, pred)
    out["qwk_ci95"] = _qwk_ci(np.asarray(y), np.asarray(pred), classes, groups, n_boot, seed)
    return out


def score_density(
    y: Sequence[int],
    proba: np.ndarray,
    classes: Sequence[int],
    decide: Callable[[np.ndarray], np.ndarray],
    groups: Sequence,
    breasts: Sequence | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Density metrics per image and, when units hold several images, per breast and per patient.

    ``decide`` maps rows of class probabilities to grades (the model's own rule).
    Returns ``{"image": {...}, "breast"?: {...}, "patient"?: {...}}``, each
    :func:`~.metrics.density_metrics` plus ``qwk_ci95``; unit levels add ``images_per_unit``
    and ``units_with_disagreeing_labels``.
    """
    y, proba, groups = np.asarray(y), np.asarray(proba, dtype=float), np.asarray(groups).astype(str)
    out = {"image": _density_level(y, proba, classes, decide(proba), groups, n_boot, seed)}
    for level, units in (("breast", breasts), ("patient", groups)):
        if not _several(units):
            continue
        _, first, mean_p, n = unit_means(proba, units)
        agree = _unit_max(y, units) == -_unit_max(-y, units)
        true = unit_means(y, units)[2].round().astype(int)
        unit_groups = groups[first]
        if agree.any():
            out[level] = _density_level(
                true[agree], mean_p[agree], classes, decide(mean_p[agree]), unit_groups[agree], n_boot, seed
            )
        else:
            out[level] = {"n": 0}
        out[level].update(images_per_unit=float(n.mean()), units_with_disagreeing_labels=int((~agree).sum()))
    return out


def _tumour_level(y, p, threshold: float, groups, n_boot: int, seed: int) -> dict[str, Any]:
    out = tumour_metrics(y, p, (np.asarray(p) >= threshold).astype(int))
    if len(np.unique(y)) == 2:
        out["auc_ci95"] = list(bootstrap_ci(y, p, groups=groups, n_boot=n_boot, seed=seed))
    return out


def score_tumour(
    y: Sequence[int],
    p_malignant: Sequence[float],
    threshold: float,
    groups: Sequence,
    breasts: Sequence | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Tumour metrics per image and, when units hold several images, per breast and per patient.

    ``threshold`` on P(malignant) is the model's decision rule (balanced accuracy).
    Returns ``{"image": {...}, "breast"?: {...}, "patient"?: {...}}``: per image
    :func:`~.metrics.tumour_metrics` plus ``auc_ci95``; per breast
    :func:`~.metrics.per_breast_tumour` (None when a breast's images disagree on the label).
    """
    y, p, groups = np.asarray(y).astype(int), np.asarray(p_malignant, dtype=float), np.asarray(groups).astype(str)
    out: dict[str, Any] = {"image": _tumour_level(y, p, threshold, groups, n_boot, seed)}
    if _several(breasts):
        out["breast"] = per_breast_tumour(y, p, breasts, groups, n_boot=n_boot, seed=seed)
    breast_units = breasts if breasts is not None else groups
    _, first, breast_p, _ = unit_means(p, breast_units)
    breast_y, breast_groups = _unit_max(y, breast_units), groups[first]
    if _several(groups):
        patient_p, patient_y = _unit_max(breast_p, breast_groups), _unit_max(breast_y, breast_groups).astype(int)
        level = _tumour_level(patient_y, patient_p, threshold, None, n_boot, seed)
        level["images_per_unit"] = float(len(y) / len(patient_y))
        out["patient"] = level
    return out


def compare_with_cv(task: str, cv: Mapping[str, Any] | None, measured: Mapping[str, Any]) -> list[dict]:
    """Rows ``{"metric", "expected", "expected_folds", "measured"}``: the model's cross-validated figure
    (``cv``: ``metadata["cv_metrics"][task]``, None when the model has none) beside the measured one."""
    pooled = (cv or {}).get("metrics", {})
    folds = (cv or {}).get("folds_summary", {})
    return [
        {
            "metric": key,
            "label": label,
            "expected": pooled.get(key),
            "expected_folds": folds.get(key),
            "measured": measured.get(key),
        }
        for key, label in COMPARED[task]
    ]
