"""Contrast enhancement: CLAHE followed by an unsharp mask.

The seed project sharpened and stretched contrast globally; CLAHE adapts the
stretch to local tissue so that both fatty and dense regions keep detail, and
the unsharp mask brings out edges of masses and calcifications.
"""

from __future__ import annotations

from dataclasses import replace
from numbers import Integral, Real

import numpy as np
from skimage.exposure import equalize_adapthist
from skimage.filters import unsharp_mask
from sklearn.utils._param_validation import Interval

from ._base import StatelessImageTransformer
from .region import Mammogram, as_mammogram

__all__ = ["enhance", "Enhancer"]


def enhance(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    clip_limit: float = 0.01,
    kernel_size: int | None = None,
    unsharp_radius: float = 2.0,
    unsharp_amount: float = 1.0,
) -> np.ndarray:
    """Enhance a grey image in [0, 1]; the result is in [0, 1] too.

    Parameters
    ----------
    image : ndarray of shape (h, w)
    mask : bool ndarray of shape (h, w), optional
        Pixels outside it are set to 0 after enhancement so CLAHE's lift of
        background noise does not show.
    clip_limit : float
        CLAHE clip limit (0 disables CLAHE).
    kernel_size : int or None
        CLAHE tile size in pixels; None means 1/8 of each side.
    unsharp_radius, unsharp_amount : float
        Gaussian sigma and strength of the unsharp mask (amount 0 disables it).
    """
    out = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if clip_limit > 0:
        out = equalize_adapthist(out, kernel_size=kernel_size, clip_limit=clip_limit).astype(np.float32)
    if unsharp_amount > 0:
        out = unsharp_mask(out, radius=unsharp_radius, amount=unsharp_amount, preserve_range=True)
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
    if mask is not None:
        out[~mask] = 0.0
    return out


class Enhancer(StatelessImageTransformer):
    """Transformer: CLAHE + unsharp mask on each :class:`Mammogram` (or grey array).

    Parameters
    ----------
    clip_limit : float, default=0.01
    kernel_size : int or None, default=None
    unsharp_radius : float, default=2.0
    unsharp_amount : float, default=1.0
        See :func:`enhance`.

    Examples
    --------
    >>> import numpy as np
    >>> out = Enhancer().fit_transform([np.random.default_rng(0).random((64, 64))])
    >>> out[0].pixels.dtype, float(out[0].pixels.max()) <= 1.0
    (dtype('float32'), True)
    """

    _parameter_constraints: dict = {
        "clip_limit": [Interval(Real, 0, 1, closed="both")],
        "kernel_size": [Interval(Integral, 1, None, closed="left"), None],
        "unsharp_radius": [Interval(Real, 0, None, closed="neither")],
        "unsharp_amount": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, clip_limit=0.01, kernel_size=None, unsharp_radius=2.0, unsharp_amount=1.0):
        self.clip_limit = clip_limit
        self.kernel_size = kernel_size
        self.unsharp_radius = unsharp_radius
        self.unsharp_amount = unsharp_amount

    def transform(self, X) -> list[Mammogram]:
        out = []
        for x in X:
            m = as_mammogram(x)
            pixels = enhance(
                m.pixels,
                m.mask,
                clip_limit=self.clip_limit,
                kernel_size=self.kernel_size,
                unsharp_radius=self.unsharp_radius,
                unsharp_amount=self.unsharp_amount,
            )
            out.append(replace(m, pixels=pixels))  # mask, flip, segmentation and source kept
        return out
