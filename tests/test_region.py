"""Breast region on hard inputs: film scans, labels, markers, other detectors, polarity, DICOM headers."""

from __future__ import annotations

import io

import numpy as np
import pytest

from mammo.features.io import read_scan
from mammo.features.quality import assess
from mammo.features.region import crop_breast
from mammo.features.segmentation import is_inverted, segment_breast
from mammo.testing import film_scan, larger_detector, synthetic_mammogram, write_dicom


def _truth(img: np.ndarray) -> np.ndarray:
    """Where the synthetic breast really is: the breast ellipse of synthetic_mammogram."""
    m = crop_breast(img, size=None, flip=False)
    full = np.zeros(img.shape, bool)
    r0, r1, c0, c1 = m.bbox
    full[r0:r1, c0:c1] = m.mask
    return full


def _source_mask(m, shape) -> np.ndarray:
    """The crop's mask placed back on the source grid (unflipped)."""
    full = np.zeros(shape, bool)
    r0, r1, c0, c1 = m.bbox
    from PIL import Image

    mask = m.mask[:, ::-1] if m.flipped else m.mask
    full[r0:r1, c0:c1] = np.asarray(
        Image.fromarray(mask.astype(np.uint8)).resize((c1 - c0, r1 - r0), Image.NEAREST)
    ).astype(bool)
    return full


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max(1, (a | b).sum())


@pytest.fixture
def breast(rng):
    """A larger synthetic mammogram (dark background, label off) and its true breast mask."""
    img = synthetic_mammogram(rng, 2, shape=(320, 256), film_label=False)
    return img, _truth(img)


def test_segmentation_of_a_clean_image_matches_the_drawn_breast(rng):
    img = synthetic_mammogram(rng, 3, shape=(320, 256), film_label=False)
    h, w = img.shape
    rows, cols = np.mgrid[0:h, 0:w]
    drawn = ((rows - h / 2) / (0.42 * h)) ** 2 + (cols / (0.7 * w)) ** 2 <= 1
    assert _iou(_truth(img), drawn) > 0.95


@pytest.mark.parametrize(
    "sides", [["top"], ["right", "bottom"], ["top", "right", "bottom"], ["top", "bottom", "left", "right"]]
)
def test_film_edges_label_and_marker_are_left_out(breast, rng, sides):
    img, truth = breast
    film, (dr, dc) = film_scan(img, rng, sides=sides)
    m = crop_breast(film, size=None)
    assert not m.inverted
    got = _source_mask(m, film.shape)
    want = np.zeros(film.shape, bool)
    want[dr : dr + img.shape[0], dc : dc + img.shape[1]] = truth
    assert _iou(got, want) > 0.9
    assert not got[film > 0.84].any() or (got & (film > 0.84)).sum() < 0.01 * got.sum()  # no film edge, label or marker


@pytest.mark.parametrize("sides", [["left"], ["top", "right"], ["top", "bottom", "left", "right"]])
def test_polarity_is_not_fooled_by_film_edges(breast, rng, sides):
    img, _ = breast
    film, _ = film_scan(img, rng, sides=sides)
    assert not is_inverted(film) and is_inverted(1 - film)
    assert crop_breast(1 - film).inverted


def test_larger_grey_detector_gives_the_same_crop(breast):
    img, truth = breast
    ref = crop_breast(img)
    for where in ("centre", "chest wall"):
        big, (dr, dc) = larger_detector(img, where=where)
        m = crop_breast(big)
        shifted = (m.bbox[0] - dr, m.bbox[1] - dr, m.bbox[2] - dc, m.bbox[3] - dc)
        # within a pixel of the larger image's working grid (1.8x coarser: 2-3 source pixels)
        assert max(abs(a - b) for a, b in zip(shifted, ref.bbox)) <= 3, (where, shifted, ref.bbox)
        assert abs(m.pixels.shape[1] - ref.pixels.shape[1]) <= 3
        if m.pixels.shape == ref.pixels.shape:
            assert _iou(m.mask, ref.mask) > 0.95


