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
from dataclasses import dataclass, field, replace
from numbers import Integral, Real
from typing import IO, Any, Sequence, Union

import numpy as np
from PIL import Image, UnidentifiedImageError
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "Scan",
    "read_scan",
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

#: Largest accepted ``width * height``. 64 megapixels holds the largest digital
#: mammograms (about 4000 x 5000 = 20 MP; 7000 x 9000 tomosynthesis 2-D views) with
#: room to spare, while an image whose header claims more is refused before its pixels
#: are decoded: decoded to float32 a 64 MP image already needs 256 MB, and a
#: "decompression bomb" of a few KB can claim billions of pixels. Pillow's own guard
#: (``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 MP) still applies on top of this.
DEFAULT_MAX_PIXELS: int = 64_000_000

Source = Union[str, "os.PathLike[str]", bytes, bytearray, IO[bytes], np.ndarray, "Scan"]

# Rec. 601 luma, as in Pillow's RGB->L conversion and the Y of JPEG's YCbCr.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Formats Pillow may try. Restricting the list keeps weakly identified formats (TGA,
# ...) from claiming random bytes and avoids loading every Pillow plugin.
_PIL_FORMATS = ("PNG", "JPEG", "PPM", "TIFF", "BMP", "GIF", "WEBP", "JPEG2000")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_HEADER_BYTES = 132


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
    """

    pixels: np.ndarray
    polarity_known: bool = False
    chroma: float = 0.0
    tags: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return self.pixels.shape

    def __array__(self, dtype=None, copy=None):
        return self.pixels if dtype is None else self.pixels.astype(dtype)

    def crop(self, row0: int, row1: int, col0: int, col1: int) -> "Scan":
        """The scan restricted to a box (a contiguous copy of the pixels)."""
        return replace(self, pixels=np.ascontiguousarray(self.pixels[row0:row1, col0:col1]))


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
        return _finish(_array_scan(source, "<array>", limits))
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = repr(path)
        if os.path.isdir(path):
            raise IsADirectoryError(f"{name} is a directory, not an image file")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such image file: {name}")
        with open(path, "rb") as fp:
            return _finish(_read_stream(fp, name, limits, path.lower().endswith(".dcm")))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _finish(_read_stream(io.BytesIO(source), "<bytes>", limits, False))
    if hasattr(source, "read"):
        fname = getattr(source, "name", None)
        name = repr(fname) if isinstance(fname, str) else "<file>"
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"{name}: file object must be opened in binary mode")
        is_dcm = isinstance(fname, str) and fname.lower().endswith(".dcm")
        return _finish(_read_stream(io.BytesIO(data), name, limits, is_dcm))
    raise TypeError(
        "source must be a path, bytes, a binary file object or a numpy array, "
        f"not {type(source).__name__}"
    )


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


class ImageReader(TransformerMixin, BaseEstimator):
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

    def fit(self, X: Sequence[Source], y: Any = None) -> "ImageReader":
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
        self._validate_params()
        _check_sequence(X)
        return self

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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        return tags


# --------------------------------------------------------------------------- internals


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
                f"{name}: {width}x{height} image has a side shorter than "
                f"min_side={self.min_side} pixels"
            )
        if long_ / short > self.max_aspect:
            raise ImageShapeError(
                f"{name}: {width}x{height} image has aspect ratio {long_ / short:.1f}, "
                f"above max_aspect={self.max_aspect:g}"
            )


def _check_sequence(X: Any) -> None:
    if isinstance(X, (str, bytes, bytearray, os.PathLike)) or not hasattr(X, "__iter__"):
        raise TypeError(
            f"X must be a sequence of image sources (e.g. a list of paths), "
            f"not {type(X).__name__}"
        )


def _finish(scan: Scan) -> Scan:
    # Luma weights and rounding can step a hair outside [0, 1].
    np.clip(scan.pixels, 0.0, 1.0, out=scan.pixels)
    return scan


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


# ----------------------------------------------------------------------------- Pillow


def _read_pillow(fp: IO[bytes], name: str, limits: _Limits) -> Scan:
    try:
        # No warnings.catch_warnings() here: it swaps process-wide filters, which is not
        # thread-safe. Pillow warns only above ~89 MP, which the default limit refuses.
        im = Image.open(fp, formats=_PIL_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise NotAnImageError(
            f"{name}: not a recognised image (PNG, JPEG, PGM/PPM, TIFF, BMP or DICOM)"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise TruncatedImageError(f"{name}: corrupt or truncated image header ({exc})") from exc

    with im:
        width, height = im.size
        limits.check(height, width, name)  # before im.load(): header only
        fmt = im.format
        if fmt == "TIFF" and im.mode in ("RGB", "RGBA") and _tiff_bits(im) > 8:
            # Pillow reduces 16-bit colour TIFF to 8 bits; tifffile keeps them.
            raise _UseTifffile(name)
        chroma = None
        if fmt == "JPEG" and im.mode == "RGB":
            chroma = _jpeg_chroma(fp)
            # Let libjpeg emit only the Y (luma) channel: no chroma upsampling or
            # colour conversion, the fastest path for the common 3-channel JPEGs.
            im.draft("L", im.size)
        try:
            im.load()
            arr = _pillow_pixels(im)
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
            msg = str(exc)
            if "truncated" not in msg:
                msg = f"corrupt image data ({msg})"
            raise TruncatedImageError(f"{name}: {fmt} {msg}") from exc
    scan = _array_scan(arr, name, limits)
    return scan if chroma is None else replace(scan, chroma=chroma)


def _jpeg_chroma(fp: IO[bytes]) -> float:
    """:func:`_chroma` of a colour JPEG from a reduced decode (the grey read skips chroma)."""
    pos = fp.tell()
    try:
        fp.seek(0)
        with Image.open(fp, formats=("JPEG",)) as small:
            # libjpeg scales by 1/2, 1/4 or 1/8 while decoding: keep about 64+ pixels a side
            f = int(np.clip(min(small.size) // 64, 1, 8))
            small.draft("YCbCr", (max(1, small.width // f), max(1, small.height // f)))
            ycc = np.asarray(small)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError):
        return 0.0  # the full decode reports the damage
    finally:
        fp.seek(pos)
    if ycc.ndim != 3:
        return 0.0
    # JFIF's YCbCr -> RGB: the spread max(R, G, B) - min(R, G, B) depends on Cb and Cr
    # alone, so no colour conversion is needed (the RGB clip at 0 and 255 is ignored).
    cb = ycc[..., 1].astype(np.float32) - 128.0
    cr = ycc[..., 2].astype(np.float32) - 128.0
    r, g, b = 1.402 * cr, -0.344136 * cb - 0.714136 * cr, 1.772 * cb
    spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    return float((spread > 0.1 * 255.0).mean()) if spread.size else 0.0


def _pillow_pixels(im: Image.Image) -> np.ndarray:
    """Pixels of a loaded Pillow image in a dtype/shape :func:`_array_to_grey` understands."""
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA" if (mode == "PA" or "transparency" in im.info) else "RGB")
    elif mode not in ("1", "L", "LA", "RGB", "RGBA", "F", "I") and not mode.startswith("I;16"):
        # CMYK, YCbCr, LAB, HSV, La, RGBa, ...
        im = im.convert("RGBA" if "A" in mode or "a" in mode else "RGB")
    return np.asarray(im)


def _tiff_bits(im: Image.Image) -> int:
    bits = getattr(im, "tag_v2", {}).get(258, 8)  # BitsPerSample
    return int(max(bits) if isinstance(bits, tuple) else bits)


# ---------------------------------------------------------------------------- tifffile


def _read_tifffile(fp: IO[bytes], name: str, limits: _Limits) -> Scan:
    import tifffile

    try:
        with tifffile.TiffFile(fp) as tif:
            page = tif.pages.first
            shape = page.shape
            if len(shape) == 3 and shape[0] in (1, 2, 3, 4) and shape[-1] not in (1, 2, 3, 4):
                shape = shape[1:] + shape[:1]  # planar (separate) samples
            if len(shape) >= 2:
                limits.check(int(shape[0]), int(shape[1]), name)
            arr = page.asarray()
            if arr.ndim == 3 and page.planarconfig == 2:  # SEPARATE: (samples, h, w)
                arr = np.moveaxis(arr, 0, -1)
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises many kinds on corrupt data
        raise TruncatedImageError(f"{name}: TIFF could not be decoded ({exc})") from exc
    return _array_scan(arr, name, limits)


# ------------------------------------------------------------------------------- DICOM


def _read_dicom(fp: IO[bytes], name: str, limits: _Limits, force: bool) -> Scan:
    import pydicom
    from pydicom.pixels import (
        apply_color_lut,
        apply_rescale,
        apply_voi,
        apply_windowing,
        get_decoder,
        pixel_array,
    )
    from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        ds = pydicom.dcmread(fp, force=force)
    except Exception as exc:  # pydicom raises many kinds on malformed input
        if force:
            raise NotAnImageError(f"{name}: not a recognised image or DICOM file") from exc
        raise TruncatedImageError(f"{name}: corrupt or truncated DICOM ({exc})") from exc

    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if force and "Rows" not in ds:
            raise NotAnImageError(f"{name}: not a recognised image or DICOM file")
        raise UnsupportedDicomError(f"{name}: DICOM file has no pixel data")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    except Exception as exc:
        raise TruncatedImageError(f"{name}: DICOM lacks a valid Rows/Columns ({exc})") from exc
    limits.check(rows, cols, name)

    meta = ds.file_meta
    if "TransferSyntaxUID" not in meta:
        # Files without a meta header: the syntax is how pydicom managed to parse them.
        implicit, little = ds.original_encoding
        if not little:
            raise UnsupportedDicomError(f"{name}: big-endian DICOM without a file meta header")
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    tsyntax = UID(meta.TransferSyntaxUID)
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise UnsupportedDicomError(
            f"{name}: DICOM transfer syntax {tsyntax.name} ({tsyntax}) has no pixel "
            "decoder in pydicom"
        ) from exc
    if not decoder.is_available:
        plugins = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise UnsupportedDicomError(
            f"{name}: DICOM transfer syntax {tsyntax.name} ({tsyntax}) cannot be "
            f"decoded here; install one of: {plugins}"
        )

    try:
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        arr = pixel_array(ds, index=0 if n_frames > 1 else None)
    except Exception as exc:  # decoders raise ValueError, RuntimeError, OSError, ...
        raise TruncatedImageError(
            f"{name}: DICOM pixel data ({tsyntax.name}) is corrupt or truncated ({exc})"
        ) from exc

    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    tags = _dicom_tags(ds)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return replace(_array_scan(arr, name, limits), tags=tags)  # already RGB after pixel_array

    if arr.ndim != 2:
        raise ImageShapeError(f"{name}: DICOM frame has shape {arr.shape}, expected 2-D")
    try:
        arr = apply_rescale(arr, ds)
        out = None
        lo = hi = None
        if ds.get("VOILUTSequence"):
            arr = apply_voi(arr, ds)
        elif "WindowCenter" in ds and "WindowWidth" in ds:
            out = _linear_window(arr, ds)
            if out is None:  # SIGMOID: pydicom; its output range is what it maps +-inf to
                with np.errstate(over="ignore", invalid="ignore"):
                    lo, hi = apply_windowing(np.array([-np.inf, np.inf]), ds)
                arr = apply_windowing(arr, ds)
        else:
            lo, hi = _stored_range(ds)
    except Exception as exc:
        raise UnsupportedDicomError(
            f"{name}: DICOM LUT/window could not be applied ({exc})"
        ) from exc

    if out is None:
        out = _minmax(arr.astype(np.float32, copy=False), lo, hi)
    if photometric == "MONOCHROME1":
        np.subtract(1.0, out, out=out)
    return Scan(out, polarity_known=True, tags=tags)


def _stored_range(ds: Any) -> tuple[float | None, float | None]:
    """The grey range the header declares (BitsStored, signedness, rescale), so that a dark
    image without a window stays dark instead of being stretched to its own min/max.
    ``(None, None)`` (the data's min/max) under a Modality LUT."""
    if ds.get("ModalityLUTSequence"):
        return None, None
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    lo, hi = lo * slope + intercept, hi * slope + intercept
    return (min(lo, hi), max(lo, hi))


def _dicom_tags(ds: Any) -> dict:
    out = {}
    for key in DICOM_TAGS:
        value = ds.get(key)
        if value is not None and str(value).strip():
            out[key] = str(value).strip()
    return out


def _linear_window(arr: np.ndarray, ds: Any) -> np.ndarray | None:
    """DICOM LINEAR / LINEAR_EXACT windowing (PS3.3 C.11.2.1.2) straight to [0, 1].

    Same result as ``pydicom.pixels.apply_windowing`` followed by scaling its output
    range to [0, 1], but in float32 with one clip instead of boolean masks: about 10x
    faster on a full-field mammogram. Returns None for functions left to pydicom.
    """
    func = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if func not in ("LINEAR", "LINEAR_EXACT"):
        return None
    centre = float(_first(ds.WindowCenter))
    width = float(_first(ds.WindowWidth))
    if func == "LINEAR":
        if width < 1:
            raise ValueError(f"Window Width {width} < 1 for a LINEAR window")
        centre, width = centre - 0.5, width - 1.0
    elif width <= 0:
        raise ValueError(f"Window Width {width} <= 0 for a LINEAR_EXACT window")
    if width == 0:  # LINEAR with width 1 is a threshold
        return (arr > centre).astype(np.float32)
    out = arr.astype(np.float32)
    out -= np.float32(centre - width / 2)
    out *= np.float32(1.0 / width)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _first(value: Any) -> Any:
    """First value of a possibly multi-valued DICOM element."""
    return value[0] if hasattr(value, "__len__") and not isinstance(value, str) else value


# ------------------------------------------------------------------------------ arrays


def _array_scan(arr: np.ndarray, name: str, limits: _Limits) -> Scan:
    """A :class:`Scan` of an array of pixels (grey, grey + alpha, RGB or RGBA)."""
    grey = _array_to_grey(arr, name, limits)
    return Scan(grey, chroma=_chroma(arr) if arr.ndim == 3 and arr.shape[2] >= 3 else 0.0)


def _chroma(rgb: np.ndarray, step: int = 4) -> float:
    """Share of pixels whose colour channels spread over more than a tenth of the scale."""
    a = np.asarray(rgb)[::step, ::step, :3]
    if a.dtype.kind == "b":
        a = a.astype(np.uint8)
    if a.dtype.kind == "f":
        scale = max(1.0, float(np.nanmax(np.abs(a)))) if a.size else 1.0
    elif a.dtype.itemsize == 1:
        scale = 255.0
    else:
        scale = float(max(1, int(a.max()))) if a.size else 1.0
    planes = [a[..., k].astype(np.float32) for k in range(3)]  # faster than reducing a length-3 axis
    spread = np.maximum(np.maximum(*planes[:2]), planes[2]) - np.minimum(np.minimum(*planes[:2]), planes[2])
    return float((spread > 0.1 * scale).mean()) if spread.size else 0.0


def _array_to_grey(arr: np.ndarray, name: str, limits: _Limits) -> np.ndarray:
    """Validate an array and reduce it to a new 2-D float32 image in [0, 1]."""
    if arr.size == 0:
        raise EmptyImageError(f"{name}: image has no pixels (shape {arr.shape})")
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise NotAnImageError(f"{name}: array dtype {arr.dtype} is not a numeric image type")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3):
        raise ImageShapeError(
            f"{name}: expected a (h, w) or (h, w, channels) image, got shape {arr.shape}"
        )
    if arr.ndim == 3 and arr.shape[2] > 4:
        raise ImageShapeError(
            f"{name}: {arr.shape[2]} channels (shape {arr.shape}); at most 4 are supported"
        )
    limits.check(arr.shape[0], arr.shape[1], name)

    alpha = None
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        alpha = _alpha(arr[:, :, -1])
        arr = arr[:, :, :-1]
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
    if kind == "b":
        grey = arr.astype(np.float32)
        if grey.ndim == 3:
            grey = grey @ _LUMA
    elif kind == "f":
        grey = arr.astype(np.float32)  # always a copy: never alias the caller's array
        if not np.isfinite(grey).all():
            raise NotAnImageError(f"{name}: image contains NaN or infinite values")
        if grey.ndim == 3:
            grey = grey @ _LUMA
        lo, hi = float(grey.min()), float(grey.max())
        if lo < 0.0 or hi > 1.0:
            grey = _minmax(grey, lo, hi)
    else:
        grey = arr.astype(np.float32) @ _LUMA if arr.ndim == 3 else None
        hi_val = int(arr.max())
        lo_val = int(arr.min()) if kind == "i" else 0
        if lo_val < 0:
            grey = arr.astype(np.float32) if grey is None else grey
            grey = _minmax(grey, float(grey.min()), float(grey.max()))
        else:
            scale = np.float32(_int_scale(arr.dtype, hi_val))
            if grey is None:
                grey = np.divide(arr, scale, dtype=np.float32)  # one pass, no temp copy
            else:
                grey /= scale
    if alpha is not None:
        grey *= alpha
    return np.ascontiguousarray(grey)


def _int_scale(dtype: np.dtype, max_value: int) -> int:
    """Divisor mapping a non-negative integer image to [0, 1] (see module docstring)."""
    if dtype.itemsize == 1:
        return 255
    bits = min(max(max_value.bit_length(), 8), dtype.itemsize * 8)
    return 2**bits - 1


def _alpha(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f":
        return np.clip(a, 0.0, 1.0).astype(np.float32)
    if a.dtype.kind == "b":
        return a.astype(np.float32)
    return np.divide(a, np.float32(np.iinfo(a.dtype).max), dtype=np.float32)


def _minmax(x: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scale float32 ``x`` in place so that [lo, hi] (default: its range) becomes [0, 1]."""
    lo = float(x.min()) if lo is None else float(lo)
    hi = float(x.max()) if hi is None else float(hi)
    if not x.flags.writeable or x.dtype != np.float32:
        x = x.astype(np.float32)
    if hi <= lo:
        x[...] = 0.0  # constant image: nothing to stretch
        return x
    x -= np.float32(lo)
    x *= np.float32(1.0 / (hi - lo))
    return x
