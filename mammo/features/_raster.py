"""Raster files: Pillow for PNG, JPEG, PGM/PPM, TIFF, BMP; tifffile for the TIFFs Pillow would reduce."""

from __future__ import annotations

from dataclasses import replace
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._pixels import _array_scan, coloured_share
from ._scan import (
    ImageReadError,
    ImageTooLargeError,
    NotAnImageError,
    Scan,
    TruncatedImageError,
    _Limits,
    _UseTifffile,
)

# Formats Pillow may try. Restricting the list keeps weakly identified formats (TGA,
# ...) from claiming random bytes and avoids loading every Pillow plugin.
_PIL_FORMATS = ("PNG", "JPEG", "PPM", "TIFF", "BMP", "GIF", "WEBP", "JPEG2000")


def _read_pillow(fp: IO[bytes], name: str, limits: _Limits) -> Scan:
    try:
        # No warnings.catch_warnings() here: it swaps process-wide filters, which is not
        # thread-safe. Pillow warns only above ~89 MP, which the default limit refuses.
        im = Image.open(fp, formats=_PIL_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name}: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise NotAnImageError(f"{name}: not a recognised image (PNG, JPEG, PGM/PPM, TIFF, BMP or DICOM)") from exc
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
            f = min(max(min(small.size) // 64, 1), 8)
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
    return coloured_share(1.402 * cr, -0.344136 * cb - 0.714136 * cr, 1.772 * cb, scale=255.0)


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
