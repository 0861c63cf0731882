"""What a read produces (:class:`Scan`), the errors it raises, and the size limits it checks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from numbers import Integral, Real
from typing import IO, Union

import numpy as np

#: Largest accepted ``width * height``. 64 megapixels holds the largest digital
#: mammograms (about 4000 x 5000 = 20 MP; 7000 x 9000 tomosynthesis 2-D views) with
#: room to spare, while an image whose header claims more is refused before its pixels
#: are decoded: decoded to float32 a 64 MP image already needs 256 MB, and a
#: "decompression bomb" of a few KB can claim billions of pixels. Pillow's own guard
#: (``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 MP) still applies on top of this.
DEFAULT_MAX_PIXELS: int = 64_000_000

Source = Union[str, "os.PathLike[str]", bytes, bytearray, IO[bytes], np.ndarray, "Scan"]


class ImageReadError(ValueError):
    """An input could not be read as an image; the message names the input."""


class EmptyImageError(ImageReadError):
    """A 0-byte file or byte string, or an array with no elements."""


class NotAnImageError(ImageReadError):
    """Data no reader recognises (text, archives, noise) or an array of a non-image dtype."""


class TruncatedImageError(ImageReadError):
    """A recognised format whose data is cut short or corrupt."""


class ImageTooLargeError(ImageReadError):
    """``width * height`` exceeds ``max_pixels`` (checked from the header, before decoding)."""


class ImageShapeError(ImageReadError):
    """A side below ``min_side``, aspect ratio above ``max_aspect``, or a bad array rank."""


class UnsupportedDicomError(ImageReadError):
    """A DICOM file without pixel data, or in a transfer syntax that cannot be decoded here."""


class _UseTifffile(ImageReadError):
    """Internal: Pillow can open this TIFF but would lose precision."""


#: DICOM attributes kept with a scan: who and what it shows (exam grouping, views).
DICOM_TAGS = (
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "ImageLaterality",
    "Laterality",
    "ViewPosition",
    "Modality",
    "Manufacturer",
    "PhotometricInterpretation",
    "BitsStored",
)


@dataclass(frozen=True, eq=False)
class Scan:
    """One image as read, with what its file says about it.

    Attributes
    ----------
    pixels : ndarray of shape (h, w), float32 in [0, 1]
        Grey levels. For DICOM, bright means dense (MONOCHROME1 already inverted).
    polarity_known : bool
        True when the file's header fixed what its grey levels mean (DICOM
        MONOCHROME1/2): the breast region then never guesses polarity from pixels.
    chroma : float
        Share of pixels whose colour channels differ clearly (0 for grey files):
        a mammogram is monochrome.
    tags : dict
        DICOM attributes of :data:`DICOM_TAGS` present in the file, as strings.
    segmentation : Segmentation or None
        The breast region already found on these pixels, or on an edited copy of them
        of the same shape (:attr:`Mammogram.segmentation <mammo.features.region.Mammogram>`):
        the crop step reuses it instead of segmenting again. Never set by a read.
    """

    pixels: np.ndarray
    polarity_known: bool = False
    chroma: float = 0.0
    tags: dict = field(default_factory=dict)
    segmentation: object = None

    @property
    def shape(self) -> tuple:
        return self.pixels.shape

    def __array__(self, dtype=None, copy=None):
        return self.pixels if dtype is None else self.pixels.astype(dtype)

    def crop(self, row0: int, row1: int, col0: int, col1: int) -> Scan:
        """The scan restricted to a box (a contiguous copy of the pixels; a breast region
        found on the whole scan no longer applies)."""
        return replace(self, pixels=np.ascontiguousarray(self.pixels[row0:row1, col0:col1]), segmentation=None)


class _Limits:
    __slots__ = ("max_pixels", "min_side", "max_aspect")

    def __init__(self, max_pixels: int, min_side: int, max_aspect: float) -> None:
        if not isinstance(max_pixels, Integral) or max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
        if not isinstance(min_side, Integral) or min_side < 1:
            raise ValueError(f"min_side must be a positive integer, got {min_side!r}")
        if not isinstance(max_aspect, Real) or not max_aspect >= 1:
            raise ValueError(f"max_aspect must be a number >= 1, got {max_aspect!r}")
        self.max_pixels = int(max_pixels)
        self.min_side = int(min_side)
        self.max_aspect = float(max_aspect)

    def check(self, height: int, width: int, name: str) -> None:
        if height * width > self.max_pixels:
            raise ImageTooLargeError(
                f"{name}: {width}x{height} = {height * width:,} pixels exceeds the limit "
                f"max_pixels={self.max_pixels:,} (refused before decoding)"
            )
        short, long_ = min(height, width), max(height, width)
        if short < self.min_side:
            raise ImageShapeError(
                f"{name}: {width}x{height} image has a side shorter than min_side={self.min_side} pixels"
            )
        if long_ / short > self.max_aspect:
            raise ImageShapeError(
                f"{name}: {width}x{height} image has aspect ratio {long_ / short:.1f}, "
                f"above max_aspect={self.max_aspect:g}"
            )
