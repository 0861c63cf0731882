"""Frozen ImageNet MobileNetV2 embedding (Keras, ``include_top=False``, average pooling).

With ``layers="multi"`` the embedding also pools five intermediate layers (mean
and standard deviation over positions): mid-level filters describe texture,
which is what density is; they scored higher in grouped CV on all three data sets
(docs/results.md).

The Keras model is heavy, so it is built lazily on first use, shared by every
:class:`CNNEmbedding` in the process with the same weights and input size,
never pickled, and rebuilt after ``joblib.load``.

On CPU, ONNX Runtime runs the same network about 1.7x faster than Keras
(measured in ``benchmarks/bench_pipeline.py``; embeddings agree to < 1e-4), so
with ``backend="auto"`` the Keras model is converted once with tf2onnx, cached
on disk, and run with ONNX Runtime when both are installed.
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..storage import (
    cache_root as cache_dir,  # re-exported: the root moved to mammo.storage
)
from ._base import ImageFeatures
from .backbone import (  # re-exported: the network moved to .backbone
    BACKENDS,
    FINETUNE_CUT,
    LAYER_SETS,
    MULTI_LAYERS,
    N_FEATURES,
    WEIGHTS_FILENAME,
    WeightsUnavailableError,
    _feature_names,
    build_backbone,
    cut_output,
    imagenet_filename,
    load_backbone,
    load_runner,
    load_trunk,
    n_features,
    resolve_weights,
    weights_sha256,
)
from .region import as_mammogram, resize_image

__all__ = [
    "BACKENDS",
    "LAYER_SETS",
    "MULTI_LAYERS",
    "N_FEATURES",
    "FINETUNE_CUT",
    "WEIGHTS_FILENAME",
    "WeightsUnavailableError",
    "CNNActivations",
    "CNNEmbedding",
    "build_backbone",
    "cache_dir",
    "cnn_input",
    "cut_output",
    "imagenet_filename",
    "load_backbone",
    "load_runner",
    "load_trunk",
    "n_features",
    "resolve_weights",
    "weights_sha256",
]


def cnn_input(image, size: int) -> np.ndarray:
    """One image as the square ``size`` float32 array in [0, 1] that the CNN sees.

    The breast crop is padded to a square, so its shape is not distorted, then resized.
    """
    pixels = as_mammogram(image).pixels
    h, w = pixels.shape
    side = max(h, w)
    if h != w:  # pad on the nipple side / bottom: the chest wall stays left
        pixels = np.pad(pixels, ((0, side - h), (0, side - w)))
    if side != size:
        pixels = resize_image(pixels, (size, size))
    return pixels


class _MobileNetV2Features(ImageFeatures):
    """What both MobileNetV2 transformers take and do: ``weights``, ``input_size`` and
    ``batch_size`` (checked at fit), the weights' sha256, and :func:`cnn_input` in batches."""

    def __init__(self, weights="imagenet", input_size=224, batch_size=32):
        self.weights = weights
        self.input_size = input_size
        self.batch_size = batch_size

    def _check_params(self) -> None:
        if not isinstance(self.weights, (str, os.PathLike)):
            raise ValueError(f"weights must be 'imagenet' or a file path, got {self.weights!r}")
        if not 32 <= int(self.input_size) <= 1024:
            raise ValueError(f"input_size must be in [32, 1024], got {self.input_size!r}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")

    def _hash_weights(self) -> None:
        self.weights_sha256_ = weights_sha256(str(self.weights), int(self.input_size))

    def _input_batches(self, X):
        """(start, stacked :func:`cnn_input` arrays) for each batch of ``X``."""
        size, batch = int(self.input_size), int(self.batch_size)
        for start in range(0, len(X), batch):
            yield start, np.stack([cnn_input(x, size) for x in X[start : start + batch]])


def _to_rgb(grey: np.ndarray) -> np.ndarray:
    # mobilenet_v2.preprocess_input maps [0, 255] to [-1, 1]; do it directly.
    return np.repeat((grey * 2.0 - 1.0)[..., None], 3, axis=-1).astype(np.float32, copy=False)


