"""Read any supported mammogram file, byte string or array as one grey float image.

:func:`read_image` is the single entry point of the feature chain: whatever comes in
(PNG, JPEG, PGM/PPM, TIFF, BMP or DICOM, 8- or 16-bit, grey, RGB, RGBA or palette; a
path, bytes, a binary file object or a numpy array), what comes out is a 2-D,
C-contiguous ``float32`` array in ``[0, 1]`` where bright means dense.
:class:`ImageReader` wraps it as a stateless scikit-learn transformer.

Bad input is refused before any expensive work with a subclass of
:class:`ImageReadError` (itself a :class:`ValueError`) whose message names the input.
A missing path raises :class:`FileNotFoundError` and a directory
:class:`IsADirectoryError`, as :func:`open` would.

Intensity scaling
-----------------
* ``uint8``: divided by 255.
* other non-negative integers (16-bit PNG/TIFF/PGM, arrays): divided by
  ``2**bits_used - 1`` where ``bits_used`` is the bit length of the image's maximum,
  clipped to ``[8, bits of the dtype]``. A 12-bit mammogram stored in 16 bits
  (max <= 4095) is divided by 4095, not 65535, so it is not nearly black; data that
  uses the top bit is divided by the dtype maximum (65535).
* integers with negative values, and floats outside ``[0, 1]``: min-max normalised.
  Floats already in ``[0, 1]`` are kept; booleans become 0/1.
* DICOM: the Modality LUT (rescale slope/intercept, pydicom) is applied, then the
  VOI LUT (pydicom) or else the first window centre/width (LINEAR and LINEAR_EXACT in
  float32 here, as pydicom's version is ~10x slower on a full mammogram; SIGMOID by
  pydicom). The result is scaled to ``[0, 1]`` over the window's output range when a
  window is used, else over the range the header declares (``BitsStored``, signedness,
  rescale): a 12-bit image is divided by 4095 whatever its own maximum. ``MONOCHROME1`` is inverted so that
  dense tissue is bright. Multi-frame files give their first frame; colour DICOM
  (RGB, YBR, palette) becomes grey like any colour image.

Colour is reduced to grey with the Rec. 601 luma weights (0.299, 0.587, 0.114), the
ones Pillow's ``"L"`` mode and JPEG's Y channel use; alpha is composited over black.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from numbers import Integral, Real
from typing import IO, Any

import numpy as np
from sklearn.utils._param_validation import Interval

from ._base import StatelessImageTransformer
from ._dicom import _read_dicom, _read_tags
from ._pixels import _array_scan
from ._raster import _read_pillow, _read_tifffile
from ._scan import (
    DEFAULT_MAX_PIXELS,
    DICOM_TAGS,
    EmptyImageError,
    ImageReadError,
    ImageShapeError,
    ImageTooLargeError,
    NotAnImageError,
    Scan,
    Source,
    TruncatedImageError,
    UnsupportedDicomError,
    _Limits,
    _UseTifffile,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DICOM_TAGS",
    "Scan",
    "read_scan",
    "read_tags",
    "ImageReadError",
    "EmptyImageError",
    "NotAnImageError",
    "TruncatedImageError",
    "ImageTooLargeError",
    "ImageShapeError",
    "UnsupportedDicomError",
    "read_image",
    "ImageReader",
]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_HEADER_BYTES = 132


# --------------------------------------------------------------------------- public API


def read_scan(
    source: Source,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 16,
    max_aspect: float = 20.0,
) -> Scan:
    """Read one image as a :class:`Scan`: grey float pixels and what the file says about them.

    Parameters
    ----------
    source : str, os.PathLike, bytes, bytearray, binary file object or numpy.ndarray
        A path, the encoded file content, an object with ``.read()`` returning bytes,
        or pixels of shape ``(h, w)``, ``(h, w, 1)``, ``(h, w, 2)`` (grey + alpha),
        ``(h, w, 3)`` or ``(h, w, 4)``.
    max_pixels : int, default=DEFAULT_MAX_PIXELS
        Largest accepted ``height * width``, checked from the header before decoding.
    min_side : int, default=16
        Shortest accepted side in pixels.
    max_aspect : float, default=20.0
        Largest accepted ratio of the long side to the short side.

    Returns
    -------
    Scan
        ``pixels``: 2-D C-contiguous ``float32`` array with values in ``[0, 1]``.

    Raises
    ------
    ImageReadError
        Or one of its subclasses (see the module docstring) for unreadable input.
    FileNotFoundError, IsADirectoryError
        For a path that is missing or a directory.
    TypeError
        For a source of an unsupported type or a text-mode file.

    Notes
    -----
    Nothing global is changed. Pillow's own settings still apply: its decompression
    bomb guard (``2 * PIL.Image.MAX_IMAGE_PIXELS``) also refuses images, and if some
    other code sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`` truncated files are
    padded by Pillow instead of raising :class:`TruncatedImageError`.

    Examples
    --------
    >>> import numpy as np
    >>> scan = read_scan(np.full((32, 32), 128, dtype=np.uint8))
    >>> scan.pixels.dtype, scan.shape, round(float(scan.pixels.max()), 4), scan.polarity_known
    (dtype('float32'), (32, 32), 0.502, False)
    """
    limits = _Limits(max_pixels, min_side, max_aspect)
    if isinstance(source, Scan):
        limits.check(*source.pixels.shape, "<scan>")
        return source
    if isinstance(source, np.ndarray):
        return _array_scan(source, "<array>", limits)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = repr(path)
        if os.path.isdir(path):
            raise IsADirectoryError(f"{name} is a directory, not an image file")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such image file: {name}")
        with open(path, "rb") as fp:
            return _read_stream(fp, name, limits, path.lower().endswith(".dcm"))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _read_stream(io.BytesIO(source), "<bytes>", limits, False)
    if hasattr(source, "read"):
        fname = getattr(source, "name", None)
        name = repr(fname) if isinstance(fname, str) else "<file>"
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"{name}: file object must be opened in binary mode")
        is_dcm = isinstance(fname, str) and fname.lower().endswith(".dcm")
        return _read_stream(io.BytesIO(data), name, limits, is_dcm)
    raise TypeError(f"source must be a path, bytes, a binary file object or a numpy array, not {type(source).__name__}")


def read_tags(path: str | os.PathLike) -> dict:
    """The DICOM attributes of :data:`DICOM_TAGS` in a file's header, without decoding its pixels.

    ``{}`` for a file that is not DICOM (or that cannot be read: :func:`read_scan` says why).
    Cheap enough to sort a folder of exams into views before any image is read.
    """
    return _read_tags(os.fspath(path))


def read_image(
    source: Source,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int = 16,
    max_aspect: float = 20.0,
) -> np.ndarray:
    """Read one image as a grey float image: the pixels of :func:`read_scan`.

    Returns
    -------
    numpy.ndarray
        2-D C-contiguous ``float32`` array with values in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> img = read_image(np.full((32, 32), 128, dtype=np.uint8))
    >>> img.dtype, img.shape, round(float(img.max()), 4)
    (dtype('float32'), (32, 32), 0.502)
    """
    return read_scan(source, max_pixels=max_pixels, min_side=min_side, max_aspect=max_aspect).pixels


class ImageReader(StatelessImageTransformer):
    """Read a sequence of images (paths, bytes, file objects, arrays or scans) with :func:`read_scan`.

    Stateless: ``fit`` only validates the parameters, and ``transform`` may be called
    without it. The output is one :class:`Scan` per image, so that what a DICOM header
    says about polarity and views reaches the breast-region step.

    Parameters
    ----------
    max_pixels : int, default=DEFAULT_MAX_PIXELS
        Largest accepted ``height * width``.
    min_side : int, default=16
        Shortest accepted side in pixels.
    max_aspect : float, default=20.0
        Largest accepted long side / short side ratio.

    Examples
    --------
    >>> import numpy as np
    >>> scans = ImageReader().fit_transform([np.zeros((20, 30), dtype=np.uint8)])
    >>> len(scans), scans[0].shape, scans[0].pixels.dtype
    (1, (20, 30), dtype('float32'))
    """

    _parameter_constraints: dict = {
        "max_pixels": [Interval(Integral, 1, None, closed="left")],
        "min_side": [Interval(Integral, 1, None, closed="left")],
        "max_aspect": [Interval(Real, 1, None, closed="left")],
    }

    def __init__(
        self,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        min_side: int = 16,
        max_aspect: float = 20.0,
    ) -> None:
        self.max_pixels = max_pixels
        self.min_side = min_side
        self.max_aspect = max_aspect

    def fit(self, X: Sequence[Source], y: Any = None) -> ImageReader:
        """Validate the parameters; nothing is learnt.

        Parameters
        ----------
        X : sequence of image sources
            Ignored apart from being a sequence.
        y : ignored

        Returns
        -------
        self
        """
        _check_sequence(X)
        return super().fit(X, y)

    def transform(self, X: Sequence[Source]) -> list[Scan]:
        """Read every element of ``X``.

        Parameters
        ----------
        X : sequence of image sources
            Paths, bytes, binary file objects or arrays (a 3-D array is read as a stack
            of 2-D images).

        Returns
        -------
        list of Scan
            One scan (2-D ``float32`` pixels in ``[0, 1]``) per element.
        """
        self._validate_params()
        _check_sequence(X)
        out = []
        for i, src in enumerate(X):
            try:
                out.append(
                    read_scan(
                        src,
                        max_pixels=self.max_pixels,
                        min_side=self.min_side,
                        max_aspect=self.max_aspect,
                    )
                )
            except ImageReadError as exc:
                # Arrays and bytes have no name of their own: say which element failed.
                raise type(exc)(f"X[{i}]: {exc}") from exc
        return out


# --------------------------------------------------------------------------- internals


def _check_sequence(X: Any) -> None:
    if isinstance(X, (str, bytes, bytearray, os.PathLike)) or not hasattr(X, "__iter__"):
        raise TypeError(f"X must be a sequence of image sources (e.g. a list of paths), not {type(X).__name__}")


def _read_stream(fp: IO[bytes], name: str, limits: _Limits, is_dcm: bool) -> Scan:
    """Decode an open binary stream positioned at the start of the file."""
    header = fp.read(_HEADER_BYTES)
    if not header:
        raise EmptyImageError(f"{name}: file is empty (0 bytes)")
    fp.seek(0)
    if header[128:132] == b"DICM":
        return _read_dicom(fp, name, limits, force=False)
    try:
        return _read_pillow(fp, name, limits)
    except _UseTifffile:
        fp.seek(0)
        return _read_tifffile(fp, name, limits)
    except NotAnImageError:
        # DICOM without the 128-byte preamble starts straight with a group 0002/0008
        # tag; only then is pydicom's permissive force=True reader worth a try.
        if is_dcm or header[:2] in (b"\x02\x00", b"\x08\x00"):
            fp.seek(0)
            return _read_dicom(fp, name, limits, force=True)
        if header[:4] in _TIFF_MAGIC:  # e.g. float RGB, which Pillow cannot identify
            fp.seek(0)
            return _read_tifffile(fp, name, limits)
        raise
    except TruncatedImageError:
        if header[:4] in _TIFF_MAGIC:  # compressions/layouts only tifffile decodes
            fp.seek(0)
            try:
                return _read_tifffile(fp, name, limits)
            except ImageReadError:
                pass
        raise
