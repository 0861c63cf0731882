"""The run schema: what a training run produces, as dataclasses with ONE serialisation.

:class:`RunResult` ``.to_json()`` is ``metrics.json``; the Markdown report
(:func:`mammo.evaluation.write_report`) reads that dict, and :func:`artifact_metadata`
derives from it what the saved model carries (``model.metadata``: ``training_data``,
``pipeline_id``, ``selection``, ``cv_metrics`` and the pipeline options), which the web
page and ``mammo predict`` show. The keys are those of the first ``metrics.json`` and
model files, so older runs and models keep loading and showing.

``metrics.json``::

    started, dataset, config, feature_cache, notes, timing
    tasks: {task: TaskResult}       n_images, n_groups, class_counts, fold_sizes,
                                    groups_shared_between_folds, best, params,
                                    candidates: {name: CVResult}, leaky?, selection_estimate?,
                                    subgroups?: {column: [level rows]} (the selected candidate's)
    final_model?: FinalModel        path, sha256, pipeline_id, params, selection
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import evaluation as ev
from .candidates import DEEP_HEAD, FINE_TUNED, Candidate

__all__ = [
    "CVResult",
    "SelectionEstimate",
    "LeakyContrast",
    "TaskResult",
    "FinalModel",
    "RunResult",
    "artifact_metadata",
    "pipeline_id",
    "jsonable",
]

_BASELINES = (DEEP_HEAD.name, FINE_TUNED.name)


@dataclass
class CVResult:
    """One candidate's out-of-fold predictions on a task's folds, and their metrics.

    ``pooled``: metrics of all out-of-fold predictions together; ``folds``: per outer
    fold; ``folds_summary``: their mean and std. ``oof_proba`` (n, n_classes) and, for
    density, ``oof_pred`` (the model's own grades) are kept for plots, the selection
    estimate and ``oof_<task>.npz``, not for ``metrics.json``. ``grouped_calibration`` and
    ``searched_folds`` are None for the deep baselines; ``per_breast`` is set for tumour
    when breasts have several images (RSNA); ``crop_shift`` when the run made the
    crop-shift check (:func:`mammo.training.cv.crop_shift_summary`).
    """

    pooled: dict
    oof_proba: np.ndarray
    folds: list = field(default_factory=list)
    folds_summary: dict = field(default_factory=dict)
    params: list = field(default_factory=list)
    fit_s: float = 0.0
    oof_pred: np.ndarray | None = None
    grouped_calibration: bool | None = None
    searched_folds: int | None = None
    per_breast: dict | None = None
    candidate: Candidate | None = None
    crop_shift: dict | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in ("pooled", "folds", "folds_summary", "params")}
        if self.grouped_calibration is not None:
            out["grouped_calibration"] = self.grouped_calibration
        if self.searched_folds is not None:
            out["searched_folds"] = self.searched_folds
        out["fit_s"] = self.fit_s  # worker seconds (search + fit + predict), summed over folds
        if self.per_breast is not None:
            out["per_breast"] = self.per_breast
        if self.crop_shift is not None:
            out["crop_shift"] = self.crop_shift
        return out


class _Fields:
    """``to_json()``: the dataclass's fields, in order (they are JSON-ready already)."""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SelectionEstimate(_Fields):
    """The score of "take the best candidate" with the choice inside the evaluation
    (:func:`mammo.training.cv.selection_estimate`)."""

    metric: str
    score: float
    chosen: list[str]
    selected: str
    selected_score: float


@dataclass
class LeakyContrast(_Fields):
    """The selected candidate under a split that ignores groups (what a careless split reports)."""

    candidate: str
    params: dict
    pooled: dict
    folds_summary: dict
    folds: list
    test_images_with_group_in_train: float
    fit_s: float
    split: str


@dataclass
class TaskResult:
    """One task's comparison: its data, every candidate's result, the selection and the contrasts.

    ``y``, ``groups`` and ``classes`` are the task's labels, kept for plots and the
    out-of-fold file; they are not part of ``metrics.json``. ``subgroups``: the selected
    candidate's out-of-fold predictions scored per level of the data's subgroup columns
    (:func:`mammo.evaluation.subgroup_metrics`), None when the data have no such column.
    """

    task: str
    y: np.ndarray
    groups: np.ndarray
    folds: list
    best: str
    candidates: dict[str, CVResult]
    leaky: LeakyContrast | None = None
    selection: SelectionEstimate | None = None
    paths: np.ndarray | None = None  # the task's images, row for row (refused images left out)
    subgroups: dict | None = None

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.y)

    @property
    def best_result(self) -> CVResult:
        return self.candidates[self.best]

    def to_json(self) -> dict[str, Any]:
        out = {
            "n_images": int(len(self.y)),
            "n_groups": int(len(set(self.groups))),
            "class_counts": {str(int(c)): int((self.y == c).sum()) for c in self.classes},
            "fold_sizes": [int(len(te)) for _, te in self.folds],
            "groups_shared_between_folds": 0,  # make_folds asserts it
            "best": self.best,
            "candidates": {n: r.to_json() for n, r in self.candidates.items()},
            # the hyper-parameters of the scikit-learn candidates, when there are any to show
            "params": {
                n: r.params for n, r in self.candidates.items() if n not in _BASELINES and r.params and r.params[0]
            },
        }
        if self.leaky is not None:
            out["leaky"] = self.leaky.to_json()
        if self.selection is not None:
            out["selection_estimate"] = self.selection.to_json()
        if self.subgroups is not None:
            out["subgroups"] = self.subgroups
        return out


