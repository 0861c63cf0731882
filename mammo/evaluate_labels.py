"""Which tasks ``mammo evaluate`` scores, and whether the data's labels mean the model's classes.

:func:`choose_tasks` picks the tasks both the model and the data have; :func:`map_density`
refuses density labels on another scale (mini-MIAS F/G/D against BI-RADS) unless the user
maps them explicitly. Their errors are the ones :mod:`mammo.cli` reports in one line.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .classifiers.pipelines import DENSITY_CLASSES
from .conventions import TASKS
from .datasets import Dataset

__all__ = ["EvaluationError", "LabelMismatchError", "choose_tasks", "map_density"]


class EvaluationError(ValueError):
    """The data cannot be scored as asked: no task that both the model and the data have, a bad
    ``--map-density``, or no image that could be scored."""


class LabelMismatchError(EvaluationError):
    """The data's labels of a task mean something else than the model's classes, and no mapping was given."""


def choose_tasks(model, ds: Dataset, task: str | None = None) -> list[str]:
    """The tasks to score: ``task`` ("density", "tumour", "both"), by default every task that
    the model predicts and the data label."""
    model_tasks = [t for t in TASKS if t in model.pipelines]
    data_tasks = [t for t in TASKS if len(ds.task(t)[1])]
    if task is None:
        tasks = [t for t in model_tasks if t in data_tasks]
        if not tasks:
            raise EvaluationError(
                f"nothing to score: the model predicts {'/'.join(model_tasks) or 'nothing'}, "
                f"{ds.name} has labels for {'/'.join(data_tasks) or 'nothing'}"
            )
        return tasks
    wanted = list(TASKS) if task == "both" else [task]
    for t in wanted:
        if t not in TASKS:
            raise EvaluationError(f"unknown task {t!r}; expected density, tumour or both")
        if t not in model_tasks:
            raise EvaluationError(f"--task {task}: the model has no {t} pipeline (it predicts {'/'.join(model_tasks)})")
        if t not in data_tasks:
            raise EvaluationError(f"--task {task}: {ds.name} has no {t} labels")
    return wanted


def _code(meaning: str) -> str:
    """The short name of a class meaning: "F" of "F - fatty", "A" of "A - almost entirely fatty"."""
    return meaning.split(" - ")[0].strip()


def _meanings(model) -> dict[int, str]:
    stored = model.metadata.get("tasks", {}).get("density", {}).get("class_meanings")
    if stored:
        return {int(c): m for c, m in stored.items()}
    return {c: DENSITY_CLASSES.get(c, str(c)) for c in model.classes("density")}


def _scale(meanings: dict[int, str], classes) -> str:
    return ", ".join(f"{c} = {meanings.get(c, '?')}" for c in classes)


def map_density(model, ds: Dataset, spec: str | dict | None = None) -> tuple[Dataset, dict[str, int] | None]:
    """``ds`` with its density labels on the model's classes, and the mapping used (None: the same scale).

    Without ``spec`` the data's density classes must mean what the model's mean
    (:attr:`Dataset.density_meanings`, BI-RADS when None, against the model's
    ``class_meanings``), else :class:`LabelMismatchError`. ``spec`` (``"F=1,G=2,D=3"``
    or a dict) maps every data class present, by number or short name, to a model class.
    """
    model_classes, model_m = model.classes("density"), _meanings(model)
    data_m = ds.density_meanings or DENSITY_CLASSES
    present = sorted(int(c) for c in np.unique(ds.density[~np.isnan(ds.density)]))
    if spec is None:
        if all(c in model_classes and data_m.get(c) == model_m.get(c) for c in present):
            return ds, None
        # by position, the last model class taking any extra data class: an example of the syntax, not advice
        targets = [model_classes[min(i, len(model_classes) - 1)] for i in range(len(present))]
        example = ",".join(f"{_code(data_m.get(c, str(c)))}={m}" for c, m in zip(present, targets))
        raise LabelMismatchError(
            f"density labels do not match: {ds.name} grades {_scale(data_m, present)}; the model grades "
            f"{_scale(model_m, model_classes)}. Score tumour only (--task tumour) or map the data's classes onto "
            f"the model's explicitly, e.g. --map-density {example}"
        )
    pairs = (
        spec.items()
        if isinstance(spec, dict)
        else (item.partition("=")[::2] for item in spec.split(",") if item.strip())
    )
    mapping: dict[int, int] = {}
    for left, right in pairs:
        src = _class_of(str(left), data_m, present, "data")
        if src in mapping:
            raise EvaluationError(f"--map-density: data class {left} is mapped twice")
        mapping[src] = _class_of(str(right), model_m, model_classes, "model")
    unmapped = [c for c in present if c not in mapping]
    if unmapped:
        raise EvaluationError(
            f"--map-density: data class(es) {_scale(data_m, unmapped)} are not mapped; map every "
            f"class present ({', '.join(_code(data_m.get(c, str(c))) for c in present)})"
        )
    density = np.array([mapping[int(v)] if not np.isnan(v) else np.nan for v in ds.density])
    shown = {f"{_code(data_m.get(c, str(c)))} ({c})": m for c, m in sorted(mapping.items()) if c in present}
    return replace(ds, density=density, density_meanings=None), shown


def _class_of(token: str, meanings: dict[int, str], classes, side: str) -> int:
    token = token.strip()
    for c in classes:
        if token == str(c) or token.upper() == _code(meanings.get(c, str(c))).upper():
            return int(c)
    raise EvaluationError(
        f"--map-density: {token!r} is not a {side} density class "
        f"({', '.join(f'{c} or {_code(meanings.get(c, str(c)))}' for c in classes)})"
    )
