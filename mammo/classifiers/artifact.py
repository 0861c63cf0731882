"""Loading a saved :class:`~mammo.classifiers.model.MammogramModel`: integrity check and upgrades."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import joblib
from sklearn.pipeline import Pipeline

from ..features.quality import InputQualityGate
from ..storage import file_sha256
from .model import FORMAT_VERSION, MammogramModel

__all__ = ["ArtifactIntegrityError", "OldArtifactWarning", "load_model", "upgrade"]


class ArtifactIntegrityError(RuntimeError):
    """A model file's sha256 does not match its manifest."""


class OldArtifactWarning(UserWarning):
    """A model saved by an older mammo: it loads and predicts, but should be retrained."""


def load_model(path, manifest=None) -> MammogramModel:
    """Load a saved :class:`MammogramModel`.

    Parameters
    ----------
    path : str or Path
    manifest : str, Path, dict or None
        When given (a manifest file, its parsed dict, or a bare sha256 hex
        string), the file's sha256 is checked BEFORE unpickling; a mismatch
        raises :class:`ArtifactIntegrityError`. Only load files you trust:
        unpickling runs code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if manifest is not None:
        if isinstance(manifest, dict):
            expected = manifest["sha256"]
        elif isinstance(manifest, str) and len(manifest) == 64 and not os.path.exists(manifest):
            expected = manifest
        else:
            expected = json.loads(Path(manifest).read_text())["sha256"]
        actual = file_sha256(path)
        if actual != expected.lower():
            raise ArtifactIntegrityError(f"{path}: sha256 {actual} does not match the manifest's {expected}")
    model = joblib.load(path)
    if not isinstance(model, MammogramModel):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a MammogramModel")
    return upgrade(model, name=path.name)


def upgrade(model: MammogramModel, name: str = "model") -> MammogramModel:
    """Bring a model saved by an older mammo up to this version's pipeline, with a warning.

    Format 1 (before the breast-region rewrite) gets the input-quality gate after its
    crop step; it has no out-of-distribution model, and its classifiers were fitted on
    crops made by the old segmentation, so its cross-validated figures no longer
    describe it: retrain it.
    """
    version = int(model.metadata.get("format_version", 1) or 1)
    if version >= FORMAT_VERSION:
        return model
    for task, pipe in model.pipelines.items():
        names = [n for n, _ in pipe.steps]
        if "check" not in names and "crop" in names:
            steps = list(pipe.steps)
            steps.insert(names.index("crop") + 1, ("check", InputQualityGate()))
            model.pipelines[task] = Pipeline(steps)
    warnings.warn(
        f"{name} was saved by an older mammo (model format {version}, this version writes {FORMAT_VERSION}): "
        "it predicts with this version's breast segmentation and input-quality gate, but its classifiers were "
        "fitted on the old crops and it has no out-of-distribution score. Retrain it with 'mammo train' so that "
        "its predictions match its cross-validated figures.", OldArtifactWarning, stacklevel=2)
    return model
