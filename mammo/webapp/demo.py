"""A tiny model fitted on synthetic images, for tests, benchmarks and trying the app without data.

Its predictions mean nothing: it has only seen :func:`mammo.testing.synthetic_mammogram`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..classifiers import MammogramModel, make_task_pipeline
from ..conventions import TASKS
from ..testing import synthetic_mammogram

__all__ = ["DEMO_SHAPE", "demo_model", "fit_demo_model"]

#: (height, width) of the demo images, the shape of a small portrait mammogram
DEMO_SHAPE = (160, 128)


def demo_model(files, density, tumour, *, feature_set: str = "texture", texture_size: int = 512) -> MammogramModel:
    """The demo's two-task ``feature_set`` + SVM model fitted on ``files`` and their labels,
    with the demo's metadata (pipeline id ``demo-<feature_set>-svm``). The test suite's one
    fitted model is this model on its synthetic set (``tests/conftest.py``)."""
    model = MammogramModel(
        {task: make_task_pipeline(task, feature_set, "svm", texture_size=texture_size) for task in TASKS}
    )
    model.metadata = {
        "training_data": {"source": "synthetic mammograms (mammo.testing)", "n_images": len(files)},
        "pipeline_id": f"demo-{feature_set}-svm",
    }
    return model.fit(files, density=density, tumour=tumour)


def fit_demo_model(path, n: int = 24, seed: int = 0, feature_set: str = "texture", texture_size: int = 512) -> Path:
    """Fit and save :func:`demo_model` on ``n`` synthetic PNGs written next to ``path``.

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
        Image.fromarray(synthetic_mammogram(rng, d, t, DEMO_SHAPE, film_label=False, uint8=True)).save(f)
        files.append(str(f))
        density.append(d)
        tumour.append(t)
    model = demo_model(files, density, tumour, feature_set=feature_set, texture_size=texture_size)
    return model.save(path)
