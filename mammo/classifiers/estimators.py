"""Meta-estimators (class-balanced fitting, ordinal classification) and a capped PCA."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, TransformerMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.feature_selection import f_classif
from sklearn.model_selection import check_cv
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

__all__ = [
    "DECISIONS",
    "CappedPCA",
    "ClassWeighted",
    "OrdinalClassifier",
    "expected_grade",
    "f_classif_constant_safe",
    "fit_cut_points",
    "quadratic_kappa",
]


def f_classif_constant_safe(X, y) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sklearn.feature_selection.f_classif` with F = 0 and p = 1 for constant columns.

    Some channels of the multi-layer CNN embedding are zero on every image (after a
    ReLU). f_classif gives them NaN with two warnings per fit; ``SelectKBest`` ranks
    NaN last anyway, so the selection is the same, without the noise.
    """
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.filterwarnings("ignore", message="Features .* are constant", category=UserWarning)
        f, p = f_classif(X, y)
    return np.nan_to_num(f, nan=0.0), np.nan_to_num(p, nan=1.0)


def _estimator_has(attr):
    def check(self):
        return hasattr(self.estimator_ if hasattr(self, "estimator_") else self.estimator, attr)

    return check


class ClassWeighted(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Fit ``estimator`` with per-sample weights that balance the classes.

    For estimators without a ``class_weight`` parameter (XGBoost). Wrapped in
    :class:`~sklearn.calibration.CalibratedClassifierCV`, the base model
    trains balanced while the calibrator, fitted unweighted on held-out
    folds, maps scores back to probabilities at the true class frequencies.

    Parameters
    ----------
    estimator : classifier whose ``fit`` accepts ``sample_weight``
    class_weight : "balanced", dict or None, default="balanced"

    Attributes
    ----------
    estimator_ : fitted clone of ``estimator``
    classes_ : ndarray
    """

    def __init__(self, estimator, class_weight="balanced"):
        self.estimator = estimator
        self.class_weight = class_weight

    def fit(self, X, y, sample_weight=None):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        if weight.sum() <= 0:
            raise ValueError("sample_weight: all weights are zero")
        if np.count_nonzero(np.bincount(y_enc, weights=weight)) < 2:
            raise ValueError("only one class with non-zero weight: need at least 2 classes")
        if self.class_weight == "balanced":
            # Weighted class totals, so that weight 2 equals a repeated sample.
            totals = np.bincount(y_enc, weights=weight, minlength=len(self.classes_))
            weight = weight * (weight.sum() / (len(self.classes_) * totals))[y_enc]
        elif self.class_weight is not None:
            weight = weight * compute_sample_weight(self.class_weight, y)
        # XGBoost wants labels 0..K-1; every sklearn classifier accepts them too.
        self.estimator_ = clone(self.estimator).fit(X, y_enc, sample_weight=weight)
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        return self

    def predict(self, X):
        check_is_fitted(self)
        return self.classes_[np.asarray(self.estimator_.predict(X)).astype(int)]

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        check_is_fitted(self)
        return self.estimator_.decision_function(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        sub = self.estimator.__sklearn_tags__()
        tags.input_tags = sub.input_tags
        return tags


def quadratic_kappa(y_rank: np.ndarray, pred_rank: np.ndarray, n_classes: int) -> float:
    """Quadratic-weighted kappa of two integer ratings in ``0 .. n_classes - 1``.

    Equal to ``sklearn.metrics.cohen_kappa_score(..., weights="quadratic")`` (tested).
    :func:`fit_cut_points` calls it up to a few thousand times per fit; on 2,000
    ratings it takes 0.02 ms against sklearn's 0.9 ms, most of which is input validation.
    """
    k = n_classes
    observed = np.bincount(y_rank * k + pred_rank, minlength=k * k).reshape(k, k).astype(float)
    expected = np.outer(observed.sum(1), observed.sum(0)) / max(observed.sum(), 1.0)
    i = np.arange(k)
    weights = (i[:, None] - i[None, :]) ** 2
    denom = (weights * expected).sum()
    return float(1.0 - (weights * observed).sum() / denom) if denom > 0 else float("nan")


def expected_grade(proba: np.ndarray) -> np.ndarray:
    """Expected class rank ``sum_k k * p_k`` (0-based) of ordinal class probabilities."""
    proba = np.asarray(proba, dtype=float)
    return proba @ np.arange(proba.shape[1])


def fit_cut_points(
    score: np.ndarray, y_rank: np.ndarray, n_classes: int, *, n_candidates: int = 100, max_sweeps: int = 10
) -> np.ndarray:
    """Cut points on a continuous ``score`` that maximise quadratic-weighted kappa.

    Rank ``k`` is predicted for ``cuts[k-1] < score <= cuts[k]``. The search starts
    at the midpoints ``k + 0.5`` (the nearest rank to an expected grade) and moves
    one cut at a time to the best of ``n_candidates`` quantiles of ``score``
    between its neighbours, until a sweep improves nothing. No optimiser in
    scipy or sklearn handles this step-shaped objective directly.

    Returns
    -------
    ndarray of ``n_classes - 1`` increasing cut points
    """
    score = np.asarray(score, dtype=float)
    y_rank = np.asarray(y_rank, dtype=int)
    cuts = np.arange(n_classes - 1) + 0.5
    candidates = np.unique(np.quantile(score, np.linspace(0.0, 1.0, n_candidates)))

    def kappa(c):
        q = quadratic_kappa(y_rank, np.searchsorted(c, score), n_classes)
        return -np.inf if np.isnan(q) else q

    best = kappa(cuts)
    for _ in range(max_sweeps):
        improved = False
        for j in range(len(cuts)):
            lo = cuts[j - 1] if j > 0 else -np.inf
            hi = cuts[j + 1] if j + 1 < len(cuts) else np.inf
            for c in candidates[(candidates > lo) & (candidates < hi)]:
                trial = cuts.copy()
                trial[j] = c
                q = kappa(trial)
                if q > best + 1e-12:
                    best, cuts, improved = q, trial, True
        if not improved:
            break
    return cuts


DECISIONS = ("argmax", "qwk")


class OrdinalClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Ordinal classification by cumulative binary problems (Frank & Hall, 2001).

    For ordered classes c_1 < ... < c_K it fits K-1 clones of ``estimator`` on
    ``y > c_k`` and combines P(y > c_k) (made non-increasing in k) into class
    probabilities. Neighbouring classes share evidence, which suits BI-RADS
    density, where 2 vs 3 is a threshold on one continuous quantity.

    Parameters
    ----------
    estimator : binary classifier with ``predict_proba``
    decision : {"argmax", "qwk"}, default="argmax"
        How :meth:`predict` turns probabilities into a class. "argmax": the most
        probable class. "qwk": cut points on the expected grade, chosen to
        maximise quadratic-weighted kappa on out-of-fold predictions of the
        training data. Calibrated probabilities lean towards the common middle
        classes, which costs kappa at the extremes; the cut points undo that
        without refitting anything. "qwk" needs a
        :class:`~sklearn.calibration.CalibratedClassifierCV` (``ensemble``
        true): its calibration folds already give the out-of-fold predictions.
        With an integer ``cv`` all K-1 problems get the same stratified splits
        of the ordinal labels; pass grouped splits as ``cv`` when samples are
        related (patients, augmented copies).
    max_cut_samples : int, default=2000
        At most this many held-out predictions (evenly spaced in each
        calibration fold) fit the cut points. Predicting them is the rule's only
        real cost, and it grows with the training set (DPhi: 4,500 images per
        fold); 2,000 gave kappa within 0.003 of all of them there.

    Attributes
    ----------
    estimators_ : list of K-1 fitted binary classifiers
    classes_ : ndarray of the K ordered classes
    cut_points_ : ndarray of K-1 increasing cut points on the expected rank
        (0-based), or None with ``decision="argmax"``
    """

    def __init__(self, estimator, decision="argmax", max_cut_samples=2000):
        self.estimator = estimator
        self.decision = decision
        self.max_cut_samples = max_cut_samples

    def fit(self, X, y, **fit_params):
        X, y = validate_data(self, X, y, accept_sparse=False, ensure_all_finite=True)
        check_classification_targets(y)
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {self.decision!r}")
        if int(self.max_cut_samples) < 2:
            raise ValueError(f"max_cut_samples must be >= 2, got {self.max_cut_samples!r}")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"only one class in y ({self.classes_.tolist()}): need at least 2 classes")
        base, splits = self.estimator, None
        if self.decision == "qwk":
            base, splits = self._shared_splits(X, y)
        self.estimators_ = [clone(base).fit(X, (y > c).astype(int), **fit_params) for c in self.classes_[:-1]]
        self.cut_points_ = None
        if splits is not None:
            above = np.full((len(y), len(self.estimators_)), np.nan)
            total = sum(len(te) for _, te in splits)
            for i, (_, test) in enumerate(splits):
                if total > int(self.max_cut_samples):  # evenly spaced, in proportion to the fold's size
                    k = max(1, len(test) * int(self.max_cut_samples) // total)
                    test = test[np.unique(np.linspace(0, len(test) - 1, k).round().astype(int))]
                above[test] = np.column_stack(
                    [est.calibrated_classifiers_[i].predict_proba(X[test])[:, 1] for est in self.estimators_]
                )
            seen = ~np.isnan(above).any(axis=1)
            rank = np.searchsorted(self.classes_, y)
            self.cut_points_ = fit_cut_points(
                expected_grade(self._combine(above[seen])), rank[seen], len(self.classes_)
            )
        return self

    def __setstate__(self, state):
        # artifacts saved before the cut points existed predicted the most probable class
        state.setdefault("decision", "argmax")
        state.setdefault("max_cut_samples", 2000)
        state.setdefault("cut_points_", None)
        super().__setstate__(state)

    def _shared_splits(self, X, y):
        """The estimator with one explicit list of calibration splits, and that list."""
        est = self.estimator
        if not isinstance(est, CalibratedClassifierCV) or est.ensemble is False or est.cv == "prefit":
            raise ValueError(
                'decision="qwk" needs a CalibratedClassifierCV with ensemble=True and cross-validation '
                f"(its held-out folds give the out-of-fold predictions); got {est!r}"
            )
        cv = est.cv
        if cv is None or isinstance(cv, (int, np.integer)) or hasattr(cv, "split"):
            cv = check_cv(cv, y, classifier=True).split(X, y)
        splits = [(np.asarray(tr), np.asarray(te)) for tr, te in cv]
        return clone(est).set_params(cv=splits), splits

    @staticmethod
    def _combine(above: np.ndarray) -> np.ndarray:
        above = np.minimum.accumulate(above, axis=1)  # P(y > c_k) cannot grow with k
        cum = np.hstack([np.ones((len(above), 1)), above, np.zeros((len(above), 1))])
        proba = np.clip(cum[:, :-1] - cum[:, 1:], 0.0, None)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict_proba(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite=True)
        return self._combine(np.column_stack([est.predict_proba(X)[:, 1] for est in self.estimators_]))

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Class labels from class probabilities (columns in ``classes_`` order), by ``decision``."""
        check_is_fitted(self)
        proba = np.asarray(proba, dtype=float)
        cuts = getattr(self, "cut_points_", None)
        if cuts is None:
            return self.classes_[np.argmax(proba, axis=1)]
        return self.classes_[np.searchsorted(cuts, expected_grade(proba))]

    def predict(self, X):
        return self.decide(self.predict_proba(X))


class CappedPCA(TransformerMixin, BaseEstimator):
    """PCA to at most ``max_components`` dimensions, fewer when the data has fewer.

    :class:`sklearn.decomposition.PCA` refuses ``n_components`` above
    ``min(n_samples, n_features)``; one pipeline must serve 54-d texture vectors,
    1,334-d combined ones and small training folds alike. Before an RBF-SVM on
    the combined features, 128 components cut the fit time ~6-10x with the same
    grouped-CV scores (``docs/results.md``).

    Parameters
    ----------
    max_components : int, default=128
    random_state : int or None, default=0
        For the randomized SVD solver PCA picks on large inputs.

    Attributes
    ----------
    pca_ : fitted PCA
    n_components_ : int
    """

    def __init__(self, max_components=128, random_state=0):
        self.max_components = max_components
        self.random_state = random_state

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        if int(self.max_components) < 1:
            raise ValueError(f"max_components must be >= 1, got {self.max_components!r}")
        k = min(int(self.max_components), X.shape[0], X.shape[1])
        self.pca_ = PCA(n_components=k, random_state=self.random_state).fit(X)
        self.n_components_ = k
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.pca_.transform(X)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        return np.asarray([f"pca{i}" for i in range(self.n_components_)], dtype=object)
