"""A tiny model fitted on synthetic images, for tests, benchmarks and trying the app without data.

Its predictions mean nothing: it has only seen bright ellipses on black.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..classifiers import MammogramModel, make_task_pipeline

__all__ = ["synthetic_mammogram", "fit_demo_model"]


def synthetic_mammogram(rng: np.random.Generator, density: int, size: int = 160, mass: bool = False) -> np.ndarray:
    """A grey uint8 image: a bright half-ellipse "breast" against the left edge, denser texture for
    higher ``density``, and with ``mass`` a small very bright, sharp-edged blob inside it."""
    h, w = size, int(size * 0.8)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, ry, rx = h / 2 + rng.uniform(-8, 8), h * rng.uniform(0.35, 0.45), w * rng.uniform(0.6, 0.85)
    inside = ((yy - cy) / ry) ** 2 + (xx / rx) ** 2 <= 1.0
    blobs = np.zeros((h, w), np.float32)
    for _ in range(3 * density):
        by, bx = rng.uniform(cy - ry, cy + ry), rng.uniform(0, rx)
        r = rng.uniform(4, 10)
        blobs += np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (2 * r * r))
    tissue = 0.35 + 0.08 * density + 0.25 * np.clip(blobs, 0, 1) + rng.normal(0, 0.03, (h, w))
    if mass:
        my, mx, r = cy + rng.uniform(-0.5, 0.5) * ry, rng.uniform(0.2, 0.6) * rx, size * rng.uniform(0.05, 0.08)
        tissue = np.where((yy - my) ** 2 + (xx - mx) ** 2 <= r * r, 0.95 + rng.normal(0, 0.08, (h, w)), tissue)
    img = np.where(inside, tissue, rng.uniform(0, 0.03, (h, w)))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def fit_demo_model(path, n: int = 24, seed: int = 0, feature_set: str = "texture", texture_size: int = 512) -> Path:
    """Fit and save a two-task ``feature_set`` + SVM model on ``n`` synthetic PNGs written next to ``path``.

    Density labels cycle 1-4 and tumour labels 0/1 (1 = a bright mass), so both are balanced.
    Returns the saved model's path.
    """
    path = Path(path)
    folder = path.parent / (path.stem + "_images")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files, density, tumour = [], [], []
    for i in range(n):
        d, t = i % 4 + 1, (i // 4) % 2
        f = folder / f"synthetic_{i:03d}.png"
        Image.fromarray(synthetic_mammogram(rng, d, mass=bool(t))).save(f)
        files.append(str(f))
        density.append(d)
        tumour.append(t)
    model = MammogramModel({task: make_task_pipeline(task, feature_set, "svm", texture_size=texture_size) for task in ("density", "tumour")})
    model.metadata = {"training_data": {"source": "synthetic ellipses (mammo.webapp.demo)", "n_images": n}, "pipeline_id": f"demo-{feature_set}-svm"}
    model.fit(files, density=density, tumour=tumour)
    return model.save(path)
