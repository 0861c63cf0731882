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

The mask is found twice: once on the whole image (at most ``WORK_SIDE`` pixels a side), then
again on the breast's own neighbourhood resampled to the same size, so that the final
mask and crop depend on the breast, not on how large the canvas around it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

__all__ = [
    "WORK_SIDE",
    "Segmentation",
    "working_image",
    "flat_regions",
    "polarity_evidence",
    "is_inverted",
    "segment_breast",
    "shape_stats",
]

#: Longer side, in pixels, of the copy the segmentation works on.
WORK_SIDE = 256
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


def _local_std(x: np.ndarray, size: int = 5) -> np.ndarray:
    mean = ndi.uniform_filter(x, size)
    return np.sqrt(np.maximum(ndi.uniform_filter(x * x, size) - mean * mean, 0.0))


def _texture(x: np.ndarray) -> np.ndarray:
    """Local grey-level std after a 3x3 mean: pixel grain averages out, tissue structure stays."""
    return _local_std(ndi.uniform_filter(x, 3))


def _grey_range(x: np.ndarray) -> float:
    lo, hi = np.percentile(x, [0.5, 99.5])
    return float(hi - lo)


def flat_regions(x: np.ndarray, *, min_area: float = 0.001) -> tuple[np.ndarray, int]:
    """Connected dead-flat regions of a working image: ``(labels, n)`` as from :func:`scipy.ndimage.label`.

    Regions smaller than ``min_area`` of the image are dropped (flat specks inside tissue).
    The tolerance grows with the grain of the image's quietest pixels (a noisy background).
    """
    rng = _grey_range(x)
    if rng <= 0:
        return np.ones(x.shape, np.int32), 1
    sd = _texture(x)
    # A grainy background is flat on the scale of its own grain: the quietest
    # hundredth of the image is background in any mammogram.
    tol = max(FLAT_TOLERANCE * rng, 3.0 * float(np.percentile(sd, 1)))
    flat = ndi.binary_opening(sd < tol)
    labels, n = ndi.label(flat)
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
    bands = np.zeros_like(region)
    for k in range(4):  # each side in turn brought to the top
        r = np.rot90(region, k)
        # per column: where the region starts (within a scanner's thin margin of the
        # side) and how deep its first run reaches
        margin = max(2, int(0.03 * r.shape[0]))
        start = np.argmax(r, axis=0)
        touching = r.any(axis=0) & (start <= margin)
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
    """The flat regions of a working image, classified."""

    labels: np.ndarray
    bands: np.ndarray  # bool per label (index 0 unused)
    levels: np.ndarray  # median grey level per label
    tissue_contact: np.ndarray  # tissue pixels in the ring around each region
    ring_size: np.ndarray  # pixels in that ring
    fade: np.ndarray  # that tissue weighted by how close it comes to the region's grey level
    tissue: np.ndarray  # bool map of textured pixels away from every flat region
    split: float  # grey level between the dark and the bright regions (Otsu's)
    band_map: np.ndarray  # the strips of band regions


