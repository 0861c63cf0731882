"""Stage 1: one keypoint signature per image, robust to the DPhi augmentations.

CLAHE maps the plain and the contrast-enhanced rendering to nearly the same local
contrast; SIFT keypoints are restricted to the eroded tissue mask (so the straight
edges of rotation fill and frame never match) and taken for the image and its mirror
image (the mirror's descriptors are a permutation of the image's, so SIFT runs once).
SIFT is invariant to rotation and scale, and its gradient-orientation histograms to
monotone contrast changes; the mirror copy makes the match invariant to flips.

Signatures are cached per image under ``<cache>/<SIGNATURE_VERSION>/``, keyed by
:func:`signature_key`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..storage import SIGNATURE_VERSION, atomic_open, content_sha256, json_sha256

__all__ = [
    "MIRROR",
    "Signature",
    "image_signature",
    "mirror_x",
    "read_grey",
    "signature_key",
    "signature_parts",
    "signatures",
    "to_uint8",
]

_N_DESC = 128
_FILL_LEVEL = 4  # uint8 grey level below which a pixel is rotation/shift fill


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A 2-D uint8 grey image: RGB averaged, floats outside [0, 1] rescaled to their range."""
    a = np.asarray(image)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {np.shape(image)}")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    a = a.astype(np.float32)
    if a.size and (a.min() < 0 or a.max() > 1):
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.ascontiguousarray(np.round(a * 255).astype(np.uint8))


class Signature(NamedTuple):
    """One image's keypoints, unmirrored only: its mirror image's are derived (:data:`MIRROR`)."""

    xy: np.ndarray  # (n, 2) float32, keypoint positions in the resized image
    desc: np.ndarray  # (n, 128) uint8, SIFT descriptors (OpenCV's values are integers 0..255)
    width: int  # of the resized image: a mirrored keypoint sits at x' = width - 0.5 - x (see mirror_x)


def _mirror_permutation() -> np.ndarray:
    # OpenCV lays a SIFT descriptor out as 4 x 4 spatial cells (rows and columns of the
    # keypoint's rotated frame) x 8 orientation bins relative to the keypoint angle.
    # Mirroring the image mirrors that frame across its orientation axis: cell row r
    # becomes 3 - r, the column stays, relative orientation bin o becomes -o (mod 8).
    # Checked against SIFT run on a mirrored DPhi image: keypoints found at mirrored
    # positions had identical descriptors.
    cells = np.arange(128).reshape(4, 4, 8)
    return cells[::-1][:, :, (-np.arange(8)) % 8].ravel()


MIRROR = _mirror_permutation()


