"""Breast region: polarity, segmentation, crop and laterality flip.

A mammogram is mostly background. Everything downstream (texture statistics,
the CNN thumbnail) is more informative when it sees only the breast, always
facing the same way, so this module finds the breast as the largest bright
connected component, drops what lies outside it (film labels, markers), crops
to it and flips it so that the chest wall is on the left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from ._base import ImageTransformer

__all__ = [
    "Mammogram",
    "as_mammogram",
    "is_inverted",
    "breast_mask",
    "crop_breast",
    "resize_image",
    "BreastCropper",
]


@dataclass
class Mammogram:
    """A grey mammogram and the mask of its breast.

    Attributes
    ----------
    pixels : ndarray of shape (h, w), float32 in [0, 1]
        Grey levels, dense tissue bright.
    mask : ndarray of shape (h, w), bool
        Breast pixels. All True when the breast has not been segmented.
    flipped : bool
        Whether the image was mirrored left-right to put the chest wall left.
    inverted : bool
        Whether the grey levels were inverted to undo a white background.
    bbox : tuple of 4 ints or None
        ``(row0, row1, col0, col1)`` of the crop in the source image.
    """

    pixels: np.ndarray
    mask: np.ndarray = field(default=None)
    flipped: bool = False
    inverted: bool = False
    bbox: tuple | None = None

    def __post_init__(self):
        if self.mask is None:
            self.mask = np.ones(self.pixels.shape, dtype=bool)


def as_mammogram(image) -> Mammogram:
    """Wrap a 2-D array as a :class:`Mammogram`; pass a Mammogram through."""
    if isinstance(image, Mammogram):
        return image
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(
            f"expected a 2-D grey image (read files with mammo.features.io), got shape {arr.shape}"
        )
    return Mammogram(arr)


def _border(image: np.ndarray, width: int) -> np.ndarray:
    return np.concatenate(
        [
            image[:width].ravel(),
            image[-width:].ravel(),
            image[:, :width].ravel(),
            image[:, -width:].ravel(),
        ]
    )


def is_inverted(image: np.ndarray) -> bool:
    """Whether a mammogram has a white background (and so dark dense tissue).

    The background fills most of a mammogram's border (the breast touches at
    most the chest-wall side), so a bright border median means an inverted
    image.
    """
    width = max(1, min(image.shape) // 50)
    return bool(np.median(_border(image, width)) > 0.5)


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a float image to ``shape`` (rows, cols) with Pillow's area-aware bilinear filter.

    Pillow's C resampler is an order of magnitude faster than
    :func:`skimage.transform.resize` with anti-aliasing, and widens its
    kernel when shrinking, so it does not alias either.
    """
    if image.shape == tuple(shape):
        return np.asarray(image, dtype=np.float32)
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32))
    return np.asarray(pil.resize((int(shape[1]), int(shape[0])), Image.BILINEAR), dtype=np.float32)


