"""Tests for mammo.features.io: every format, input kind, scaling rule and refusal."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image, ImageFile
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_windowing, get_decoder
from pydicom.uid import (
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from sklearn.base import clone

from mammo.features.io import (
    DEFAULT_MAX_PIXELS,
    EmptyImageError,
    ImageReader,
    ImageReadError,
    ImageShapeError,
    ImageTooLargeError,
    NotAnImageError,
    Scan,
    TruncatedImageError,
    UnsupportedDicomError,
    read_image,
)
from mammo.testing import write_dicom

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RNG = np.random.default_rng(0)
LUMA = np.array([0.299, 0.587, 0.114])


def _save(tmp_path: Path, arr_or_img, name: str, **kw) -> Path:
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    path = tmp_path / name
    img.save(path, **kw)
    return path


def _smooth(h: int = 48, w: int = 64) -> np.ndarray:
    """An 8-bit gradient with a bright disc: survives JPEG nearly unchanged."""
    yy, xx = np.mgrid[:h, :w]
    img = 40 + 150 * xx / w + 60 * (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (h / 4) ** 2)
    return img.astype(np.uint8)


def _check_out(img: np.ndarray, shape: tuple[int, int]) -> None:
    assert img.dtype == np.float32
    assert img.shape == shape
    assert img.flags.c_contiguous
    assert 0.0 <= img.min() and img.max() <= 1.0


# ------------------------------------------------------------------ raster formats


@pytest.mark.parametrize("ext", ["png", "pgm", "tif", "bmp"])
def test_8bit_grey_round_trip(tmp_path, ext):
    arr = RNG.integers(0, 256, (48, 64), dtype=np.uint8)
    img = read_image(_save(tmp_path, arr, f"a.{ext}"))
    _check_out(img, (48, 64))
    np.testing.assert_array_equal(img, arr.astype(np.float32) / 255)


@pytest.mark.parametrize("ext", ["png", "pgm", "tif"])
def test_16bit_full_range_divides_by_65535(tmp_path, ext):
    arr = RNG.integers(0, 65536, (40, 50), dtype=np.uint16)
    arr[0, 0] = 65535
    img = read_image(_save(tmp_path, arr, f"a.{ext}"))
    _check_out(img, (40, 50))
    np.testing.assert_allclose(img, arr / 65535, atol=1e-6)


@pytest.mark.parametrize("ext", ["png", "pgm", "tif"])
def test_12bit_data_in_16bit_file_reaches_one(tmp_path, ext):
    ramp = np.tile(np.linspace(0, 4095, 64).round().astype(np.uint16), (32, 1))
    img = read_image(_save(tmp_path, ramp, f"a.{ext}"))
    assert img.max() == 1.0
    np.testing.assert_allclose(img, ramp / 4095, atol=1e-6)


def test_jpeg_grey_and_rgb(tmp_path):
    grey = _smooth()
    img = read_image(_save(tmp_path, grey, "g.jpg", quality=95))
    _check_out(img, grey.shape)
    assert np.abs(img - grey / 255).mean() < 0.01
    # Three equal channels, as in the DPhi set: the same grey image.
    rgb = read_image(_save(tmp_path, np.dstack([grey] * 3), "c.jpg", quality=95))
    _check_out(rgb, grey.shape)
    assert np.abs(rgb - grey / 255).mean() < 0.01


def test_tiff_float32_kept_and_outside_range_stretched(tmp_path):
    f = RNG.random((32, 40), dtype=np.float32)
    np.testing.assert_array_equal(read_image(_save(tmp_path, f, "f.tif")), f)
    g = f * 1000 - 300
    out = read_image(_save(tmp_path, g, "g.tif"))
    np.testing.assert_allclose(out, (g - g.min()) / (g.max() - g.min()), atol=1e-6)


def test_tiff_colour_that_pillow_cannot_read_uses_tifffile(tmp_path):
    rgb16 = RNG.integers(0, 65536, (32, 40, 3), dtype=np.uint16)
    rgb16[0, 0] = 65535
    tifffile.imwrite(tmp_path / "c16.tif", rgb16, photometric="rgb")
    out = read_image(tmp_path / "c16.tif")
    # 16-bit precision kept (Pillow alone would cut it to 8 bits).
    np.testing.assert_allclose(out, (rgb16 / 65535) @ LUMA, atol=1e-6)
    rgbf = RNG.random((32, 40, 3), dtype=np.float32)
    tifffile.imwrite(tmp_path / "cf.tif", rgbf, photometric="rgb")
    np.testing.assert_allclose(read_image(tmp_path / "cf.tif"), rgbf @ LUMA, atol=1e-6)


def test_rgb_rgba_la_palette(tmp_path):
    rgb = RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    expected = (rgb / 255) @ LUMA
    np.testing.assert_allclose(read_image(_save(tmp_path, rgb, "rgb.png")), expected, atol=1e-6)

    alpha = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
    rgba = np.dstack([rgb, alpha])
    np.testing.assert_allclose(read_image(_save(tmp_path, rgba, "rgba.png")), expected * alpha / 255, atol=1e-6)
    grey = rgb[:, :, 0]
    la = Image.fromarray(np.dstack([grey, alpha]), mode="LA")
    np.testing.assert_allclose(read_image(_save(tmp_path, la, "la.png")), grey / 255 * alpha / 255, atol=1e-6)

    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    path = _save(tmp_path, pal, "pal.png")
    with Image.open(path) as im:
        assert im.mode == "P"
    want = (np.asarray(pal.convert("RGB")) / 255) @ LUMA
    np.testing.assert_allclose(read_image(path), want, atol=1e-6)


def test_bilevel_image(tmp_path):
    arr = RNG.random((32, 32)) > 0.5
    np.testing.assert_array_equal(read_image(_save(tmp_path, arr, "b.png")), arr)


# ------------------------------------------------------------------ source kinds


def test_bytes_file_objects_and_paths_agree(tmp_path):
    arr = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    path = _save(tmp_path, arr, "a.png")
    ref = read_image(path)
    data = path.read_bytes()
    np.testing.assert_array_equal(read_image(str(path)), ref)
    np.testing.assert_array_equal(read_image(data), ref)
    np.testing.assert_array_equal(read_image(bytearray(data)), ref)
    np.testing.assert_array_equal(read_image(io.BytesIO(data)), ref)
    with open(path, "rb") as fp:
        np.testing.assert_array_equal(read_image(fp), ref)


def test_text_mode_file_and_unknown_source_type_raise_type_error(tmp_path):
    (tmp_path / "t.txt").write_text("hello")
    with open(tmp_path / "t.txt") as fp, pytest.raises(TypeError, match="binary"):
        read_image(fp)
    with pytest.raises(TypeError, match="int"):
        read_image(42)


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 1)])
def test_array_grey(shape):
    arr = RNG.integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(read_image(arr), arr.reshape(20, 30) / np.float32(255))


def test_array_rgb_rgba_and_two_channel():
    rgb = RNG.random((20, 30, 3), dtype=np.float32)
    alpha = RNG.random((20, 30), dtype=np.float32)
    np.testing.assert_allclose(read_image(rgb), rgb @ LUMA, atol=1e-6)
    np.testing.assert_allclose(read_image(np.dstack([rgb, alpha])), (rgb @ LUMA) * alpha, atol=1e-6)
    grey = rgb[:, :, 0]
    np.testing.assert_allclose(read_image(np.dstack([grey, alpha])), grey * alpha, atol=1e-6)


def test_array_float_unit_range_kept_without_aliasing():
    arr = RNG.random((20, 30), dtype=np.float32)
    out = read_image(arr)
    np.testing.assert_array_equal(out, arr)
    assert not np.shares_memory(out, arr)
    f64 = read_image(arr.astype(np.float64))
    assert f64.dtype == np.float32


def test_array_scaling_rules():
    np.testing.assert_array_equal(read_image(np.eye(20, dtype=bool)), np.eye(20))
    signed = np.arange(-200, 400, dtype=np.int16).reshape(20, 30)
    out = read_image(signed)
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out, (signed + 200) / 599, atol=1e-6)
    u16_low = np.full((20, 30), 100, dtype=np.uint16)
    np.testing.assert_allclose(read_image(u16_low), 100 / 255)  # at least 8 bits assumed
    u16_13bit = np.zeros((20, 30), dtype=np.uint16)
    u16_13bit[0, 0] = 5000
    assert read_image(u16_13bit).max() == pytest.approx(5000 / 8191)
    const = np.full((20, 30), 7.5)
    np.testing.assert_array_equal(read_image(const), 0.0)
    np.testing.assert_array_equal(read_image(np.zeros((20, 30), np.uint16)), 0.0)


def test_non_contiguous_array_gives_contiguous_output():
    arr = RNG.integers(0, 256, (40, 60), dtype=np.uint8)[::2, ::2]
    out = read_image(arr.T)
    assert out.flags.c_contiguous and out.shape == (30, 20)


# ------------------------------------------------------------------ DICOM


def _ramp16(bits: int = 12, shape=(32, 48)) -> np.ndarray:
    n = shape[0] * shape[1]
    return np.linspace(0, 2**bits - 1, n).round().astype(np.uint16).reshape(shape)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_dicom_8bit(tmp_path, syntax):
    arr = RNG.integers(0, 256, (32, 48), dtype=np.uint8)
    arr[0, :2] = [0, 255]
    img = read_image(write_dicom(arr, tmp_path / "a.dcm", syntax=syntax))
    _check_out(img, arr.shape)
    np.testing.assert_allclose(img, arr / 255, atol=1e-6)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_dicom_without_window_is_scaled_by_its_stored_bits(tmp_path, syntax):
    """No window: the header's range (BitsStored), not the data's min/max, so a dark image stays dark."""
    arr = _ramp16() + 100
    img = read_image(write_dicom(arr, tmp_path / "a.dcm", bits_stored=13, syntax=syntax))
    _check_out(img, arr.shape)
    np.testing.assert_allclose(img, arr / (2**13 - 1), atol=1e-6)
    dark = read_image(write_dicom(arr // 4, tmp_path / "d.dcm", bits_stored=13, syntax=syntax))
    np.testing.assert_allclose(dark, (arr // 4) / (2**13 - 1), atol=1e-6)


def test_dicom_monochrome1_is_inverted(tmp_path):
    arr = _ramp16()
    m2 = read_image(write_dicom(arr, tmp_path / "m2.dcm", bits_stored=12))
    m1 = read_image(write_dicom(arr, tmp_path / "m1.dcm", bits_stored=12, photometric="MONOCHROME1"))
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    assert m1[0, 0] == 1.0 and m2[0, 0] == 0.0


def test_dicom_window(tmp_path):
    arr = _ramp16()
    img = read_image(write_dicom(arr, tmp_path / "w.dcm", bits_stored=12, WindowCenter=2048, WindowWidth=1024))
    assert np.all(img[arr < 1536] == 0.0)
    assert np.all(img[arr > 2560] == 1.0)
    mid = (arr > 1700) & (arr < 2400)
    np.testing.assert_allclose(img[mid], (arr[mid] - 1535.5) / 1023, atol=2e-3)


@pytest.mark.parametrize(
    "func, centre, width",
    [
        ("LINEAR", 2048, 1024),
        ("LINEAR", [1000, 3000], [500, 100]),
        ("LINEAR_EXACT", 2000.5, 301.0),
        ("LINEAR", 1000, 1),
        ("SIGMOID", 2048, 800),
    ],
)
def test_dicom_window_matches_pydicom(tmp_path, func, centre, width):
    arr = _ramp16()
    path = write_dicom(
        arr,
        tmp_path / "w.dcm",
        bits_stored=12,
        WindowCenter=centre,
        WindowWidth=width,
        VOILUTFunction=func,
    )
    ds = pydicom.dcmread(path)
    ref = apply_windowing(arr, ds)
    with np.errstate(over="ignore"):
        lo, hi = apply_windowing(np.array([-1e9, 1e9]), ds)
    np.testing.assert_allclose(read_image(path), (ref - lo) / (hi - lo), atol=1e-5)


def test_dicom_voi_lut_sequence(tmp_path):
    arr = _ramp16()
    lut = np.sqrt(np.arange(4096) / 4095) * 60000
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = lut.round().astype("<u2").tobytes()
    path = write_dicom(
        arr, tmp_path / "lut.dcm", bits_stored=12, VOILUTSequence=[item], WindowCenter=10, WindowWidth=2
    )  # the LUT takes precedence
    img = read_image(path)
    want = lut.round()[arr]
    np.testing.assert_allclose(img, (want - want.min()) / (want.max() - want.min()), atol=1e-6)


def test_dicom_rescale_then_window(tmp_path):
    arr = (_ramp16(bits=10) // 1).astype(np.uint16)  # 0..1023
    # Rescaled values run from -1000 to +1046; the window is in rescaled units.
    path = write_dicom(
        arr,
        tmp_path / "r.dcm",
        bits_stored=10,
        RescaleSlope=2,
        RescaleIntercept=-1000,
        WindowCenter=0,
        WindowWidth=1000,
    )
    img = read_image(path)
    hu = arr * 2.0 - 1000
    assert np.all(img[hu < -500] == 0.0) and np.all(img[hu > 500] == 1.0)
    mid = np.abs(hu) < 400
    np.testing.assert_allclose(img[mid], (hu[mid] + 500) / 1000, atol=3e-3)
    # Without the rescale, the window (centre 0) would put every pixel at 1.
    assert 0.3 < img.mean() < 0.7


def test_dicom_rle_lossless(tmp_path):
    arr = _ramp16()
    path = write_dicom(arr, tmp_path / "rle.dcm", bits_stored=12, compress=RLELossless)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_allclose(read_image(path), arr / 4095, atol=1e-6)


def test_dicom_multiframe_gives_first_frame(tmp_path):
    frames = np.stack([_ramp16(), 4095 - _ramp16()])
    img = read_image(write_dicom(frames, tmp_path / "mf.dcm", bits_stored=12))
    np.testing.assert_allclose(img, _ramp16() / 4095, atol=1e-6)


def test_dicom_rgb(tmp_path):
    rgb = RNG.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    rgb[0, 0] = 255
    img = read_image(write_dicom(rgb, tmp_path / "rgb.dcm", photometric="RGB"))
    np.testing.assert_allclose(img, (rgb / 255) @ LUMA, atol=1e-6)


def test_dicom_without_preamble_bytes_and_file_object(tmp_path):
    arr = RNG.integers(0, 256, (32, 48), dtype=np.uint8)
    arr[0, :2] = [0, 255]
    bare = write_dicom(arr, tmp_path / "bare.dcm", preamble=False)
    assert bare.read_bytes()[128:132] != b"DICM"
    np.testing.assert_allclose(read_image(bare), arr / 255, atol=1e-6)
    np.testing.assert_allclose(read_image(bare.read_bytes()), arr / 255, atol=1e-6)
    full = write_dicom(arr, tmp_path / "full.dcm")
    with open(full, "rb") as fp:
        np.testing.assert_allclose(read_image(fp), arr / 255, atol=1e-6)


def test_dicom_without_pixel_data(tmp_path):
    path = write_dicom(_ramp16(), tmp_path / "np.dcm")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(UnsupportedDicomError, match="no pixel data"):
        read_image(path)


def _undecodable_syntax():
    for uid in (JPEGLSLossless, JPEGLosslessSV1, HTJ2KLossless):
        if not get_decoder(uid).is_available:
            return uid
    pytest.skip("every candidate compressed syntax is decodable in this environment")


def _encapsulated_junk(path: Path, syntax) -> Path:
    path = write_dicom(_ramp16(), path, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(100)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path)
    return path


def test_dicom_undecodable_syntax_names_syntax_and_plugin(tmp_path):
    syntax = _undecodable_syntax()
    path = _encapsulated_junk(tmp_path / "u.dcm", syntax)
    with pytest.raises(UnsupportedDicomError) as err:
        read_image(path)
    msg = str(err.value)
    assert syntax.name in msg and "pylibjpeg" in msg and "u.dcm" in msg


def test_dicom_corrupt_data_in_decodable_syntax(tmp_path):
    assert get_decoder(JPEG2000Lossless).is_available  # via Pillow/openjpeg
    with pytest.raises(TruncatedImageError, match="JPEG 2000"):
        read_image(_encapsulated_junk(tmp_path / "j.dcm", JPEG2000Lossless))


def test_dicom_truncated(tmp_path):
    path = write_dicom(_ramp16(shape=(64, 64)), tmp_path / "t.dcm", bits_stored=12)
    data = path.read_bytes()
    with pytest.raises(TruncatedImageError, match="<bytes>"):
        read_image(data[: len(data) - 3000])


def test_dicom_pixel_count_checked_before_decoding(tmp_path):
    path = write_dicom(_ramp16(), tmp_path / "big.dcm", bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 20000, 20000  # header lies; pixel data is tiny
    ds.save_as(path)
    with pytest.raises(ImageTooLargeError, match="20000x20000"):
        read_image(path)


# ------------------------------------------------------------------ refusals


def _png_header_only_bomb(size: int) -> bytes:
    """A valid 1-bit PNG of size x size zeros, built row-chunk by row-chunk (a few KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    row = b"\x00" * (1 + (size + 7) // 8)
    comp = zlib.compressobj(9)
    rows = 1000
    body = b"".join(comp.compress(row * rows) for _ in range(size // rows))
    body += comp.compress(row * (size % rows)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", size, size, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    def refuse(self, *a, **k):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_pixel_bomb_refused_from_header(tmp_path, no_pixel_decoding):
    bomb = _png_header_only_bomb(20000)
    assert len(bomb) < 200_000
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    with pytest.raises(ImageTooLargeError, match="bomb.png"):
        read_image(path)
    # Below Pillow's own guard: our limit alone must refuse it.
    mid = _png_header_only_bomb(9000)
    assert 9000 * 9000 > DEFAULT_MAX_PIXELS
    with pytest.raises(ImageTooLargeError, match="9000x9000"):
        read_image(mid)


def test_max_pixels_parameter(tmp_path):
    arr = np.zeros((100, 100), np.uint8)
    path = _save(tmp_path, arr, "a.png")
    assert read_image(path, max_pixels=10_000).shape == (100, 100)
    with pytest.raises(ImageTooLargeError):
        read_image(path, max_pixels=9_999)
    with pytest.raises(ImageTooLargeError):
        read_image(arr, max_pixels=9_999)


def _truncated(tmp_path: Path, ext: str) -> bytes:
    noisy = RNG.integers(0, 256, (128, 128), dtype=np.uint8)
    data = _save(tmp_path, noisy, f"full.{ext}").read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_truncated_files(tmp_path, ext):
    path = tmp_path / f"half.{ext}"
    path.write_bytes(_truncated(tmp_path, ext))
    with pytest.raises(TruncatedImageError, match=f"half.{ext}"):
        read_image(path)


def test_truncated_png_header():
    data = io.BytesIO()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(data, "PNG")
    with pytest.raises(TruncatedImageError):
        read_image(data.getvalue()[:20])


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "not an image")
    return buf.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is text\n" * 20,
        bytes(RNG.integers(0, 256, 5000, dtype=np.uint8)),
        _zip_bytes(),
    ],
    ids=["text", "random", "zip"],
)
def test_not_an_image(data):
    with pytest.raises(NotAnImageError, match="<bytes>"):
        read_image(data)


def test_text_file_and_fake_dcm(tmp_path):
    (tmp_path / "notes.png").write_text("I am text with an image name\n")
    with pytest.raises(NotAnImageError, match="notes.png"):
        read_image(tmp_path / "notes.png")
    (tmp_path / "fake.dcm").write_bytes(bytes(RNG.integers(0, 256, 3000, dtype=np.uint8)))
    with pytest.raises(ImageReadError, match="fake.dcm"):
        read_image(tmp_path / "fake.dcm")


def test_empty_inputs(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(EmptyImageError, match="empty.png"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(EmptyImageError, match="<bytes>"):
        read_image(b"")
    with pytest.raises(EmptyImageError, match="<file>"):
        read_image(io.BytesIO())
    with pytest.raises(EmptyImageError, match="<array>"):
        read_image(np.zeros((0, 10)))


@pytest.mark.parametrize("size", [(1, 1), (2000, 10), (10, 2000), (15, 100), (400, 19)])
def test_bad_shapes_from_file(tmp_path, size):
    path = _save(tmp_path, np.zeros(size, np.uint8), "s.png")
    with pytest.raises(ImageShapeError, match="s.png"):
        read_image(path)


def test_shape_limits_are_parameters():
    assert read_image(np.zeros((10, 400)), min_side=10, max_aspect=40).shape == (10, 400)
    with pytest.raises(ImageShapeError, match="aspect"):
        read_image(np.zeros((20, 500)))


@pytest.mark.parametrize(
    "arr",
    [np.zeros((2, 20, 20, 3)), np.zeros(400), np.zeros((20, 20, 5)), np.zeros((3, 20, 20))],
    ids=["4d", "1d", "5ch", "channels_first"],
)
def test_bad_array_shapes(arr):
    with pytest.raises(ImageShapeError, match="<array>"):
        read_image(arr)


@pytest.mark.parametrize(
    "arr",
    [
        np.array([[object()] * 20] * 20),
        np.full((20, 20), "a"),
        np.zeros((20, 20), complex),
        np.full((20, 20), np.nan),
    ],
    ids=["object", "str", "complex", "nan"],
)
def test_non_numeric_arrays(arr):
    with pytest.raises(NotAnImageError, match="<array>"):
        read_image(arr)


def test_missing_path_and_directory(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(missing)
    with pytest.raises(IsADirectoryError):
        read_image(tmp_path)


def test_errors_are_value_errors():
    for cls in (
        EmptyImageError,
        NotAnImageError,
        TruncatedImageError,
        ImageTooLargeError,
        ImageShapeError,
        UnsupportedDicomError,
    ):
        assert issubclass(cls, ImageReadError) and issubclass(cls, ValueError)


# ------------------------------------------------------------------ ImageReader


def test_image_reader_estimator_contract(tmp_path):
    reader = ImageReader(max_pixels=5000, min_side=8)
    assert reader.get_params() == {"max_pixels": 5000, "min_side": 8, "max_aspect": 20.0}
    twin = clone(reader)
    assert twin is not reader and twin.get_params() == reader.get_params()
    assert reader.set_params(max_aspect=3.0) is reader and reader.max_aspect == 3.0

    path = _save(tmp_path, RNG.integers(0, 256, (20, 30), dtype=np.uint8), "a.png")
    X = [path, str(path), path.read_bytes(), np.ones((10, 12, 3), np.uint8)]
    assert reader.fit(X) is reader
    out = reader.transform(X)
    assert isinstance(out, list) and len(out) == 4
    for scan in out:
        assert isinstance(scan, Scan) and not scan.polarity_known
        assert scan.pixels.ndim == 2 and scan.pixels.dtype == np.float32
    np.testing.assert_array_equal(out[0].pixels, out[2].pixels)
    assert reader.transform(out) == out  # scans pass through
    assert [o.shape for o in ImageReader().fit_transform(np.zeros((3, 20, 25)))] == [(20, 25)] * 3


def test_image_reader_validation_and_errors():
    with pytest.raises(ValueError, match="max_pixels"):
        ImageReader(max_pixels=0).fit([])
    with pytest.raises(ValueError, match="max_aspect"):
        ImageReader(max_aspect="wide").fit([])
    with pytest.raises(TypeError, match="sequence"):
        ImageReader().transform("a.png")
    with pytest.raises(ImageShapeError, match=r"X\[1\].*<array>"):
        ImageReader().transform([np.zeros((20, 20)), np.zeros((1, 1))])


# ------------------------------------------------------------------ real data


@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder {DATA} is absent")
def test_real_files(tmp_path):
    jpg = next((DATA / "dphi-sprint31" / "train").glob("*.jpg"))
    img = read_image(jpg)
    _check_out(img, (224, 224))
    assert img.std() > 0.05

    png = DATA / "mini-mias" / "mdb001.png"
    mias = read_image(png)
    _check_out(mias, (1024, 1024))
    with Image.open(png) as im:
        np.testing.assert_array_equal(mias, np.asarray(im) / np.float32(255))
        pgm = tmp_path / "mdb001.pgm"
        im.save(pgm)
    np.testing.assert_array_equal(read_image(pgm), mias)


def test_read_tags_reads_the_header_only(tmp_path):
    from mammo.features.io import read_tags

    arr = (np.arange(64 * 48).reshape(64, 48) % 4096).astype(np.uint16)
    path = tmp_path / "view.dcm"
    write_dicom(arr, path, bits_stored=12)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.ImageLaterality, ds.ViewPosition, ds.PatientID = "L", "MLO", "p42"
    ds.save_as(path)
    tags = read_tags(path)
    assert tags["ImageLaterality"] == "L" and tags["ViewPosition"] == "MLO" and tags["PatientID"] == "p42"
    png = tmp_path / "x.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(png)
    assert read_tags(png) == {} and read_tags(tmp_path / "missing.dcm") == {}
