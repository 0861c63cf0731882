"""Honest comparison of texture, CNN and combined features with XGBoost and SVM, and the final model.

Run ``python -m mammo.train_pipeline DATA`` on a data set (DPhi Sprint 31 folder, mini-MIAS
folder, rsna-screening folder or a CSV manifest). For every task (density, tumour) it

1. computes each feature block (GLCM, LBP, CNN) once per image, cached on disk
   (:class:`mammo.featcache.FeatureCache`), so a second run or a new classifier reuses them;
2. makes ONE set of stratified, grouped folds (StratifiedGroupKFold: no patient / no
   original mammogram in two folds) and evaluates every candidate on exactly those folds:
   {texture, cnn, combined} x {xgboost, svm} with fixed hyper-parameters (``--tune``: a
   small grid searched by grouped inner CV, only inside each training fold), calibrated
   on grouped splits of the training fold, plus deep baselines under the same folds: a
   small Keras head on the frozen CNN embedding, and with ``--fine-tune`` MobileNetV2
   with its last blocks retrained (:mod:`mammo.classifiers.finetune`);
3. re-evaluates the selected candidate, with the hyper-parameters grouped CV used (with
   ``--tune``, the ones chosen most often), on a deliberately leaky random split (groups ignored) to show how much a split
   that leaks copies overstates performance;
4. writes ``report.md``, ``metrics.json`` and plots, and refits the best candidate per
   task (chosen by grouped CV alone) on all labelled images as a
   :class:`~mammo.classifiers.MammogramModel` (``model.joblib`` + manifest).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import sys
import time
import warnings
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline

from . import evaluation as ev
from .classifiers.finetune import LEARNING_RATE, balanced_class_weight, fit_predict_finetuned
from .classifiers.estimators import DECISIONS
from .classifiers.model import MammogramModel, file_sha256, split_pipeline
from .classifiers.pipelines import FEATURE_SETS, MODELS, TASKS, make_pipeline
from .datasets import DATASET_KINDS, Dataset, DatasetError, load_dataset
from .featcache import FeatureCache, FeatureComputationError
from .features.cnn import LAYER_SETS, CNNActivations
from .features.extra import EXTRA_BLOCKS, make_extra_block

__all__ = [
    "main",
    "build_parser",
    "TrainingDataError",
    "make_folds",
    "check_task_data",
    "limit_dataset",
    "cross_validate",
    "deep_head_cv",
    "finetune_cv",
    "best_candidate",
    "selection_estimate",
    "PARAM_GRIDS",
    "BLOCKS",
]

#: Feature blocks of each feature set, in make_features' column order.
BLOCKS = {"texture": ("glcm", "lbp"), "cnn": ("cnn",), "combined": ("glcm", "lbp", "cnn")}

#: Inner-CV grids (kept small: 2 shared cores). Keys are parameters of the base model,
#: found wherever it sits inside the tail (calibration / ordinal wrappers).
PARAM_GRIDS = {
    "svm": [{"C": 0.3}, {"C": 1.0}, {"C": 3.0}],
    "xgboost": [{"max_depth": 2, "n_estimators": 150}, {"max_depth": 4, "n_estimators": 300}],
}

DEEP_NAME = "cnn+keras-head"
FINETUNE_NAME = "cnn+fine-tuned"


class TrainingDataError(ValueError):
    """The labelled data cannot support the requested evaluation (too few classes, groups or images)."""


# ----------------------------------------------------------------------------- folds

def make_folds(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int, *, grouped: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """Outer CV folds: StratifiedGroupKFold (or, ``grouped=False``, a leaky StratifiedKFold).

    The grouped folds are checked: a group found on both sides raises ``AssertionError``.
    """
    X = np.zeros(len(y))
    if grouped:
        folds = list(StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed).split(X, y, groups))
        for train, test in folds:
            shared = set(groups[train]) & set(groups[test])
            assert not shared, f"groups in both train and test: {sorted(shared)[:5]}"
    else:
        folds = list(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(X, y))
    return folds


def check_task_data(task: str, y: np.ndarray, groups: np.ndarray, n_splits: int) -> None:
    """Raise :class:`TrainingDataError` when ``n_splits`` grouped folds cannot be made honestly."""
    classes, counts = np.unique(y, return_counts=True)
    n_groups = len(set(groups))
    if len(classes) < 2:
        raise TrainingDataError(f"{task}: only one class ({classes.tolist()}) among {len(y)} labelled images; need at least 2")
    if n_groups < n_splits:
        raise TrainingDataError(
            f"{task}: {n_groups} groups (patients / originals) for {n_splits} folds; "
            f"use --folds {max(2, n_groups)} or fewer, or more data")
    for c, k in zip(classes, counts):
        g = len(set(groups[y == c]))
        if k < n_splits or g < 2:
            raise TrainingDataError(
                f"{task}: class {c} has {k} images in {g} group(s); every class needs at least {n_splits} images "
                "(one per fold) in at least 2 groups so that it is both trained on and tested")


def limit_dataset(ds: Dataset, n: int, seed: int) -> Dataset:
    """A subset of about ``n`` images made of whole groups, stratified by the joint labels."""
    if n >= len(ds):
        return ds
    joint = np.nan_to_num(ds.density, nan=0) * 3 + np.nan_to_num(ds.tumour, nan=2)
    k = max(2, int(round(len(ds) / n)))
    if len(set(ds.groups)) < k:
        raise TrainingDataError(f"--limit {n}: only {len(set(ds.groups))} groups; cannot take whole groups")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rare joint classes: fine for a subset
        _, keep = next(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(ds)), joint, ds.groups))
    return ds.subset(np.sort(keep))


# ----------------------------------------------------------------------------- candidates

def _tail(task: str, feature_set: str, model: str, seed: int, density_decision: str = "qwk") -> Pipeline:
    """The fitted-per-task part (scale + calibrated classifier) of make_pipeline's pipeline."""
    pipe = make_pipeline(task, feature_set, model, density_decision=density_decision, random_state=seed)
    return Pipeline(split_pipeline(pipe)[1])