def signature_parts(
    image: np.ndarray, size: int = 224, n_features: int = 300, clahe_clip: float = 8.0, erode: int = 7
) -> Signature:
    """The work of :func:`image_signature` (same parameters and defaults), compact."""
    import cv2

    cv2.setNumThreads(1)
    im = to_uint8(image)
    h, w = im.shape
    scale = size / max(h, w)
    if scale != 1:
        im = cv2.resize(im, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    empty = Signature(np.zeros((0, 2), np.float32), np.zeros((0, _N_DESC), np.uint8), im.shape[1])
    if im.max() == im.min():
        return empty
    t, _ = cv2.threshold(im, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = im > t
    lower = im[(im > _FILL_LEVEL) & ~mask]
    if lower.size and lower.mean() > 0.5 * im[mask].mean():
        # no dark background in view (a zoomed copy filled with tissue): Otsu would split
        # the tissue itself, so only the black fill is left out
        mask = im > _FILL_LEVEL
    mask = cv2.erode(mask.astype(np.uint8), np.ones((erode, erode), np.uint8))
    im = cv2.createCLAHE(clipLimit=clahe_clip, tileGridSize=(8, 8)).apply(im)
    # one SIFT run: the mirror image's descriptors are a permutation of these, which
    # halves the cost of the signatures (the v2 signatures ran SIFT on the mirror too)
    kps, desc = cv2.SIFT_create(nfeatures=n_features).detectAndCompute(im, mask)
    if desc is None or not kps:
        return empty
    xy = np.array([k.pt for k in kps], np.float32)
    return Signature(xy, np.clip(np.round(desc), 0, 255).astype(np.uint8), im.shape[1])


def mirror_x(s: Signature) -> np.ndarray:
    """Keypoint positions in the mirror image."""
    # SIFT's 2x upsampled first octave puts keypoint coordinates a quarter pixel off
    # pixel centres, so the mirror of x is width - 0.5 - x (measured), not width - 1 - x
    return np.column_stack([s.width - 0.5 - s.xy[:, 0], s.xy[:, 1]]).astype(np.float32)


def _sig_rows(s: Signature) -> np.ndarray:
    """The (n, 131) array of :func:`image_signature`: the keypoints, then their mirror images."""
    mx = mirror_x(s)
    return np.vstack(
        [
            np.hstack([s.xy, np.zeros((len(s.xy), 1), np.float32), s.desc.astype(np.float32)]),
            np.hstack([mx, np.ones((len(s.xy), 1), np.float32), s.desc[:, MIRROR].astype(np.float32)]),
        ]
    ).astype(np.float32)


def image_signature(
    image: np.ndarray,
    *,
    size: int = 224,
    n_features: int = 300,
    clahe_clip: float = 8.0,
    erode: int = 7,
) -> np.ndarray:
    """Flip-, rotation-, scale- and contrast-robust keypoint signature of one image.

    Parameters
    ----------
    image : ndarray
        2-D grey image (float in [0, 1] or uint8; RGB is averaged).
    size : int
        The longer side is resized to ``size`` pixels first, so that images of any
        resolution are compared at one scale (DPhi images are 224 px).
    n_features : int
        Maximum number of SIFT keypoints (per orientation).
    clahe_clip : float
        CLAHE clip limit applied before detection.
    erode : int
        Keypoints are kept only this many pixels inside the tissue mask.

    Notes
    -----
    Keypoints are kept inside the Otsu tissue mask (eroded) when the image shows a dark
    background, else inside the non-black area. An inverted image (white background) is
    not flipped back: all its copies are inverted alike, which is all matching needs.
    SIFT runs once; the mirror image's keypoints are the same keypoints at mirrored
    positions with permuted descriptors. Most of them are exactly what SIFT finds on
    the mirrored image; the others sit differently on its pixel grid.

    Returns
    -------
    ndarray of float32, shape (n_keypoints, 131)
        Columns: x, y, mirrored (0 for the image, 1 for its left-right mirror, whose
        x is in mirrored coordinates), then the 128 SIFT descriptor values. Empty
        (0 rows) for a blank image.
    """
    return _sig_rows(signature_parts(image, size, n_features, clahe_clip, erode))


def read_grey(item: Any) -> np.ndarray:
    """A path read by :func:`mammo.features.io.read_image`; an array as it is."""
    if not isinstance(item, (str, os.PathLike)):
        return np.asarray(item)
    from mammo.features.io import read_image

    return read_image(item)


def signature_key(item: Any, params: dict) -> str:
    """Cache key of one image's signature: its content sha256, the signature parameters and version."""
    return json_sha256({"content": content_sha256(item), "params": params, "version": SIGNATURE_VERSION})


def _signature_cached(item: Any, key: str, cache: Path | None, params: dict) -> Signature:
    fn = cache / SIGNATURE_VERSION / key[:2] / f"{key}.npz" if cache is not None else None
    if fn is not None and fn.exists():
        try:
            with np.load(fn) as z:
                return Signature(z["xy"], z["desc"], int(z["width"]))
        except (OSError, ValueError, KeyError):
            pass  # a truncated cache file from an interrupted run: recompute
    sig = signature_parts(read_grey(item), **params)
    if fn is not None:
        with atomic_open(fn) as fh:
            np.savez(fh, xy=sig.xy, desc=sig.desc, width=sig.width)
    return sig


def signatures(
    items: Sequence[Any], keys: Sequence[str], cache: Path | None, params: dict, n_jobs: int, progress: bool
) -> list[Signature]:
    """The signature of each item (``keys`` from :func:`signature_key`), from the cache or computed."""
    from joblib import Parallel, delayed

    it: Iterable = zip(items, keys)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(items), desc="signatures", unit="img")
    if n_jobs == 1:
        return [_signature_cached(x, k, cache, params) for x, k in it]
    return Parallel(n_jobs=n_jobs, batch_size=32)(delayed(_signature_cached)(x, k, cache, params) for x, k in it)