@pytest.mark.parametrize("where", ["centre", "chest wall"])
def test_black_image_on_a_grey_detector_is_cut_out(breast, where):
    """A breast on a dead-black background, laid on a larger, slightly grey detector: the
    grey is neither the darkest level nor tissue (it was the whole mask once)."""
    img, truth = breast
    black = np.clip(img - np.percentile(img, 30), 0, 1)
    big, (dr, dc) = larger_detector(black, level=0.06, where=where)
    m = crop_breast(big, size=None)
    want = np.zeros(big.shape, bool)
    want[dr : dr + img.shape[0], dc : dc + img.shape[1]] = _truth(black)
    assert _iou(_source_mask(m, big.shape), want) > 0.9
    assert assess(m).ok


@pytest.mark.parametrize("seed", range(6))
def test_chest_wall_beside_a_deep_film_edge(seed):
    """The chest wall a few pixels from a deep film edge and its penumbra, on a dead-black
    background: the mask stops at the chest wall (the second pass's window may hold only a
    sliver of the edge; the edge found on the whole image is kept out there too)."""
    rng = np.random.default_rng(seed)
    img = synthetic_mammogram(rng, 2, shape=(320, 256), side="right", film_label=False)
    black = np.clip(img - np.percentile(img, 30), 0, 1)
    film, (dr, dc) = film_scan(black, rng, sides=["right", "top"], pad=0.1, label=False, marker=False)
    m = crop_breast(film, size=None)
    want = np.zeros(film.shape, bool)
    want[dr : dr + img.shape[0], dc : dc + img.shape[1]] = _truth(black)
    got = _source_mask(m, film.shape)
    near = np.zeros(film.shape, bool)  # the original's area, give or take the working grid's rounding
    near[max(0, dr - 3) : dr + img.shape[0] + 3, max(0, dc - 3) : dc + img.shape[1] + 3] = True
    # film edges, label and marker all lie outside it
    assert _iou(got, want) > 0.9 and not (got & ~near).any()
    assert assess(m).ok, assess(m).failed


def test_mirror_gives_the_same_crop(breast):
    img, _ = breast
    a, b = crop_breast(img), crop_breast(img[:, ::-1].copy())
    assert a.flipped != b.flipped
    # the same crop to the last bit, so the same features and the same prediction
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.mask, b.mask)
    # reported in each source's own orientation
    width = img.shape[1]
    r0, r1, c0, c1 = a.bbox
    assert b.bbox == (r0, r1, width - c1, width - c0)
    for ca, cb in zip(sorted(a.outline(), key=len), sorted(b.outline(), key=len)):
        mirrored = np.column_stack([cb[:, 0], width - cb[:, 1]])
        assert np.abs(np.sort(ca[:, 1]) - np.sort(mirrored[:, 1])).max() < 2