def _param_path(est, name: str) -> str:
    keys = [k for k in est.get_params(deep=True) if k == name or k.endswith("__" + name)]
    if len(keys) != 1:
        raise KeyError(f"parameter {name!r} found {len(keys)} times in {type(est).__name__}: {keys}")
    return keys[0]


def _calibration_splits(y: np.ndarray, groups: np.ndarray, seed: int, n: int = 3):
    """Grouped, stratified splits for CalibratedClassifierCV, or None when a class would be missing."""
    n = min(n, len(set(groups)))
    if n < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            splits = list(StratifiedGroupKFold(n, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups))
        except ValueError:  # every class smaller than n
            return None
    k = len(np.unique(y))
    if any(len(np.unique(y[tr])) < k for tr, _ in splits):
        return None
    return splits


def _configure(tail, params: dict, y, groups, seed) -> tuple[Pipeline, bool]:
    """Set tuned params and grouped calibration splits; returns (tail, grouped_calibration)."""
    paths = {_param_path(tail, k): v for k, v in params.items()}
    if any(not p.startswith(tail.steps[-1][0] + "__") for p in paths):
        # _tune fits the steps before the classifier once for all grid points
        raise ValueError(f"tuned parameters must belong to the classifier step, got {sorted(paths)}")
    tail.set_params(**paths)
    splits = _calibration_splits(y, groups, seed)
    if splits is None:
        # sklearn's stratified k-fold, which needs k members of the rarest class
        splits = int(max(2, min(3, np.bincount(np.unique(y, return_inverse=True)[1]).min())))
    tail.set_params(**{_param_path(tail, "cv"): splits})
    return tail, not isinstance(splits, int)


def _score(task: str, y, proba, classes, pred=None) -> float:
    if task == "density":
        return ev.density_metrics(y, proba, classes, pred)["qwk"]
    return ev.tumour_metrics(y, proba[:, -1])["auc"]


def _predict(task, tail, X, classes) -> tuple[np.ndarray, np.ndarray | None]:
    """``(proba, pred)``: predict_proba with one column per class in ``classes`` (a class missing
    in training gets 0), and for density the classifier's own grades from the same probabilities
    (one pass through the model, not two)."""
    p = tail.predict_proba(X)
    clf = tail.steps[-1][1]
    out = np.zeros((len(X), len(classes)))
    for j, c in enumerate(clf.classes_):
        out[:, list(classes).index(c)] = p[:, j]
    return out, (clf.decide(p) if task == "density" else None)


