"""Recalibration of a saved model for a new site: the method, on one task's classifier and arrays.

A task's classifier ends in :class:`~sklearn.calibration.CalibratedClassifierCV` (tumour) or
an :class:`~mammo.classifiers.estimators.OrdinalClassifier` of K-1 of them (density). Each
holds a few members (one per calibration fold of training): a fitted base classifier and
the calibrator that maps its raw score (``decision_function``, else P(class 1)) to a
probability. Recalibration on a new labelled sample refits, and only refits:

* every member's calibrator, of the same class and parameters (sigmoid or isotonic), on
  that member's raw scores of the sample's images;
* the tumour threshold, by ``mammo train``'s rule: the share of malignant images in the
  sample the probabilities were calibrated on;
* the density cut points (decision "qwk"), by
  :func:`~mammo.classifiers.estimators.fit_cut_points` on the sample's recalibrated grades.

The base classifiers and every step before them are shared with the original model, so the
features and the raw scores are bit-identical. :func:`cross_validated_effect` reports the
procedure's out-of-fold effect on the sample, by patient-grouped folds. The data set, the
features and the artifact are :mod:`mammo.recalibrate_cli`'s; docs/recalibrate.md has the method.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import brier_score_loss
from sklearn.model_selection import StratifiedGroupKFold

from . import evaluation as ev
from .classifiers.estimators import OrdinalClassifier, expected_grade, fit_cut_points

__all__ = [
    "Calibration",
    "RecalibrationError",
    "THRESHOLD_RULE",
    "calibrated_proba",
    "check_sample",
    "cross_validated_effect",
    "decide",
    "expected_calibration_error",
    "fit_calibration",
    "install",
    "member_scores",
    "problem_names",
    "problems",
    "ranking_warning",
    "raw_scores",
    "slope_ratios",
]

THRESHOLD_RULE = "P(malignant) >= the share of malignant images in the sample the calibration was fitted on"


class RecalibrationError(ValueError):
    """The sample cannot recalibrate the model as asked: one class only, too few cases of a class
    for the grouped cross-validation, or a classifier without refittable calibrators."""


@dataclass
class Calibration:
    """What recalibration fits for one task.

    ``calibrators[k][m]``: the calibrator of member ``m`` of binary problem ``k`` (tumour: one
    problem; density: P(grade > class k)); ``threshold``: tumour's, else None; ``cut_points``:
    density's on the 0-based expected grade, None for the argmax rule.
    """

    calibrators: list[list[Any]]
    threshold: float | None = None
    cut_points: np.ndarray | None = None


# ------------------------------------------------------------------ scores
def problems(clf) -> list[CalibratedClassifierCV]:
    """The calibrated binary problems of a task's classifier: itself (tumour) or the ordinal's K-1."""
    found = list(clf.estimators_) if isinstance(clf, OrdinalClassifier) else [clf]
    for p in found:
        if not isinstance(p, CalibratedClassifierCV):
            raise RecalibrationError(f"cannot recalibrate a {type(p).__name__}: the classifier has no calibrators")
        methods = {m.method for m in p.calibrated_classifiers_}
        if not methods <= {"sigmoid", "isotonic"}:
            raise RecalibrationError(f"cannot recalibrate calibration method(s) {sorted(methods)}: sigmoid or isotonic")
    return found


def member_scores(member, X: np.ndarray) -> np.ndarray:
    """The raw score a calibration member's calibrator reads: the base classifier's
    ``decision_function``, else its P(class 1), in scikit-learn's order of preference."""
    est = member.estimator
    score = est.decision_function(X) if hasattr(est, "decision_function") else est.predict_proba(X)[:, -1]
    return np.asarray(score, dtype=float).ravel()


def raw_scores(clf, X: np.ndarray) -> list[np.ndarray]:
    """Per binary problem, an ``(n, n_members)`` array of raw scores of the rows ``X`` (the classifier's input)."""
    return [np.column_stack([member_scores(m, X) for m in p.calibrated_classifiers_]) for p in problems(clf)]


