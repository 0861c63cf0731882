"""Breast segmentation on a working-resolution copy: polarity, film artefacts, the breast mask.

A mammogram is made of three kinds of region:

* the **background** (direct exposure): dead flat, at one end of the grey scale, and
  beside the breast along its skin line;
* the **breast**: textured, between the background and the brightest levels;
* **artefacts**: unexposed film edges and scanner frames (flat bands along the image's
  sides), labels and markers (small flat patches surrounded by background).

Everything here works on that description, not on where things usually are, so that a
film edge on any side, a label anywhere, or a breast on a detector much larger than itself
does not change the answer. The polarity of a raster file (white background or black) is
read off which flat regions the tissue borders: the background touches the breast along
the skin line, while a film edge touches the background and a label touches nothing.

The mask is found twice: once on the whole image (at most ``COARSE_SIDE`` pixels a side,
which decides polarity and where the breast is), then again on the breast's own
neighbourhood at most ``WORK_SIDE`` pixels a side, so that the final mask and crop depend on
the breast, not on how large the canvas around it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.measure import approximate_polygon, find_contours

from . import _morph
from ._artefacts import artefact_mask, thin_strips
from ._flat import (
    Regions,
    box_mean,
    classify,
    decide_inverted,
    empty_areas,
    flat_regions,
    grey_span,
    local_std,
    otsu_threshold,
    polarity_evidence,
)

__all__ = [
    "COARSE_SIDE",
    "WORK_SIDE",
    "Segmentation",
    "working_image",
    "flat_regions",
    "polarity_evidence",
    "is_inverted",
    "segment_breast",
    "shape_stats",
]

#: Longer side, in pixels, of the copy of the breast's neighbourhood the mask is found on.
WORK_SIDE = 256
#: Longer side of the copy of the whole image that polarity and the breast's place come from.
COARSE_SIDE = 256
#: Without film edges, a second pass on the breast's neighbourhood runs only when it sees
#: the breast at least this many times finer than the pass over the whole image.
FINER = 1.5
#: The foreground threshold sits at most this far from the background level towards
#: Otsu's threshold.
THRESHOLD_FRACTION = 0.4
#: The threshold sits at least this fraction of the grey range above the background.
NOISE_MARGIN = 0.02


@dataclass
class Segmentation:
    """The breast found in one grey image (after its polarity was normalised).

    Attributes
    ----------
    mask : ndarray of bool
        Breast pixels on the grid of ``box`` resampled by ``scale``.
    box : tuple of 4 ints
        ``(row0, row1, col0, col1)`` of the source region that ``mask`` covers.
    scale : float
        ``mask`` pixels per source pixel.
    inverted : bool
        Whether the grey levels were inverted (white background undone).
    polarity : str
        ``"header"`` (the file said what its grey levels mean) or ``"pixels"``.
    found : bool
        False when no region above the background was found (``mask`` is then all True).
    stats : dict
        Measurements the input-quality checks use (see :mod:`mammo.features.quality`).
    """

    mask: np.ndarray
    box: tuple
    scale: float
    inverted: bool = False
    polarity: str = "pixels"
    found: bool = True
    stats: dict = field(default_factory=dict)

    @property
    def bbox(self) -> tuple:
        """``(row0, row1, col0, col1)`` of the breast in source pixels."""
        if not self.mask.any():
            return self.box
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        r0, _, c0, _ = self.box
        h, w = self.box[1] - self.box[0], self.box[3] - self.box[2]
        f = 1.0 / self.scale
        return (
            r0 + max(0, int(np.floor(rows[0] * f))),
            r0 + min(h, int(np.ceil((rows[-1] + 1) * f))),
            c0 + max(0, int(np.floor(cols[0] * f))),
            c0 + min(w, int(np.ceil((cols[-1] + 1) * f))),
        )

    def mirrored(self, width: int) -> Segmentation:
        """The same segmentation described for the left-right mirror of a ``width``-wide source."""
        r0, r1, c0, c1 = self.box
        return replace(self, mask=np.ascontiguousarray(self.mask[:, ::-1]), box=(r0, r1, width - c1, width - c0))

    def outline(self) -> list[np.ndarray]:
        """The mask's outline as ``(n, 2)`` arrays of (row, col) in source pixel coordinates."""
        padded = np.pad(self.mask.astype(np.float32), 1)
        r0, _, c0, _ = self.box
        return [(c - 1 + 0.5) / self.scale + (r0, c0) for c in find_contours(padded, 0.5)]


