"""Breast region: crop to the breast, blank what lies outside it, face the chest wall left.

Everything downstream (texture statistics, the CNN thumbnail) is more informative when it
sees only the breast, always facing the same way. :mod:`mammo.features.segmentation` finds
the breast (and undoes a white background); this module crops to it, drops what lies
outside it (film edges, labels, markers), flips it so that the chest wall is on the left
and resizes it to the working resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from PIL import Image
from sklearn.utils._param_validation import Interval

from ._base import StatelessImageTransformer
from .io import Scan
from .segmentation import Segmentation, is_inverted, segment_breast

__all__ = [
    "Mammogram",
    "as_mammogram",
    "is_inverted",
    "breast_mask",
    "crop_breast",
    "resize_image",
    "BreastCropper",
    "ShiftedBreastCropper",
    "with_shifted_crop",
    "CROP_SHIFT",
]

#: Source pixels the crop-shift checks of ``mammo train`` and ``mammo evaluate`` move the breast's box by.
CROP_SHIFT = 0.5


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
    segmentation : Segmentation or None
        How the breast was found (outline in source coordinates, polarity source,
        measurements for the input-quality checks).
    source_shape : tuple or None
        Shape of the source image.
    chroma : float
        The source's share of clearly coloured pixels (see :class:`~mammo.features.io.Scan`).
    """

    pixels: np.ndarray
    mask: np.ndarray = field(default=None)
    flipped: bool = False
    inverted: bool = False
    bbox: tuple | None = None
    segmentation: Segmentation | None = None
    source_shape: tuple | None = None
    chroma: float = 0.0

    def __post_init__(self):
        if self.mask is None:
            self.mask = np.ones(self.pixels.shape, dtype=bool)

    def outline(self) -> list[np.ndarray]:
        """The breast outline as ``(n, 2)`` (row, col) arrays in source pixels (empty if not segmented)."""
        return self.segmentation.outline() if self.segmentation is not None and self.segmentation.found else []


def as_mammogram(image) -> Mammogram:
    """Wrap a 2-D array or a :class:`~mammo.features.io.Scan` as a :class:`Mammogram`; pass a Mammogram through."""
    if isinstance(image, Mammogram):
        return image
    if isinstance(image, Scan):
        return Mammogram(image.pixels, source_shape=image.shape, chroma=image.chroma)
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D grey image (read files with mammo.features.io), got shape {arr.shape}")
    return Mammogram(arr, source_shape=arr.shape)


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


def _sample_mask(seg: Segmentation, box: tuple, shape: tuple[int, int]) -> np.ndarray:
    """The segmentation's mask at the centres of a ``shape`` grid laid over ``box`` (source pixels)."""
    r0, r1, c0, c1 = box
    rows = r0 + (np.arange(shape[0]) + 0.5) * (r1 - r0) / shape[0]
    cols = c0 + (np.arange(shape[1]) + 0.5) * (c1 - c0) / shape[1]
    mr = np.floor((rows - seg.box[0]) * seg.scale).astype(int)
    mc = np.floor((cols - seg.box[2]) * seg.scale).astype(int)
    inside_r = (mr >= 0) & (mr < seg.mask.shape[0])
    inside_c = (mc >= 0) & (mc < seg.mask.shape[1])
    out = seg.mask[np.ix_(np.clip(mr, 0, seg.mask.shape[0] - 1), np.clip(mc, 0, seg.mask.shape[1] - 1))]
    return out & inside_r[:, None] & inside_c[None, :]


def breast_mask(image: np.ndarray, *, polarity_known: bool = False) -> np.ndarray:
    """Boolean mask of the breast on the source grid (all True when no breast is found).

    See :func:`mammo.features.segmentation.segment_breast`.
    """
    image = np.asarray(image, dtype=np.float32)
    seg = segment_breast(image, polarity_known=polarity_known)
    if not seg.found:
        return np.ones(image.shape, dtype=bool)
    return _sample_mask(seg, (0, image.shape[0], 0, image.shape[1]), image.shape)


