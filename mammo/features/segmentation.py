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

from . import _morph

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
#: A pixel is "dead flat" when the grey-level std of its 5x5 neighbourhood is below this
#: fraction of the image's grey range: backgrounds are, tissue is not.
FLAT_TOLERANCE = 0.006
#: The foreground threshold sits at most this far from the background level towards
#: Otsu's threshold.
THRESHOLD_FRACTION = 0.4
#: The threshold sits at least this fraction of the grey range above the background.
NOISE_MARGIN = 0.02
#: Invert a raster image only when the bright flat regions border this many times more
#: tissue than the dark ones (ties keep the usual dark background).
POLARITY_MARGIN = 1.5


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

    def outline(self) -> list[np.ndarray]:
        """The mask's outline as ``(n, 2)`` arrays of (row, col) in source pixel coordinates."""
        from skimage.measure import find_contours

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


def _mean(x: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` moving average, mirrored at the border (scipy's uniform_filter, with OpenCV)."""
    return cv2.blur(np.ascontiguousarray(x, dtype=np.float32), (size, size), borderType=cv2.BORDER_REFLECT)


def _local_std(x: np.ndarray, size: int = 5) -> np.ndarray:
    mean = _mean(x, size)
    return np.sqrt(np.maximum(_mean(x * x, size) - mean * mean, 0.0))


def _texture(x: np.ndarray) -> np.ndarray:
    """Local grey-level std after a 3x3 mean: pixel grain averages out, tissue structure stays."""
    return _local_std(_mean(x, 3))


def _grey_range(x: np.ndarray) -> float:
    lo, hi = np.percentile(x[::2, ::2], [0.5, 99.5])
    return float(hi - lo)


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold on 256 levels between the values' min and max (as scikit-image's)."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        raise ValueError("constant")
    q = np.ascontiguousarray(np.clip((values - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8))
    t, _ = cv2.threshold(q.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return lo + (t + 0.5) * (hi - lo) / 255.0


def flat_regions(x: np.ndarray, *, min_area: float = 0.001, texture: np.ndarray | None = None,
                 grey_range: float | None = None) -> tuple[np.ndarray, int]:
    """Connected dead-flat regions of a working image: ``(labels, n)`` as from :func:`scipy.ndimage.label`.

    Regions smaller than ``min_area`` of the image are dropped (flat specks inside tissue).
    The tolerance grows with the grain of the image's quietest pixels (a noisy background).
    ``texture`` and ``grey_range`` may be passed when already computed.
    """
    rng = _grey_range(x) if grey_range is None else grey_range
    if rng <= 0:
        return np.ones(x.shape, np.int32), 1
    sd = _texture(x) if texture is None else texture
    # A grainy background is flat on the scale of its own grain: the quietest
    # hundredth of the image is background in any mammogram.
    tol = max(FLAT_TOLERANCE * rng, 3.0 * float(np.percentile(sd[::2, ::2], 1)))
    flat = _morph.opening(sd < tol)
    labels, n = _morph.label(flat)
    if n == 0:
        return labels, 0
    sizes = np.bincount(labels.ravel())
    keep = sizes >= max(4, min_area * x.size)
    keep[0] = False
    remap = np.zeros(n + 1, np.int32)
    remap[keep] = np.arange(1, keep.sum() + 1)
    return remap[labels], int(keep.sum())


def _first_run_end(r: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per column of ``r``, the row just past the run of True that begins at ``start``."""
    rows = np.arange(r.shape[0])[:, None]
    after = ~r & (rows >= start[None, :])
    after = np.vstack([after, np.ones((1, r.shape[1]), bool)])
    return np.argmax(after, axis=0)


def _band_part(region: np.ndarray, max_depth: float = 0.2) -> np.ndarray:
    """The part of a region that is a strip along the image's sides (a film edge or frame).

    A strip is about equally deep all along the side it covers. A background touches the
    sides too, but its inner edge is the breast's curved skin line, so its depth varies
    and it reaches far inward; a label stuck to a film edge is a bump on the strip, left
    out of the part returned.
    """
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    bands = np.zeros_like(region)
    if not len(rows):
        return bands
    h, w = region.shape
    box = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
    for k in range(4):  # each side in turn brought to the top
        side = (h, w)[k % 2]
        margin = max(2, int(0.03 * side))
        # distance of the region's bounding box from this side
        gap = (box[0], w - box[3], h - box[1], box[2])[k]
        if gap > margin:
            continue
        r = np.rot90(region, k)
        # per column: where the region starts (within a scanner's thin margin of the
        # side) and how deep its first run reaches
        deep_max = int(max_depth * r.shape[0]) + margin + 2
        top = r[:deep_max + 1]
        start = np.argmax(top, axis=0)
        touching = top.any(axis=0) & (start <= margin)
        if touching.mean() < 0.3:
            continue
        d = _first_run_end(r, start)[touching]
        deep = float(np.median(d))
        steady = np.abs(d - deep) <= max(2.0, 0.25 * deep)
        if deep > max_depth * r.shape[0] or steady.mean() < 0.7:
            continue
        band = np.zeros_like(r)
        band[: int(d[steady].max()) + 2] = True
        bands |= np.rot90(band, -k)
    return region & bands


@dataclass
class _Regions:
    """The flat regions of a working image, classified (per-label arrays: index 0 unused)."""

    labels: np.ndarray
    bands: np.ndarray  # bool: strips along the image's sides (film edges, frames)
    levels: np.ndarray  # median grey level
    tissue_contact: np.ndarray  # tissue pixels in the ring 6-10 px around the region
    ring_size: np.ndarray  # pixels in that ring
    fade: np.ndarray  # that tissue weighted by how close it comes to the region's grey level
    tissue: np.ndarray  # bool map of textured pixels away from every flat region
    split: float  # grey level between the dark and the bright regions (Otsu's)
    band_map: np.ndarray  # the strips of band regions
    grey_range: float
    distance: np.ndarray  # per pixel: distance to the nearest flat region
    nearest: np.ndarray  # per pixel: that region's label
    candidates: np.ndarray  # bool: could be the background (see _background_candidates)

    def inverted(self) -> "_Regions":
        """The same regions described for the inverted image (1 - x)."""
        return replace(self, levels=np.where(np.arange(len(self.levels)) > 0, 1.0 - self.levels, 0.0),
                       split=1.0 - self.split)


def _classify(x: np.ndarray) -> _Regions:
    rng = _grey_range(x)
    sd = _texture(x)
    labels, n = flat_regions(x, texture=sd, grey_range=rng)
    flat = labels > 0
    # textured pixels, clearly more than a grainy background; a step between two flat
    # regions blurs over a few pixels, which is not tissue either
    tissue = (sd >= 2 * FLAT_TOLERANCE * rng) & ~_morph.dilate(flat, 2)
    # nor is a scanner's thin margin along the image's sides
    m = max(2, int(0.03 * min(x.shape)))
    tissue[:m] = tissue[-m:] = tissue[:, :m] = tissue[:, -m:] = False
    try:
        split = _otsu(x)
    except ValueError:  # constant image
        split = float(x.flat[0])
    levels = np.zeros(n + 1)
    if n:
        # flat regions: their mean is their median
        levels = np.bincount(labels.ravel(), weights=x.ravel(), minlength=n + 1) / np.maximum(
            np.bincount(labels.ravel(), minlength=n + 1), 1)
        levels[0] = 0.0
    distance, nearest = _morph.nearest_label(labels)
    # a ring 6-10 px out: past the blur of the region's own edge, and past the
    # collimator's penumbra beside a film edge; each pixel counts for its nearest region
    ring = (distance > 5) & (distance <= 10)
    touch = ring & tissue
    ring_size = np.bincount(nearest[ring], minlength=n + 1).astype(float)
    contact = np.bincount(nearest[touch], minlength=n + 1).astype(float)
    # tissue thins towards the skin line and fades into the background; at a cut
    # (the chest wall against a detector's edge) it stays far from that level
    closeness = np.clip(1.0 - np.abs(x[touch] - levels[nearest[touch]]) / max(rng, 1e-6), 0, 1)
    fade = np.bincount(nearest[touch], weights=closeness, minlength=n + 1)
    bands, band_map = _bands(labels, n, x.shape)
    reg = _Regions(labels, bands, levels, contact, ring_size, fade, tissue, split, band_map, rng, distance, nearest,
                   np.zeros(n + 1, bool))
    reg.candidates = _background_candidates(reg)
    return reg


def _bands(labels: np.ndarray, n: int, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Which regions are strips along the sides, and the strips themselves."""
    bands = np.zeros(n + 1, bool)
    band_map = np.zeros(shape, bool)
    m = max(2, int(0.03 * min(shape))) + 1
    edge = np.zeros(shape, bool)
    edge[:m] = edge[-m:] = edge[:, :m] = edge[:, -m:] = True
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    for k in np.unique(labels[edge]):
        if k == 0:
            continue
        part = _band_part(labels == k)
        bands[k] = part.sum() >= 0.6 * sizes[k]
        if bands[k]:
            band_map |= part
    return bands, band_map


def _grow(sl: tuple, shape: tuple, by: int) -> tuple:
    return tuple(slice(max(0, s.start - by), min(n, s.stop + by)) for s, n in zip(sl, shape))


def _background_candidates(reg: _Regions, min_area: float = 0.01) -> np.ndarray:
    """Bool per label: regions that could be the background.

    The background is large and reaches the image's edge, or a film edge or frame around
    it; flat patches enclosed by tissue (saturated dense tissue, an implant) cannot be.
    """
    n = len(reg.levels)
    sizes = np.bincount(reg.labels.ravel(), minlength=n)
    shape = reg.labels.shape
    # within a film edge's penumbra of the side or of the edge
    reach = max(3, int(0.05 * min(shape)))
    near = np.zeros(shape, bool)
    near[:reach] = near[-reach:] = near[:, :reach] = near[:, -reach:] = True
    if reg.band_map.any():
        near |= _morph.distance_to(np.isin(reg.labels, np.flatnonzero(reg.bands))) <= reach
    touching = np.zeros(n, bool)
    touching[np.unique(reg.labels[near])] = True
    ok = touching & ~reg.bands & (sizes >= min_area * reg.labels.size)
    ok[0] = False
    return ok


def polarity_evidence(x: np.ndarray, reg: _Regions | None = None) -> tuple[float, float]:
    """``(dark, bright)``: area (fraction of the image) of the largest dark and bright
    background candidates of ``x`` that border tissue.

    Film edges and frames are left out: they border the background, whatever the polarity;
    so are flat patches that touch no tissue (labels, markers).
    """
    reg = _classify(x) if reg is None else reg
    sizes = np.bincount(reg.labels.ravel(), minlength=len(reg.levels)) / reg.labels.size
    usable = reg.candidates & (reg.tissue_contact >= 0.05 * reg.ring_size)
    dark = usable & (reg.levels < reg.split)
    bright = usable & (reg.levels >= reg.split)
    return (float(sizes[dark].max()) if dark.any() else 0.0, float(sizes[bright].max()) if bright.any() else 0.0)


def _decide(dark: float, bright: float) -> bool:
    return bool(bright > POLARITY_MARGIN * dark and bright > 0.01)


def is_inverted(image: np.ndarray) -> bool:
    """Whether a raster mammogram has a white background (and so dark dense tissue).

    The background is the flat region that the breast's skin line borders; an image is
    inverted when the bright flat regions border clearly more tissue than the dark ones.
    """
    x, _ = working_image(np.asarray(image, dtype=np.float32), COARSE_SIDE)
    return _decide(*polarity_evidence(x))


# --------------------------------------------------------------------------- the mask


def _breast_on(x: np.ndarray, reg: _Regions | None = None, *, shape: bool = True) -> tuple[np.ndarray, bool, dict]:
    """``(mask, found, stats)`` of the breast in a working image with a dark background
    (``shape``: with :func:`shape_stats` in the stats)."""
    reg = _classify(x) if reg is None else reg
    rng = reg.grey_range
    bg_label, background = _background(x, reg)
    artefact = _artefacts(x, reg, background)
    smooth = _mean(x, 3)
    stats = {"background": background, "grey_range": rng}
    usable = smooth[~artefact]
    try:
        otsu = _otsu(usable) if usable.size else background
    except ValueError:  # constant
        otsu = background
    if otsu <= background or rng <= 0:
        return np.ones(x.shape, bool), False, stats
    # Just above the background's own grain keeps the faint tissue at the skin line;
    # never beyond the usual fraction of the way to Otsu's threshold, which splits
    # background from tissue on film whose background is uneven.
    grain = float(np.std(smooth[reg.labels == bg_label])) if bg_label else 0.0
    upper = background + THRESHOLD_FRACTION * (otsu - background)
    threshold = min(background + max(4.0 * grain, NOISE_MARGIN * rng), upper)
    fg = _foreground(smooth > threshold, reg, artefact, upper)
    labels, n = _morph.label(fg)
    if n == 0:
        return np.ones(x.shape, bool), False, stats
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = _morph.fill_holes(labels == sizes.argmax())
    stats.update(threshold=float(threshold), otsu=otsu, artefact_fraction=float(artefact.mean()),
                 background_flat_fraction=_flat_share(reg.labels > 0, mask | artefact),
                 n_components=int((sizes > 0.01 * x.size).sum()),
                 **(shape_stats(x, mask, artefact, rng) if shape else {"mask_fraction": _share(mask, artefact)}))
    return mask, True, stats


def _share(mask: np.ndarray, artefact: np.ndarray) -> float:
    return float(mask.sum() / max(1, (~artefact).sum()))


def _background(x: np.ndarray, reg: _Regions) -> tuple[int, float]:
    """``(label, grey level)`` of the background: the dark flat region the tissue fades into
    (the skin line), else the image's dark end."""
    k = np.arange(len(reg.levels))
    dark = (k > 0) & (reg.levels < reg.split)
    if not dark.any():
        return 0, float(np.percentile(x, 2))
    label = int(k[dark][np.argmax(reg.fade[dark])])
    return label, float(reg.levels[label])


def _foreground(above: np.ndarray, reg: _Regions, artefact: np.ndarray, upper: float) -> np.ndarray:
    """Pixels above the threshold, less artefacts, other background-like flat areas (an
    empty detector, rotation fill), thin strips along the sides and film-edge penumbras."""
    empty = reg.candidates & (reg.levels < upper)
    fg = above & ~artefact & ~_morph.dilate(np.isin(reg.labels, np.flatnonzero(empty)), 1)
    fg &= ~_thin_strips(fg)
    if reg.band_map.any():
        # a film edge's penumbra: a thin ramp along the edge, all the way round it
        fg &= _morph.distance_to(reg.band_map) > max(3, int(0.02 * min(fg.shape)))
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
    rng = max(_grey_range(x) if grey_range is None else grey_range, 1e-6)
    sd = _local_std(x)
    outside = ~mask & ~artefact
    contours, _ = cv2.findContours(np.pad(mask, 1).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    stats = {"convexity": 0.0, "solidity": 0.0, "straight_edge": 0.0, "outline_on_side": 0.0}
    if contours:
        outline = max(contours, key=len)
        length = cv2.arcLength(outline, True)
        hull = cv2.convexHull(outline)
        poly = cv2.approxPolyDP(outline, max(1.0, 0.01 * max(x.shape)), True)[:, 0].astype(float)
        sides = np.hypot(*(np.roll(poly, -1, axis=0) - poly).T) if len(poly) > 1 else np.zeros(1)
        pts = outline[:, 0] - 1  # (col, row) on the unpadded grid
        on_side = (pts[:, 0] <= 0) | (pts[:, 1] <= 0) | (pts[:, 0] >= x.shape[1] - 1) | (pts[:, 1] >= x.shape[0] - 1)
        hull_area = cv2.contourArea(hull)
        stats.update(convexity=min(1.0, cv2.arcLength(hull, True) / length) if length else 0.0,
                     solidity=min(1.0, float(mask.sum()) / hull_area) if hull_area > 0 else 0.0,
                     straight_edge=float(sides.max() / length) if length else 0.0, outline_on_side=float(on_side.mean()))
    stats.update(mask_fraction=_share(mask, artefact),
                 tissue_texture=float(np.median(sd[mask]) / rng) if mask.any() else 0.0,
                 background_texture=float(np.median(sd[outside]) / rng) if outside.any() else 0.0)
    return stats


def _ring_share(labels: np.ndarray, n: int, distance: np.ndarray, nearest: np.ndarray, hit: np.ndarray,
                near: float = 2, far: float = 6) -> tuple[np.ndarray, np.ndarray]:
    """Per label: pixels in the ring ``near``-``far`` px out (nearest label's), and the share of them where ``hit``."""
    ring = (distance > near) & (distance <= far)
    total = np.bincount(nearest[ring], minlength=n + 1).astype(float)
    hits = np.bincount(nearest[ring & hit], minlength=n + 1)
    return total, np.divide(hits, total, out=np.zeros(n + 1), where=total > 0)


def _fill_small_holes(mask: np.ndarray, max_area: float = 0.01) -> np.ndarray:
    """``mask`` with its holes filled, but not the large ones (a frame's hole is the image)."""
    holes = _morph.fill_holes(mask) & ~mask
    if not holes.any():
        return mask
    lab, n = _morph.label(holes)
    small = np.bincount(lab.ravel(), minlength=n + 1) <= max_area * mask.size
    small[0] = False
    return mask | small[lab]


def _artefacts(x: np.ndarray, reg: _Regions, background: float) -> np.ndarray:
    """Film edges, frames, labels and markers, as a mask.

    Artefacts are bright (lead letters, unexposed film) and flat: the strips of band
    regions, and flat patches mostly beside the background, even where they touch the
    breast or a film edge (tissue surrounds a flat patch of dense tissue or an implant).
    """
    n = len(reg.levels) - 1
    dark_pix = x < background + 0.25 * (reg.levels[reg.nearest] - background)
    total, dark = _ring_share(reg.labels, n, reg.distance, reg.nearest, dark_pix)
    k = np.arange(n + 1)
    label_like = (k > 0) & (reg.levels >= reg.split) & ~reg.bands & ((total == 0) | (dark >= 0.5))
    out = reg.band_map | _fill_small_holes(np.isin(reg.labels, k[label_like]))  # a label's text is its holes
    out |= _bright_blobs(x, background)
    return _morph.dilate(out, 1) if out.any() else out


def _bright_blobs(x: np.ndarray, background: float, max_area: float = 0.03) -> np.ndarray:
    """Labels and markers too small or too lettered to be flat at the working scale:
    small compact blobs at the top of the grey scale that sit mostly beside the
    background (dense tissue that bright is ragged and sits inside tissue)."""
    top = float(np.percentile(x[::2, ::2], 99.9))
    if top <= background:
        return np.zeros(x.shape, bool)
    cut = background + 0.8 * (top - background)
    filled = _fill_small_holes(_morph.closing(x > cut, 1), max_area)
    blobs, n = _morph.label(filled)
    if n == 0:
        return filled
    areas = np.bincount(blobs.ravel(), minlength=n + 1)
    boxes = np.array([(sl[0].stop - sl[0].start) * (sl[1].stop - sl[1].start) for sl in ndi.find_objects(blobs)])
    # labels are rectangles and markers discs; dense tissue is ragged
    shaped = np.concatenate([[False], (areas[1:] <= max_area * x.size) & (areas[1:] / boxes >= 0.6)])
    if not shaped.any():
        return np.zeros(x.shape, bool)
    distance, nearest = _morph.nearest_label(np.where(shaped[blobs], blobs, 0))
    total, beside = _ring_share(blobs, n, distance, nearest, x < background + 0.25 * (cut - background))
    keep = shaped & (total > 0) & (beside >= 0.45)
    out = keep[blobs]
    return _morph.dilate(out, 1) if out.any() else out


def _thin_strips(fg: np.ndarray) -> np.ndarray:
    """Thin lines along the image's sides in the foreground: film edges too narrow or
    too grainy to be flat, a scanner's edge."""
    labels, n = _morph.label(fg)
    out = np.zeros(fg.shape, bool)
    for k, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is not None and any(s.start == 0 or s.stop == d for s, d in zip(sl, fg.shape)):
            out |= _band_part(labels == k, max_depth=0.05)
    return out


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
    reg = _classify(x)
    inverted = bool(fix_polarity and not polarity_known and _decide(*polarity_evidence(x, reg)))
    if inverted:  # the same flat regions, described for the inverted grey levels
        x, reg = 1.0 - x, reg.inverted()
    coarse, found, stats = _breast_on(x, reg, shape=False)
    full = (0, image.shape[0], 0, image.shape[1])
    if not found:
        return Segmentation(coarse, full, scale, inverted, _polarity(polarity_known), False, stats)
    # Second pass on the breast's own neighbourhood, resampled to the working size.
    box = _source_box(coarse, scale, image.shape, pad=3)
    window = image[box[0] : box[1], box[2] : box[3]]
    y, scale2 = working_image(1.0 - window if inverted else window)
    mask, found2, stats2 = _breast_on(y)
    if not found2:
        mask, box, scale2 = coarse, full, scale
    stats.update({f"local_{k}": v for k, v in stats2.items()})
    stats["area_fraction"] = float(coarse.mean())
    return Segmentation(mask, box, scale2, inverted, _polarity(polarity_known), True, stats)


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
