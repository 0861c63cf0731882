"""Flat regions of a working image: the background candidates, film edges and frames, polarity.

A mammogram's background (direct exposure) is dead flat and sits at one end of the grey
scale, beside the breast's skin line; unexposed film edges and scanner frames are flat
strips along the sides; the breast is textured. This module finds the flat regions of a
working-size copy of an image and describes each one: its grey level, whether it is a
strip along the sides, how much tissue borders it and how gradually that tissue fades
into it. :mod:`mammo.features.segmentation` builds the breast mask on that description.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from . import _morph

#: A pixel is "dead flat" when the grey-level std of its 5x5 neighbourhood is below this
#: fraction of the image's grey range: backgrounds are, tissue is not.
FLAT_TOLERANCE = 0.006
#: Invert a raster image only when the largest bright background candidate is this many
#: times the largest dark one (ties keep the usual dark background).
POLARITY_MARGIN = 1.5
#: Smallest share of the image that a background candidate or an empty area covers.
OPEN_AREA = 0.03


def box_mean(x: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` moving average, mirrored at the border (scipy's uniform_filter, with OpenCV)."""
    return cv2.blur(np.ascontiguousarray(x, dtype=np.float32), (size, size), borderType=cv2.BORDER_REFLECT)


def local_std(x: np.ndarray, size: int = 5) -> np.ndarray:
    mean = box_mean(x, size)
    return np.sqrt(np.maximum(box_mean(x * x, size) - mean * mean, 0.0))


def texture_map(x: np.ndarray) -> np.ndarray:
    """Local grey-level std after a 3x3 mean: pixel grain averages out, tissue structure stays."""
    return local_std(box_mean(x, 3))


