"""Cross-validation of candidates on shared grouped folds, and the selection among them.

Every candidate of a task is evaluated on the SAME outer folds; each fold's fit
(inner search, calibration, cut points) sees only that fold's training rows.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import evaluation as ev
from ..features.region import CROP_SHIFT
from .candidates import Candidate
from .config import FitOptions
from .results import CVResult, SelectionEstimate
from .tuning import PARAM_GRIDS, configured_tail, predict_columns, score, tune

__all__ = [
    "FoldFit",
    "fit_predict",
    "crop_shift_summary",
    "cross_validate",
    "summarise",
    "best_candidate",
    "selection_estimate",
    "ood_holdout_rate",
]


@dataclass
class FoldFit:
    """One candidate fitted on one outer training fold: its test-fold predictions and how it was fitted."""

    proba: np.ndarray
    pred: np.ndarray | None
    params: dict
    inner_scores: dict
    grouped_calibration: bool
    fit_s: float = 0.0
    shifted: tuple | None = None  # (rows, proba, pred) of test images cropped half a pixel off

    @property
    def searched(self) -> bool:
        return bool(self.inner_scores)


def fit_predict(
    task: str,
    candidate: Candidate,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    fold: tuple[np.ndarray, np.ndarray],
    classes: np.ndarray,
    options: FitOptions,
    shifted: tuple[np.ndarray, np.ndarray] | None = None,
) -> FoldFit:
    """One candidate on one outer fold: tune inside the training fold, fit, predict the test fold.

    ``shifted``: ``(rows, features)`` of images whose crop was moved half a pixel; those in
    the test fold are predicted too (the crop-shift check).
    """
    from threadpoolctl import threadpool_limits

    # Many tiny BLAS calls (sigmoid calibration's L-BFGS): threads only add contention;
    # parallelism comes from running folds in separate processes.
    t = time.perf_counter()
    with threadpool_limits(1):
        res = _fit_predict(task, candidate, X, y, groups, fold, classes, options, shifted)
    res.fit_s = time.perf_counter() - t
    return res


def _fit_predict(task, candidate, X, y, groups, fold, classes, options: FitOptions, shifted=None) -> FoldFit:
    train, test = fold
    grid = [options.params] if options.params is not None else PARAM_GRIDS[candidate.model] if options.tune else []
    params, scores = tune(task, candidate, X[train], y[train], groups[train], grid, options)
    tail, grouped_cal = configured_tail(task, candidate, params, y[train], groups[train], options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tail.fit(X[train], y[train])
    # density: the model's own decision rule (cut points with density_decision="qwk"), not argmax of proba
    proba, pred = predict_columns(task, tail, X[test], classes)
    moved = None
    if shifted is not None:
        rows, features = shifted
        inside = np.isin(rows, test)
        if inside.any():
            moved = (rows[inside], *predict_columns(task, tail, features[inside], classes))
    return FoldFit(proba, pred, params, scores, grouped_cal, shifted=moved)


def _fold_metrics(task, y, proba, classes, folds, y_pred=None) -> list[dict]:
    out = []
    for _, test in folds:
        if task == "density":
            out.append(ev.density_metrics(y[test], proba[test], classes, None if y_pred is None else y_pred[test]))
        else:
            m = ev.tumour_metrics(y[test], proba[test, 1], None if y_pred is None else y_pred[test])
            m.pop("calibration", None)
            out.append(m)
    return out


def summarise(
    task: str,
    y: np.ndarray,
    groups: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    folds,
    n_boot: int,
    seed: int,
    y_pred: np.ndarray | None = None,
) -> dict:
    """``{"pooled", "folds", "folds_summary"}``: pooled out-of-fold metrics, per-fold metrics and their mean ± std.

    ``y_pred``: density predictions by the model's own rule (default: the most probable class).
    """
    if task == "density":
        pooled = ev.density_metrics(y, proba, classes, y_pred)
    else:
        # The model's own decision rule: P(malignant) >= the training fold's prevalence.
        y_pred = np.zeros(len(y), int)
        for train, test in folds:
            y_pred[test] = (proba[test, 1] >= np.mean(y[train] == 1)).astype(int)
        pooled = ev.tumour_metrics(y, proba[:, 1], y_pred)
        pooled["auc_ci95"] = list(ev.bootstrap_ci(y, proba[:, 1], groups=groups, n_boot=n_boot, seed=seed))
        pooled["auc_ci_method"] = f"percentile bootstrap over groups ({n_boot} resamples), pooled out-of-fold"
    per_fold = _fold_metrics(task, y, proba, classes, folds, y_pred)
    return {"pooled": pooled, "folds": per_fold, "folds_summary": ev.fold_summary(per_fold)}


def _collect(task, candidate: Candidate, fits: Sequence[FoldFit], y, groups, folds, classes, n_boot, seed) -> CVResult:
    """A candidate's CVResult from its per-fold fits."""
    proba = np.zeros((len(y), len(classes)))
    pred = np.zeros(len(y), y.dtype) if task == "density" else None
    for fit, (_, test) in zip(fits, folds):
        proba[test] = fit.proba
        if pred is not None:
            pred[test] = fit.pred
    return CVResult(
        **summarise(task, y, groups, proba, classes, folds, n_boot, seed, pred),
        oof_proba=proba,
        oof_pred=pred,
        params=[f.params for f in fits],
        grouped_calibration=all(f.grouped_calibration for f in fits),
        searched_folds=sum(f.searched for f in fits),
        fit_s=float(sum(f.fit_s for f in fits)),
        candidate=candidate,
        crop_shift=crop_shift_summary(task, [f.shifted for f in fits if f.shifted is not None], proba, pred),
    )


