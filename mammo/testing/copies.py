"""A mammogram as a film archive or another scanner would deliver it: film edges, a label and
a marker around it, or a larger, slightly grey detector; with where the original now sits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _background(image: np.ndarray) -> tuple[float, float]:
    """``(level, grain)`` of an image's background: the median and spread of its border
    pixels below the image's median (the chest wall's side of the border is tissue)."""
    border = np.concatenate([image[:2].ravel(), image[-2:].ravel(), image[:, :2].ravel(), image[:, -2:].ravel()])
    dark = border[border <= np.median(image)]
    if dark.size < 8:
        dark = np.sort(image.ravel())[: max(8, image.size // 50)]
    return float(np.median(dark)), float(min(0.02, np.std(dark)))


def _draw_label(canvas: np.ndarray, rng: np.random.Generator, box: tuple[int, int, int, int], text: str) -> None:
    """A white film label with dark text filling ``box`` (row0, row1, col0, col1)."""
    from PIL import Image, ImageDraw, ImageFont

    r0, r1, c0, c1 = box
    h, w = r1 - r0, c1 - c0
    if h < 4 or w < 8:
        return
    label = Image.new("L", (w, h), int(255 * rng.uniform(0.85, 1.0)))
    try:
        font = ImageFont.load_default(size=max(8, int(0.7 * h)))
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    ImageDraw.Draw(label).text(
        (max(1, w // 12), max(0, h // 8)), text, fill=int(255 * rng.uniform(0.05, 0.3)), font=font
    )
    canvas[r0:r1, c0:c1] = np.asarray(label, np.float32) / 255


def film_scan(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    sides: Sequence[str] | None = None,
    pad: float = 0.12,
    label: bool = True,
    marker: bool = True,
    text: str = "RMLO",
) -> tuple[np.ndarray, tuple[int, int]]:
    """``image`` (dark background) as a scanned film: ``(copy, (row, col) offset of the original)``.

    The original is laid on a larger piece of film of its own background level (with
    grain), bright unexposed edges cover ``sides`` (default: one to four random sides
    of "top", "bottom", "left", "right", each 2-8% deep, with a short penumbra), a white
    label with dark ``text`` in a corner of the margin (where it fits whole) and a round
    lead marker above the original. Every change lies outside the original's area, so
    its breast is the truth.
    """
    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape
    pr, pc = int(round(pad * h)), int(round(pad * w))
    bg, grain = _background(image)
    H, W = h + 2 * pr, w + 2 * pc
    canvas = np.clip(bg + rng.normal(0, max(0.004, grain), (H, W)), 0, 1).astype(np.float32)
    canvas[pr : pr + h, pc : pc + w] = image
    if sides is None:
        all_sides = ["top", "bottom", "left", "right"]
        sides = list(rng.choice(all_sides, size=int(rng.integers(1, 5)), replace=False))
    for side in sides:
        _film_edge(canvas, rng, side, (pr, pc), bg)
    inner = (max(2, pr // 3), max(2, pc // 3))  # clear of the film edges
    if label:
        _film_label(canvas, rng, (pr, pc), inner, text)
    if marker:
        _lead_marker(canvas, rng, (pr, pc), (h, w), inner)
    return canvas, (pr, pc)


def _film_edge(canvas: np.ndarray, rng: np.random.Generator, side: str, margin: tuple[int, int], bg: float) -> None:
    """A bright unexposed edge on ``side``, 2-8% deep (at most the margin), with a short penumbra."""
    H, W = canvas.shape
    across = side in ("top", "bottom")
    depth = max(2, int(rng.uniform(0.02, 0.08) * (H if across else W)))
    depth = min(depth, margin[0] if across else margin[1])
    if depth < 1:  # no margin on that side: the edge would lie on the original
        return
    level = rng.uniform(0.85, 1.0)
    # the collimator's penumbra, never the whole edge (a 1-2 px margin keeps its bright row)
    ramp = np.linspace(level, bg, num=min(max(2, depth // 4), depth - 1) + 2)[1:-1]
    profile = np.concatenate([np.full(depth - len(ramp), level), ramp]).astype(np.float32)
    strip = profile[:, None] + rng.normal(0, 0.003, (len(profile), W if across else H))
    strip = np.clip(strip, 0, 1).astype(np.float32)
    if side == "top":
        canvas[: len(profile)] = strip
    elif side == "bottom":
        canvas[H - len(profile) :] = strip[::-1]
    elif side == "left":
        canvas[:, : len(profile)] = strip.T
    else:
        canvas[:, W - len(profile) :] = strip[::-1].T


def _film_label(
    canvas: np.ndarray, rng: np.random.Generator, margin: tuple[int, int], inner: tuple[int, int], text: str
) -> None:
    """The label in a corner of the film's margin where it fits whole: never on the original."""
    H, W = canvas.shape
    pr, pc = margin
    lh, lw = max(6, int(0.06 * H)), max(12, int(0.18 * W))
    spots = []
    if pr - inner[0] >= lh:  # above or below it
        spots += [(r, c) for r in (inner[0], H - inner[0] - lh) for c in (inner[1], W - inner[1] - lw)]
    if pc - inner[1] >= lw:  # beside it
        spots += [(r, c) for c in (inner[1], W - inner[1] - lw) for r in (inner[0], H - inner[0] - lh)]
    if spots:
        r0, c0 = spots[int(rng.integers(len(spots)))]
        _draw_label(canvas, rng, (r0, r0 + lh, c0, c0 + lw), text)


def _lead_marker(
    canvas: np.ndarray,
    rng: np.random.Generator,
    margin: tuple[int, int],
    size: tuple[int, int],
    inner: tuple[int, int],
) -> None:
    """A round lead marker above the original if the disc fits there whole, else beside it, else none."""
    H, W = canvas.shape
    (pr, pc), (h, w) = margin, size
    rad = max(2, int(0.012 * max(H, W)))
    rr, cc = np.mgrid[0:H, 0:W]
    if pr - rad - 1 > inner[0] + rad:
        r_m, c_m = int(rng.integers(inner[0] + rad, pr - rad - 1)), int(rng.integers(pc, pc + w))
    elif pc - rad - 1 > inner[1] + rad:
        r_m, c_m = int(rng.integers(pr, pr + h)), int(rng.integers(inner[1] + rad, pc - rad - 1))
    else:
        return
    canvas[(rr - r_m) ** 2 + (cc - c_m) ** 2 <= rad**2] = rng.uniform(0.9, 1.0)


def larger_detector(
    image: np.ndarray, *, factor: float = 1.8, level: float = 0.06, where: str = "centre"
) -> tuple[np.ndarray, tuple[int, int]]:
    """``image`` on a detector ``factor`` times its size whose empty area reads ``level``
    (slightly grey): ``(copy, (row, col) offset of the original)``. ``where`` is
    "centre" or "chest wall" (flush with the left side, as a breast is positioned)."""
    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape
    H, W = int(round(factor * h)), int(round(factor * w))
    canvas = np.full((H, W), level, np.float32)
    r0 = (H - h) // 2
    c0 = 0 if where == "chest wall" else (W - w) // 2
    canvas[r0 : r0 + h, c0 : c0 + w] = image
    return canvas, (r0, c0)