def _classify(x: np.ndarray) -> _Regions:
    labels, n = flat_regions(x)
    flat = labels > 0
    # textured pixels, clearly more than a grainy background; a step between two flat
    # regions blurs over a few pixels, which is not tissue either
    tissue = (_texture(x) >= 2 * FLAT_TOLERANCE * _grey_range(x)) & ~ndi.binary_dilation(flat, iterations=2)
    # nor is a scanner's thin margin along the image's sides
    m = max(2, int(0.03 * min(x.shape)))
    tissue[:m] = tissue[-m:] = tissue[:, :m] = tissue[:, -m:] = False
    try:
        split = float(threshold_otsu(x))
    except ValueError:  # constant image
        split = float(x.flat[0])
    bands = np.zeros(n + 1, bool)
    band_map = np.zeros(x.shape, bool)
    levels = np.zeros(n + 1)
    contact = np.zeros(n + 1)
    ring_size = np.zeros(n + 1)
    fade = np.zeros(n + 1)
    rng = max(_grey_range(x), 1e-6)
    objects = ndi.find_objects(labels)
    for k, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        region = labels == k
        part = _band_part(region)
        bands[k] = part.sum() >= 0.6 * region.sum()
        if bands[k]:
            band_map |= part
        levels[k] = float(np.median(x[region]))
        # a ring 6-10 px out: past the blur of the region's own edge, and past the
        # collimator's penumbra beside a film edge
        grown = _grow(sl, x.shape, 10)
        sub = region[grown]
        ring = ndi.binary_dilation(sub, iterations=10) & ~ndi.binary_dilation(sub, iterations=5)
        touch = ring & tissue[grown]
        contact[k] = float(touch.sum())
        ring_size[k] = float(ring.sum())
        # tissue thins towards the skin line and fades into the background; at a cut
        # (the chest wall against a detector's edge) it stays far from that level
        fade[k] = float(np.clip(1.0 - np.abs(x[grown][touch] - levels[k]) / rng, 0, 1).sum())
    return _Regions(labels, bands, levels, contact, ring_size, fade, tissue, split, band_map)


def _grow(sl: tuple, shape: tuple, by: int) -> tuple:
    return tuple(slice(max(0, s.start - by), min(n, s.stop + by)) for s, n in zip(sl, shape))


