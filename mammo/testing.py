"""Synthetic data for tests, the demo model and the web app's warm-up.

* :func:`synthetic_mammogram`: a grey image that looks enough like a mammogram to
  exercise every step (breast, density texture, a mass, a film label).
* :func:`augment_like_dphi` / :func:`simulate_copies`: DPhi-style augmented copies of
  images with their true groups, the ground truth of the duplicate-grouping tests
  and of docs/grouping.md.
* :func:`non_mammograms`: images that are not mammograms (photos, text, noise,
  gradients, blank frames): what the input-quality gate and the out-of-distribution
  score must refuse.
* :func:`film_scan` / :func:`larger_detector`: a mammogram as a film archive or another
  scanner would deliver it (bright unexposed film edges, a burnt-in label, a marker;
  a detector much larger than the breast), with where the original now sits: the
  hard cases of the breast-region tests and the invariance benchmark.

Nothing here is used by training or prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "augment_like_dphi",
    "film_scan",
    "larger_detector",
    "more_non_mammograms",
    "non_mammograms",
    "simulate_copies",
    "synthetic_mammogram",
    "write_dicom",
]


def _structured_tissue(rng: np.random.Generator, shape: tuple[int, int], side: str) -> np.ndarray:
    """Tissue with structure at several scales and a few bright lobules, in [0.25, 0.85]."""
    from scipy.ndimage import gaussian_filter

    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    if side != "left":
        xx = xx.max() - xx
    tex = sum(gaussian_filter(rng.standard_normal(shape), s) * s for s in (1.5, 4, 10))
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    for _ in range(4):
        y0, x0, r = rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.5), rng.uniform(0.02, 0.06)
        tex += 0.4 * np.exp(-(((yy - y0) ** 2 + (xx - x0) ** 2) / r**2))
    return 0.25 + 0.6 * tex / tex.max()


def synthetic_mammogram(
    rng: np.random.Generator,
    density: int = 2,
    tumour: int = 0,
    shape: tuple[int, int] = (192, 160),
    side: str = "left",
    inverted: bool = False,
    *,
    structure: bool = False,
    film_label: bool = True,
    uint8: bool = False,
) -> np.ndarray:
    """A grey image that looks enough like a mammogram to exercise every step.

    A bright half-ellipse breast against the chest wall on ``side``, textured noise
    whose brightness and fraction of dense blobs grow with ``density`` (1-4), a small
    bright blob (a mass) when ``tumour``, and, with ``film_label``, a bright label in a
    background corner that segmentation must drop. ``inverted`` gives a white
    background, as on some scanners. With ``structure`` the tissue has structure at
    several scales and a few bright lobules instead of noise and blobs, unique to each
    draw: what keypoint matching needs to recognise an original after augmentation
    (the duplicate-grouping tests).

    Returns
    -------
    ndarray, shape ``shape``
        float32 in [0, 1], or uint8 (0-255) with ``uint8``, e.g. to save as PNG.
    """
    from scipy.ndimage import gaussian_filter

    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    cx = 0 if side == "left" else w - 1
    breast = ((rows - h / 2) / (0.42 * h)) ** 2 + ((cols - cx) / (0.7 * w)) ** 2 <= 1
    img = np.full(shape, 0.03, np.float32)
    if structure:
        # on a flat background: with pixel noise there, copies of one original
        # matched with far fewer keypoints
        tissue = _structured_tissue(rng, shape, side) + 0.05 * (density - 2)
    else:
        img += rng.normal(0, 0.01, shape).astype(np.float32)
        tissue = 0.35 + 0.08 * density + 0.05 * rng.standard_normal(shape)
        blobs = rng.random(shape) < 0.01 * density
        tissue = tissue + 0.25 * np.minimum(1, gaussian_filter(blobs.astype(np.float32), 3) * 8)
    img[breast] = tissue[breast]
    if tumour:
        r0, c0 = int(h * rng.uniform(0.35, 0.65)), int(abs(cx - w * rng.uniform(0.2, 0.4)))
        spot = ((rows - r0) ** 2 + (cols - c0) ** 2) < (0.05 * h) ** 2
        img[spot & breast] = 0.95
    if film_label:
        img[4:14, w - 24 if side == "left" else 8 : w - 8 if side == "left" else 24] = 1.0
    img = np.clip(img, 0, 1)
    img = 1 - img if inverted else img
    return (img * 255).astype(np.uint8) if uint8 else img


def augment_like_dphi(
    image: np.ndarray, rng: np.random.Generator, *, size: int = 224, enhanced: bool | None = None
) -> np.ndarray:
    """One DPhi-style augmented copy of a grey image, for building ground truth.

    Resize to ``size`` x ``size``, rotate by any angle with black fill, random
    horizontal/vertical flips, zoom 1.0-1.3 (centre crop), shift up to 10 % with black
    fill, and (with probability 1/2 unless ``enhanced`` is given) a CLAHE-enhanced
    rendering instead of the plain one.
    """
    from skimage.exposure import equalize_adapthist
    from skimage.transform import AffineTransform, resize, rotate, warp

    im = resize(np.asarray(image, dtype=np.float32), (size, size), anti_aliasing=True, preserve_range=True)
    if enhanced if enhanced is not None else rng.random() < 0.5:
        im = equalize_adapthist(np.clip(im, 0, 1), clip_limit=0.02)
    im = rotate(im, rng.uniform(0, 360), resize=False, mode="constant", cval=0.0, order=1)
    if rng.random() < 0.5:
        im = im[:, ::-1]
    if rng.random() < 0.5:
        im = im[::-1]
    zoom = rng.uniform(1.0, 1.3)
    shift = rng.uniform(-0.1, 0.1, size=2) * size
    c = size / 2
    # output pixel -> input pixel: scale about the centre, then shift
    tf = (
        AffineTransform(translation=(-c, -c))
        + AffineTransform(scale=1 / zoom)
        + AffineTransform(translation=(c + shift[0], c + shift[1]))
    )
    im = warp(np.ascontiguousarray(im), tf, mode="constant", cval=0.0, order=1)
    return np.clip(im, 0, 1).astype(np.float32)


def simulate_copies(
    images: Sequence[np.ndarray], n_copies: int, *, seed: int = 0, size: int = 224
) -> tuple[list[np.ndarray], np.ndarray]:
    """``n_copies`` DPhi-style augmented copies of each image, with the true groups."""
    rng = np.random.default_rng(seed)
    out, truth = [], []
    for k, im in enumerate(images):
        for c in range(n_copies):
            out.append(augment_like_dphi(im, rng, size=size, enhanced=bool(c % 2)))
            truth.append(k)
    return out, np.array(truth)


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
        depth = max(2, int(rng.uniform(0.02, 0.08) * (H if side in ("top", "bottom") else W)))
        depth = min(depth, pr if side in ("top", "bottom") else pc)
        level = rng.uniform(0.85, 1.0)
        ramp = np.linspace(level, bg, num=max(2, depth // 4) + 2)[1:-1]  # the collimator's penumbra
        profile = np.concatenate([np.full(depth - len(ramp), level), ramp]).astype(np.float32)
        strip = profile[:, None] + rng.normal(0, 0.003, (len(profile), W if side in ("top", "bottom") else H))
        strip = np.clip(strip, 0, 1).astype(np.float32)
        if side == "top":
            canvas[: len(profile)] = strip
        elif side == "bottom":
            canvas[H - len(profile) :] = strip[::-1]
        elif side == "left":
            canvas[:, : len(profile)] = strip.T
        else:
            canvas[:, W - len(profile) :] = strip[::-1].T
    inner = (max(2, pr // 3), max(2, pc // 3))  # clear of the film edges
    if label:
        lh, lw = max(6, int(0.06 * H)), max(12, int(0.18 * W))
        # a corner of the film's margin where the label fits whole: never on the original
        spots = []
        if pr - inner[0] >= lh:  # above or below it
            spots += [(r, c) for r in (inner[0], H - inner[0] - lh) for c in (inner[1], W - inner[1] - lw)]
        if pc - inner[1] >= lw:  # beside it
            spots += [(r, c) for c in (inner[1], W - inner[1] - lw) for r in (inner[0], H - inner[0] - lh)]
        if spots:
            r0, c0 = spots[int(rng.integers(len(spots)))]
            _draw_label(canvas, rng, (r0, r0 + lh, c0, c0 + lw), text)
    if marker:
        rad = max(2, int(0.012 * max(H, W)))
        rr, cc = np.mgrid[0:H, 0:W]
        # above the original if the disc fits there whole, else beside it, else none
        if pr - rad - 1 > inner[0] + rad:
            r_m, c_m = int(rng.integers(inner[0] + rad, pr - rad - 1)), int(rng.integers(pc, pc + w))
        elif pc - rad - 1 > inner[1] + rad:
            r_m, c_m = int(rng.integers(pr, pr + h)), int(rng.integers(inner[1] + rad, pc - rad - 1))
        else:
            r_m = None
        if r_m is not None:
            canvas[(rr - r_m) ** 2 + (cc - c_m) ** 2 <= rad**2] = rng.uniform(0.9, 1.0)
    return canvas, (pr, pc)


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


#: Pictures bundled with scikit-image (no download) that are not mammograms.
SKIMAGE_PICTURES = (
    "astronaut",
    "binary_blobs",
    "brick",
    "camera",
    "cat",
    "cell",
    "checkerboard",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "shepp_logan_phantom",
    "text",
)


def _document(rng: np.random.Generator, shape: tuple[int, int] = (700, 500)) -> np.ndarray:
    """A scanned page: dark lines of text on white paper."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("L", shape[::-1], 245)
    draw = ImageDraw.Draw(page)
    try:
        font = ImageFont.load_default(size=18)
    except TypeError:
        font = ImageFont.load_default()
    words = ["patient", "report", "mammography", "screening", "bilateral", "findings", "normal", "density"]
    for y in range(40, shape[0] - 40, 28):
        line = " ".join(rng.choice(words, size=6))
        draw.text((40, y), line, fill=20, font=font)
    return np.asarray(page, np.float32) / 255


