"""Synthetic mammograms and DPhi-style augmented copies with their true groups."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _structured_tissue(rng: np.random.Generator, shape: tuple[int, int], side: str) -> np.ndarray:
    """Tissue with structure at several scales and a few bright lobules, in [0.25, 0.85]."""
    from scipy.ndimage import gaussian_filter

    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    if side != "left":
        xx = xx.max() - xx
    tex = sum(gaussian_filter(rng.standard_normal(shape), s) * s for s in (1.5, 4, 10))
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    for _ in range(4):
        y0, x0, r = rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.5), rng.uniform(0.02, 0.06)
        tex += 0.4 * np.exp(-(((yy - y0) ** 2 + (xx - x0) ** 2) / r**2))
    return 0.25 + 0.6 * tex / tex.max()


def synthetic_mammogram(
    rng: np.random.Generator,
    density: int = 2,
    tumour: int = 0,
    shape: tuple[int, int] = (192, 160),
    side: str = "left",
    inverted: bool = False,
    *,
    structure: bool = False,
    film_label: bool = True,
    uint8: bool = False,
) -> np.ndarray:
    """A grey image that looks enough like a mammogram to exercise every step.

    A bright half-ellipse breast against the chest wall on ``side``, textured noise
    whose brightness and fraction of dense blobs grow with ``density`` (1-4), a small
    bright blob (a mass) when ``tumour``, and, with ``film_label``, a bright label in a
    background corner that segmentation must drop. ``inverted`` gives a white
    background, as on some scanners. With ``structure`` the tissue has structure at
    several scales and a few bright lobules instead of noise and blobs, unique to each
    draw: what keypoint matching needs to recognise an original after augmentation
    (the duplicate-grouping tests).

    Returns
    -------
    ndarray, shape ``shape``
        float32 in [0, 1], or uint8 (0-255) with ``uint8``, e.g. to save as PNG.
    """
    from scipy.ndimage import gaussian_filter

    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    cx = 0 if side == "left" else w - 1
    breast = ((rows - h / 2) / (0.42 * h)) ** 2 + ((cols - cx) / (0.7 * w)) ** 2 <= 1
    img = np.full(shape, 0.03, np.float32)
    if structure:
        # on a flat background: with pixel noise there, copies of one original
        # matched with far fewer keypoints
        tissue = _structured_tissue(rng, shape, side) + 0.05 * (density - 2)
    else:
        img += rng.normal(0, 0.01, shape).astype(np.float32)
        tissue = 0.35 + 0.08 * density + 0.05 * rng.standard_normal(shape)
        blobs = rng.random(shape) < 0.01 * density
        tissue = tissue + 0.25 * np.minimum(1, gaussian_filter(blobs.astype(np.float32), 3) * 8)
    img[breast] = tissue[breast]
    if tumour:
        r0, c0 = int(h * rng.uniform(0.35, 0.65)), int(abs(cx - w * rng.uniform(0.2, 0.4)))
        spot = ((rows - r0) ** 2 + (cols - c0) ** 2) < (0.05 * h) ** 2
        img[spot & breast] = 0.95
    if film_label:
        img[4:14, w - 24 if side == "left" else 8 : w - 8 if side == "left" else 24] = 1.0
    img = np.clip(img, 0, 1)
    img = 1 - img if inverted else img
    return (img * 255).astype(np.uint8) if uint8 else img


def augment_like_dphi(
    image: np.ndarray, rng: np.random.Generator, *, size: int = 224, enhanced: bool | None = None
) -> np.ndarray:
    """One DPhi-style augmented copy of a grey image, for building ground truth.

    Resize to ``size`` x ``size``, rotate by any angle with black fill, random
    horizontal/vertical flips, zoom 1.0-1.3 (centre crop), shift up to 10 % with black
    fill, and (with probability 1/2 unless ``enhanced`` is given) a CLAHE-enhanced
    rendering instead of the plain one.
    """
    from skimage.exposure import equalize_adapthist
    from skimage.transform import AffineTransform, resize, rotate, warp

    im = resize(np.asarray(image, dtype=np.float32), (size, size), anti_aliasing=True, preserve_range=True)
    if enhanced if enhanced is not None else rng.random() < 0.5:
        im = equalize_adapthist(np.clip(im, 0, 1), clip_limit=0.02)
    im = rotate(im, rng.uniform(0, 360), resize=False, mode="constant", cval=0.0, order=1)
    if rng.random() < 0.5:
        im = im[:, ::-1]
    if rng.random() < 0.5:
        im = im[::-1]
    zoom = rng.uniform(1.0, 1.3)
    shift = rng.uniform(-0.1, 0.1, size=2) * size
    c = size / 2
    # output pixel -> input pixel: scale about the centre, then shift
    tf = (
        AffineTransform(translation=(-c, -c))
        + AffineTransform(scale=1 / zoom)
        + AffineTransform(translation=(c + shift[0], c + shift[1]))
    )
    im = warp(np.ascontiguousarray(im), tf, mode="constant", cval=0.0, order=1)
    return np.clip(im, 0, 1).astype(np.float32)


def simulate_copies(
    images: Sequence[np.ndarray], n_copies: int, *, seed: int = 0, size: int = 224
) -> tuple[list[np.ndarray], np.ndarray]:
    """``n_copies`` DPhi-style augmented copies of each image, with the true groups."""
    rng = np.random.default_rng(seed)
    out, truth = [], []
    for k, im in enumerate(images):
        for c in range(n_copies):
            out.append(augment_like_dphi(im, rng, size=size, enhanced=bool(c % 2)))
            truth.append(k)
    return out, np.array(truth)