# --------------------------------------------------------------------------- helpers


def working_image(image: np.ndarray, side: int = WORK_SIDE) -> tuple[np.ndarray, float]:
    """``(copy, scale)``: ``image`` area-averaged so its longer side is at most ``side``.

    Area averaging (not striding) keeps the copy of a mirrored image the mirror of the copy.
    """
    h, w = image.shape
    scale = min(1.0, side / max(h, w))
    if scale == 1.0:
        return np.asarray(image, dtype=np.float32), 1.0
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32))
    return np.asarray(pil.resize(shape, Image.BOX), dtype=np.float32), scale


def is_inverted(image: np.ndarray) -> bool:
    """Whether a raster mammogram has a white background (and so dark dense tissue).

    The background is the flat region that the breast's skin line borders; an image is
    inverted when the bright flat regions border clearly more tissue than the dark ones.
    """
    x, _ = working_image(np.asarray(image, dtype=np.float32), COARSE_SIDE)
    return decide_inverted(*polarity_evidence(x))


# --------------------------------------------------------------------------- the mask


def _breast_on(
    x: np.ndarray, reg: Regions | None = None, *, shape: bool = True, known: np.ndarray | None = None
) -> tuple[np.ndarray, bool, dict, np.ndarray]:
    """``(mask, found, stats, artefact)`` of the breast in a working image with a dark
    background (``shape``: with :func:`shape_stats` in the stats). ``known``: film edges
    found on a wider view of the image (a window may hold too thin a sliver of one to tell)."""
    reg = classify(x) if reg is None else reg
    if known is not None and known.any():
        reg.band_map = reg.band_map | known
    rng = reg.grey_range
    bg_label, background = _background(x, reg)
    artefact = artefact_mask(x, reg, background)
    smooth = box_mean(x, 3)
    stats = {"background": background, "grey_range": rng}
    usable = smooth[~artefact]
    try:
        otsu = otsu_threshold(usable) if usable.size else background
    except ValueError:  # constant
        otsu = background
    if otsu <= background or rng <= 0:
        return np.ones(x.shape, bool), False, stats, artefact
    # Just above the background's own grain keeps the faint tissue at the skin line;
    # never beyond the usual fraction of the way to Otsu's threshold, which splits
    # background from tissue on film whose background is uneven.
    grain = float(np.std(smooth[reg.labels == bg_label])) if bg_label else 0.0
    upper = background + THRESHOLD_FRACTION * (otsu - background)
    threshold = min(background + max(4.0 * grain, NOISE_MARGIN * rng), upper)
    fg = _foreground(smooth > threshold, reg, artefact, upper)
    labels, n = _morph.label(fg)
    if n == 0:
        return np.ones(x.shape, bool), False, stats, artefact
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = _morph.fill_holes(labels == sizes.argmax())
    stats.update(
        threshold=float(threshold),
        otsu=otsu,
        artefact_fraction=float(artefact.mean()),
        background_flat_fraction=_flat_share(reg.labels > 0, mask | artefact),
        n_components=int((sizes > 0.01 * x.size).sum()),
        **(shape_stats(x, mask, artefact, rng) if shape else {"mask_fraction": _share(mask, artefact)}),
    )
    return mask, True, stats, artefact


def _share(mask: np.ndarray, artefact: np.ndarray) -> float:
    return float(mask.sum() / max(1, (~artefact).sum()))


def _background(x: np.ndarray, reg: Regions) -> tuple[int, float]:
    """``(label, grey level)`` of the background: the dark flat region the tissue fades into
    (the skin line), else the image's dark end."""
    k = np.arange(len(reg.levels))
    dark = (k > 0) & (reg.levels < reg.split)
    if not dark.any():
        return 0, float(np.percentile(x, 2))
    label = int(k[dark][np.argmax(reg.fade[dark])])
    return label, float(reg.levels[label])


