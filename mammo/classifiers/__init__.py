"""Task pipelines (density, tumour) and the saved two-task model artifact."""

from .artifact import ArtifactIntegrityError, ModelFileError, OldArtifactWarning, load_model
from .estimators import CappedPCA, ClassWeighted, OrdinalClassifier
from .model import MammogramModel, file_sha256
from .pipelines import (
    DENSITY_CLASSES,
    FEATURE_SETS,
    MODELS,
    TASKS,
    TUMOUR_CLASSES,
    make_classifier,
    make_features,
    make_pipeline,
    make_task_pipeline,
)

__all__ = [
    "ArtifactIntegrityError",
    "CappedPCA",
    "ClassWeighted",
    "DENSITY_CLASSES",
    "FEATURE_SETS",
    "MODELS",
    "MammogramModel",
    "ModelFileError",
    "OldArtifactWarning",
    "OrdinalClassifier",
    "TASKS",
    "TUMOUR_CLASSES",
    "file_sha256",
    "load_model",
    "make_classifier",
    "make_features",
    "make_pipeline",
    "make_task_pipeline",
]