class CNNEmbedding(_MobileNetV2Features):
    """Transformer: images -> frozen MobileNetV2 embedding (1280-d, or 5792-d with ``layers="multi"``).

    Each breast crop is padded to a square (so its shape is not distorted),
    resized to ``input_size`` and fed, grey replicated to RGB, through
    ImageNet MobileNetV2 with global average pooling.

    Parameters
    ----------
    weights : str, default="imagenet"
        ``"imagenet"`` (Keras' cache or download) or the path of an H5 file.
    input_size : int, default=224
        Side of the square CNN input.
    batch_size : int, default=32
        Images per forward pass.
    flip_tta : bool, default=False
        Also embed the vertically mirrored image and average (test-time
        augmentation; doubles the CNN work).
    backend : {"auto", "onnx", "keras"}, default="auto"
        Runtime for the forward pass; "auto" prefers ONNX Runtime when
        installed (same network and weights, faster on CPU).
    layers : {"last", "multi"}, default="last"
        "last": the final 1280-channel map, average-pooled. "multi": also the
        mean and standard deviation over positions of the five intermediate
        layers in :data:`MULTI_LAYERS` (5792 features; the same forward pass).

    Attributes
    ----------
    weights_sha256_ : str or None
        sha256 of the weights file used at fit time.
    feature_names_ : ndarray of str

    Examples
    --------
    >>> import numpy as np  # doctest: +SKIP
    >>> CNNEmbedding().fit_transform([np.zeros((64, 64))]).shape  # doctest: +SKIP
    (1, 1280)
    """

    def __init__(
        self, weights="imagenet", input_size=224, batch_size=32, flip_tta=False, backend="auto", layers="last"
    ):
        super().__init__(weights, input_size, batch_size)
        self.flip_tta = flip_tta
        self.backend = backend
        self.layers = layers

    def fit(self, X=None, y=None):
        self._check_params()
        load_runner(str(self.weights), int(self.input_size), self.backend, self.layers)  # fail early; fills the caches
        self._hash_weights()
        self.feature_names_ = np.asarray(_feature_names(self.layers), dtype=object)
        return self

    def __setstate__(self, state):
        # artifacts saved before ``layers`` existed used the final layer only
        state.setdefault("layers", "last")
        super().__setstate__(state)

    def to_input(self, image) -> np.ndarray:
        """One image as a square ``input_size`` float32 array in [0, 1] (:func:`cnn_input`)."""
        return cnn_input(image, int(self.input_size))

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        runner = load_runner(str(self.weights), int(self.input_size), self.backend, self.layers)
        out = np.empty((len(X), len(self.feature_names_)), dtype=np.float32)
        for start, grey in self._input_batches(X):
            out[start : start + len(grey)] = self._embed(runner, grey)
        return out

    def _embed(self, runner, grey: np.ndarray) -> np.ndarray:
        rgb = _to_rgb(grey)
        if self.flip_tta:
            rgb = np.concatenate([rgb, rgb[:, ::-1]])
        emb = runner(rgb)
        if self.flip_tta:
            emb = 0.5 * (emb[: len(grey)] + emb[len(grey) :])
        return emb


class CNNActivations(_MobileNetV2Features):
    """Transformer: images -> frozen MobileNetV2 activation map at layer ``cut``, flattened.

    The input of partial fine-tuning (:mod:`mammo.classifiers.finetune`): the frozen
    part of the network runs once per image (and can be cached on disk), the
    retrained blocks after ``cut`` once per training epoch. Images are prepared
    as for :class:`CNNEmbedding` (:func:`cnn_input`). Always run with Keras.

    Parameters
    ----------
    weights, input_size, batch_size
        As for :class:`CNNEmbedding`.
    cut : str, default=FINETUNE_CUT
        Name of the MobileNetV2 layer whose output is returned.

    Attributes
    ----------
    map_shape_ : tuple of int
        (height, width, channels) of one image's map; rows are it flattened.
    weights_sha256_ : str or None
        sha256 of the weights file used at fit time.

    Notes
    -----
    Returns float16: ``block_12_add`` is 18,816 values per image at 224 px (37 KB),
    and half precision is ample for inputs that are trained on.
    """

    def __init__(self, weights="imagenet", input_size=224, cut=FINETUNE_CUT, batch_size=32):
        super().__init__(weights, input_size, batch_size)
        self.cut = cut

    def fit(self, X=None, y=None):
        self._check_params()
        trunk = load_trunk(str(self.weights), int(self.input_size), self.cut)
        self.map_shape_ = tuple(int(d) for d in trunk.output.shape[1:])
        self._hash_weights()
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """``<cut>_<row>_<column>_<channel>``, in the flattened (row-major) order."""
        check_is_fitted(self, "map_shape_")
        h, w, c = self.map_shape_
        return np.asarray(
            [f"{self.cut}_{i}_{j}_{k}" for i in range(h) for j in range(w) for k in range(c)], dtype=object
        )

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "map_shape_")
        trunk = load_trunk(str(self.weights), int(self.input_size), self.cut)
        out = np.empty((len(X), int(np.prod(self.map_shape_))), dtype=np.float16)
        for start, grey in self._input_batches(X):
            maps = np.asarray(trunk(_to_rgb(grey), training=False))
            out[start : start + len(grey)] = maps.reshape(len(grey), -1)
        return out