def _foreground(above: np.ndarray, reg: Regions, artefact: np.ndarray, upper: float) -> np.ndarray:
    """Pixels above the threshold, less artefacts, other background-like flat areas (an
    empty detector, rotation fill), thin strips along the sides and film-edge penumbras."""
    empty = empty_areas(reg, upper)
    fg = above & ~artefact & ~_morph.dilate(empty[reg.labels], 1)
    fg &= ~thin_strips(fg)
    if reg.band_map.any():
        # a film edge's penumbra: a thin ramp along the edge, all the way round it
        fg &= _morph.distance_to(reg.band_map) > max(3, int(0.025 * max(fg.shape)))
    return _morph.opening(fg, 2)


def shape_stats(x: np.ndarray, mask: np.ndarray, artefact: np.ndarray, grey_range: float | None = None) -> dict:
    """What the input-quality checks read off a breast mask on a working image.

    ``mask_fraction``: the mask's share of the image outside artefacts; ``solidity``:
    its area over its convex hull's; ``convexity``: the hull's perimeter over the
    outline's; ``straight_edge``: the longest straight stretch of the outline (the chest
    wall, cut by the detector's edge) over the outline's length; ``tissue_texture`` /
    ``background_texture``: median local grey-level std inside the mask and outside it
    (artefacts left out), over the grey range.
    """
    rng = max(grey_span(x) if grey_range is None else grey_range, 1e-6)
    sd = local_std(x)
    outside = ~mask & ~artefact
    stats = {"convexity": 0.0, "solidity": 0.0, "straight_edge": 0.0, "outline_on_side": 0.0}
    # the outline's geometry on at most 128 px: marching squares measure a straight
    # stretch at any angle as straight (a pixel chain would be a staircase)
    small = mask[:: max(1, -(-max(mask.shape) // 128)), :: max(1, -(-max(mask.shape) // 128))]
    contours = find_contours(np.pad(small.astype(np.float32), 1), 0.5)
    if contours:
        outline = max(contours, key=len)
        length = float(np.sum(np.hypot(*np.diff(outline, axis=0).T)))
        poly = approximate_polygon(outline, tolerance=max(1.0, 0.01 * max(small.shape)))
        sides = np.hypot(*np.diff(poly, axis=0).T) if len(poly) > 1 else np.zeros(1)
        hull = cv2.convexHull(outline[:, ::-1].astype(np.float32))
        hull_length = cv2.arcLength(hull, True)
        full, _ = cv2.findContours(np.pad(mask, 1).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull_area = cv2.contourArea(cv2.convexHull(max(full, key=len))) if full else 0.0
        on_side = (
            (outline[:, 0] <= 1.5)
            | (outline[:, 0] >= small.shape[0] - 0.5)
            | (outline[:, 1] <= 1.5)
            | (outline[:, 1] >= small.shape[1] - 0.5)
        )
        stats.update(
            convexity=min(1.0, hull_length / length) if length else 0.0,
            solidity=min(1.0, float(mask.sum()) / hull_area) if hull_area > 0 else 0.0,
            straight_edge=float(sides.max() / length) if length else 0.0,
            outline_on_side=float(on_side.mean()),
        )
    stats.update(
        mask_fraction=_share(mask, artefact),
        tissue_texture=float(np.median(sd[mask]) / rng) if mask.any() else 0.0,
        background_texture=float(np.median(sd[outside]) / rng) if outside.any() else 0.0,
    )
    return stats


def _flat_share(flat: np.ndarray, exclude: np.ndarray) -> float:
    rest = ~exclude
    return float(flat[rest].mean()) if rest.any() else 0.0


def segment_breast(image: np.ndarray, *, polarity_known: bool = False, fix_polarity: bool = True) -> Segmentation:
    """Find the breast in a grey image in [0, 1].

    Parameters
    ----------
    image : ndarray of shape (h, w)
    polarity_known : bool
        The file's header already fixed the grey levels' meaning (DICOM): never invert.
    fix_polarity : bool
        Invert raster images whose background is white.
    """
    image = np.asarray(image, dtype=np.float32)
    x, scale = working_image(image, COARSE_SIDE)
    reg = classify(x)
    inverted = bool(fix_polarity and not polarity_known and decide_inverted(*polarity_evidence(x, reg)))
    if inverted:  # the same flat regions, described for the inverted grey levels
        x, reg = 1.0 - x, reg.inverted()
    coarse, found, stats, artefact = _breast_on(x, reg, shape=False)
    full = (0, image.shape[0], 0, image.shape[1])
    if not found:
        return Segmentation(coarse, full, scale, inverted, _polarity(polarity_known), False, stats)
    box = _source_box(coarse, scale, image.shape, pad=3)
    finer = min(1.0, WORK_SIDE / max(box[1] - box[0], box[3] - box[2])) >= FINER * scale
    if not finer and not reg.band_map.any():
        # The breast's neighbourhood would be seen at about the same resolution again, and
        # no film edge's penumbra needs a closer look: its measurements come from the
        # coarse pass, on the same neighbourhood.
        mask, box, scale2 = coarse, full, scale
        stats2 = {**stats, **_local_stats(x, coarse, artefact, reg.grey_range)}
    else:  # second pass on the breast's own neighbourhood, resampled to the working size
        window = image[box[0] : box[1], box[2] : box[3]]
        y, scale2 = working_image(1.0 - window if inverted else window)
        mask, found2, stats2, _ = _breast_on(y, known=_window_of(_film_edges(reg.band_map), scale, box, y.shape))
        if not found2:
            mask, box, scale2 = coarse, full, scale
    stats.update({f"local_{k}": v for k, v in stats2.items()})
    stats["area_fraction"] = float(coarse.mean())
    return Segmentation(mask, box, scale2, inverted, _polarity(polarity_known), True, stats)


def _local_stats(x: np.ndarray, mask: np.ndarray, artefact: np.ndarray, grey_range: float) -> dict:
    """The measurements of a second pass, read off the coarse pass within the breast's
    neighbourhood (the bounding box padded as the second pass's window is)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    win = (slice(max(0, rows[0] - 3), rows[-1] + 4), slice(max(0, cols[0] - 3), cols[-1] + 4))
    return shape_stats(x[win], mask[win], artefact[win], grey_range)


def _film_edges(band_map: np.ndarray, min_length: float = 0.6, max_depth: float = 0.08) -> np.ndarray:
    """The strips of ``band_map`` shaped like a film's edge: running along most of a side,
    or thin. A flat, saturated patch against one side (an implant at the chest wall) is a
    band too, but short and deep: the breast's own window must judge it."""
    labels, _ = _morph.label(band_map)
    out = np.zeros(band_map.shape, bool)
    h, w = band_map.shape
    for k, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        extent = ((sl[0].stop - sl[0].start) / h, (sl[1].stop - sl[1].start) / w)
        if max(extent) >= min_length or min(extent) <= max_depth:
            out |= labels == k
    return out


def _window_of(mask: np.ndarray, scale: float, box: tuple, shape: tuple) -> np.ndarray:
    """The part of a working-image mask that covers source ``box``, on a grid of ``shape``."""
    r0, r1, c0, c1 = (
        int(np.floor(box[0] * scale)),
        int(np.ceil(box[1] * scale)),
        int(np.floor(box[2] * scale)),
        int(np.ceil(box[3] * scale)),
    )
    part = np.ascontiguousarray(mask[r0:r1, c0:c1], dtype=np.uint8)
    if not part.size or not part.any():
        return np.zeros(shape, bool)
    return cv2.resize(part, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def _polarity(known: bool) -> str:
    return "header" if known else "pixels"


def _source_box(mask: np.ndarray, scale: float, shape: tuple, pad: int) -> tuple:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    f = 1.0 / scale
    return (
        max(0, int(np.floor((rows[0] - pad) * f))),
        min(shape[0], int(np.ceil((rows[-1] + 1 + pad) * f))),
        max(0, int(np.floor((cols[0] - pad) * f))),
        min(shape[1], int(np.ceil((cols[-1] + 1 + pad) * f))),
    )