def non_mammograms(seed: int = 0) -> dict[str, np.ndarray]:
    """Named images that are not mammograms, as arrays (grey or colour, any dtype).

    scikit-image's bundled photos and drawings (also in grey, so colour is not the only
    cue), a text document and its negative, constant frames (black, white, grey), noise
    (uniform, Gaussian, salt and pepper) and gradients (linear, radial).
    """
    import skimage.data
    from skimage.color import rgb2gray

    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name in SKIMAGE_PICTURES:
        img = getattr(skimage.data, name)()
        out[name] = img
        if img.ndim == 3 and img.shape[2] >= 3:
            out[f"{name} (grey)"] = (rgb2gray(img[..., :3]) * 255).astype(np.uint8)
    doc = _document(rng)
    out["document"], out["document (negative)"] = doc, 1 - doc
    h, w = 512, 400
    out["black"], out["white"] = np.zeros((h, w), np.uint8), np.full((h, w), 255, np.uint8)
    out["grey"] = np.full((h, w), 128, np.uint8)
    out["uniform noise"] = rng.random((h, w)).astype(np.float32)
    out["gaussian noise"] = np.clip(0.5 + 0.15 * rng.standard_normal((h, w)), 0, 1).astype(np.float32)
    sp = np.full((h, w), 0.5, np.float32)
    sp[rng.random((h, w)) < 0.1] = 0
    sp[rng.random((h, w)) < 0.1] = 1
    out["salt and pepper"] = sp
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    out["horizontal gradient"] = cols / (w - 1)
    out["vertical gradient"] = rows / (h - 1)
    out["diagonal gradient"] = (rows + cols) / (h + w - 2)
    out["radial gradient"] = np.clip(1 - np.hypot(rows - h / 2, cols - w / 2) / (0.5 * max(h, w)), 0, 1)
    return out