def crop_shift_summary(task: str, shifted: Sequence[tuple], proba: np.ndarray, pred: np.ndarray | None) -> dict | None:
    """How far the out-of-fold answers moved for test images cropped half a pixel off.

    ``shifted``: per fold ``(rows, proba, pred)`` of those images. Density: the share of
    grades unchanged; tumour: the median and 90th percentile of |change of P(malignant)|.
    """
    if not shifted:
        return None
    rows = np.concatenate([s[0] for s in shifted])
    if task == "density":
        return ev.answer_change(task, pred[rows], np.concatenate([s[2] for s in shifted]), CROP_SHIFT)
    return ev.answer_change(task, proba[rows, 1], np.concatenate([s[1][:, 1] for s in shifted]), CROP_SHIFT)


def cross_validate(
    task: str,
    X: Mapping[str, np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    folds,
    candidates: Sequence[Candidate],
    options: FitOptions = FitOptions(),
    *,
    n_jobs: int = 1,
    n_boot: int = 1000,
    progress: bool = True,
    shifted: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, CVResult]:
    """Evaluate ``candidates`` on the same ``folds``.

    Parameters
    ----------
    X : dict
        Feature matrix per feature set (rows aligned with ``y``; any extra blocks included).
    options : FitOptions
        How each candidate is fitted inside a training fold (inner search, seed, density decision).
    n_jobs, n_boot, progress
        Worker processes, bootstrap resamples of the AUC CI, a progress bar.
    shifted : dict, optional
        Per feature set, ``(rows, features)`` of images (rows of ``y``) cropped half a
        pixel off: each fold's model predicts its test images among them as well, and
        every result carries ``crop_shift`` (:func:`crop_shift_summary`).

    Returns
    -------
    ``{candidate.name: CVResult}`` in the order of ``candidates``.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    classes = np.unique(y)
    # Widest features and SVMs first (the costliest fits, docs/results.md), so that the
    # last jobs to finish are short ones and neither worker idles long at the end.
    order = sorted(candidates, key=lambda c: (-X[c.feature_set].shape[1], c.model != "svm"))
    jobs = [(c, i) for c in order for i in range(len(folds))]
    run = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(fit_predict)(
            task, c, X[c.feature_set], y, groups, folds[i], classes, options, (shifted or {}).get(c.feature_set)
        )
        for c, i in jobs
    )
    fits: dict = {}
    for (c, i), res in zip(jobs, tqdm(run, total=len(jobs), desc=f"{task} CV", unit="fit", disable=not progress)):
        fits.setdefault(c, {})[i] = res
    return {
        c.name: _collect(
            task, c, [fits[c][i] for i in range(len(folds))], y, groups, folds, classes, n_boot, options.seed
        )
        for c in candidates
    }


def best_candidate(task: str, results: Mapping[str, CVResult]) -> str:
    """The candidate with the best pooled out-of-fold primary metric (a NaN score never wins)."""
    key = ev.PRIMARY_METRIC[task]
    return max(results, key=lambda n: np.nan_to_num(results[n].pooled[key], nan=-np.inf))


def selection_estimate(task: str, y: np.ndarray, classes, folds, results: Mapping[str, CVResult]) -> SelectionEstimate:
    """Score of the whole procedure "take the best candidate", selection included.

    The best candidate's pooled score is the maximum over several noisy scores of the
    same folds, so it is biased upwards. Here each outer fold's predictions come from
    the candidate with the best pooled score on the OTHER folds' out-of-fold
    predictions; the fold's own labels never take part in choosing its candidate.
    It reuses ``results`` (from :func:`cross_validate`): no model is refitted.
    ``score`` is pooled over the folds (the primary metric), ``chosen`` the candidate
    used for each fold, and ``selected_score`` the pooled score of the candidate chosen
    on all folds, the number it is to be read against.
    """
    names = list(results)
    proba = np.zeros((len(y), len(classes)))
    pred = np.zeros(len(y), y.dtype) if task == "density" else None
    chosen = []
    for i, (_, test) in enumerate(folds):
        rest = np.concatenate([te for j, (_, te) in enumerate(folds) if j != i])
        scores = {
            n: score(
                task,
                y[rest],
                results[n].oof_proba[rest],
                classes,
                results[n].oof_pred[rest] if pred is not None else None,
            )
            for n in names
        }
        pick = max(names, key=lambda n: np.nan_to_num(scores[n], nan=-np.inf))
        chosen.append(pick)
        proba[test] = results[pick].oof_proba[test]
        if pred is not None:
            pred[test] = results[pick].oof_pred[test]
    best = best_candidate(task, results)
    key = ev.PRIMARY_METRIC[task]
    return SelectionEstimate(
        metric=key,
        score=score(task, y, proba, classes, pred),
        chosen=chosen,
        selected=best,
        selected_score=results[best].pooled[key],
    )


def ood_holdout_rate(X: np.ndarray, groups: np.ndarray, folds) -> dict:
    """Share of held-out images the out-of-distribution model flags, under the outer folds.

    Each fold's :class:`~mammo.classifiers.ood.DistributionModel` is fitted on the other
    folds (its threshold cross-fitted by group inside them), as the saved model's is on
    all images: what new patients from the same source should see.
    """
    from ..classifiers.ood import DistributionModel

    flagged = np.zeros(len(X), bool)
    per_fold = []
    for train, test in folds:
        model = DistributionModel().fit(X[train], groups=groups[train])
        flagged[test] = ~model.predict(X[test])
        per_fold.append(float(flagged[test].mean()))
    return {"pooled": float(flagged.mean()), "folds": per_fold, "n": int(len(X))}
