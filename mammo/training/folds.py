"""Grouped splits: the outer folds, the checks that make them honest, subsets and calibration splits.

Every split here keeps a group (a patient, or an original mammogram and its augmented
copies) on one side: images of one group are not independent.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ..datasets import Dataset

__all__ = ["TrainingDataError", "make_folds", "check_task_data", "limit_dataset", "calibration_splits", "group_subset"]


class TrainingDataError(ValueError):
    """The labelled data cannot support the requested evaluation (too few classes, groups or images)."""


def make_folds(
    y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int, *, grouped: bool = True
) -> list[tuple[np.ndarray, np.ndarray]]:
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
        raise TrainingDataError(
            f"{task}: only one class ({classes.tolist()}) among {len(y)} labelled images; need at least 2"
        )
    if n_groups < n_splits:
        raise TrainingDataError(
            f"{task}: {n_groups} groups (patients / originals) for {n_splits} folds; "
            f"use --folds {max(2, n_groups)} or fewer, or more data"
        )
    for c, k in zip(classes, counts):
        g = len(set(groups[y == c]))
        if k < n_splits or g < 2:
            raise TrainingDataError(
                f"{task}: class {c} has {k} images in {g} group(s); every class needs at least {n_splits} images "
                "(one per fold) in at least 2 groups so that it is both trained on and tested"
            )


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
        _, keep = next(
            StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(ds)), joint, ds.groups)
        )
    return ds.subset(np.sort(keep))


def calibration_splits(y: np.ndarray, groups: np.ndarray, seed: int, n: int = 3):
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


def group_subset(y: np.ndarray, groups: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of about ``n`` samples for the inner search, stratified by ``y``.

    Small groups (patients): whole groups. Large groups (an original and its
    augmented copies, as in DPhi): an equal share of images from EVERY group,
    because a subset of whole large groups holds too few originals for every
    class to reach every inner training split (the search was then skipped,
    docs/results.md). Either way no group is split by the inner folds.
    """
    if len(y) <= n:
        return np.arange(len(y))
    uniq, inv = np.unique(groups, return_inverse=True)
    per = max(1, int(np.ceil(n / len(uniq))))
    if np.bincount(inv).max() > 2 * per:
        rng = np.random.default_rng(seed)
        keep = [
            rng.choice(idx, per, replace=False) if len(idx) > per else idx
            for idx in (np.flatnonzero(inv == k) for k in range(len(uniq)))
        ]
        return np.sort(np.concatenate(keep))
    k = max(2, int(round(len(y) / n)))
    if len(uniq) < 2 * k:
        return np.arange(len(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, keep = next(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups))
    return np.sort(keep)