def _background_candidates(reg: _Regions, min_area: float = 0.01) -> np.ndarray:
    """Bool per label: regions that could be the background.

    The background is large and reaches the image's edge, or a film edge or frame around
    it; flat patches enclosed by tissue (saturated dense tissue, an implant) cannot be.
    """
    n = len(reg.levels)
    sizes = np.bincount(reg.labels.ravel(), minlength=n)
    border = np.zeros(reg.labels.shape, bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    # within a film edge's penumbra of the side or of the edge
    reach = max(3, int(0.05 * min(reg.labels.shape)))
    near = ndi.binary_dilation(border | np.isin(reg.labels, np.flatnonzero(reg.bands)), iterations=reach)
    touching = np.zeros(n, bool)
    touching[np.unique(reg.labels[near])] = True
    ok = touching & ~reg.bands & (sizes >= min_area * reg.labels.size)
    ok[0] = False
    return ok


def polarity_evidence(x: np.ndarray) -> tuple[float, float]:
    """``(dark, bright)``: area (fraction of the image) of the largest dark and bright
    background candidates of ``x`` that border tissue.

    Film edges and frames are left out: they border the background, whatever the polarity;
    so are flat patches that touch no tissue (labels, markers).
    """
    reg = _classify(x)
    sizes = np.bincount(reg.labels.ravel(), minlength=len(reg.levels)) / reg.labels.size
    borders_tissue = reg.tissue_contact >= 0.05 * reg.ring_size
    usable = _background_candidates(reg) & borders_tissue
    dark = usable & (reg.levels < reg.split)
    bright = usable & (reg.levels >= reg.split)
    return (float(sizes[dark].max()) if dark.any() else 0.0, float(sizes[bright].max()) if bright.any() else 0.0)


def is_inverted(image: np.ndarray) -> bool:
    """Whether a raster mammogram has a white background (and so dark dense tissue).

    The background is the flat region that the breast's skin line borders; an image is
    inverted when the bright flat regions border clearly more tissue than the dark ones.
    """
    x, _ = working_image(np.asarray(image, dtype=np.float32))
    dark, bright = polarity_evidence(x)
    return bool(bright > POLARITY_MARGIN * dark and bright > 0.01)


# --------------------------------------------------------------------------- the mask


def _breast_on(x: np.ndarray) -> tuple[np.ndarray, bool, dict]:
    """``(mask, found, stats)`` of the breast in a working image with a dark background."""
    reg = _classify(x)
    k = np.arange(len(reg.levels))
    rng = _grey_range(x)
    dark = (k > 0) & (reg.levels < reg.split)
    if dark.any():
        # the background is the dark flat region the tissue fades into: the skin line
        bg_label = int(k[dark][np.argmax(reg.fade[dark])])
        background = float(reg.levels[bg_label])
    else:
        bg_label, background = 0, float(np.percentile(x, 2))
    artefact = _artefacts(x, reg, background)
    smooth = ndi.uniform_filter(x, 3)
    stats = {"background": background, "grey_range": rng}
    usable = smooth[~artefact]
    try:
        otsu = float(threshold_otsu(usable)) if usable.size else background
    except ValueError:  # constant
        otsu = background
    if otsu <= background or rng <= 0:
        return np.ones(x.shape, bool), False, stats
    # Just above the background's own grain keeps the faint tissue at the skin line;
    # never beyond the usual fraction of the way to Otsu's threshold, which splits
    # background from tissue on film whose background is uneven.
    grain = float(np.std(smooth[reg.labels == bg_label])) if bg_label else 0.0
    floor = background + max(4.0 * grain, NOISE_MARGIN * rng)
    upper = background + THRESHOLD_FRACTION * (otsu - background)
    threshold = min(floor, upper)
    # other flat, background-like areas: an empty detector, rotation fill
    empty = _background_candidates(reg) & (reg.levels < upper)
    fg = (smooth > threshold) & ~artefact & ~ndi.binary_dilation(np.isin(reg.labels, np.flatnonzero(empty)), iterations=1)
    fg &= ~_thin_strips(fg)
    if reg.band_map.any():
        # a film edge's penumbra: a thin ramp along the edge, all the way round it
        fg &= ~ndi.binary_dilation(reg.band_map, iterations=max(3, int(0.02 * min(x.shape))))
    fg = ndi.binary_opening(fg, iterations=2)
    labels, n = ndi.label(fg)
    if n == 0:
        return np.ones(x.shape, bool), False, stats
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = ndi.binary_fill_holes(labels == sizes.argmax())
    stats.update(threshold=float(threshold), otsu=otsu, artefact_fraction=float(artefact.mean()),
                 background_flat_fraction=_flat_share(reg.labels > 0, mask | artefact),
                 n_components=int((sizes > 0.01 * x.size).sum()), **shape_stats(x, mask, artefact))
    return mask, True, stats


def shape_stats(x: np.ndarray, mask: np.ndarray, artefact: np.ndarray) -> dict:
    """What the input-quality checks read off a breast mask on a working image.

    ``mask_fraction``: the mask's share of the image outside artefacts; ``solidity``:
    its area over its convex hull's; ``straight_edge``: the longest straight stretch of
    its outline (the chest wall, cut by the detector's edge) over the outline's length;
    ``tissue_texture`` / ``background_texture``: median local grey-level std inside the
    mask and outside it (artefacts left out), over the grey range.
    """
    from skimage.measure import approximate_polygon, find_contours
    from skimage.morphology import convex_hull_image

    rng = max(_grey_range(x), 1e-6)
    sd = _local_std(x)
    outside = ~mask & ~artefact
    hull = convex_hull_image(mask) if mask.any() else mask
    contours = find_contours(np.pad(mask.astype(np.float32), 1), 0.5)
    outline = max(contours, key=len) if contours else np.zeros((0, 2))
    length = float(np.sum(np.hypot(*np.diff(outline, axis=0).T))) if len(outline) > 1 else 0.0
    poly = approximate_polygon(outline, tolerance=max(1.0, 0.01 * max(x.shape))) if len(outline) > 2 else outline
    sides = np.hypot(*np.diff(poly, axis=0).T) if len(poly) > 1 else np.zeros(1)
    hull_outline = find_contours(np.pad(hull.astype(np.float32), 1), 0.5) if mask.any() else []
    hull_length = float(sum(np.sum(np.hypot(*np.diff(c, axis=0).T)) for c in hull_outline))
    on_side = ((outline[:, 0] <= 1.5) | (outline[:, 0] >= x.shape[0] - 0.5) |
               (outline[:, 1] <= 1.5) | (outline[:, 1] >= x.shape[1] - 0.5)) if len(outline) else np.zeros(0, bool)
    return {
        "convexity": hull_length / length if length else 0.0,
        "outline_on_side": float(on_side.mean()) if len(on_side) else 0.0,
        "mask_fraction": float(mask.sum() / max(1, (~artefact).sum())),
        "solidity": float(mask.sum() / max(1, hull.sum())),
        "straight_edge": float(sides.max() / length) if length else 0.0,
        "tissue_texture": float(np.median(sd[mask]) / rng) if mask.any() else 0.0,
        "background_texture": float(np.median(sd[outside]) / rng) if outside.any() else 0.0,
    }


def _artefacts(x: np.ndarray, reg: _Regions, background: float) -> np.ndarray:
    """Film edges, frames, labels and markers, as a mask.

    Artefacts are bright (lead letters, unexposed film) and flat: the strips of band
    regions, and flat patches that the background surrounds (tissue surrounds a flat
    patch of dense tissue or an implant).
    """
    out = reg.band_map.copy()
    for k, sl in enumerate(ndi.find_objects(reg.labels), start=1):
        if sl is None or reg.levels[k] < reg.split:
            continue
        grown = _grow(sl, x.shape, 6)
        rest = (reg.labels[grown] == k) & ~reg.band_map[grown]
        pieces, n = ndi.label(rest)
        for piece in (pieces == i for i in range(1, n + 1)):
            ring = ndi.binary_dilation(piece, iterations=6) & ~ndi.binary_dilation(piece, iterations=2)
            # mostly beside background, even where it touches the breast or a film edge
            dark = x[grown][ring] < background + 0.25 * (reg.levels[k] - background)
            if not ring.any() or dark.mean() >= 0.5:
                out[grown] |= ndi.binary_fill_holes(piece)  # a label's text is its holes
    out |= _bright_blobs(x, background)
    return ndi.binary_dilation(out, iterations=1) if out.any() else out


def _bright_blobs(x: np.ndarray, background: float, max_area: float = 0.03) -> np.ndarray:
    """Labels and markers too small or too lettered to be flat at the working scale:
    small compact blobs at the top of the grey scale that sit mostly beside the
    background (dense tissue that bright is ragged and sits inside tissue)."""
    top = float(np.percentile(x, 99.9))
    if top <= background:
        return np.zeros(x.shape, bool)
    cut = background + 0.8 * (top - background)
    blobs, n = ndi.label(ndi.binary_closing(x > cut, iterations=1))
    out = np.zeros(x.shape, bool)
    for k, sl in enumerate(ndi.find_objects(blobs), start=1):
        if sl is None:
            continue
        grown = _grow(sl, x.shape, 6)
        piece = ndi.binary_fill_holes(blobs[grown] == k)
        rows, cols = np.nonzero(piece)
        extent = piece.sum() / ((np.ptp(rows) + 1) * (np.ptp(cols) + 1))
        # labels are rectangles and markers discs; dense tissue is ragged
        if piece.sum() > max_area * x.size or extent < 0.6:
            continue
        ring = ndi.binary_dilation(piece, iterations=6) & ~ndi.binary_dilation(piece, iterations=2)
        beside = x[grown][ring] < background + 0.25 * (cut - background)
        if ring.any() and beside.mean() >= 0.45:
            out[grown] |= ndi.binary_dilation(piece, iterations=1)
    return out


def _thin_strips(fg: np.ndarray) -> np.ndarray:
    """Thin lines along the image's sides in the foreground: film edges too narrow or
    too grainy to be flat, a scanner's edge."""
    labels, n = ndi.label(fg)
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
    x, scale = working_image(image)
    inverted = bool(fix_polarity and not polarity_known and is_inverted(image))
    if inverted:
        x = 1.0 - x
    coarse, found, stats = _breast_on(x)
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