def _downsample(image: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    step = max(1, int(np.ceil(max(image.shape) / max_side)))
    return image[::step, ::step], step


def breast_mask(image: np.ndarray, *, opening: int = 2) -> np.ndarray:
    """Boolean mask of the breast: threshold, opening, largest component, holes filled.

    The threshold sits 40% of the way from the background level (the border
    median) and Otsu's threshold, so that the faint fatty tissue near the skin
    line stays inside the mask while film noise stays out.
    """
    small, step = _downsample(image, 160)
    small = ndi.uniform_filter(small, 3)
    background = float(np.median(_border(small, max(1, min(small.shape) // 50))))
    try:
        otsu = float(threshold_otsu(small))
    except ValueError:  # constant image
        otsu = background
    if otsu <= background:
        return np.ones(image.shape, dtype=bool)
    fg = small > background + 0.4 * (otsu - background)
    if opening:
        fg = ndi.binary_opening(fg, iterations=opening)
    labels, n = ndi.label(fg)
    if n == 0:
        return np.ones(image.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask_small = ndi.binary_fill_holes(labels == sizes.argmax())
    if step == 1:
        return mask_small
    # Nearest-neighbour upsampling back to the source grid.
    rows = np.minimum(np.arange(image.shape[0]) // step, mask_small.shape[0] - 1)
    cols = np.minimum(np.arange(image.shape[1]) // step, mask_small.shape[1] - 1)
    return mask_small[np.ix_(rows, cols)]


def crop_breast(
    image: np.ndarray,
    *,
    size: int | None = 256,
    crop: bool = True,
    flip: bool = True,
    fix_polarity: bool = True,
    margin: float = 0.02,
) -> Mammogram:
    """Find, crop, flip and resize the breast of one grey mammogram.

    Parameters
    ----------
    image : ndarray of shape (h, w)
        Grey image in [0, 1], as returned by :func:`mammo.features.io.read_image`.
    size : int or None
        Longer side of the output in pixels (aspect ratio kept); None keeps
        the source resolution.
    crop : bool
        Crop to the breast's bounding box and blank everything outside the mask.
    flip : bool
        Mirror images whose chest wall is on the right.
    fix_polarity : bool
        Invert images with a white background.
    margin : float
        Extra border around the bounding box, as a fraction of its size.

    Returns
    -------
    Mammogram
    """
    image = np.asarray(image, dtype=np.float32)
    inverted = bool(fix_polarity and is_inverted(image))
    if inverted:
        image = 1.0 - image
    bbox = (0, image.shape[0], 0, image.shape[1])
    if crop:
        mask = breast_mask(image)
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        pad_r = int(margin * (rows[-1] - rows[0] + 1))
        pad_c = int(margin * (cols[-1] - cols[0] + 1))
        bbox = (
            max(0, rows[0] - pad_r),
            min(image.shape[0], rows[-1] + 1 + pad_r),
            max(0, cols[0] - pad_c),
            min(image.shape[1], cols[-1] + 1 + pad_c),
        )
        r0, r1, c0, c1 = bbox
        image = np.where(mask, image, 0.0)[r0:r1, c0:c1]
        mask = mask[r0:r1, c0:c1]
    else:
        mask = np.ones(image.shape, dtype=bool)
    flipped = False
    if flip:
        half = mask.shape[1] // 2
        # The chest wall side carries more breast area than the nipple side.
        if mask[:, half:].sum() > mask[:, :half].sum():
            image, mask, flipped = image[:, ::-1], mask[:, ::-1], True
    if size is not None and max(image.shape) != size:
        scale = size / max(image.shape)
        shape = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
        image = resize_image(image, shape)
        mask = resize_image(mask.astype(np.float32), shape) > 0.5
    return Mammogram(
        np.ascontiguousarray(image, dtype=np.float32),
        np.ascontiguousarray(mask),
        flipped=flipped,
        inverted=inverted,
        bbox=tuple(int(v) for v in bbox),
    )


class BreastCropper(ImageTransformer):
    """Transformer: grey images -> :class:`Mammogram` crops of the breast.

    Parameters
    ----------
    size : int or None, default=256
        Longer side of the working resolution in pixels.
    crop, flip, fix_polarity : bool, default=True
        See :func:`crop_breast`.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((100, 80), np.float32); img[20:80, :40] = 0.6
    >>> m = BreastCropper(size=64).fit_transform([img])[0]
    >>> m.pixels.shape, m.flipped
    ((64, 43), False)
    """

    def __init__(self, size=256, crop=True, flip=True, fix_polarity=True):
        self.size = size
        self.crop = crop
        self.flip = flip
        self.fix_polarity = fix_polarity

    def fit(self, X, y=None):
        if self.size is not None and (not isinstance(self.size, (int, np.integer)) or self.size < 16):
            raise ValueError(f"size must be an int >= 16 or None, got {self.size!r}")
        return self

    def transform(self, X) -> list[Mammogram]:
        return [
            crop_breast(
                as_mammogram(x).pixels,
                size=self.size,
                crop=self.crop,
                flip=self.flip,
                fix_polarity=self.fix_polarity,
            )
            for x in X
        ]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags
