"""What a training run is asked to do: :class:`TrainConfig` (built from the command line or in code)
and :class:`FitOptions`, the part of it that fitting one candidate on one fold depends on."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..classifiers.pipelines import MODELS, TASKS
from ..features.blocks import FEATURE_SETS

__all__ = ["FitOptions", "TrainConfig"]


@dataclass(frozen=True)
class FitOptions:
    """How one candidate is fitted inside a training fold.

    Parameters
    ----------
    inner_folds : int
        Grouped inner folds of the hyper-parameter search.
    seed : int
        Seed of the inner folds, calibration splits and models.
    tune : bool
        Search :data:`~mammo.training.tuning.PARAM_GRIDS` by grouped inner CV; otherwise
        the models' defaults.
    tune_max : int or None
        Run the search on about this many images of the training fold (None or 0: all).
    density_decision : {"argmax", "qwk"}
        How density pipelines turn probabilities into a grade
        (:class:`~mammo.classifiers.estimators.OrdinalClassifier`); metrics score that grade.
    params : dict, optional
        Fixed hyper-parameters for every fold (no search, whatever ``tune`` says).
    """

    inner_folds: int = 3
    seed: int = 0
    tune: bool = False
    tune_max: int | None = 1000
    density_decision: str = "qwk"
    params: dict | None = None


#: The :class:`TrainConfig` fields that are :func:`~mammo.classifiers.make_task_pipeline` keywords.
PIPELINE_OPTIONS = ("texture_size", "cnn_input_size", "cnn_layers", "flip_tta", "enhance", "density_decision")


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``mammo train`` is asked to do; :func:`mammo.training.run` takes it.

    The fields mirror the command-line options (``mammo train --help``); ``deep_head``,
    ``leaky`` and ``save_model`` are the positive forms of ``--no-deep``, ``--no-leaky``
    and ``--no-model``, ``enhance`` of ``--no-enhance``, ``n_boot`` is ``--bootstrap``.
    """

    data: str
    kind: str = "auto"
    tasks: tuple[str, ...] = TASKS
    feature_sets: tuple[str, ...] = FEATURE_SETS
    models: tuple[str, ...] = MODELS
    folds: int = 5
    inner_folds: int = 3
    tune: bool = False
    tune_max: int = 1000
    out: Path | None = None
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    deep_head: bool = True
    fine_tune: bool = False
    fine_tune_epochs: int = 6
    leaky: bool = True
    save_model: bool = True
    texture_size: int = 256
    cnn_input_size: int = 224
    cnn_layers: str = "multi"
    flip_tta: bool = False
    density_decision: str = "qwk"
    enhance: bool = True
    extra_blocks: tuple[str, ...] = ()
    limit: int | None = None
    seed: int = 0
    n_boot: int = 1000
    cache_dir: Path | None = None
    views_from: str | None = None
    shift_check: int = 200
    progress: bool = True

    @property
    def pipeline_options(self) -> dict[str, Any]:
        """The :func:`~mammo.classifiers.make_task_pipeline` keywords this run sets (also saved in the model's metadata)."""
        return {name: getattr(self, name) for name in PIPELINE_OPTIONS}

    @property
    def fit_options(self) -> FitOptions:
        return FitOptions(
            inner_folds=self.inner_folds,
            seed=self.seed,
            tune=self.tune,
            tune_max=self.tune_max,
            density_decision=self.density_decision,
        )

    def to_json(self) -> dict[str, Any]:
        """The ``config`` section of ``metrics.json``."""
        from .tuning import PARAM_GRIDS

        return {
            "data": str(self.data),
            "kind": self.kind,
            "folds": self.folds,
            "inner_folds": self.inner_folds,
            "seed": self.seed,
            "tune": self.tune,
            "tune_max": self.tune_max,
            "param_grids": PARAM_GRIDS if self.tune else None,
            **self.pipeline_options,
            "extra_blocks": list(self.extra_blocks),
            "limit": self.limit,
            "views_from": str(self.views_from) if self.views_from else None,
            "n_boot": self.n_boot,
            "shift_check": self.shift_check,
            "jobs": self.jobs,
            "deep_head": self.deep_head,
            "fine_tune_epochs": self.fine_tune_epochs if self.fine_tune else None,
            "feature_sets": list(self.feature_sets),
            "models": list(self.models),
        }