def _targets(clf, y: np.ndarray) -> list[np.ndarray]:
    classes = np.asarray(clf.classes_)
    if isinstance(clf, OrdinalClassifier):
        return [(y > c).astype(int) for c in classes[:-1]]  # as OrdinalClassifier.fit makes them
    return [(y == classes[-1]).astype(int)]


# ---------------------------------------------------------- fit and apply
def fit_calibration(task: str, clf, scores: Sequence[np.ndarray], y: np.ndarray) -> Calibration:
    """Refit ``clf``'s calibrators on the raw ``scores`` of labelled rows ``y``, then its decision rule."""
    y = np.asarray(y)
    cals = [
        [clone(m.calibrators[0]).fit(s[:, j], t) for j, m in enumerate(p.calibrated_classifiers_)]
        for p, s, t in zip(problems(clf), scores, _targets(clf, y))
    ]
    classes = np.asarray(clf.classes_)
    if task == "tumour":
        return Calibration(cals, threshold=float(np.mean(y == classes[-1])))
    cuts = None
    if getattr(clf, "cut_points_", None) is not None:
        grade = expected_grade(calibrated_proba(cals, scores, ordinal=True))
        cuts = fit_cut_points(grade, np.searchsorted(classes, y), len(classes))
    return Calibration(cals, cut_points=cuts)


def calibrated_proba(calibrators: list[list[Any]], scores: Sequence[np.ndarray], *, ordinal: bool) -> np.ndarray:
    """Class probabilities from raw scores, as the installed classifier's ``predict_proba`` gives them:
    each member's calibrated P(class 1) averaged over members, then (ordinal) combined by grade."""
    above = []
    for cals, s in zip(calibrators, scores):
        p = np.column_stack([c.predict(s[:, j]) for j, c in enumerate(cals)])
        p[(p > 1.0) & (p <= 1.0 + 1e-5)] = 1.0  # scikit-learn's guard against round-off above 1
        above.append(p.mean(axis=1))
    above = np.column_stack(above)
    if ordinal:
        return OrdinalClassifier._combine(above)
    return np.column_stack([1.0 - above[:, 0], above[:, 0]])


def decide(task: str, clf, calibration: Calibration, proba: np.ndarray) -> np.ndarray:
    """Labels by the calibration's rule: tumour by its threshold, density by its cut points (else argmax)."""
    classes = np.asarray(clf.classes_)
    if task == "tumour":
        return classes[(proba[:, -1] >= calibration.threshold).astype(int)]
    if calibration.cut_points is None:
        return classes[np.argmax(proba, axis=1)]
    return classes[np.searchsorted(calibration.cut_points, expected_grade(proba))]


def install(clf, calibration: Calibration):
    """A copy of ``clf`` with the new calibrators and cut points; its base classifiers ARE ``clf``'s (shared)."""
    new_problems = []
    for p, cals in zip(problems(clf), calibration.calibrators):
        q = copy.copy(p)
        members = []
        for member, cal in zip(p.calibrated_classifiers_, cals):
            m = copy.copy(member)
            m.calibrators = [cal]
            members.append(m)
        q.calibrated_classifiers_ = members
        new_problems.append(q)
    if not isinstance(clf, OrdinalClassifier):
        return new_problems[0]
    new = copy.copy(clf)
    new.estimators_ = new_problems
    if calibration.cut_points is not None:
        new.cut_points_ = np.asarray(calibration.cut_points, dtype=float)
    return new


def slope_ratios(clf, calibration: Calibration) -> list[list[float]] | None:
    """Per problem and member, the refitted sigmoid's slope on the raw score over the stored one's: 1 when
    the sample's scores separate its classes as training's did, near 0 when they tell nothing there, below 0
    when they rank its cases the wrong way round. None for isotonic calibrators (no slope)."""
    ratios = []
    for p, cals in zip(problems(clf), calibration.calibrators):
        old = [m.calibrators[0] for m in p.calibrated_classifiers_]
        if not all(hasattr(c, "a_") for c in [*old, *cals]):
            return None
        ratios.append([float(new.a_ / before.a_) if before.a_ else float("nan") for before, new in zip(old, cals)])
    return ratios