@dataclass
class FinalModel(_Fields):
    """The saved model of a run: file name, its sha256, pipeline id, refit hyper-parameters, how it was chosen."""

    path: str
    sha256: str
    pipeline_id: str
    params: dict
    selection: str


@dataclass
class RunResult:
    """Everything a training run produced; ``to_json()`` is ``metrics.json``."""

    started: str
    dataset: dict
    config: dict
    feature_cache: dict
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    final_model: FinalModel | None = None
    timing: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # path: why the pipeline refused it
    ood: dict | None = None  # the saved model's out-of-distribution threshold and held-out flag rate

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "started": self.started,
            "dataset": self.dataset,
            "config": self.config,
            "feature_cache": self.feature_cache,
            "tasks": {t: r.to_json() for t, r in self.tasks.items()},
            "notes": self.notes,
        }
        if self.refused:
            out["refused_images"] = self.refused
        if self.final_model is not None:
            out["final_model"] = self.final_model.to_json()
        if self.ood is not None:
            out["ood"] = self.ood
        out["timing"] = self.timing
        return jsonable(out)


def pipeline_id(dataset: str, best: dict[str, Candidate]) -> str:
    """``"<data set>:density=<candidate>;tumour=<candidate>"``, extra blocks included."""
    return f"{dataset}:" + ";".join(f"{task}={c.pipeline_name}" for task, c in best.items())


def selection_text(tasks: list[str], tuned: bool) -> str:
    """How the saved model was chosen and refitted (metrics.json and the model's ``selection``)."""
    return (
        "Best candidate per task by pooled out-of-fold grouped-CV "
        + ", ".join(f"{ev.PRIMARY_METRIC[tk]} ({tk})" for tk in tasks)
        + "; the deep baselines (Keras head, fine-tuned MobileNetV2) are reported but not selectable "
        "(not scikit-learn pipelines). Refitted on all labelled images with "
        + (
            "hyper-parameters from a grouped inner CV on them."
            if tuned
            else "the models' default hyper-parameters, as in the cross-validation."
        )
    )


def artifact_metadata(run: RunResult, pipeline_options: dict) -> dict[str, Any]:
    """The metadata a run gives its saved model (before :meth:`MammogramModel.fit` adds its own):
    ``training_data``, ``pipeline_id``, ``selection``, ``cv_metrics`` and the pipeline options."""
    best = {task: t.best_result.candidate for task, t in run.tasks.items()}
    cv = {}
    for task, t in run.tasks.items():
        cv[task] = {
            "candidate": t.best,
            "metrics": t.best_result.pooled,
            "folds_summary": t.best_result.folds_summary,
            "table": {n: c.pooled for n, c in t.candidates.items()},
            "protocol": f"{run.config['folds']}-fold StratifiedGroupKFold, seed {run.config['seed']}",
        }
        if t.subgroups is not None:  # so that a card built from the model alone shows them too
            cv[task]["subgroups"] = t.subgroups
        if t.best_result.crop_shift is not None:
            cv[task]["crop_shift"] = t.best_result.crop_shift
    return {
        "training_data": run.dataset,
        "pipeline_id": pipeline_id(run.dataset["name"], best),
        "selection": selection_text(list(run.tasks), run.config["tune"]),
        "cv_metrics": cv,
        **pipeline_options,
    }


def jsonable(o):
    """``o`` with numpy values as Python ones and NaN as None (JSON has no NaN)."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return jsonable(o.tolist())
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        return None if np.isnan(o) else float(o)
    return o
