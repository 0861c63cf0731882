"""Binary morphology, labelling and distances on small masks, with OpenCV.

The breast segmentation runs a few dozen of these per image; OpenCV's versions are an
order of magnitude faster than :mod:`scipy.ndimage`'s on working-size masks, which keeps
segmentation from dominating the pipeline. Same semantics as scipy's defaults: a 3x3
cross (4-connectivity) structuring element, ``iterations`` repetitions, border pixels
treated as outside (False).
"""

from __future__ import annotations

import cv2
import numpy as np

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _u8(mask: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(mask, dtype=np.uint8)


def dilate(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    if iterations <= 0:
        return mask.astype(bool)
    return cv2.dilate(_u8(mask), _CROSS, iterations=int(iterations), borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


def erode(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    if iterations <= 0:
        return mask.astype(bool)
    return cv2.erode(_u8(mask), _CROSS, iterations=int(iterations), borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


def opening(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    return dilate(erode(mask, iterations), iterations)


def closing(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    # pad so that the closing does not glue to the image's border
    p = int(iterations)
    padded = np.pad(mask.astype(bool), p)
    return erode(dilate(padded, iterations), iterations)[p:-p, p:-p] if p else mask.astype(bool)


def label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components: ``(labels, n)``, background 0, as :func:`scipy.ndimage.label`."""
    n, labels = cv2.connectedComponents(_u8(mask), connectivity=4, ltype=cv2.CV_32S)
    return labels, int(n - 1)


def label_stats(mask: np.ndarray) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """:func:`label` (the same labels) with each label's area and bounding box:
    ``(labels, n, areas, boxes)``, ``boxes[k]`` = ``(row0, row1, col0, col1)``; index 0 is the background."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(_u8(mask), connectivity=4, ltype=cv2.CV_32S)
    left, top, width, height, area = stats.T.astype(np.intp)
    return labels, int(n - 1), area, np.stack([top, top + height, left, left + width], axis=1)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every region of False not connected to the border set True."""
    m = np.pad(_u8(mask), 1)
    flood = m.copy()
    cv2.floodFill(flood, np.zeros((m.shape[0] + 2, m.shape[1] + 2), np.uint8), (0, 0), 1, flags=4)
    holes = flood == 0
    return (m.astype(bool) | holes)[1:-1, 1:-1]


def distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest True pixel of ``mask`` (inf without any)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return cv2.distanceTransform(_u8(~mask.astype(bool)), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def nearest_label(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(distance, label)``: per pixel, the distance to the nearest labelled pixel and its label."""
    zero = labels > 0
    if not zero.any():
        return np.full(labels.shape, np.inf, np.float32), np.zeros(labels.shape, np.int32)
    dist, idx = cv2.distanceTransformWithLabels(
        _u8(~zero), cv2.DIST_L2, cv2.DIST_MASK_5, labelType=cv2.DIST_LABEL_PIXEL
    )
    # DIST_LABEL_PIXEL numbers the labelled pixels 1.. in scan order
    return dist, labels[zero][idx - 1]
