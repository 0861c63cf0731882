"""Per-upload work of the web app: read, crop box, prediction, display images, occlusion map.

Everything here is plain functions on bytes and arrays; nothing touches the disk.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from ..features.io import (
    EmptyImageError,
    ImageReadError,
    ImageShapeError,
    ImageTooLargeError,
    NotAnImageError,
    Scan,
    TruncatedImageError,
    UnsupportedDicomError,
    read_scan,
)

__all__ = [
    "UploadError",
    "Crop",
    "parse_crop",
    "read_upload",
    "apply_crop",
    "png_data_url",
    "display_image",
    "occlusion_map",
    "heatmap_overlay",
]


class UploadError(Exception):
    """A request the app refuses, with the HTTP status and a message safe to show.

    Parameters
    ----------
    status : int
        HTTP status code (4xx).
    message : str
        Plain-language explanation; never contains the upload's content or file name.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# Status per read error: the client sent something unusable (400), of a kind we
# cannot process (415), too big (413) or well-formed but of an unusable shape (422).
_READ_STATUS = (
    (EmptyImageError, 400, "The uploaded file is empty."),
    (ImageTooLargeError, 413, "The image has too many pixels."),
    (UnsupportedDicomError, 415, "This DICOM file cannot be decoded here."),
    (TruncatedImageError, 400, "The image file is truncated or corrupt."),
    (NotAnImageError, 415, "The file is not an image in a supported format (PNG, JPEG, PGM, TIFF, BMP or DICOM)."),
    (ImageShapeError, 422, "The image's shape cannot be analysed."),
)


def read_upload(data: bytes, *, max_pixels: int) -> Scan:
    """Decode uploaded bytes with :func:`mammo.features.io.read_scan`, mapping errors to :class:`UploadError`.

    The :class:`~mammo.features.io.Scan` keeps what a DICOM header says (polarity, views).
    """
    if not data:
        raise UploadError(400, "The uploaded file is empty.")
    try:
        return read_scan(data, max_pixels=max_pixels)
    except ImageReadError as exc:
        raise _as_upload_error(exc) from None


def _as_upload_error(exc: ImageReadError) -> UploadError:
    for kind, status, summary in _READ_STATUS:
        if isinstance(exc, kind):
            return UploadError(status, f"{summary} ({exc})")
    return UploadError(400, f"The image could not be read ({exc}).")


@dataclass(frozen=True)
class Crop:
    """A crop box in original-image pixel coordinates."""

    x: int
    y: int
    w: int
    h: int

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


_INT = re.compile(r"^\s*\d{1,9}\s*$")


def parse_crop(form, *, min_size: int = 16) -> Crop | None:
    """Read the crop box from a form: ``crop="x,y,w,h"`` or fields ``crop_x/crop_y/crop_w/crop_h``.

    Returns None when no crop is given (empty values count as absent). Whether the
    box lies inside the image is checked by :func:`apply_crop`, once the size is known.

    Raises
    ------
    UploadError
        400 for anything but four non-negative integers with ``w, h >= min_size``.
    """
    text = (form.get("crop") or "").strip()
    fields = [(form.get(f"crop_{k}") or "").strip() for k in "xywh"]
    if text and any(fields):
        raise UploadError(400, "Bad crop box: give either 'crop' or the crop_x/crop_y/crop_w/crop_h fields, not both.")
    if text:
        parts = text.split(",")
    elif any(fields):
        if not all(fields):
            raise UploadError(400, "Bad crop box: crop_x, crop_y, crop_w and crop_h must all be given.")
        parts = fields
    else:
        return None
    if len(parts) != 4 or not all(_INT.match(p) for p in parts):
        raise UploadError(400, "Bad crop box: expected four non-negative integers 'x,y,w,h' in image pixels.")
    crop = Crop(*(int(p) for p in parts))
    if crop.w < min_size or crop.h < min_size:
        raise UploadError(
            400, f"Bad crop box: width and height must be at least {min_size} pixels, got {crop.w}x{crop.h}."
        )
    return crop


