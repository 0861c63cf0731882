"""Out-of-distribution score: how unlike the training images an image's features are.

A model answers for images like those it was trained on. :class:`DistributionModel`
describes the training images' feature vectors (standardised, then a PCA) by their
covariance, and scores a new image by its distance from them: the Mahalanobis distance
inside the PCA subspace and the part of the vector the subspace cannot represent, the
classical two statistics of multivariate process monitoring (Hotelling's T² and the
squared prediction error Q). An image whose score exceeds ``threshold_`` is flagged
``in_distribution=False``.

The threshold is a quantile of scores that the training images get from models fitted
WITHOUT them (grouped cross-fitting, so an augmented copy never vouches for its twin):
by construction about ``1 - quantile`` of new images from the training distribution are
flagged.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.model_selection import GroupKFold, KFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["DistributionModel"]


class DistributionModel(BaseEstimator):
    """Out-of-distribution score of feature vectors against the training set's.

    Parameters
    ----------
    n_components : int, default=32
        PCA dimensions (at most the number of training rows minus one).
    quantile : float, default=0.975
        Cross-fitted training-score quantile used as ``threshold_``.
    cv : int, default=5
        Folds of the cross-fitting (grouped when ``fit`` gets ``groups``; fewer on
        fewer than ``2 * cv`` rows).

    Attributes
    ----------
    threshold_ : float
        Scores above it are out of distribution.
    training_scores_ : ndarray
        The cross-fitted scores of the training rows (the threshold's sample).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> model = DistributionModel(n_components=4).fit(rng.normal(size=(200, 10)))
    >>> model.predict(np.vstack([rng.normal(size=(1, 10)), np.full((1, 10), 8.0)])).tolist()
    [True, False]
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "quantile": [Interval(Real, 0.5, 1, closed="right")],
        "cv": [Interval(Integral, 2, None, closed="left")],
    }

    def __init__(self, n_components: int = 32, quantile: float = 0.975, cv: int = 5):
        self.n_components = n_components
        self.quantile = quantile
        self.cv = cv

    def fit(self, X, y=None, groups=None) -> DistributionModel:
        """Describe the training rows ``X``; ``groups`` (e.g. patients) keep cross-fitting honest."""
        self._validate_params()
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=4)
        scores = np.empty(len(X))
        for train, test in self._splits(X, groups):
            scores[test] = _score(_describe(X[train], self.n_components), X[test])
        self.training_scores_ = scores
        self.threshold_ = float(np.quantile(scores, self.quantile))
        self.model_ = _describe(X, self.n_components)
        return self

    def _splits(self, X, groups):
        # fewer folds on a small training set, never fewer than two rows per fold
        k = max(2, min(self.cv, len(X) // 2))
        if groups is not None and len(np.unique(groups)) >= k:
            return GroupKFold(k).split(X, groups=groups)
        return KFold(k, shuffle=True, random_state=0).split(X)

    def score_samples(self, X) -> np.ndarray:
        """The out-of-distribution score of each row (higher: more unlike the training rows)."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype=np.float64, reset=False, ensure_all_finite=False)
        return _score(self.model_, X)

    def predict(self, X) -> np.ndarray:
        """``True`` for rows in distribution (score at most ``threshold_``)."""
        return self.score_samples(X) <= self.threshold_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # rows with NaN score as out of distribution
        return tags


def _describe(X: np.ndarray, n_components: int) -> dict:
    scaler = StandardScaler().fit(X)
    Z = np.nan_to_num(scaler.transform(X))
    k = max(1, min(n_components, len(X) - 1, X.shape[1]))
    pca = PCA(n_components=k, svd_solver="full" if min(Z.shape) <= 500 else "randomized", random_state=0).fit(Z)
    T = pca.transform(Z)
    cov = LedoitWolf().fit(T)
    residual = _residual(pca, Z, T)
    # Q in units of its training median: T² of k dimensions is about k, so is Q / q * k
    q_scale = max(float(np.median(residual)), 1e-12) / k
    return {"scaler": scaler, "pca": pca, "cov": cov, "q_scale": q_scale}


def _residual(pca: PCA, Z: np.ndarray, T: np.ndarray) -> np.ndarray:
    return np.sum((Z - pca.inverse_transform(T)) ** 2, axis=1)


def _score(model: dict, X: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(X).all(axis=1)
    Z = np.nan_to_num(model["scaler"].transform(np.where(np.isfinite(X), X, 0.0)))
    T = model["pca"].transform(Z)
    t2 = model["cov"].mahalanobis(T)
    q = _residual(model["pca"], Z, T) / model["q_scale"]
    score = np.sqrt(t2 + q)
    score[bad] = np.inf
    return score
