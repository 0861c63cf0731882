"""Images that are not mammograms: what the input-quality gate and the out-of-distribution score
must refuse."""

from __future__ import annotations

import numpy as np

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
