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

__all__ = [
    "ArtifactIntegrityError",
    "ModelFileError",
    "ModelNotFoundError",
    "NotAModelError",
    "OldArtifactWarning",
    "UnreadableModelError",
    "load_model",
    "upgrade",
]


class ModelFileError(Exception):
    """A model file (or its manifest) that cannot be used; ``mammo`` reports it in one line and exits 2.

    Each subclass also derives from the built-in error that :func:`load_model` raised
    before these existed, so code catching those still works.
    """


class ModelNotFoundError(ModelFileError, FileNotFoundError):
    """No file at the model path."""


class NotAModelError(ModelFileError, TypeError):
    """The file unpickles to something other than a :class:`MammogramModel`."""


class UnreadableModelError(ModelFileError, ValueError):
    """A truncated or foreign file, a manifest that cannot be read, or a newer model format."""


class ArtifactIntegrityError(ModelFileError, RuntimeError):
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

    Raises
    ------
    ModelFileError
        :class:`ModelNotFoundError`, :class:`ArtifactIntegrityError`,
        :class:`UnreadableModelError` (truncated or foreign file, unreadable manifest,
        a model format newer than this mammo's) or :class:`NotAModelError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"model file not found: {path}")
    if manifest is not None:
        expected = _manifest_sha256(manifest)
        actual = file_sha256(path)
        if actual != expected.lower():
            raise ArtifactIntegrityError(f"{path}: sha256 {actual} does not match the manifest's {expected}")
    try:
        model = joblib.load(path)
    except Exception as exc:  # unpickling a truncated or foreign file can raise almost anything
        raise UnreadableModelError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(model, MammogramModel):
        raise NotAModelError(f"{path} holds a {type(model).__name__}, not a MammogramModel")
    version = int(model.metadata.get("format_version", 1) or 1)
    if version > FORMAT_VERSION:
        # its pipeline may hold steps this version cannot run as they were fitted
        raise UnreadableModelError(
            f"{path} was saved by a newer mammo (model format {version}; this version "
            f"reads up to {FORMAT_VERSION}): upgrade mammo or retrain the model"
        )
    return upgrade(model, name=path.name)


def _manifest_sha256(manifest) -> str:
    """The sha256 a manifest (file, parsed dict or bare hex string) expects."""
    if isinstance(manifest, str) and len(manifest) == 64 and not os.path.exists(manifest):
        return manifest
    try:
        data = manifest if isinstance(manifest, dict) else json.loads(Path(manifest).read_text())
        return str(data["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableModelError(f"{manifest}: not a readable model manifest ({type(exc).__name__}: {exc})") from exc


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
        "its predictions match its cross-validated figures.",
        OldArtifactWarning,
        stacklevel=2,
    )
    return model