def _output_shape(shape: tuple[int, int], size: int | None) -> tuple[int, int]:
    if size is None or max(shape) == size:
        return shape
    scale = size / max(shape)
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def crop_breast(
    image,
    *,
    size: int | None = 256,
    crop: bool = True,
    flip: bool = True,
    fix_polarity: bool = True,
    polarity_known: bool | None = None,
    shift: float = 0.0,
) -> Mammogram:
    """Find, crop, flip and resize the breast of one grey mammogram.

    Parameters
    ----------
    image : ndarray of shape (h, w) or Scan
        Grey image in [0, 1], as returned by :func:`mammo.features.io.read_image`, or a
        :class:`~mammo.features.io.Scan` from :func:`~mammo.features.io.read_scan`. A
        scan's ``segmentation`` (a breast region found before) is used as it is.
    size : int or None
        Longer side of the output in pixels (aspect ratio kept); None keeps
        the source resolution.
    crop : bool
        Crop to the breast's bounding box and blank everything outside the mask.
    flip : bool
        Mirror images whose chest wall is on the right.
    fix_polarity : bool
        Invert raster images with a white background.
    polarity_known : bool or None
        The grey levels' meaning came from the file's header (DICOM), so polarity is
        never guessed from the pixels. None: from the Scan (False for an array).
    shift : float
        Resample the crop over the breast's box moved by ``shift`` source pixels down
        and right (up or left where the image ends there). Not for use in a model: a
        perturbed crop, to measure how far a model's answers move with the crop's
        exact position (the training report's crop-shift check).

    Returns
    -------
    Mammogram
    """
    scan = image if isinstance(image, Scan) else Scan(np.asarray(image, dtype=np.float32))
    known = scan.polarity_known if polarity_known is None else polarity_known
    source = np.asarray(scan.pixels, dtype=np.float32)
    pre, pixels, seg = _segment(scan, source, flip=flip, polarity_known=known, fix_polarity=fix_polarity)
    if seg.inverted:
        pixels = 1.0 - pixels
    bbox = seg.bbox if (crop and seg.found) else (0, pixels.shape[0], 0, pixels.shape[1])
    r0, r1, c0, c1 = bbox
    shape = _output_shape((r1 - r0, c1 - c0), size)
    if shift:
        box = _shifted(bbox, float(shift), pixels.shape)
        out = _resize_box(pixels, box, shape)
    else:
        box = bbox
        out = np.array(resize_image(pixels[r0:r1, c0:c1], shape), dtype=np.float32)  # never a view of the input
    mask = _sample_mask(seg, box, shape) if (crop and seg.found) else np.ones(shape, dtype=bool)
    out[~mask] = 0.0
    flipped = False
    if flip:
        half = mask.shape[1] // 2
        # The chest wall side carries more breast area than the nipple side.
        if mask[:, mask.shape[1] - half :].sum() > mask[:, :half].sum():
            out, mask, flipped = out[:, ::-1], mask[:, ::-1], True
    if pre:  # report the crop and the outline in the source's own orientation
        width = source.shape[1]
        bbox, seg, flipped = (r0, r1, width - c1, width - c0), seg.mirrored(width), not flipped
    return Mammogram(
        np.ascontiguousarray(out, dtype=np.float32),
        np.ascontiguousarray(mask),
        flipped=flipped,
        inverted=seg.inverted,
        bbox=tuple(int(v) for v in bbox),
        segmentation=seg,
        source_shape=source.shape,
        chroma=scan.chroma,
    )


def _shifted(box: tuple, shift: float, shape: tuple) -> tuple:
    """``box`` moved by ``shift`` along each axis: the other way where the image ends, not at all where
    the box spans the axis."""
    out = [float(v) for v in box]
    for lo, limit in ((0, shape[0]), (2, shape[1])):
        for d in (shift, -shift):
            if 0 <= out[lo] + d and out[lo + 1] + d <= limit:
                out[lo], out[lo + 1] = out[lo] + d, out[lo + 1] + d
                break
    return tuple(out)


def _resize_box(image: np.ndarray, box: tuple, shape: tuple[int, int]) -> np.ndarray:
    """``image`` over the sub-pixel ``box`` (row0, row1, col0, col1), resampled to ``shape`` as :func:`resize_image`."""
    r0, r1, c0, c1 = box
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32))
    return np.array(pil.resize((int(shape[1]), int(shape[0])), Image.BILINEAR, box=(c0, r0, c1, r1)), np.float32)