def _group_subset(y, groups, n: int, seed: int) -> np.ndarray:
    """Indices of about ``n`` samples for the inner search, stratified by ``y``.

    Small groups (patients): whole groups. Large groups (an original and its
    augmented copies, ~54 in DPhi): an equal share of images from EVERY group,
    because ~1000 images of whole groups would be ~18 originals, too few for
    every class to reach every inner training split (the search was then
    skipped). Either way no group is split by the inner folds.
    """
    if len(y) <= n:
        return np.arange(len(y))
    uniq, inv = np.unique(groups, return_inverse=True)
    per = max(1, int(np.ceil(n / len(uniq))))
    if np.bincount(inv).max() > 2 * per:
        rng = np.random.default_rng(seed)
        keep = [rng.choice(idx, per, replace=False) if len(idx) > per else idx
                for idx in (np.flatnonzero(inv == k) for k in range(len(uniq)))]
        return np.sort(np.concatenate(keep))
    k = max(2, int(round(len(y) / n)))
    if len(uniq) < 2 * k:
        return np.arange(len(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, keep = next(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups))
    return np.sort(keep)


def _tune(task, feature_set, model, X, y, groups, inner_folds, seed, grid, tune_max=None,
          density_decision="qwk") -> tuple[dict, dict]:
    """Pick the grid point with the best pooled inner-CV score (grouped inner folds).

    With ``tune_max`` the search runs on a stratified subset of about that many images
    (whole groups) of the given training data: it bounds the cost on large sets, and
    stays inside the training fold.
    """
    if not grid or len(grid) == 1:
        return (grid[0] if grid else {}), {}
    if tune_max:
        keep = _group_subset(y, groups, tune_max, seed)
        X, y, groups = X[keep], y[keep], groups[keep]
    classes = np.unique(y)
    k = min(inner_folds, len(set(groups)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            inner = list(StratifiedGroupKFold(k, shuffle=True, random_state=seed + 1).split(X, y, groups))
        except ValueError:  # too few images to tune: keep the defaults
            return {}, {}
    if k < 2 or any(len(np.unique(y[tr])) < len(classes) for tr, _ in inner):
        return {}, {}
    keys = [json.dumps(params, sort_keys=True) for params in grid]
    proba = {key: np.zeros((len(y), len(classes))) for key in keys}
    # density is scored by the model's own grades; tumour by AUC, which needs none
    pred = {key: np.zeros(len(y), y.dtype) for key in keys} if task == "density" else None
    for tr, te in inner:
        # The grid only varies the classifier: the steps before it (scaling, PCA, column
        # selection) are fitted once per inner split, not once per grid point.
        steps = _tail(task, feature_set, model, seed).steps[:-1]
        X_tr, X_te = X[tr], X[te]
        if steps:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pre = Pipeline(steps).fit(X_tr, y[tr])
            X_tr, X_te = pre.transform(X_tr), pre.transform(X_te)
        for key, params in zip(keys, grid):
            tail, _ = _configure(_tail(task, feature_set, model, seed, density_decision), params, y[tr], groups[tr], seed)
            clf = Pipeline(tail.steps[-1:])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.fit(X_tr, y[tr])
            proba[key][te], grades = _predict(task, clf, X_te, classes)
            if pred is not None:
                pred[key][te] = grades
    # scored as the model will predict (density: by its decision rule)
    scores = {key: _score(task, y, proba[key], classes, None if pred is None else pred[key]) for key in keys}
    best = max(scores, key=lambda s: -np.inf if np.isnan(scores[s]) else scores[s])
    return json.loads(best), scores


def _fit_predict(task, feature_set, model, X, y, groups, train, test, classes, inner_folds, seed, tune, tune_max=None,
                 params=None, density_decision="qwk") -> dict:
    """One candidate on one outer fold: tune inside the training fold, fit, predict the test fold."""
    from threadpoolctl import threadpool_limits

    # Many tiny BLAS calls (sigmoid calibration's L-BFGS): threads only add contention;
    # parallelism comes from running folds in separate processes.
    t = time.perf_counter()
    with threadpool_limits(1):
        res = _fit_predict_1(task, feature_set, model, X, y, groups, train, test, classes, inner_folds, seed, tune, tune_max,
                             params, density_decision)
    res["fit_s"] = time.perf_counter() - t
    return res


def _fit_predict_1(task, feature_set, model, X, y, groups, train, test, classes, inner_folds, seed, tune, tune_max,
                   params=None, density_decision="qwk") -> dict:
    grid = [params] if params is not None else PARAM_GRIDS[model] if tune else []
    params, scores = _tune(task, feature_set, model, X[train], y[train], groups[train], inner_folds, seed, grid, tune_max,
                           density_decision)
    tail, grouped_cal = _configure(_tail(task, feature_set, model, seed, density_decision), params, y[train],
                                   groups[train], seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tail.fit(X[train], y[train])
    # density: the model's own decision rule (cut points with density_decision="qwk"), not argmax of proba
    proba, pred = _predict(task, tail, X[test], classes)
    return {"proba": proba, "pred": pred, "params": params, "inner_scores": scores,
            "searched": bool(scores), "grouped_calibration": grouped_cal}


def _fold_metrics(task, y, proba, classes, folds, y_pred=None) -> list[dict]:
    out = []
    for i, (_, test) in enumerate(folds):
        if task == "density":
            out.append(ev.density_metrics(y[test], proba[test], classes, None if y_pred is None else y_pred[test]))
        else:
            m = ev.tumour_metrics(y[test], proba[test, 1], None if y_pred is None else y_pred[test])
            m.pop("calibration", None)
            out.append(m)
    return out


def _summarise(task, y, groups, proba, classes, folds, n_boot, seed, y_pred=None) -> dict:
    """Pooled out-of-fold metrics, per-fold metrics and their mean ± std.

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


def best_candidate(task: str, results: dict) -> str:
    """The candidate with the best pooled out-of-fold primary metric (a NaN score never wins)."""
    key = ev.PRIMARY_METRIC[task]
    return max(results, key=lambda n: np.nan_to_num(results[n]["pooled"][key], nan=-np.inf))


def selection_estimate(task: str, y: np.ndarray, classes, folds, results: dict) -> dict:
    """Score of the whole procedure "take the best candidate", selection included.

    The best candidate's pooled score is the maximum over several noisy scores of the
    same folds, so it is biased upwards. Here each outer fold's predictions come from
    the candidate with the best pooled score on the OTHER folds' out-of-fold
    predictions; the fold's own labels never take part in choosing its candidate.
    It reuses ``results`` (from :func:`cross_validate`): no model is refitted.

    Returns
    -------
    dict with ``score`` (pooled over the folds, the primary metric), ``chosen``
    (the candidate used for each fold) and ``selected_score`` (the pooled score of
    the candidate chosen on all folds, the number it is to be read against).
    """
    key = ev.PRIMARY_METRIC[task]
    names = list(results)
    proba = np.zeros((len(y), len(classes)))
    pred = np.zeros(len(y), y.dtype) if task == "density" else None
    chosen = []
    for i, (_, test) in enumerate(folds):
        rest = np.concatenate([te for j, (_, te) in enumerate(folds) if j != i])
        scores = {n: _score(task, y[rest], results[n]["oof_proba"][rest], classes,
                            results[n]["oof_pred"][rest] if pred is not None else None) for n in names}
        pick = max(names, key=lambda n: np.nan_to_num(scores[n], nan=-np.inf))
        chosen.append(pick)
        proba[test] = results[pick]["oof_proba"][test]
        if pred is not None:
            pred[test] = results[pick]["oof_pred"][test]
    best = best_candidate(task, results)
    return {"metric": key, "score": _score(task, y, proba, classes, pred), "chosen": chosen,
            "selected": best, "selected_score": results[best]["pooled"][key]}


def cross_validate(task: str, X: dict, y: np.ndarray, groups: np.ndarray, folds, candidates: Sequence[tuple[str, str]], *,
                   inner_folds: int = 3, seed: int = 0, tune: bool = False, tune_max: int | None = 1000, n_jobs: int = 1,
                   n_boot: int = 1000, progress: bool = True, params: dict | None = None,
                   density_decision: str = "qwk") -> dict:
    """Evaluate ``(feature_set, model)`` candidates on the same ``folds``.

    Parameters
    ----------
    X : dict
        Feature matrix per feature set (rows aligned with ``y``).
    tune : bool
        Search :data:`PARAM_GRIDS` by grouped inner CV (``inner_folds``, on about
        ``tune_max`` images) inside each training fold; otherwise the models' defaults.
    params : dict, optional
        Fixed hyper-parameters for every fold (no inner search).
    density_decision : {"argmax", "qwk"}
        How density pipelines turn probabilities into a grade
        (:class:`~mammo.classifiers.estimators.OrdinalClassifier`); metrics score that grade.
    Returns
    -------
    dict ``{name: {"pooled", "folds", "folds_summary", "params", "oof_proba"}}``
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    classes = np.unique(y)
    # Widest features and SVMs first (the costliest fits, docs/results.md), so that the
    # last jobs to finish are short ones and neither worker idles long at the end.
    order = sorted(candidates, key=lambda c: (-X[c[0]].shape[1], c[1] != "svm"))
    jobs = [(fs, m, i) for fs, m in order for i in range(len(folds))]
    run = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_fit_predict)(task, fs, m, X[fs], y, groups, folds[i][0], folds[i][1], classes, inner_folds, seed, tune,
                                 tune_max, params, density_decision)
        for fs, m, i in jobs
    )
    results: dict = {}
    for (fs, m, i), res in zip(jobs, tqdm(run, total=len(jobs), desc=f"{task} CV", unit="fit", disable=not progress)):
        results.setdefault((fs, m), {})[i] = res
    out = {}
    for fs, m in candidates:
        proba = np.zeros((len(y), len(classes)))
        pred = np.zeros(len(y), y.dtype) if task == "density" else None
        for i, (_, test) in enumerate(folds):
            proba[test] = results[(fs, m)][i]["proba"]
            if pred is not None:
                pred[test] = results[(fs, m)][i]["pred"]
        entry = _summarise(task, y, groups, proba, classes, folds, n_boot, seed, pred)
        if pred is not None:
            entry["oof_pred"] = pred
        entry["params"] = [results[(fs, m)][i]["params"] for i in range(len(folds))]
        entry["grouped_calibration"] = all(results[(fs, m)][i]["grouped_calibration"] for i in range(len(folds)))
        entry["searched_folds"] = sum(results[(fs, m)][i]["searched"] for i in range(len(folds)))
        # worker seconds (search + fit + predict), summed over folds: what each candidate costs
        entry["fit_s"] = float(sum(results[(fs, m)][i]["fit_s"] for i in range(len(folds))))
        entry["oof_proba"] = proba
        out[f"{fs}+{m}"] = entry
    return out


# ----------------------------------------------------------------------------- deep baseline

@contextlib.contextmanager
def _quiet_retracing():
    """Hide TensorFlow's retracing warning: each fold's new model is traced once, by design,
    and TensorFlow warns from the sixth trace on."""
    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tf_log.setLevel(level)


def _fit_head(X, idx, train, test, n_classes: int, *, seed: int, epochs: int, batch_size: int) -> np.ndarray:
    """Train the head on one training fold; class probabilities of the test fold."""
    import keras

    keras.utils.set_random_seed(seed)
    mu, sd = X[train].mean(0), X[train].std(0) + 1e-6
    weight = balanced_class_weight(idx[train])
    model = keras.Sequential([
        keras.Input((X.shape[1],)),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(128, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-4)),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit((X[train] - mu) / sd, idx[train], epochs=epochs, batch_size=batch_size, class_weight=weight, verbose=0)
    # a direct call: predict() would trace one more tf.function per fold
    proba = keras.ops.convert_to_numpy(model((X[test] - mu) / sd, training=False))
    keras.backend.clear_session()
    return proba


def deep_head_cv(task: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds, *, seed: int = 0, epochs: int = 10,
                 batch_size: int = 256,
                 n_boot: int = 1000, progress: bool = True) -> dict:
    """A small Keras classifier head (Dense-Dropout-softmax) on the frozen CNN embedding, class-weighted.

    Fixed architecture and schedule (nothing tuned, so nothing can leak from the test fold);
    inputs standardised with the training fold's mean and std. 10, 20 and 40 epochs scored
    alike on DPhi, RSNA and mini-MIAS (within about 0.015, the head's run-to-run spread);
    10 costs a quarter of 40 (docs/results.md).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before _fit_head imports keras
    from tqdm.auto import tqdm

    classes = np.unique(y)
    idx = np.searchsorted(classes, y)
    proba = np.zeros((len(y), len(classes)))
    t = time.perf_counter()
    with _quiet_retracing():
        for train, test in tqdm(folds, desc=f"{task} deep head", unit="fold", disable=not progress):
            proba[test] = _fit_head(X, idx, train, test, len(classes), seed=seed, epochs=epochs,
                                    batch_size=batch_size)
    fit_s = time.perf_counter() - t  # like the candidates' fit_s: training and prediction, not the metrics
    entry = _summarise(task, y, groups, proba, classes, folds, n_boot, seed)
    entry["params"] = [{"epochs": epochs, "batch_size": batch_size, "hidden": 128, "dropout": [0.2, 0.5]}] * len(folds)
    entry["fit_s"] = fit_s
    entry["oof_proba"] = proba
    return entry


def finetune_cv(task: str, maps: np.ndarray, y: np.ndarray, groups: np.ndarray, folds, *, map_shape, seed: int = 0,
                epochs: int = 6, batch_size: int = 32, weights: str = "imagenet", input_size: int = 224,
                n_boot: int = 1000, progress: bool = True) -> dict:
    """Partial fine-tuning of MobileNetV2 (:mod:`mammo.classifiers.finetune`) under the same folds.

    ``maps`` are the frozen activation maps (:class:`~mammo.features.cnn.CNNActivations`)
    of the images in ``y``'s order. A fixed schedule, nothing tuned on the test fold.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tqdm.auto import tqdm

    classes = np.unique(y)
    idx = np.searchsorted(classes, y)
    proba = np.zeros((len(y), len(classes)))
    t = time.perf_counter()
    # by epoch: one fold takes minutes
    with _quiet_retracing(), tqdm(total=len(folds) * epochs, desc=f"{task} fine-tuning", unit="epoch",
                                  disable=not progress) as bar:
        for train, test in folds:
            proba[test] = fit_predict_finetuned(maps, idx, train, test, len(classes), map_shape=map_shape, seed=seed,
                                                epochs=epochs, batch_size=batch_size, weights=weights,
                                                input_size=input_size, on_epoch_end=bar.update)
    fit_s = time.perf_counter() - t
    entry = _summarise(task, y, groups, proba, classes, folds, n_boot, seed)
    entry["params"] = [{"epochs": epochs, "batch_size": batch_size, "learning_rate": LEARNING_RATE,
                        "retrained": "blocks 13-16, Conv_1", "batchnorm": "frozen"}] * len(folds)
    entry["fit_s"] = fit_s
    entry["oof_proba"] = proba
    return entry


# ----------------------------------------------------------------------------- final model

def fit_final_model(ds: Dataset, best: dict, features: dict, *, pipeline_options: dict, seed: int, inner_folds: int,
                    tune: bool, metadata: dict, tune_max: int | None = 1000,
                    extra_blocks: Sequence[str] = ()) -> tuple[MammogramModel, dict]:
    """Refit each task's selected candidate on all its labelled images into one MammogramModel.

    ``pipeline_options`` are :func:`~mammo.classifiers.make_pipeline` keywords
    (texture_size, cnn_input_size, cnn_layers, flip_tta, enhance).
    With ``tune``, hyper-parameters are chosen by the same grouped inner CV, now over all labelled data;
    the classifier tails are fitted on the cached features (identical to what the
    pipeline's own stateless steps compute, see tests), the stateless steps are fitted
    (validated / CNN loaded) on two images.
    """
    pipelines, labels, cached, chosen = {}, {}, {}, {}
    for task, (fs, m) in best.items():
        _, y, g = ds.task(task)
        params, _ = _tune(task, fs, m, features[task][fs], y, g, inner_folds, seed, PARAM_GRIDS[m] if tune else [],
                          tune_max, pipeline_options.get("density_decision", "qwk"))
        pipe = make_pipeline(task, fs, m, **pipeline_options, random_state=seed)
        union = pipe.named_steps["features"]
        union.transformer_list = [*union.transformer_list, *((e, make_extra_block(e)) for e in extra_blocks)]
        _configure(Pipeline(split_pipeline(pipe)[1]), params, y, g, seed)  # sets params on pipe's own steps
        pipelines[task] = pipe
        labels[task] = ds.density if task == "density" else ds.tumour
        cached[task] = features[task][fs]
        chosen[task] = params
    model = MammogramModel(pipelines, metadata=dict(metadata))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(ds.paths, features=cached, class_meanings={"density": ds.density_meanings} if ds.density_meanings else None,
                  **labels)
    return model, chosen


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mammo.train_pipeline",
        description="Compare texture / CNN / combined features with XGBoost and SVM under grouped, stratified "
                    "cross-validation (no patient or original mammogram in two folds), report the results and "
                    "save the best pipeline per task refitted on all labelled images.",
        epilog="Examples:\n"
               "  python -m mammo.train_pipeline ../shared/data/dphi-sprint31\n"
               "  python -m mammo.train_pipeline ../shared/data/mini-mias --tasks density --feature-sets texture cnn\n"
               "  python -m mammo.train_pipeline labels.csv --kind manifest --models svm --limit 500 --no-deep\n"
               "  python -m mammo.train_pipeline ../shared/data/dphi-sprint31 --fine-tune   # + fine-tuned MobileNetV2\n"
               "Features are cached under $MAMMO_CACHE_DIR/features (default ~/.cache/mammo/features).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", help="data set folder (DPhi, mini-MIAS, rsna-screening) or a CSV manifest "
                                "(path, group/patient_id, density, tumour/cancer)")
    p.add_argument("--kind", default="auto", choices=DATASET_KINDS,
                   help="data set layout (default: detected)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, help="tasks to evaluate (default: both)")
    p.add_argument("--feature-sets", nargs="+", default=list(FEATURE_SETS), choices=FEATURE_SETS,
                   help="texture = GLCM+LBP, cnn = MobileNetV2 embedding, combined = both (default: all)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="classifiers (default: all)")
    p.add_argument("--folds", type=int, default=5, help="outer grouped CV folds (default 5)")
    p.add_argument("--inner-folds", type=int, default=3, help="grouped inner folds for tuning (default 3)")
    p.add_argument("--tune", action=argparse.BooleanOptionalAction, default=False,
                   help="search PARAM_GRIDS by grouped inner CV inside each training fold (default: off; the fixed "
                        "defaults scored as well on DPhi, RSNA and mini-MIAS in about 3/4 of the time, docs/results.md)")
    p.add_argument("--tune-max", type=int, default=1000, metavar="N",
                   help="run the inner search on about N images (whole groups) of each training fold (default 1000; 0 = all)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<dataset>-<timestamp>)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel workers (default: CPU count)")
    p.add_argument("--no-deep", action="store_true", help="skip the Keras head baseline")
    p.add_argument("--fine-tune", action="store_true",
                   help="also fine-tune MobileNetV2's last blocks (13-16, Conv_1) under the same folds (DPhi tumour "
                        "AUC 0.77-0.80 over three fold seeds); slow: about 10 min per task on DPhi with 2 cores. "
                        "Reported, not selectable for the saved model")
    p.add_argument("--fine-tune-epochs", type=int, default=6, metavar="N", help="fine-tuning epochs (default 6)")
    p.add_argument("--no-leaky", action="store_true", help="skip the deliberately leaky random split")
    p.add_argument("--no-model", action="store_true", help="do not refit and save the final model")
    p.add_argument("--texture-size", type=int, default=256, help="working resolution (longer side) of the breast crop")
    p.add_argument("--cnn-input-size", type=int, default=224, help="side of the square CNN input (default 224)")
    p.add_argument("--cnn-layers", default="multi", choices=LAYER_SETS,
                   help="CNN embedding: 'multi' (default) = mean and std of five intermediate MobileNetV2 layers plus "
                        "the average-pooled last one (5792 features); 'last' = the last one only (1280)")
    p.add_argument("--flip-tta", action="store_true", help="average the CNN embedding of the image and its mirror image")
    p.add_argument("--density-decision", default="qwk", choices=DECISIONS,
                   help="density grade from the probabilities: qwk (default) = cut points on the expected grade "
                        "that maximise quadratic-weighted kappa on the calibration folds' held-out predictions, "
                        "inside each training fold; argmax = the most probable class (higher accuracy, lower "
                        "kappa on DPhi and RSNA)")
    p.add_argument("--no-enhance", action="store_true",
                   help="compute features on the unenhanced breast crop (no CLAHE / unsharp mask): keeps absolute grey "
                        "levels, which scored better for film mammograms (mini-MIAS) in grouped CV")
    p.add_argument("--extra-blocks", nargs="*", default=[], choices=sorted(EXTRA_BLOCKS),
                   help="experimental feature blocks (mammo.features.extra) appended to every feature set")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use about N images (whole groups, stratified)")
    p.add_argument("--seed", type=int, default=0, help="random seed for folds, subsets and models (default 0)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the AUC CI (default 1000)")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache folder (default $MAMMO_CACHE_DIR/features)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns 0, or exits with status 2 and a message on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    if args.limit is not None and args.limit < 2:
        parser.error("--limit must be at least 2")
    if args.fine_tune_epochs < 1:
        parser.error("--fine-tune-epochs must be at least 1")
    try:
        return _run(args)
    except (DatasetError, TrainingDataError, FeatureComputationError, FileNotFoundError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


def _pipeline_options(args: argparse.Namespace) -> dict:
    """The :func:`~mammo.classifiers.make_pipeline` keywords set by the CLI's arguments."""
    return {"texture_size": args.texture_size, "cnn_input_size": args.cnn_input_size, "cnn_layers": args.cnn_layers,
            "flip_tta": args.flip_tta, "enhance": not args.no_enhance, "density_decision": args.density_decision}


def _load(args) -> Dataset:
    path = Path(args.data).expanduser()
    is_dphi = args.kind == "dphi" or (args.kind == "auto" and (path.name == "Training_set.csv" or (path / "Training_set.csv").is_file()))
    kwargs = {"n_jobs": args.jobs, "progress": not args.quiet} if is_dphi else {}
    return load_dataset(path, args.kind, **kwargs)


def _run(args) -> int:
    from threadpoolctl import threadpool_limits

    # Classifier work here is many small BLAS calls; with threads they contend for 2 shared
    # cores (30x slower sigmoid calibration measured). The CNN runtime has its own pool.
    with threadpool_limits(1):
        return _run_1(args)


def _run_1(args) -> int:
    t0 = time.time()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    timing: dict[str, float] = {}
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    ds = _load(args)
    if args.limit:
        ds = limit_dataset(ds, args.limit, args.seed)
    timing["load_s"] = time.time() - t0
    say(f"{ds.name}: {len(ds)} images, {len(set(ds.groups))} groups")

    tasks, notes = [], []
    for task in args.tasks:
        _, y, g = ds.task(task)
        if len(y) == 0:
            notes.append(f"{task}: no labelled images, skipped")
            continue
        check_task_data(task, y, g, args.folds)
        tasks.append(task)
    if not tasks:
        raise TrainingDataError(f"{ds.name}: no labelled images for {args.tasks}")

    out = args.out or Path("runs") / f"{ds.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)

    # ---- features: each block once per image, from the cache
    t = time.time()
    deep = not args.no_deep
    need = sorted({b for fs in args.feature_sets for b in BLOCKS[fs]} | ({"cnn"} if deep else set()),
                  key=("glcm", "lbp", "cnn").index)
    used = np.any(np.column_stack([~np.isnan(ds.density if tk == "density" else ds.tumour) for tk in tasks]), axis=1)
    images = [p for p, u in zip(ds.paths, used) if u]
    steps = split_pipeline(make_pipeline("density", "combined", "svm", **_pipeline_options(args), random_state=args.seed))[0]
    union = dict(steps[-1][1].transformer_list)
    union.update({e: make_extra_block(e) for e in args.extra_blocks})
    need += list(args.extra_blocks)
    if args.fine_tune:  # the frozen part of the fine-tuned network, run once per image
        union["trunk"] = CNNActivations(input_size=args.cnn_input_size)
        need.append("trunk")
    cache = FeatureCache(args.cache_dir, n_jobs=args.jobs, progress=not args.quiet)
    blocks = cache.blocks(images, steps[:-1], [(b, union[b]) for b in need], desc=f"{ds.name} features")
    row = {p: i for i, p in enumerate(images)}
    map_shape = union["trunk"].fit().map_shape_ if args.fine_tune else None
    timing["features_s"] = time.time() - t
    say(f"features: {dict(cache.stats)} in {timing['features_s']:.0f} s")

    candidates = [(fs, m) for fs, m in itertools.product(args.feature_sets, args.models)]
    if deep:
        notes.append(f"{DEEP_NAME}: a Keras head (Dense 128, dropout, softmax; 10 epochs, class-weighted) on the frozen "
                     "CNN embedding; a baseline, reported but not selectable for the saved model")
    if args.fine_tune:
        notes.append(f"{FINETUNE_NAME}: MobileNetV2's blocks 13-16 and Conv_1 retrained from the ImageNet weights "
                     f"(BatchNorm frozen) with a new softmax, {args.fine_tune_epochs} epochs, Adam {LEARNING_RATE:g}, batch 32, "
                     "class-weighted; a baseline, reported but not selectable for the saved model")
    if "density" in tasks:
        notes.append("density: " + (
            "each scikit-learn candidate grades by cut points on its expected grade, fitted in each training fold "
            "to maximise quadratic-weighted kappa on the calibration folds' held-out predictions (--density-decision "
            "qwk); the deep baselines take the most probable class" if args.density_decision == "qwk"
            else "every model takes the most probable class (--density-decision argmax)"))
    metrics: dict[str, Any] = {
        "started": started,
        "dataset": ds.summary(),
        "config": {"data": str(args.data), "kind": args.kind, "folds": args.folds, "inner_folds": args.inner_folds,
                   "seed": args.seed, "tune": args.tune, "tune_max": args.tune_max, "param_grids": PARAM_GRIDS if args.tune else None,
                   **_pipeline_options(args), "extra_blocks": args.extra_blocks, "limit": args.limit,
                   "n_boot": args.bootstrap, "jobs": args.jobs, "deep_head": deep,
                   "fine_tune_epochs": args.fine_tune_epochs if args.fine_tune else None,
                   "feature_sets": args.feature_sets, "models": args.models},
        "feature_cache": {"root": str(cache.root), **{k: int(v) for k, v in cache.stats.items()}},
        "tasks": {},
        "notes": notes,
    }
    plots: dict[str, str] = {"group_sizes": ev.plot_group_sizes(ds.groups, out / "group_sizes.png").name}
    best, features = {}, {}
    for task in tasks:
        t = time.time()
        paths, y, g = ds.task(task)
        rows = np.array([row[p] for p in paths])
        X = {fs: np.hstack([blocks[b][rows] for b in (*BLOCKS[fs], *args.extra_blocks)]) for fs in args.feature_sets}
        features[task] = X
        folds = make_folds(y, g, args.folds, args.seed)
        classes = np.unique(y)
        res = cross_validate(task, X, y, g, folds, candidates, inner_folds=args.inner_folds, seed=args.seed,
                             tune=args.tune, tune_max=args.tune_max, n_jobs=args.jobs, n_boot=args.bootstrap,
                             progress=not args.quiet, density_decision=args.density_decision)
        key = ev.PRIMARY_METRIC[task]
        name = best_candidate(task, res)
        best[task] = tuple(name.split("+"))
        selection = selection_estimate(task, y, classes, folds, res) if len(res) > 1 else None
        leaky = None
        if not args.no_leaky and len(set(g)) < len(g):  # the deliberately leaky contrast
            leaky = _leaky_contrast(args, task, X, y, g, best[task], res[name]["params"])
        if deep:
            # After the candidates, not beside them: the machine is already saturated (running
            # it in a thread beside the sklearn workers measured the same wall time).
            res[DEEP_NAME] = deep_head_cv(task, blocks["cnn"][rows], y, g, folds, seed=args.seed, n_boot=args.bootstrap,
                                          progress=not args.quiet)
        if args.fine_tune:
            res[FINETUNE_NAME] = finetune_cv(task, blocks["trunk"][rows], y, g, folds, map_shape=map_shape,
                                             seed=args.seed, epochs=args.fine_tune_epochs,
                                             input_size=args.cnn_input_size, n_boot=args.bootstrap,
                                             progress=not args.quiet)
        if task == "tumour":
            _per_breast(ds, paths, y, g, res, notes, n_boot=args.bootstrap, seed=args.seed)
        entry = {
            "n_images": int(len(y)), "n_groups": int(len(set(g))),
            "class_counts": {str(int(c)): int((y == c).sum()) for c in classes},
            "fold_sizes": [int(len(te)) for _, te in folds],
            "groups_shared_between_folds": 0,
            "best": name,
            "candidates": {n: {k: v for k, v in r.items() if k not in ("oof_proba", "oof_pred")} for n, r in res.items()},
            "params": {n: r["params"] for n, r in res.items()
                       if n not in (DEEP_NAME, FINETUNE_NAME) and r["params"] and r["params"][0]},
        }
        if args.tune:
            skipped = {n: len(folds) - r["searched_folds"] for n, r in res.items() if "searched_folds" in r}
            if any(skipped.values()):
                notes.append(f"{task}: the inner search was skipped (too few images or groups per class for "
                             f"{args.inner_folds} inner folds) in {sum(skipped.values())} of {len(folds) * len(skipped)} "
                             "candidate-folds; those used the default hyper-parameters")
        if not all(r.get("grouped_calibration", True) for r in res.values()):
            notes.append(f"{task}: some calibration splits could not be grouped (a class in too few groups); "
                         "those used sklearn's stratified 3-fold calibration inside the training fold")
        if leaky is not None:
            entry["leaky"] = leaky
        if selection is not None:
            entry["selection_estimate"] = selection
        metrics["tasks"][task] = entry
        timing[f"cv_{task}_s"] = time.time() - t
        # ---- plots
        if task == "tumour":
            curves = {n: (y, r["oof_proba"][:, 1]) for n, r in res.items()}
            plots["roc_tumour"] = ev.plot_roc(curves, out / "roc_tumour.png").name
            plots["calibration_tumour"] = ev.plot_calibration(curves, out / "calibration_tumour.png").name
        else:
            cms = {n: r["pooled"]["confusion_matrix"] for n, r in res.items()}
            plots["confusion_density"] = ev.plot_confusion(cms, classes.tolist(), out / "confusion_density.png",
                                                           "Density confusion matrices (pooled out-of-fold, rows = truth)").name
        np.savez_compressed(out / f"oof_{task}.npz", y=y, groups=g.astype(str),
                            **{n.replace("+", "__"): r["oof_proba"] for n, r in res.items()},
                            **{n.replace("+", "__") + "__pred": r["oof_pred"] for n, r in res.items() if "oof_pred" in r})
        say(f"{task}: best {name} {key}={res[name]['pooled'][key]:.3f} ({time.time() - t:.0f} s)")

    # ---- final model
    if not args.no_model:
        t = time.time()
        extra = "".join(f"&{e}" for e in args.extra_blocks)
        pid = f"{ds.name}:" + ";".join(f"{task}={fs}{extra}+{m}" for task, (fs, m) in best.items())
        selection = ("Best candidate per task by pooled out-of-fold grouped-CV " +
                     ", ".join(f"{ev.PRIMARY_METRIC[tk]} ({tk})" for tk in best) +
                     "; the deep baselines (Keras head, fine-tuned MobileNetV2) are reported but not selectable "
                     "(not scikit-learn pipelines). Refitted on all labelled images with "
                     + ("hyper-parameters from a grouped inner CV on them." if args.tune
                        else "the models' default hyper-parameters, as in the cross-validation."))
        meta = {
            "training_data": ds.summary(),
            "pipeline_id": pid,
            "selection": selection,
            "cv_metrics": {task: {"candidate": metrics["tasks"][task]["best"],
                                  "metrics": metrics["tasks"][task]["candidates"][metrics["tasks"][task]["best"]]["pooled"],
                                  "folds_summary": metrics["tasks"][task]["candidates"][metrics["tasks"][task]["best"]]["folds_summary"],
                                  "table": {n: c["pooled"] for n, c in metrics["tasks"][task]["candidates"].items()},
                                  "protocol": f"{args.folds}-fold StratifiedGroupKFold, seed {args.seed}"}
                           for task in best},
            **_pipeline_options(args),
        }
        model, chosen = fit_final_model(ds, best, features, pipeline_options=_pipeline_options(args), seed=args.seed,
                                        inner_folds=args.inner_folds, tune=args.tune, metadata=meta,
                                        tune_max=args.tune_max, extra_blocks=args.extra_blocks)
        model.metadata["final_params"] = chosen
        path = model.save(out / "model.joblib")
        metrics["final_model"] = {"path": path.name, "sha256": file_sha256(path), "pipeline_id": pid, "params": chosen,
                                  "selection": selection}
        timing["final_model_s"] = time.time() - t
    timing["total_s"] = time.time() - t0
    metrics["timing"] = timing
    (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=1))
    ev.write_report(metrics, out / "report.md", plots)
    say(f"wrote {out / 'report.md'}")
    print(out)
    return 0


def _per_breast(ds: Dataset, paths, y, g, res: dict, notes: list, *, n_boot: int, seed: int) -> None:
    """Add per-breast tumour metrics (views averaged) to every result when breasts have several images.

    A breast lies inside one patient, hence inside one test fold: its views' out-of-fold
    probabilities all come from the same model.
    """
    breasts = ds.breasts()
    if breasts is None:
        return
    index = {p: i for i, p in enumerate(ds.paths)}
    tb = breasts[[index[p] for p in paths]]
    if len(set(tb)) == len(tb):
        return  # one image per breast: nothing to average
    for r in res.values():
        r["per_breast"] = ev.per_breast_tumour(y, r["oof_proba"][:, 1], tb, g, n_boot=n_boot, seed=seed)
    first = next(iter(res.values()))["per_breast"]
    if first is None:
        notes.append("tumour: labels differ between images of one breast, so no per-breast metrics")
        return
    notes.append(f"tumour: 'AUC per breast' scores the mean P(malignant) of each breast's images (patient + "
                 f"laterality; {first['n']} breasts, {first['views_per_breast']:.1f} images each on average). "
                 "Selection stays per image")


def _leaky_contrast(args, task, X, y, g, candidate, grouped_params) -> dict:
    """The selected candidate under a plain StratifiedKFold that ignores groups (what a careless split reports).

    It uses the hyper-parameters grouped CV used (chosen most often, with ``--tune``), without
    a new search: the split is then the only difference (and the contrast costs no tuning).
    """
    fs, m = candidate
    name = f"{fs}+{m}"
    leaky_folds = make_folds(y, g, args.folds, args.seed, grouped=False)
    image_ids = np.arange(len(y)).astype(str)  # calibration splits ignore groups too
    fixed = json.loads(Counter(json.dumps(p, sort_keys=True) for p in grouped_params).most_common(1)[0][0])
    lk = cross_validate(task, X, y, image_ids, leaky_folds, [(fs, m)], inner_folds=args.inner_folds, seed=args.seed,
                        tune=False, params=fixed, n_jobs=args.jobs, n_boot=args.bootstrap, progress=not args.quiet,
                        density_decision=args.density_decision)[name]
    shared = np.mean(np.concatenate([np.isin(g[te], g[tr]) for tr, te in leaky_folds]))
    return {"candidate": name, "params": fixed, "pooled": lk["pooled"], "folds_summary": lk["folds_summary"],
            "folds": lk["folds"], "test_images_with_group_in_train": float(shared), "fit_s": lk["fit_s"],
            "split": f"StratifiedKFold({args.folds}, shuffle=True, random_state={args.seed}), groups ignored"}


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        return None if np.isnan(o) else float(o)
    return o


if __name__ == "__main__":
    sys.exit(main())
