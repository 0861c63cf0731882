"""Film edges, frames, labels and markers on a working image, as a mask to leave out of the breast.

Artefacts are bright (lead letters, unexposed film) and flat or compact: the strips of the
band regions, flat patches that the background mostly surrounds, small compact blobs at the
top of the grey scale beside the background, and thin lines along the image's sides.
"""

from __future__ import annotations

import numpy as np

from . import _morph
from ._flat import Regions, side_bands


def _ring_share(
    labels: np.ndarray,
    n: int,
    distance: np.ndarray,
    nearest: np.ndarray,
    hit,
    near: float = 2,
    far: float = 6,
) -> tuple[np.ndarray, np.ndarray]:
    """Per label: pixels in the ring ``near``-``far`` px out (nearest label's), and the share of them where ``hit``.

    ``hit``: a bool map, or a function of the ring's flat indices giving the ring's hits
    (so that a per-pixel test runs on the ring only)."""
    ring = np.flatnonzero((distance > near) & (distance <= far))
    owner = nearest.ravel()[ring]
    total = np.bincount(owner, minlength=n + 1).astype(float)
    hits = np.bincount(owner[hit(ring) if callable(hit) else hit.ravel()[ring]], minlength=n + 1)
    return total, np.divide(hits, total, out=np.zeros(n + 1), where=total > 0)


def _fill_small_holes(mask: np.ndarray, max_area: float = 0.01) -> np.ndarray:
    """``mask`` with its holes filled, but not the large ones (a frame's hole is the image)."""
    if not mask.any():
        return mask
    holes = _morph.fill_holes(mask) & ~mask
    if not holes.any():
        return mask
    lab, n = _morph.label(holes)
    small = np.bincount(lab.ravel(), minlength=n + 1) <= max_area * mask.size
    small[0] = False
    return mask | small[lab]


def artefact_mask(x: np.ndarray, reg: Regions, background: float) -> np.ndarray:
    """Film edges, frames, labels and markers, as a mask.

    Artefacts are bright (lead letters, unexposed film) and flat: the strips of band
    regions, and flat patches mostly beside the background, even where they touch the
    breast or a film edge (tissue surrounds a flat patch of dense tissue or an implant).
    """
    n = len(reg.levels) - 1
    flat_x, flat_nearest = x.ravel(), reg.nearest.ravel()

    def dark_pix(ring):  # darker than a quarter of the way from the background to the region
        return flat_x[ring] < background + 0.25 * (reg.levels[flat_nearest[ring]] - background)

    total, dark = _ring_share(reg.labels, n, reg.distance, reg.nearest, dark_pix)
    k = np.arange(n + 1)
    label_like = (k > 0) & (reg.levels >= reg.split) & ~reg.bands & ((total == 0) | (dark >= 0.5))
    out = reg.band_map | _fill_small_holes(label_like[reg.labels])  # a label's text is its holes
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
    blobs, n, areas, boxes = _morph.label_stats(filled)
    if n == 0:
        return filled
    # labels are rectangles and markers discs; dense tissue is ragged
    sides = boxes[1:, 1::2] - boxes[1:, ::2]
    shaped = np.concatenate(
        [[False], (areas[1:] <= max_area * x.size) & (areas[1:] / (sides[:, 0] * sides[:, 1]) >= 0.6)]
    )
    if not shaped.any():
        return np.zeros(x.shape, bool)
    # The ring 2-6 px around the shaped blobs lies within 6 px of them (the distance is
    # never below the larger coordinate step), and so does every path of that length:
    # distances and nearest labels on their padded bounding box are the whole image's.
    chosen = boxes[shaped]
    pad = 8
    r0, c0 = max(0, chosen[:, 0].min() - pad), max(0, chosen[:, 2].min() - pad)
    win = (slice(r0, chosen[:, 1].max() + pad), slice(c0, chosen[:, 3].max() + pad))
    part = blobs[win]
    distance, nearest = _morph.nearest_label(np.where(shaped[part], part, 0))
    total, beside = _ring_share(part, n, distance, nearest, x[win] < background + 0.25 * (cut - background))
    keep = shaped & (total > 0) & (beside >= 0.45)
    out = keep[blobs]
    return _morph.dilate(out, 1) if out.any() else out


def thin_strips(fg: np.ndarray) -> np.ndarray:
    """Thin lines along the image's sides in the foreground: film edges too narrow or
    too grainy to be flat, a scanner's edge."""
    labels, n, _, boxes = _morph.label_stats(fg)
    out = np.zeros(fg.shape, bool)
    h, w = fg.shape
    for k in range(1, n + 1):
        box = tuple(int(v) for v in boxes[k])
        if box[0] == 0 or box[2] == 0 or box[1] == h or box[3] == w:
            strips = side_bands(labels, k, box, max_depth=0.05)
            if strips is not None:
                out |= (labels == k) & strips
    return out