def _segment(scan: Scan, source: np.ndarray, *, flip: bool, polarity_known: bool, fix_polarity: bool):
    """``(mirrored, pixels, segmentation)``: the source in the canonical orientation the breast
    is found in, and the breast found there (or the scan's own segmentation, reoriented)."""
    # A canonical orientation, so that an image and its mirror give the same crop to the
    # last bit (segmentation's thresholds and roundings are not mirror-exact).
    pre = flip and _heavier_on_the_right(source)
    pixels = source[:, ::-1] if pre else source
    if scan.segmentation is not None:  # found before, in the source's orientation
        return pre, pixels, _reused(scan.segmentation, source.shape, pre)
    return pre, pixels, segment_breast(pixels, polarity_known=polarity_known, fix_polarity=fix_polarity)


def _reused(seg: Segmentation, shape: tuple, mirror: bool) -> Segmentation:
    """A scan's own segmentation, described for the canonical orientation crop_breast works in."""
    if not isinstance(seg, Segmentation) or seg.box[1] > shape[0] or seg.box[3] > shape[1]:
        raise ValueError(f"Scan.segmentation must be a Segmentation of a {shape[1]}x{shape[0]} image")
    return seg.mirrored(shape[1]) if mirror else seg


def _heavier_on_the_right(image: np.ndarray) -> bool:
    """Whether the right half departs more from the image's mean grey than the left half.

    Exact under a mirror: every sum runs over whole rows (the same values in an image and
    its mirror) and :func:`math.fsum` is exactly rounded, so the mirror always gets the
    opposite answer (a perfect tie says no for both). Inverted grey levels depart from
    their mean just as much, so an inverted copy gets the same answer as the original.
    """
    rows = np.array(image[:: max(1, image.shape[0] // 256)], dtype=np.float64)
    mean = math.fsum(rows.sum(axis=0)) / rows.size
    np.subtract(rows, mean, out=rows)
    cols = np.abs(rows, out=rows).sum(axis=0)
    half = cols.size // 2
    return math.fsum(cols[cols.size - half :]) > math.fsum(cols[:half])


class BreastCropper(StatelessImageTransformer):
    """Transformer: grey images or scans -> :class:`Mammogram` crops of the breast.

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

    _parameter_constraints: dict = {
        "size": [Interval(Integral, 16, None, closed="left"), None],
        "crop": ["boolean"],
        "flip": ["boolean"],
        "fix_polarity": ["boolean"],
    }

    def __init__(self, size=256, crop=True, flip=True, fix_polarity=True):
        self.size = size
        self.crop = crop
        self.flip = flip
        self.fix_polarity = fix_polarity

    def transform(self, X) -> list[Mammogram]:
        options = self._crop_options()
        return [crop_breast(x if isinstance(x, Scan) else as_mammogram(x).pixels, **options) for x in X]

    def _crop_options(self) -> dict:
        return dict(size=self.size, crop=self.crop, flip=self.flip, fix_polarity=self.fix_polarity)


class ShiftedBreastCropper(BreastCropper):
    """:class:`BreastCropper` whose crops are resampled over the breast's box moved by ``shift`` pixels.

    Not a step for a model: it gives the slightly moved crop with which ``mammo
    train`` measures how far each candidate's answers move with the crop's exact
    position (:func:`crop_breast`'s ``shift``).

    Parameters
    ----------
    size, crop, flip, fix_polarity
        As :class:`BreastCropper`.
    shift : float, default=0.5
        Source pixels down and right, in (-1, 1).
    """

    _parameter_constraints: dict = {
        **BreastCropper._parameter_constraints,
        "shift": [Interval(Real, -1, 1, closed="neither")],
    }

    def __init__(self, size=256, crop=True, flip=True, fix_polarity=True, shift=CROP_SHIFT):
        super().__init__(size=size, crop=crop, flip=flip, fix_polarity=fix_polarity)
        self.shift = shift

    def _crop_options(self) -> dict:
        return {**super()._crop_options(), "shift": float(self.shift)}


def with_shifted_crop(steps: list, shift: float = CROP_SHIFT) -> list:
    """A pipeline's ``(name, step)`` list with its ``crop`` step replaced by a :class:`ShiftedBreastCropper`
    of the same parameters (the other steps are the same objects)."""
    return [
        (name, ShiftedBreastCropper(**step.get_params(), shift=shift) if name == "crop" else step)
        for name, step in steps
    ]