def ranking_warning(ratios: list[list[float]] | None, names: Sequence[str]) -> str | None:
    """The warning a record carries when a refitted calibrator's slope is not positive, else None.

    ``names``: one per binary problem ("malignant", "grade above 2", ...).
    """
    if ratios is None:
        return None
    bad = [f"{name} member {j + 1}" for name, row in zip(names, ratios) for j, r in enumerate(row) if not r > 0]
    if not bad:
        return None
    return (
        f"{len(bad)} refitted calibrator(s) do not increase with their classifier's score ({', '.join(bad)}): on "
        "this sample that classifier ranks the cases the wrong way round or not at all. With few cases of a "
        "class this can be noise; with many, the model does not fit the site and its predictions there deserve "
        "no trust"
    )


def problem_names(clf) -> list[str]:
    """One name per binary problem of ``clf``: "class 1" (tumour), "grade above 1", ... (density)."""
    classes = np.asarray(clf.classes_).tolist()
    if isinstance(clf, OrdinalClassifier):
        return [f"grade above {c}" for c in classes[:-1]]
    return [f"class {classes[-1]}"]


# ------------------------------------------------------------------ checks
def _side_names(task: str, classes: Sequence, meanings: dict) -> list[tuple[str, str]]:
    def name(c) -> str:
        return f"{c} ({meanings.get(str(c), str(c)).split(' - ')[0]})"

    if task == "tumour":
        return [(f"are class {name(classes[0])}", f"are class {name(classes[-1])}")]
    return [(f"are graded {name(c)} or lower", f"are graded above {name(c)}") for c in classes[:-1]]


def check_sample(
    task: str, clf, y: np.ndarray, groups: np.ndarray, *, n_folds: int, min_cases: int, meanings: dict | None = None
) -> None:
    """Raise :class:`RecalibrationError` unless both sides of every binary problem have ``min_cases``
    images from at least ``n_folds`` patients (so each grouped fold can refit every calibrator)."""
    y, groups = np.asarray(y), np.asarray(groups).astype(str)
    classes = np.asarray(clf.classes_)
    present = np.unique(y)
    if len(present) < 2:
        raise RecalibrationError(
            f"{task}: every labelled image of the sample is class {present[0] if len(present) else '-'}: "
            "recalibration needs images of every class the model predicts"
        )
    for (low, high), target in zip(_side_names(task, classes.tolist(), meanings or {}), _targets(clf, y)):
        for side, name in ((target == 0, low), (target == 1, high)):
            n_img, n_grp = int(side.sum()), len(set(groups[side]))
            if n_img < min_cases or n_grp < n_folds:
                raise RecalibrationError(
                    f"{task}: too few cases for the grouped cross-validation: {n_img} images of {n_grp} patient(s) "
                    f"{name}; each side of every decision needs at least {min_cases} images (--min-cases) "
                    f"from at least {n_folds} patients (--folds)"
                )


def _folds(clf, y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the least populated class has only N members"
        folds = list(StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(y, y, groups))
    for i, (train, _) in enumerate(folds):
        if any(len(np.unique(t[train])) < 2 for t in _targets(clf, y)):
            raise RecalibrationError(
                f"fold {i + 1} of {n_folds} has a class missing from its training patients: use fewer --folds"
            )
    return folds


# ----------------------------------------------------------- the CV effect
def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Mean |observed - predicted| over the quantile bins of ``p`` (the calibration curve's), weighted by size."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    edges = np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1))
    bins = np.searchsorted(edges[1:-1], p)  # sklearn's calibration_curve assigns bins this way
    total = 0.0
    for b in np.unique(bins):
        m = bins == b
        total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)


def _tumour_scores(y, proba, pred, groups, n_boot: int, seed: int) -> dict[str, Any]:
    p = proba[:, -1]
    out = ev.tumour_metrics(y, p, pred)
    out["auc_ci95"] = list(ev.bootstrap_ci(y, p, groups=groups, n_boot=n_boot, seed=seed))
    out["sensitivity"] = float(np.mean(pred[y == 1] == 1))
    out["specificity"] = float(np.mean(pred[y == 0] == 0))
    out["ece"] = expected_calibration_error(y, p)
    return out


def _density_scores(y, proba, pred, classes, groups, n_boot: int, seed: int) -> dict[str, Any]:
    out = ev.density_metrics(y, proba, classes, pred)
    out["qwk_ci95"] = list(
        ev.bootstrap_ci(y, pred, lambda a, b: ev.fast_qwk(a, b, classes), groups=groups, n_boot=n_boot, seed=seed)
    )
    onehot = (np.asarray(y)[:, None] == np.asarray(classes)[None, :]).astype(float)
    out["brier"] = float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))  # multi-class Brier score
    top = np.asarray(classes)[np.argmax(proba, axis=1)]
    out["ece"] = expected_calibration_error(top == y, proba.max(axis=1))  # of the most probable grade
    return out