def apply_crop(image: Scan, crop: Crop | None) -> Scan:
    """The part of ``image`` inside ``crop`` (a contiguous copy), or ``image`` itself for None."""
    if crop is None:
        return image
    h, w = image.shape
    if crop.x + crop.w > w or crop.y + crop.h > h:
        raise UploadError(
            400,
            f"Bad crop box: {crop.w}x{crop.h} at ({crop.x}, {crop.y}) does not fit inside the {w}x{h} image.",
        )
    return image.crop(crop.y, crop.y + crop.h, crop.x, crop.x + crop.w)


# --------------------------------------------------------------------------- display


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def display_image(image, max_side: int, crop: Crop | None = None, outline: list | None = None) -> Image.Image:
    """A grey float image (array or Scan) as an 8-bit PIL image no larger than ``max_side``.

    ``crop`` is drawn as a box; ``outline`` (``(n, 2)`` arrays of (row, col) in the
    image's pixels, e.g. :meth:`~mammo.features.region.Mammogram.outline` shifted by the
    crop) as the breast's contour, so a reader sees what was analysed.
    """
    pil = Image.fromarray(_to_uint8(np.asarray(image)))
    scale = min(1.0, max_side / max(pil.size))
    if scale < 1.0:
        pil = pil.resize(
            (max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.Resampling.LANCZOS
        )
    if crop is None and not outline:
        return pil
    pil = pil.convert("RGB")
    draw = ImageDraw.Draw(pil)
    line = max(2, round(max(pil.size) / 200))
    if crop is not None:
        box = [crop.x * scale, crop.y * scale, (crop.x + crop.w) * scale - 1, (crop.y + crop.h) * scale - 1]
        draw.rectangle(box, outline=(255, 196, 0), width=line)
    for contour in outline or []:
        points = [(float(c) * scale, float(r) * scale) for r, c in contour[:: max(1, len(contour) // 2000)]]
        if len(points) > 1:
            draw.line(points + points[:1], fill=(0, 220, 255), width=line)
    return pil


def png_data_url(image: Image.Image) -> str:
    """``data:image/png;base64,...`` of a PIL image (the page embeds images; nothing is stored)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- occlusion


def _shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    if max(image.shape) <= max_side:
        return image
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32))
    scale = max_side / max(image.shape)
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return np.asarray(pil.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def _breast_region(model, scan: Scan):
    """The breast region that ``model``'s crop step finds on ``scan`` (None for a model
    without a ``crop`` step: its own pipeline then sees the scan as it is)."""
    pipelines = getattr(model, "pipelines", None) or {}
    crop = next(iter(pipelines.values())).named_steps.get("crop") if pipelines else None
    return crop.transform([scan])[0].segmentation if crop is not None else None


def _cells(small: np.ndarray, grid: int, flat_tol: float) -> tuple[np.ndarray, np.ndarray, list]:
    """``(rows, cols, cells)``: the grid's edges and the ``(i, j)`` of its cells that are not flat."""
    rows = np.linspace(0, small.shape[0], grid + 1).round().astype(int)
    cols = np.linspace(0, small.shape[1], grid + 1).round().astype(int)
    cells = [
        (i, j)
        for i in range(grid)
        for j in range(grid)
        if small[rows[i] : rows[i + 1], cols[j] : cols[j + 1]].std() > flat_tol
    ]
    return rows, cols, cells


def occlusion_map(
    model, image: np.ndarray, *, grid: int = 8, max_side: int = 768, batch: int = 33, flat_tol: float = 0.01
) -> dict:
    """Occlusion sensitivity of P(malignant) over the full pipeline.

    The image is split into ``grid x grid`` cells; in each copy one cell is
    replaced by its own mean grey level (its texture removed, its brightness
    kept), and the whole pipeline is re-run on all copies at once. Every copy
    keeps the breast region found on the image itself (the model's crop step runs
    once): a cell's drop is what its content does to the score, not a shift of the
    crop, and no copy is segmented again.

    Parameters
    ----------
    model : MammogramModel
    image : ndarray of shape (h, w) or Scan
        Grey image in [0, 1] (already cropped to the user's box).
    grid : int
        Cells per side.
    max_side : int
        The image is first shrunk to this longer side, bounding memory (one
        copy per cell) and time.
    batch : int
        Copies per ``predict_proba`` call.
    flat_tol : float
        Cells whose grey-level standard deviation is at most this (background,
        typically a third to two thirds of a mammogram) are not re-run: flattening
        them changes nothing, so their drop is 0.

    Returns
    -------
    dict
        ``baseline`` (P(malignant) of the unoccluded, shrunk image), ``n_run``
        (cells re-run), ``drop``
        (grid x grid array: baseline minus P(malignant) with that cell
        occluded; positive = the cell pushed the score up), ``rows``/``cols``
        (cell edges in the shrunk image) and ``shape`` (the shrunk image's shape).
    """
    known = bool(getattr(image, "polarity_known", False))
    small = _shrink(np.asarray(image, dtype=np.float32), max_side)
    h, w = small.shape
    grid = max(1, min(int(grid), h, w))
    rows, cols, cells = _cells(small, grid, flat_tol)

    original = Scan(small, polarity_known=known)  # a DICOM's polarity stays the header's
    original = replace(original, segmentation=_breast_region(model, original))

    def copies(chunk):
        for i, j in chunk:
            occluded = small.copy()
            patch = occluded[rows[i] : rows[i + 1], cols[j] : cols[j + 1]]
            patch[...] = patch.mean()
            yield replace(original, pixels=occluded)

    probs = [model.predict_proba([original] + list(copies(cells[: batch - 1])))["tumour"][:, 1]]
    for start in range(batch - 1, len(cells), batch):
        probs.append(model.predict_proba(list(copies(cells[start : start + batch])))["tumour"][:, 1])
    p = np.concatenate(probs)
    baseline = float(p[0])
    drop = np.zeros((grid, grid))
    for (i, j), q in zip(cells, p[1:]):
        drop[i, j] = baseline - q
    return {"baseline": baseline, "drop": drop, "rows": rows, "cols": cols, "shape": (h, w), "n_run": len(cells)}


def heatmap_overlay(image: np.ndarray, occ: dict, max_side: int) -> Image.Image:
    """The occlusion map over the (shrunk) image: red where the cell raised P(malignant), blue where it lowered it.

    Colour strength is relative to the largest absolute change, but never to less
    than ``0.05``, so that a map where no cell matters stays grey instead of
    showing noise at full strength.
    """
    small = _shrink(np.asarray(image, dtype=np.float32), max(occ["shape"]))
    grey = np.repeat(small[..., None], 3, axis=-1)
    drop, rows, cols = occ["drop"], occ["rows"], occ["cols"]
    scale = max(float(np.abs(drop).max()), 0.05)
    alpha = np.zeros(small.shape, np.float32)
    sign = np.zeros(small.shape, np.float32)
    for i in range(drop.shape[0]):
        for j in range(drop.shape[1]):
            cell = (slice(rows[i], rows[i + 1]), slice(cols[j], cols[j + 1]))
            alpha[cell] = 0.6 * abs(drop[i, j]) / scale
            sign[cell] = np.sign(drop[i, j])
    red = np.array([1.0, 0.15, 0.1], np.float32)
    blue = np.array([0.1, 0.35, 1.0], np.float32)
    colour = np.where(sign[..., None] >= 0, red, blue)
    rgb = grey * (1 - alpha[..., None]) + colour * alpha[..., None]
    pil = Image.fromarray(_to_uint8(rgb))
    if max(pil.size) > max_side:
        s = max_side / max(pil.size)
        pil = pil.resize((max(1, round(pil.width * s)), max(1, round(pil.height * s))), Image.Resampling.LANCZOS)
    return pil
