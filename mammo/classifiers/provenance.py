"""What a fitted model records about itself: its format version, the library versions, and
per task its classes, training counts, steps and feature blocks (``model.metadata``).

The web page, ``mammo predict`` and the model card read these keys; they are those of the
first models, so older files keep showing.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator

import numpy as np
from sklearn.pipeline import FeatureUnion, Pipeline

from ..features.blocks import feature_set_name
from ..features.cnn import CNNEmbedding
from .pipelines import DENSITY_CLASSES, TUMOUR_CLASSES, split_pipeline

__all__ = ["FORMAT_VERSION", "describe_fit", "feature_blocks", "library_versions"]

#: 2: the breast region rewritten (polarity, film artefacts, canvas-independent crops),
#: the input-quality gate step and the out-of-distribution model.
FORMAT_VERSION = 2


def library_versions() -> dict:
    """Versions of the libraries whose behaviour the fitted pipelines depend on."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in (
        "mammo",
        "numpy",
        "scipy",
        "scikit-learn",
        "scikit-image",
        "xgboost",
        "xgboost-cpu",
        "tensorflow",
        "tensorflow-cpu",
        "keras",
        "pydicom",
        "pillow",
    ):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def describe_fit(pipelines: dict, labels: dict, masks: dict, class_meanings: dict) -> dict:
    """The metadata :meth:`~mammo.classifiers.model.MammogramModel.fit` adds: ``format_version``,
    ``versions``, ``cnn_weights`` and per task its classes, their meanings, training counts,
    steps, feature blocks, feature set and model (and the tumour threshold)."""
    cnn = [s for p in pipelines.values() for s in feature_blocks(p) if isinstance(s, CNNEmbedding)]
    meta = {
        "format_version": FORMAT_VERSION,
        "versions": library_versions(),
        "cnn_weights": {"weights": str(cnn[0].weights), "sha256": cnn[0].weights_sha256_} if cnn else None,
        "tasks": {},
    }
    for task, pipe in pipelines.items():
        y = np.asarray(labels[task], dtype=float)[masks[task]].astype(int)
        classes = pipe.steps[-1][1].classes_.tolist()
        meanings = class_meanings.get(task) or (DENSITY_CLASSES if task == "density" else TUMOUR_CLASSES)
        meta["tasks"][task] = {
            "classes": classes,
            "class_meanings": {str(c): meanings.get(c, str(c)) for c in classes},
            "n_train": int(masks[task].sum()),
            "class_counts": {str(c): int((y == c).sum()) for c in classes},
            "steps": [name for name, _ in pipe.steps],
            "features": [name for name, _ in split_pipeline(pipe)[0][-1][1].transformer_list]
            if "features" in pipe.named_steps
            else [],
            "model": _model_name(pipe.steps[-1][1]),
        }
        meta["tasks"][task]["feature_set"] = feature_set_name(meta["tasks"][task]["features"])
        if task == "tumour":
            # Calibrated probabilities follow the training prevalence; flag a
            # case as malignant when P(malignant) exceeds that prevalence.
            meta["tasks"][task].setdefault("threshold", float(np.mean(y == 1)))
    return meta


def _model_name(clf) -> str:
    """The base model's class name under the calibration / ordinal / weighting wrappers."""
    while hasattr(clf, "estimator"):
        clf = clf.estimator
    return type(clf).__name__


def feature_blocks(pipe: Pipeline) -> Iterator:
    """The steps of ``pipe``, with a FeatureUnion's blocks in its place."""
    for _, step in pipe.steps:
        if isinstance(step, FeatureUnion):
            yield from (t for _, t in step.transformer_list)
        else:
            yield step
