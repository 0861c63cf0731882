"""Shared scikit-learn plumbing of the image transformers."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted


class ImageTransformer(TransformerMixin, BaseEstimator):
    """Base of transformers whose input is a list of images, not a 2-D feature array."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags


class StatelessImageTransformer(ImageTransformer):
    """Base of image steps that learn nothing.

    ``fit`` validates the parameters against ``_parameter_constraints`` (scikit-learn's
    own checks, so a bad value fails in ``fit``, never in ``__init__``) and returns
    ``self``; ``transform`` works without it (the ``requires_fit`` tag is False).
    """

    _parameter_constraints: dict = {}

    def fit(self, X, y=None):
        self._validate_params()
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


class ImageFeatures(ImageTransformer):
    """Base of transformers that turn images into named feature columns (``feature_names_``)."""

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return self.feature_names_.copy()