def grey_span(x: np.ndarray) -> float:
    lo, hi = np.percentile(x[::2, ::2], [0.5, 99.5])
    return float(hi - lo)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold on 256 levels between the values' min and max (as scikit-image's)."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        raise ValueError("constant")
    q = np.ascontiguousarray(np.clip((values - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8))
    t, _ = cv2.threshold(q.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return lo + (t + 0.5) * (hi - lo) / 255.0


def flat_regions(
    x: np.ndarray, *, min_area: float = 0.001, texture: np.ndarray | None = None, grey_range: float | None = None
) -> tuple[np.ndarray, int]:
    """Connected dead-flat regions of a working image: ``(labels, n)`` as from :func:`scipy.ndimage.label`.

    Regions smaller than ``min_area`` of the image are dropped (flat specks inside tissue).
    The tolerance grows with the grain of the image's quietest pixels (a noisy background).
    ``texture`` and ``grey_range`` may be passed when already computed.
    """
    labels, sizes, _ = _flat_labels(x, min_area, texture, grey_range)
    return labels, len(sizes) - 1


def _flat_labels(x: np.ndarray, min_area: float, texture: np.ndarray | None, grey_range: float | None):
    """:func:`flat_regions`' labels, every label's pixel count and bounding box
    ``(row0, row1, col0, col1)`` (label 0 included: the pixels of no region)."""
    rng = grey_span(x) if grey_range is None else grey_range
    if rng <= 0:
        box = (0, x.shape[0], 0, x.shape[1])
        return np.ones(x.shape, np.int32), np.array([0, x.size], np.intp), np.array([box, box])
    sd = texture_map(x) if texture is None else texture
    # A grainy background is flat on the scale of its own grain: the quietest
    # hundredth of the image is background in any mammogram.
    tol = max(FLAT_TOLERANCE * rng, 3.0 * float(np.percentile(sd[::2, ::2], 1)))
    flat = _morph.opening(sd < tol)
    labels, n, sizes, boxes = _morph.label_stats(flat)
    if n == 0:
        return labels, sizes, boxes
    keep = sizes >= max(4, min_area * x.size)
    keep[0] = False
    remap = np.zeros(n + 1, np.int32)
    remap[keep] = np.arange(1, keep.sum() + 1)
    kept = sizes[keep]
    return remap[labels], np.concatenate([[x.size - kept.sum()], kept]), np.concatenate([boxes[:1], boxes[keep]])


def _first_run_end(r: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per column of ``r``, the row just past the run of True that begins at ``start``."""
    after = ~r & (np.arange(r.shape[0])[:, None] >= start[None, :])
    end = np.argmax(after, axis=0)
    end[~after[end, np.arange(r.shape[1])]] = r.shape[0]  # the run reaches the last row
    return end


def _median(values: np.ndarray) -> float:
    """``np.median`` of a few integers, without its overhead (the same value: the middle one,
    or the mean of the middle two, exactly representable)."""
    v = np.sort(values)
    n = len(v)
    return float(v[n // 2]) if n % 2 else (float(v[n // 2 - 1]) + float(v[n // 2])) / 2


def _box(region: np.ndarray) -> tuple | None:
    rows = np.flatnonzero(region.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(region.any(axis=0))
    return (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def _sides(box: tuple, shape: tuple) -> list[int]:
    """The sides (0 top, 1 right, 2 bottom, 3 left) that a region with bounding ``box`` may
    be a strip along: within the side's margin, and along at least 30% of it."""
    h, w = shape
    out = []
    for k in range(4):
        margin = max(2, int(0.03 * (h, w)[k % 2]))
        gap = (box[0], w - box[3], h - box[1], box[2])[k]
        # the covered share of the side is at most the box's extent along it
        extent = box[3] - box[2] if k % 2 == 0 else box[1] - box[0]
        if gap <= margin and extent / (w, h)[k % 2] >= 0.3:
            out.append(k)
    return out


def band_part(region: np.ndarray, max_depth: float = 0.2) -> np.ndarray:
    """The part of a region that is a strip along the image's sides (a film edge or frame).

    A strip is about equally deep all along the side it covers. A background touches the
    sides too, but its inner edge is the breast's curved skin line, so its depth varies
    and it reaches far inward; a label stuck to a film edge is a bump on the strip, left
    out of the part returned.
    """
    box = _box(region)
    bands = None if box is None else side_bands(region, True, box, max_depth)
    return np.zeros_like(region) if bands is None else region & bands


def side_bands(labels: np.ndarray, k, box: tuple, max_depth: float = 0.2) -> np.ndarray | None:
    """:func:`band_part`'s strips along the sides for the region ``labels == k`` (inside
    ``box``), as one map, or None when there is none. Each side is judged on the few rows
    next to it, never on the whole image."""
    shape = h, w = labels.shape
    bands = None
    for q in _sides(box, shape):  # each side in turn brought to the top
        side = (h, w)[q % 2]
        margin = max(2, int(0.03 * side))
        deep_max = int(max_depth * side) + margin + 2
        # Runs deeper than this are neither steady nor a band's depth: no need to follow them.
        reach = int(1.25 * max_depth * side) + margin + 4
        depth = min(side, max(deep_max + 1, reach))
        # the rows next to this side, under the region's box, brought to the top
        rows, cols = (
            (slice(0, depth), slice(box[2], box[3])),
            (slice(box[0], box[1]), slice(w - depth, w)),
            (slice(h - depth, h), slice(box[2], box[3])),
            (slice(box[0], box[1]), slice(0, depth)),
        )[q]
        r = np.rot90(labels[rows, cols] == k, q)
        # per column: where the region starts (within a scanner's thin margin of the
        # side) and how deep its first run reaches
        top = r[: deep_max + 1]
        start = np.argmax(top, axis=0)
        touching = top.any(axis=0) & (start <= margin)
        if touching.sum() / (w, h)[q % 2] < 0.3:
            continue
        d = _first_run_end(r[:reach][:, touching], start[touching])
        deep = _median(d)
        steady = np.abs(d - deep) <= max(2.0, 0.25 * deep)
        if deep > max_depth * side or steady.mean() < 0.7:
            continue
        bands = np.zeros(shape, bool) if bands is None else bands
        n = int(d[steady].max()) + 2
        bands[
            (
                (slice(0, n), slice(None)),
                (slice(None), slice(max(0, w - n), w)),
                (slice(max(0, h - n), h), slice(None)),
                (slice(None), slice(0, n)),
            )[q]
        ] = True
    return bands


@dataclass
class Regions:
    """The flat regions of a working image, classified (per-label arrays: index 0 unused)."""

    labels: np.ndarray
    sizes: np.ndarray  # pixels per label (index 0: the pixels of no region)
    bands: np.ndarray  # bool: strips along the image's sides (film edges, frames)
    levels: np.ndarray  # median grey level
    tissue_contact: np.ndarray  # tissue pixels in the ring 6-10 px around the region
    ring_size: np.ndarray  # pixels in that ring
    fade: np.ndarray  # that tissue weighted by how close it comes to the region's grey level
    tissue: np.ndarray  # bool map of textured pixels away from every flat region
    split: float  # grey level between the dark and the bright regions (Otsu's)
    band_map: np.ndarray  # the strips of band regions
    grey_range: float
    grey_ends: tuple  # (0.5th, 99.5th percentile)
    distance: np.ndarray  # per pixel: distance to the nearest flat region
    nearest: np.ndarray  # per pixel: that region's label
    candidates: np.ndarray  # bool: could be the background (see _background_candidates)
    open_areas: np.ndarray  # bool: large, and reaching the side or a film edge (see _open_areas)

    def inverted(self) -> Regions:
        """The same regions described for the inverted image (1 - x)."""
        return replace(
            self,
            levels=np.where(np.arange(len(self.levels)) > 0, 1.0 - self.levels, 0.0),
            split=1.0 - self.split,
            grey_ends=(1.0 - self.grey_ends[1], 1.0 - self.grey_ends[0]),
        )


def classify(x: np.ndarray) -> Regions:
    ends = tuple(float(v) for v in np.percentile(x[::2, ::2], [0.5, 99.5]))
    rng = ends[1] - ends[0]
    sd = texture_map(x)
    labels, sizes, boxes = _flat_labels(x, 0.001, sd, rng)
    n = len(sizes) - 1
    flat = labels > 0
    # textured pixels, clearly more than a grainy background; a step between two flat
    # regions blurs over a few pixels, which is not tissue either
    tissue = (sd >= 2 * FLAT_TOLERANCE * rng) & ~_morph.dilate(flat, 2)
    # nor is a scanner's thin margin along the image's sides
    m = max(2, int(0.03 * min(x.shape)))
    tissue[:m] = tissue[-m:] = tissue[:, :m] = tissue[:, -m:] = False
    try:
        split = otsu_threshold(x)
    except ValueError:  # constant image
        split = float(x.flat[0])
    levels = np.zeros(n + 1)
    if n:
        # flat regions: their mean is their median
        levels = np.bincount(labels.ravel(), weights=x.ravel(), minlength=n + 1) / np.maximum(sizes, 1)
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
    bands, band_map = _bands(labels, sizes, boxes)
    reg = Regions(
        labels,
        sizes,
        bands,
        levels,
        contact,
        ring_size,
        fade,
        tissue,
        split,
        band_map,
        rng,
        ends,
        distance,
        nearest,
        np.zeros(n + 1, bool),
        np.zeros(n + 1, bool),
    )
    # it does not depend on the grey levels, nor on film edges added to band_map later
    reg.open_areas = _open_areas(reg, OPEN_AREA)
    reg.candidates = _background_candidates(reg)
    return reg


def _bands(labels: np.ndarray, sizes: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which regions are strips along the sides, and the strips themselves (``boxes``: each
    label's bounding box)."""
    shape = labels.shape
    bands = np.zeros(len(sizes), bool)
    band_map = np.zeros(shape, bool)
    m = max(2, int(0.03 * min(shape))) + 1
    edge = np.zeros(shape, bool)
    edge[:m] = edge[-m:] = edge[:, :m] = edge[:, -m:] = True
    for k in np.flatnonzero(np.bincount(labels[edge], minlength=len(sizes))[1:]) + 1:
        box = tuple(int(v) for v in boxes[k])
        strips = side_bands(labels, k, box)
        if strips is None:  # no part of it is a strip
            continue
        part = (labels == k) & strips
        bands[k] = part.sum() >= 0.6 * sizes[k]
        if bands[k]:
            band_map |= part
    return bands, band_map


def _grow(sl: tuple, shape: tuple, by: int) -> tuple:
    return tuple(slice(max(0, s.start - by), min(n, s.stop + by)) for s, n in zip(sl, shape))


def _background_candidates(reg: Regions) -> np.ndarray:
    """Bool per label: regions that could be the background.

    The background is large and reaches the image's edge, or a film edge or frame around
    it; flat patches enclosed by tissue (saturated dense tissue, an implant) cannot be.
    """
    # direct exposure is the darkest thing on the film (the brightest once inverted):
    # smooth tissue and implants in between are not background
    lo, hi = reg.grey_ends
    extreme = (reg.levels <= lo + 0.1 * reg.grey_range) | (reg.levels >= hi - 0.1 * reg.grey_range)
    return reg.open_areas & extreme


def empty_areas(reg: Regions, below: float) -> np.ndarray:
    """Bool per label: large flat regions that reach the image's side (or a film edge)
    darker than ``below``, whatever their grey level: the background beside the breast,
    and an empty, slightly grey detector around a smaller image or rotation fill."""
    return reg.open_areas & (reg.levels < below)


def _open_areas(reg: Regions, min_area: float) -> np.ndarray:
    """Bool per label: at least ``min_area`` of the image, not a film edge, and reaching
    the image's side or a film edge (flat patches enclosed by tissue never do)."""
    n, sizes = len(reg.levels), reg.sizes
    shape = reg.labels.shape
    # within a film edge's penumbra of the side or of the edge
    reach = max(3, int(0.05 * min(shape)))
    near = np.zeros(shape, bool)
    near[:reach] = near[-reach:] = near[:, :reach] = near[:, -reach:] = True
    if reg.band_map.any():
        near |= _morph.distance_to(reg.bands[reg.labels]) <= reach
    touching = np.bincount(reg.labels[near], minlength=n) > 0
    ok = touching & ~reg.bands & (sizes >= min_area * reg.labels.size)
    ok[0] = False
    return ok


def polarity_evidence(x: np.ndarray, reg: Regions | None = None) -> tuple[float, float]:
    """``(dark, bright)``: area (fraction of the image) of the largest dark and bright
    background candidates of ``x`` that border tissue.

    Film edges and frames are left out: they border the background, whatever the polarity;
    so are flat patches that touch no tissue (labels, markers).
    """
    reg = classify(x) if reg is None else reg
    sizes = reg.sizes / reg.labels.size
    usable = reg.candidates & (reg.tissue_contact >= 0.05 * reg.ring_size)
    dark = usable & (reg.levels < reg.split)
    bright = usable & (reg.levels >= reg.split)
    return (float(sizes[dark].max()) if dark.any() else 0.0, float(sizes[bright].max()) if bright.any() else 0.0)


def decide_inverted(dark: float, bright: float) -> bool:
    return bool(bright > POLARITY_MARGIN * dark and bright > 0.03)
