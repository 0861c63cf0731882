"""Arrays of pixels (grey, grey + alpha, RGB, RGBA; any numeric dtype) to one grey float image."""

from __future__ import annotations

import numpy as np

from ._scan import EmptyImageError, ImageShapeError, NotAnImageError, Scan, _Limits

# Rec. 601 luma, as in Pillow's RGB->L conversion and the Y of JPEG's YCbCr.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _array_scan(arr: np.ndarray, name: str, limits: _Limits) -> Scan:
    """A :class:`Scan` of an array of pixels (grey, grey + alpha, RGB or RGBA)."""
    grey = _array_to_grey(arr, name, limits)
    return Scan(grey, chroma=_chroma(arr) if arr.ndim == 3 and arr.shape[2] >= 3 else 0.0)


def _chroma(rgb: np.ndarray, step: int = 4) -> float:
    """Share of pixels whose colour channels spread over more than a tenth of the scale."""
    a = np.asarray(rgb)[::step, ::step, :3]
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    if a.dtype.kind == "f":
        scale = max(1.0, float(np.nanmax(np.abs(a)))) if a.size else 1.0
    elif a.dtype.itemsize == 1:
        scale = 255.0
    else:
        scale = float(max(1, int(a.max()))) if a.size else 1.0
    return coloured_share(*(a[..., k].astype(np.float32) for k in range(3)), scale=scale)


def coloured_share(r: np.ndarray, g: np.ndarray, b: np.ndarray, *, scale: float) -> float:
    """Share of pixels whose channels ``max - min`` exceeds a tenth of ``scale`` (planes, not a
    length-3 axis: reducing that is several times slower)."""
    spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    return float((spread > 0.1 * scale).mean()) if spread.size else 0.0


def _array_to_grey(arr: np.ndarray, name: str, limits: _Limits) -> np.ndarray:
    """Validate an array and reduce it to a new 2-D float32 image in [0, 1]."""
    if arr.size == 0:
        raise EmptyImageError(f"{name}: image has no pixels (shape {arr.shape})")
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise NotAnImageError(f"{name}: array dtype {arr.dtype} is not a numeric image type")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3):
        raise ImageShapeError(f"{name}: expected a (h, w) or (h, w, channels) image, got shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] > 4:
        raise ImageShapeError(f"{name}: {arr.shape[2]} channels (shape {arr.shape}); at most 4 are supported")
    limits.check(arr.shape[0], arr.shape[1], name)

    alpha, exact = None, False
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        alpha = _alpha(arr[:, :, -1])
        arr = arr[:, :, :-1]
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
    if kind == "b":
        grey = arr.astype(np.float32)
        if grey.ndim == 3:
            grey = grey @ _LUMA
    elif kind == "f":
        grey = arr.astype(np.float32)  # always a copy: never alias the caller's array
        if not np.isfinite(grey).all():
            raise NotAnImageError(f"{name}: image contains NaN or infinite values")
        if grey.ndim == 3:
            grey = grey @ _LUMA
        lo, hi = float(grey.min()), float(grey.max())
        if lo < 0.0 or hi > 1.0:
            grey = _minmax(grey, lo, hi)
    else:
        grey = arr.astype(np.float32) @ _LUMA if arr.ndim == 3 else None
        lo_val = int(arr.min()) if kind == "i" else 0
        if lo_val < 0:
            grey = arr.astype(np.float32) if grey is None else grey
            grey = _minmax(grey, float(grey.min()), float(grey.max()))
        else:
            # 8 bits: 255 whatever the maximum, so no pass to find it
            scale = np.float32(255 if arr.dtype.itemsize == 1 else _int_scale(arr.dtype, int(arr.max())))
            if grey is None:
                grey = np.divide(arr, scale, dtype=np.float32)  # one pass, no temp copy
                # non-negative integers over at least their maximum: in [0, 1] already
                exact = True
            else:
                grey /= scale
    if alpha is not None:
        grey *= alpha
    grey = np.ascontiguousarray(grey)
    if not exact:
        # Luma weights and rounding can step a hair outside [0, 1].
        np.clip(grey, 0.0, 1.0, out=grey)
    return grey


def _int_scale(dtype: np.dtype, max_value: int) -> int:
    """Divisor mapping a non-negative integer image to [0, 1] (see module docstring)."""
    if dtype.itemsize == 1:
        return 255
    bits = min(max(max_value.bit_length(), 8), dtype.itemsize * 8)
    return 2**bits - 1


def _alpha(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        return np.clip(a, 0.0, 1.0).astype(np.float32)
    if a.dtype.kind == "b":
        return a.astype(np.float32)
    return np.divide(a, np.float32(np.iinfo(a.dtype).max), dtype=np.float32)


def _minmax(x: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scale float32 ``x`` in place so that [lo, hi] (default: its range) becomes [0, 1]."""
    lo = float(x.min()) if lo is None else float(lo)
    hi = float(x.max()) if hi is None else float(hi)
    if not x.flags.writeable or x.dtype != np.float32:
        x = x.astype(np.float32)
    if hi <= lo:
        x[...] = 0.0  # constant image: nothing to stretch
        return x
    x -= np.float32(lo)
    x *= np.float32(1.0 / (hi - lo))
    return x
