"""Meta-estimators (class-balanced fitting, ordinal classification) and a capped PCA."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, TransformerMixin, clone
from sklearn.decomposition import PCA
from sklearn.feature_selection import f_classif
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

__all__ = ["CappedPCA", "ClassWeighted", "OrdinalClassifier", "f_classif_constant_safe"]


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


class OrdinalClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Ordinal classification by cumulative binary problems (Frank & Hall, 2001).

    For ordered classes c_1 < ... < c_K it fits K-1 clones of ``estimator`` on
    ``y > c_k`` and combines P(y > c_k) (made non-increasing in k) into class
    probabilities. Neighbouring classes share evidence, which suits BI-RADS
    density, where 2 vs 3 is a threshold on one continuous quantity.

    Parameters
    ----------
    estimator : binary classifier with ``predict_proba``

    Attributes
    ----------
    estimators_ : list of K-1 fitted binary classifiers
    classes_ : ndarray of the K ordered classes
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y, **fit_params):
        X, y = validate_data(self, X, y, accept_sparse=False, ensure_all_finite=True)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"only one class in y ({self.classes_.tolist()}): need at least 2 classes")
        self.estimators_ = [
            clone(self.estimator).fit(X, (y > c).astype(int), **fit_params) for c in self.classes_[:-1]
        ]
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite=True)
        above = np.column_stack([est.predict_proba(X)[:, 1] for est in self.estimators_])
        above = np.minimum.accumulate(above, axis=1)  # P(y > c_k) cannot grow with k
        cum = np.hstack([np.ones((len(X), 1)), above, np.zeros((len(X), 1))])
        proba = np.clip(cum[:, :-1] - cum[:, 1:], 0.0, None)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X):
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


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