def _paired_ci(y, before, after, metric, groups, n_boot: int, seed: int) -> list[float]:
    """95% CI of ``metric(after) - metric(before)``, resampling whole patients (both on the same draw)."""
    both = np.column_stack([before, after])
    k = before.shape[1] if before.ndim == 2 else 1

    def diff(yy, s):
        return metric(yy, s[:, k:].squeeze()) - metric(yy, s[:, :k].squeeze())

    return list(ev.bootstrap_ci(y, both, diff, groups=groups, n_boot=n_boot, seed=seed))


def cross_validated_effect(
    task: str,
    clf,
    scores: Sequence[np.ndarray],
    before: np.ndarray,
    before_pred: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    n_folds: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """The out-of-fold effect of recalibrating on the sample: in each patient-grouped fold the calibration
    is refitted on the other folds' images and applied to this fold's; scored beside the stored calibration.

    ``before`` / ``before_pred``: the stored model's probabilities and labels of the sample. Returns
    ``{"before", "after", "difference", "proba_after", "pred_after", "folds"}``: the task's metrics (tumour
    adds sensitivity and specificity at the threshold and ECE; density multi-class Brier and ECE),
    after minus before for every scalar with a paired patient-bootstrap CI of the headline one.
    """
    y, groups = np.asarray(y), np.asarray(groups).astype(str)
    classes = np.asarray(clf.classes_)
    after, pred = np.zeros_like(before), np.zeros_like(before_pred)
    folds_out = []
    for train, test in _folds(clf, y, groups, n_folds, seed):
        cal = fit_calibration(task, clf, [s[train] for s in scores], y[train])
        after[test] = calibrated_proba(cal.calibrators, [s[test] for s in scores], ordinal=task == "density")
        pred[test] = decide(task, clf, cal, after[test])
        if task == "tumour":  # within a fold one calibration ranks the images: pooling folds mixes several
            rule = {"threshold": cal.threshold, **_fold_auc(y[test], before[test], after[test])}
        else:
            rule = {"cut_points": _grades(cal.cut_points)}
        folds_out.append({"n_train": int(len(train)), "n_test": int(len(test)), **rule})
    if task == "tumour":
        res = {
            k: _tumour_scores(y, p, d, groups, n_boot, seed)
            for k, p, d in (("before", before, before_pred), ("after", after, pred))
        }
        headline = ("brier", _paired_ci(y, before[:, -1], after[:, -1], brier_score_loss, groups, n_boot, seed))
    else:
        res = {
            k: _density_scores(y, p, d, classes, groups, n_boot, seed)
            for k, p, d in (("before", before, before_pred), ("after", after, pred))
        }
        qwk = lambda a, b: ev.fast_qwk(a, b, classes)
        headline = ("qwk", _paired_ci(y, before_pred.astype(float), pred.astype(float), qwk, groups, n_boot, seed))
    scalars = [k for k, v in res["before"].items() if isinstance(v, float) and k not in ("n", "n_pos")]
    difference = {k: res["after"][k] - res["before"][k] for k in scalars}
    difference[f"{headline[0]}_ci95"] = headline[1]
    return {**res, "difference": difference, "proba_after": after, "pred_after": pred, "folds": folds_out}


def _fold_auc(y, before, after) -> dict[str, float]:
    return {"auc_before": ev.fast_auc(y, before[:, -1]), "auc_after": ev.fast_auc(y, after[:, -1])}


def _grades(cuts) -> list[float] | None:
    """Cut points on the grade scale the page and API show (1 = the first class)."""
    return None if cuts is None else [float(c + 1) for c in cuts]
