"""Experimental feature blocks evaluated by ``mammo train --extra-blocks``.

They follow the same contract as the core blocks (stateless transformers on
:class:`~mammo.features.region.Mammogram` crops, ``get_feature_names_out``) so they can
be appended to a task pipeline's FeatureUnion and saved in a
:class:`~mammo.classifiers.MammogramModel`. Each is listed, with an empty set of
feature sets, in the block registry (:mod:`mammo.features.blocks`).
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from skimage.filters import threshold_otsu
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .region import as_mammogram

__all__ = ["IntensityFeatures"]


class IntensityFeatures(TransformerMixin, BaseEstimator):
    """Transformer: grey-level distribution inside the breast mask (a proxy for dense-tissue share).

    Breast density is the share of fibroglandular (bright) tissue, which texture
    statistics capture only indirectly. Per image: a normalised histogram of the
    breast pixels, percentiles, mean, std, skewness, kurtosis, and the fraction of
    breast pixels above Otsu's threshold (bright tissue share) and above fixed levels.

    Parameters
    ----------
    bins : int, default=16
        Histogram bins over [0, 1].
    percentiles : tuple of float, default=(5, 25, 50, 75, 95)
    levels : tuple of float, default=(0.4, 0.55, 0.7)
        Grey levels whose exceedance fractions are reported.

    Examples
    --------
    >>> import numpy as np
    >>> IntensityFeatures(bins=4).fit_transform([np.random.default_rng(0).random((32, 32))]).shape
    (1, 17)
    """

    def __init__(self, bins=16, percentiles=(5, 25, 50, 75, 95), levels=(0.4, 0.55, 0.7)):
        self.bins = bins
        self.percentiles = percentiles
        self.levels = levels

    def fit(self, X=None, y=None):
        if int(self.bins) < 2:
            raise ValueError(f"bins must be >= 2, got {self.bins!r}")
        if any(not 0 <= p <= 100 for p in self.percentiles):
            raise ValueError(f"percentiles must be in [0, 100], got {self.percentiles!r}")
        if any(not 0 < v < 1 for v in self.levels):
            raise ValueError(f"levels must be in (0, 1), got {self.levels!r}")
        names = [f"int_hist{i}" for i in range(int(self.bins))] + [f"int_p{p:g}" for p in self.percentiles]
        names += ["int_mean", "int_std", "int_skew", "int_kurt", "int_otsu", "int_frac_otsu"]
        names += [f"int_frac_{v:g}" for v in self.levels]
        self.feature_names_ = np.asarray(names, dtype=object)
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        out = np.empty((len(X), len(self.feature_names_)), dtype=np.float32)
        for i, x in enumerate(X):
            out[i] = self._features(as_mammogram(x))
        return out

    def _features(self, m) -> np.ndarray:
        v = np.asarray(m.pixels, dtype=np.float32)[m.mask]
        if v.size < 2:
            v = np.asarray(m.pixels, dtype=np.float32).ravel()
        hist = np.histogram(np.clip(v, 0, 1), bins=int(self.bins), range=(0.0, 1.0))[0] / max(v.size, 1)
        thr = threshold_otsu(v) if np.ptp(v) > 0 else float(v.mean())
        with np.errstate(all="ignore"):
            moments = [v.mean(), v.std(), np.nan_to_num(stats.skew(v)), np.nan_to_num(stats.kurtosis(v))]
        return np.concatenate(
            [
                hist,
                np.percentile(v, self.percentiles),
                moments,
                [thr, np.mean(v > thr)],
                [np.mean(v > lv) for lv in self.levels],
            ]
        ).astype(np.float32)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return self.feature_names_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags


def __getattr__(name: str):
    # EXTRA_BLOCKS and make_extra_block moved to the block registry; imported lazily
    # because the registry imports this module.
    if name in ("EXTRA_BLOCKS", "make_extra_block"):
        from . import blocks

        return getattr(blocks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