def more_non_mammograms(seed: int = 1) -> dict[str, np.ndarray]:
    """A second set of non-mammograms, not looked at when the gate's limits were set.

    Crops, rotations, negatives and blurs of the same bundled pictures, and procedural
    images: smooth random fields, blobs and ellipses on black, stripes, a barcode, a
    screen-like layout of boxes, a sinusoidal grating.
    """
    import skimage.data
    from scipy.ndimage import gaussian_filter
    from skimage.color import rgb2gray

    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name in SKIMAGE_PICTURES:
        img = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
        img = img / 255.0 if img.max() > 1 else img
        grey = rgb2gray(img[..., :3]) if img.ndim == 3 else img
        h, w = grey.shape
        r0, c0 = int(rng.uniform(0, 0.4) * h), int(rng.uniform(0, 0.4) * w)
        out[f"{name}: crop, rotated"] = np.rot90(
            grey[r0 : r0 + int(0.6 * h), c0 : c0 + int(0.6 * w)], k=int(rng.integers(1, 4))
        ).copy()
        out[f"{name}: negative"] = 1.0 - grey
        out[f"{name}: blurred"] = gaussian_filter(grey, 3)
    h, w = 480, 384
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    for s in (2, 8, 24):
        field = gaussian_filter(rng.standard_normal((h, w)), s)
        out[f"smooth random field (scale {s})"] = (field - field.min()) / (field.max() - field.min())
    blobs = np.zeros((h, w), np.float32)
    for _ in range(12):
        blobs += np.exp(
            -(((rows - rng.uniform(0, h)) ** 2 + (cols - rng.uniform(0, w)) ** 2) / (2 * rng.uniform(8, 40) ** 2))
        )
    out["gaussian blobs on black"] = np.clip(blobs, 0, 1)
    ell = np.zeros((h, w), np.float32)
    for _ in range(5):
        cy, cx, ry, rx = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(20, 90), rng.uniform(20, 90)
        ell[((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1] = rng.uniform(0.4, 1)
    out["ellipses on black"] = ell
    out["stripes"] = (np.sin(cols / 6) > 0).astype(np.float32)
    out["barcode"] = np.repeat((rng.random(w) > 0.5).astype(np.float32)[None], h, axis=0)
    screen = np.full((h, w), 0.93, np.float32)
    for _ in range(14):
        r, c = int(rng.uniform(0, h - 40)), int(rng.uniform(0, w - 60))
        screen[r : r + int(rng.uniform(15, 60)), c : c + int(rng.uniform(30, 150))] = rng.uniform(0.1, 0.8)
    out["screen layout"] = screen
    out["sinusoidal grating"] = 0.5 + 0.5 * np.sin(rows / 9 + cols / 13)
    return out


def write_dicom(
    arr: np.ndarray,
    dest,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    syntax=None,
    compress=None,
    preamble: bool = True,
    with_pixels: bool = True,
    **elements,
):
    """A mammography DICOM (MG, "for presentation") of ``arr`` written to ``dest`` (a path or a binary file).

    ``syntax``: the transfer syntax (default Explicit VR Little Endian); ``compress``: a
    syntax to compress to; ``preamble=False`` writes a bare dataset (no preamble, no
    "DICM", no meta header); ``elements`` are set on the dataset as attributes.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DigitalMammographyXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    syntax = syntax or ExplicitVRLittleEndian
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.set_pixel_data(arr, photometric, bits_stored or arr.dtype.itemsize * 8)
    ds.file_meta.TransferSyntaxUID = syntax  # set_pixel_data resets it
    for key, value in elements.items():
        setattr(ds, key, value)
    if compress is not None:
        ds.compress(compress)
    if not with_pixels:
        del ds.PixelData
    if preamble:
        ds.save_as(dest, enforce_file_format=True)
    else:
        del ds.file_meta
        pydicom.dcmwrite(dest, ds, implicit_vr=True, little_endian=True)
    return dest


def run_until_closed(server) -> None:
    """``server.run()`` for a thread (a waitress server of :func:`mammo.webapp.make_server`):
    closing the server from another thread can race waitress' select loop, which then
    raises; that is the server shutting down, not an error."""
    try:
        server.run()
    except (OSError, ValueError):  # "bad file descriptor" after close()
        pass