@pytest.mark.parametrize("mirror", [False, True])
def test_a_scan_reuses_the_breast_region_found_before(breast, monkeypatch, mirror):
    """Scan.segmentation (the web app's occluded copies): the crop of the same pixels is the
    crop found from scratch, to the last bit, in either orientation; an edited copy keeps
    the region, and nothing is segmented again."""
    from dataclasses import replace

    import mammo.features.region as region

    img, _ = breast
    img = np.ascontiguousarray(img[:, ::-1]) if mirror else img
    fresh = crop_breast(img)
    monkeypatch.setattr(region, "segment_breast", lambda *a, **k: pytest.fail("segmented again"))
    scan = read_scan(img)
    again = crop_breast(replace(scan, segmentation=fresh.segmentation))
    for name in ("pixels", "mask"):
        np.testing.assert_array_equal(getattr(again, name), getattr(fresh, name))
    assert (again.bbox, again.flipped, again.inverted) == (fresh.bbox, fresh.flipped, fresh.inverted)
    assert again.segmentation.stats == fresh.segmentation.stats
    edited = img.copy()
    r0, r1, c0, c1 = fresh.bbox
    cell = (slice((r0 + r1) // 2 - 20, (r0 + r1) // 2 + 20), slice((c0 + c1) // 2 - 20, (c0 + c1) // 2 + 20))
    edited[cell] = edited[cell].mean()  # a cell of the breast flattened
    copy = crop_breast(replace(scan, pixels=edited, segmentation=fresh.segmentation))
    assert copy.bbox == fresh.bbox and not np.array_equal(copy.pixels, fresh.pixels)
    np.testing.assert_array_equal(copy.mask, fresh.mask)
    assert scan.crop(0, 100, 0, 100).segmentation is None  # a region of the whole scan does not fit a part
    with pytest.raises(ValueError, match="Segmentation of a"):
        crop_breast(replace(scan, pixels=img[:100, :100], segmentation=fresh.segmentation))


@pytest.mark.parametrize("stem", ["608_735720305", "294_141753012"])
def test_mirror_of_a_real_mammogram_gives_the_same_crop(stem, require_data):
    """Two RSNA views whose mirrors were segmented differently (one lost 117 rows) before
    segmentation ran in a canonical orientation."""
    found = sorted(require_data("rsna-screening", "images").glob(f"{stem}_*"))
    if not found:
        pytest.skip(f"the shared RSNA image {stem} is not there")
    img = read_scan(found[0]).pixels
    a, b = crop_breast(img), crop_breast(np.ascontiguousarray(img[:, ::-1]))
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert a.flipped != b.flipped


def test_breast_touching_the_top_edge_and_a_faint_fatty_breast(rng):
    img = synthetic_mammogram(rng, 1, shape=(320, 256), film_label=False)
    top = img[100:].copy()  # the breast now runs into the top edge
    m = crop_breast(top, size=None, flip=False)
    assert m.bbox[0] == 0 and _iou(_source_mask(m, top.shape), _truth(img)[100:]) > 0.9
    bg = float(np.percentile(img, 2))
    faint = np.clip(bg + 0.25 * (img - bg), 0, 1)  # a quarter of the contrast
    assert _iou(_source_mask(crop_breast(faint, size=None), faint.shape), _truth(img)) > 0.9


def test_outline_is_in_source_coordinates(breast):
    img, truth = breast
    big, (dr, dc) = larger_detector(img)
    m = crop_breast(big)
    outline = max(m.outline(), key=len)
    tolerance = int(np.ceil(4 / m.segmentation.scale))  # four pixels of the grid the mask was traced on
    rows, cols = outline[:, 0] - dr, outline[:, 1] - dc
    # every outline point sits on the breast's edge, within the grid it was traced on
    from scipy import ndimage as ndi

    distance = ndi.distance_transform_edt(~(truth ^ ndi.binary_erosion(truth)))
    # (the chest wall runs along the original image's left edge, half a pixel out)
    assert ((rows > -2) & (rows < img.shape[0] + 1) & (cols > -2) & (cols < img.shape[1] + 1)).all()
    r = np.clip(np.round(rows).astype(int), 0, img.shape[0] - 1)
    c = np.clip(np.round(cols).astype(int), 0, img.shape[1] - 1)
    assert np.percentile(distance[r, c], 95) <= tolerance and distance[r, c].max() <= 3 * tolerance


# ------------------------------------------------------------------ DICOM: the header decides polarity


def _film_dicom(img, rng, photometric: str, tmp_path, name: str):
    """A scanned-film DICOM: 16-bit, RLE lossless, bright film edges, a burnt-in label."""
    from pydicom.uid import RLELossless

    film, offset = film_scan(img, rng, sides=["top", "right", "bottom"], text="RMLO")
    stored = film if photometric == "MONOCHROME2" else 1 - film
    arr = np.round(stored * 65535).astype(np.uint16)
    path = tmp_path / name
    write_dicom(
        arr,
        path,
        photometric=photometric,
        bits_stored=16,
        compress=RLELossless,
        ImageLaterality="R",
        ViewPosition="MLO",
        PatientID="film-1",
    )
    return path, film, offset


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_film_scan_dicom_is_not_inverted_and_the_mask_is_the_breast(breast, rng, tmp_path, photometric):
    img, truth = breast
    path, film, (dr, dc) = _film_dicom(img, rng, photometric, tmp_path, "film.dcm")
    scan = read_scan(path)
    assert scan.polarity_known and scan.tags["ViewPosition"] == "MLO" and scan.tags["ImageLaterality"] == "R"
    # MONOCHROME1 undone by the header: the film's own grey levels (stretched to the data's range)
    assert np.corrcoef(scan.pixels.ravel(), film.ravel())[0, 1] > 0.999
    m = crop_breast(scan, size=None)
    assert not m.inverted and m.segmentation.polarity == "header"
    want = np.zeros(film.shape, bool)
    want[dr : dr + img.shape[0], dc : dc + img.shape[1]] = truth
    assert _iou(_source_mask(m, film.shape), want) > 0.9


def test_header_polarity_is_never_second_guessed(breast):
    img, _ = breast
    # a DICOM saying MONOCHROME2 with a white background really has one: keep it as it is
    assert segment_breast(1 - img, polarity_known=True).inverted is False
    assert segment_breast(1 - img).inverted is True


def test_dicom_scan_keeps_its_polarity_through_the_pipeline(breast, tmp_path):
    from mammo.features import BreastCropper, ImageReader

    img, _ = breast
    path = tmp_path / "m1.dcm"
    write_dicom(np.round((1 - img) * 4095).astype(np.uint16), path, photometric="MONOCHROME1", bits_stored=12)
    (m,) = BreastCropper().transform(ImageReader().transform([path]))
    assert not m.inverted and m.segmentation.polarity == "header"
    (r,) = BreastCropper().transform(ImageReader().transform([1 - img]))
    assert r.inverted and r.segmentation.polarity == "pixels"


def test_colour_is_measured_even_on_a_grey_decoded_jpeg():
    from PIL import Image
    from skimage.data import astronaut

    rgb = astronaut()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG")
    assert read_scan(buf.getvalue()).chroma > 0.2
    buf = io.BytesIO()
    Image.fromarray(np.repeat(rgb[..., :1], 3, axis=2)).save(buf, "JPEG")  # three equal channels, as DPhi's
    assert read_scan(buf.getvalue()).chroma < 0.01


def test_an_implant_against_the_chest_wall_is_no_film_edge(rng):
    """A saturated, flat implant against the chest wall lies along a side like a film edge
    does, but is short and deep: the breast around it is found and passes the gate."""
    img = synthetic_mammogram(rng, 2, shape=(320, 256), side="right", film_label=False)
    black = np.clip(img - np.percentile(img, 30), 0, 1)
    rows, cols = np.mgrid[0:320, 0:256]
    black[((rows - 160) / 85.0) ** 2 + ((cols - 256) / 70.0) ** 2 <= 1] = 1.0
    m = crop_breast(black, size=None)
    assert assess(m).ok, assess(m).failed
    assert _iou(_source_mask(m, black.shape), _truth(img)) > 0.8


def test_a_real_implant_mammogram_passes_the_gate(require_data):
    """An RSNA view with a large implant at the chest wall (refused once, when every band of
    the whole image was carried into the breast's window)."""
    found = sorted(require_data("rsna-screening", "images").glob("393_413572602_*"))
    if not found:
        pytest.skip("the shared RSNA image 393_413572602 is not there")
    assert assess(crop_breast(read_scan(found[0]))).ok


def test_a_shifted_crop_is_the_same_breast_half_a_pixel_off(breast):
    from sklearn.base import clone

    from mammo.features.region import BreastCropper, ShiftedBreastCropper, _shifted
    from mammo.storage import step_key

    img, _ = breast
    own, again, moved = crop_breast(img), crop_breast(img, shift=0.0), crop_breast(img, shift=0.5)
    np.testing.assert_array_equal(own.pixels, again.pixels)  # no shift: the exact crop, bit for bit
    assert moved.pixels.shape == own.pixels.shape and moved.bbox == own.bbox
    diff = np.abs(moved.pixels - own.pixels)[own.mask & moved.mask]
    assert 0 < diff.mean() < 0.05  # resampled half a pixel off, not another crop
    # where the image ends, the box moves the other way; a box spanning an axis does not move
    assert _shifted((10, 100, 0, 50), 0.5, (100, 50)) == (9.5, 99.5, 0.0, 50.0)
    assert _shifted((10, 90, 5, 40), 0.5, (100, 50)) == (10.5, 90.5, 5.5, 40.5)
    step = ShiftedBreastCropper(size=256)
    np.testing.assert_array_equal(step.fit_transform([img])[0].pixels, moved.pixels)
    assert clone(ShiftedBreastCropper(shift=0.25)).shift == 0.25
    with pytest.raises(ValueError, match="shift"):
        ShiftedBreastCropper(shift=1.0).fit([img])
    # the model's own cropper, and so every feature cache key, is unchanged
    assert "shift" not in BreastCropper().get_params()
    assert step_key(BreastCropper()) != step_key(ShiftedBreastCropper())
