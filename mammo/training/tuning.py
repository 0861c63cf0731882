"""A candidate's trainable tail (scaling, reduction, calibrated classifier) and its hyper-parameter search.

The image and feature steps of a task pipeline are stateless and their output is
cached, so cross-validation fits only the tail, on cached feature rows.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline

from .. import evaluation as ev
from ..classifiers.model import split_pipeline
from ..classifiers.pipelines import make_task_pipeline
from .candidates import Candidate
from .config import FitOptions
from .folds import calibration_splits, group_subset

__all__ = ["PARAM_GRIDS", "make_tail", "configure", "configured_tail", "predict_columns", "score", "tune"]

#: Inner-CV grids (kept small: 2 shared cores). Keys are parameters of the base model,
#: found wherever it sits inside the tail (calibration / ordinal wrappers).
PARAM_GRIDS = {
    "svm": [{"C": 0.3}, {"C": 1.0}, {"C": 3.0}],
    "xgboost": [{"max_depth": 2, "n_estimators": 150}, {"max_depth": 4, "n_estimators": 300}],
}


def make_tail(task: str, candidate: Candidate, seed: int, density_decision: str = "qwk") -> Pipeline:
    """The fitted-per-task part (scale + calibrated classifier) of the candidate's task pipeline."""
    pipe = make_task_pipeline(
        task, candidate.feature_set, candidate.model, density_decision=density_decision, random_state=seed
    )
    return Pipeline(split_pipeline(pipe)[1])


def _param_path(est, name: str) -> str:
    keys = [k for k in est.get_params(deep=True) if k == name or k.endswith("__" + name)]
    if len(keys) != 1:
        raise KeyError(f"parameter {name!r} found {len(keys)} times in {type(est).__name__}: {keys}")
    return keys[0]


def configure(tail: Pipeline, params: dict, y: np.ndarray, groups: np.ndarray, seed: int) -> tuple[Pipeline, bool]:
    """Set tuned params and grouped calibration splits; returns (tail, grouped_calibration)."""
    paths = {_param_path(tail, k): v for k, v in params.items()}
    if any(not p.startswith(tail.steps[-1][0] + "__") for p in paths):
        # tune() fits the steps before the classifier once for all grid points
        raise ValueError(f"tuned parameters must belong to the classifier step, got {sorted(paths)}")
    tail.set_params(**paths)
    splits = calibration_splits(y, groups, seed)
    if splits is None:
        # sklearn's stratified k-fold, which needs k members of the rarest class
        splits = int(max(2, min(3, np.bincount(np.unique(y, return_inverse=True)[1]).min())))
    tail.set_params(**{_param_path(tail, "cv"): splits})
    return tail, not isinstance(splits, int)


def configured_tail(
    task: str, candidate: Candidate, params: dict, y: np.ndarray, groups: np.ndarray, options: FitOptions
) -> tuple[Pipeline, bool]:
    """The candidate's unfitted tail for a training split (labels ``y``, ``groups``), configured
    with ``params``; returns (tail, grouped_calibration) as :func:`configure` does."""
    tail = make_tail(task, candidate, options.seed, options.density_decision)
    return configure(tail, params, y, groups, options.seed)


def score(task: str, y: np.ndarray, proba: np.ndarray, classes: Sequence, pred: np.ndarray | None = None) -> float:
    """The task's primary metric (:data:`mammo.evaluation.PRIMARY_METRIC`): density QWK of ``pred``, tumour AUC."""
    if task == "density":
        return ev.density_metrics(y, proba, classes, pred)["qwk"]
    return ev.tumour_metrics(y, proba[:, -1])["auc"]


def predict_columns(
    task: str, tail: Pipeline, X: np.ndarray, classes: Sequence
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(proba, pred)``: predict_proba with one column per class in ``classes`` (a class missing
    in training gets 0), and for density the classifier's own grades from the same probabilities
    (one pass through the model, not two)."""
    p = tail.predict_proba(X)
    clf = tail.steps[-1][1]
    out = np.zeros((len(X), len(classes)))
    for j, c in enumerate(clf.classes_):
        out[:, list(classes).index(c)] = p[:, j]
    return out, (clf.decide(p) if task == "density" else None)


def _inner_folds(y, groups, k: int, seed: int, n_classes: int) -> list | None:
    """Grouped inner folds in which every training split holds every class, or None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            inner = list(
                StratifiedGroupKFold(k, shuffle=True, random_state=seed + 1).split(np.zeros(len(y)), y, groups)
            )
        except ValueError:  # too few images to tune
            return None
    if k < 2 or any(len(np.unique(y[tr])) < n_classes for tr, _ in inner):
        return None
    return inner


def tune(
    task: str,
    candidate: Candidate,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    grid: Sequence[dict],
    options: FitOptions,
) -> tuple[dict, dict]:
    """Pick the grid point with the best pooled inner-CV score (grouped inner folds).

    With ``options.tune_max`` the search runs on a stratified subset of about that many
    images (whole groups) of the given training data: it bounds the cost on large sets,
    and stays inside the training fold. Returns ``(params, {grid point as JSON: score})``;
    the scores are empty when nothing was searched (one grid point, or too few images:
    then the defaults, ``{}``).
    """
    if not grid or len(grid) == 1:
        return (grid[0] if grid else {}), {}
    if options.tune_max:
        keep = group_subset(y, groups, options.tune_max, options.seed)
        X, y, groups = X[keep], y[keep], groups[keep]
    classes = np.unique(y)
    inner = _inner_folds(y, groups, min(options.inner_folds, len(set(groups))), options.seed, len(classes))
    if inner is None:
        return {}, {}
    keys = [json.dumps(params, sort_keys=True) for params in grid]
    proba = {key: np.zeros((len(y), len(classes))) for key in keys}
    # density is scored by the model's own grades; tumour by AUC, which needs none
    pred = {key: np.zeros(len(y), y.dtype) for key in keys} if task == "density" else None
    for tr, te in inner:
        # The grid only varies the classifier: the steps before it (scaling, PCA, column
        # selection) are fitted once per inner split, not once per grid point.
        X_tr, X_te = _fit_transform_pre(make_tail(task, candidate, options.seed).steps[:-1], X[tr], y[tr], X[te])
        for key, params in zip(keys, grid):
            tail, _ = configured_tail(task, candidate, params, y[tr], groups[tr], options)
            clf = Pipeline(tail.steps[-1:])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.fit(X_tr, y[tr])
            proba[key][te], grades = predict_columns(task, clf, X_te, classes)
            if pred is not None:
                pred[key][te] = grades
    # scored as the model will predict (density: by its decision rule)
    scores = {key: score(task, y, proba[key], classes, None if pred is None else pred[key]) for key in keys}
    best = max(scores, key=lambda s: -np.inf if np.isnan(scores[s]) else scores[s])
    return json.loads(best), scores


def _fit_transform_pre(
    steps: list, X_tr: np.ndarray, y_tr: np.ndarray, X_te: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the steps before the classifier on the training rows; both row sets transformed."""
    if not steps:
        return X_tr, X_te
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pre = Pipeline(steps).fit(X_tr, y_tr)
    return pre.transform(X_tr), pre.transform(X_te)
