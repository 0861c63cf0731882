"""Score a saved model on labelled data it was not trained on (the library of ``mammo evaluate``).

:func:`evaluate` loads any data set :func:`mammo.datasets.load_dataset` reads, refuses
label sets that mean something else than the model's classes (unless mapped
explicitly), predicts every labelled image as ``mammo predict`` would (images the
input-quality gate refuses or that cannot be read are listed and left out), scores
the predictions with :mod:`mammo.evaluation.external` and writes ``metrics.json``,
``report.md``, its plots and ``predictions.csv``. The command line is
:mod:`mammo.evaluate_cli`; docs/evaluate.md describes the method.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import evaluation as ev
from .classifiers.pipelines import DENSITY_CLASSES
from .conventions import TASKS
from .datasets import Dataset, load_dataset
from .evaluation.external import compare_with_cv, score_density, score_tumour, subgroup_scores
from .evaluation.external_report import write_evaluation_report
from .storage import file_sha256
from .training.results import jsonable

__all__ = [
    "EvaluationError",
    "LabelMismatchError",
    "Predictions",
    "evaluate",
    "choose_tasks",
    "map_density",
    "predict_dataset",
    "score_task",
    "write_outputs",
    "subgroup_columns",
    "SUBGROUP_COLUMNS",
]

#: Subgroup name -> the meta columns (lower case, first match wins) that hold it.
SUBGROUP_COLUMNS = {
    "site": ("site", "site_id"),
    "machine": ("machine", "machine_id", "manufacturer"),
    "view": ("view",),
    "laterality": ("laterality",),
    "age band": ("age",),
}
_AGE_BANDS = ([-np.inf, 50, 60, 70, np.inf], ["0-49", "50-59", "60-69", "70+"])  # labels sort in age order


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


@dataclass
class Predictions:
    """A model's predictions on a data set, row for row with its images (NaN where not scored)."""

    proba: dict[str, np.ndarray]
    used: np.ndarray  # bool, the images labelled for the scored tasks (those predicted)
    failures: dict[int, str]  # image index: why it was left out
    ood_score: np.ndarray | None = None
    in_distribution: np.ndarray | None = None

    @property
    def scored(self) -> np.ndarray:
        return ~np.isnan(next(iter(self.proba.values()))[:, 0])


def predict_dataset(model, ds: Dataset, tasks: list[str], *, progress: bool = True) -> Predictions:
    """Predict every image labelled for ``tasks`` (streamed, with a progress bar); unusable images are recorded.

    Only the pipelines of ``tasks`` run, and that of the out-of-distribution score's task.
    """
    keep = set(tasks) | ({model.ood["task"]} if model.ood is not None else set())
    sub = replace(model, pipelines={t: p for t, p in model.pipelines.items() if t in keep})
    used = np.flatnonzero(np.any([~np.isnan(ds.density if t == "density" else ds.tumour) for t in tasks], axis=0))
    proba = {t: np.full((len(ds), len(model.classes(t))), np.nan) for t in tasks}
    ood = (np.full(len(ds), np.nan), np.zeros(len(ds), bool)) if model.ood is not None else None
    failures: dict[int, str] = {}
    for indices, p, scores, failed in sub.iter_predict([ds.paths[i] for i in used], errors="record", progress=progress):
        rows = used[np.asarray(indices, dtype=int)]
        for t in tasks:
            if p.get(t) is not None:
                proba[t][rows] = p[t]
        if ood is not None and scores is not None:
            ood[0][rows], ood[1][rows] = scores
        failures.update({int(used[i]): message for i, message in failed.items()})
    mask = np.zeros(len(ds), bool)
    mask[used] = True
    return Predictions(proba, mask, dict(sorted(failures.items())), *(ood or (None, None)))


def subgroup_columns(ds: Dataset) -> dict[str, np.ndarray]:
    """``{subgroup: one level per image}`` for the :data:`SUBGROUP_COLUMNS` the data set's meta has
    (age as bands); empty values are "unknown"."""
    cols = {str(c).strip().lower(): c for c in ds.meta.columns}
    out = {}
    for name, options in SUBGROUP_COLUMNS.items():
        col = next((cols[o] for o in options if o in cols), None)
        if col is None:
            continue
        raw = ds.meta[col]
        if name == "age band":
            bands = pd.cut(pd.to_numeric(raw, errors="coerce"), _AGE_BANDS[0], right=False, labels=_AGE_BANDS[1])
            values = bands.astype(object).where(bands.notna(), "unknown")
        else:
            values = raw.fillna("").astype(str).str.strip().replace("", "unknown")
        out[name] = np.asarray(values, dtype=str)
    return out


def _expected(model, task: str) -> dict[str, Any] | None:
    cv = model.metadata.get("cv_metrics", {}).get(task)
    if not cv:
        return None
    data = model.metadata.get("training_data", {})
    return {
        "candidate": cv.get("candidate"),
        "protocol": cv.get("protocol"),
        "training_data": data.get("name"),
        "training_images": data.get("n_images"),
        "metrics": cv.get("metrics", {}),
        "folds_summary": cv.get("folds_summary", {}),
    }


def _task_rows(ds: Dataset, task: str, pred: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """The scored images labelled for ``task``: their indices and labels."""
    values = ds.density if task == "density" else ds.tumour
    rows = np.flatnonzero(~np.isnan(values) & pred.scored)
    if not len(rows):
        raise EvaluationError(f"{task}: no labelled image of {ds.name} could be scored (all were left out)")
    return rows, values[rows].astype(int)


def score_task(model, ds: Dataset, task: str, pred: Predictions, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Everything ``metrics.json`` says about one task: data counts, measured levels, the model's
    cross-validated figures beside them, and subgroups (those with at least two levels)."""
    rows, y = _task_rows(ds, task, pred)
    groups, proba = ds.groups[rows], pred.proba[task][rows]
    breasts = ds.breasts()
    breasts = None if breasts is None else breasts[rows]
    classes = model.classes(task)
    columns = {n: v[rows] for n, v in subgroup_columns(ds).items() if len(set(v[rows])) >= 2}
    if task == "density":
        decide = partial(model.labels, "density")  # the model's own grading rule
        measured = score_density(y, proba, classes, decide, groups, breasts, n_boot=n_boot, seed=seed)
        subgroups = subgroup_scores(
            task, y, groups, columns, pred=decide(proba), classes=classes, n_boot=n_boot, seed=seed
        )
    else:
        measured = score_tumour(y, proba[:, 1], model.threshold, groups, breasts, n_boot=n_boot, seed=seed)
        subgroups = subgroup_scores(task, y, groups, columns, proba=proba[:, 1], n_boot=n_boot, seed=seed)
    expected = _expected(model, task)
    meanings = model.metadata.get("tasks", {}).get(task, {}).get("class_meanings", {})
    out = {
        "n_images": int(len(rows)),
        "n_groups": int(len(set(groups))),
        "class_counts": {str(c): int((y == c).sum()) for c in np.unique(y)},
        "classes": classes,
        "class_meanings": meanings,
        "measured": measured,
        "expected": expected,
        "comparison": compare_with_cv(task, expected, measured["image"]),
        "subgroups": subgroups,
    }
    if task == "tumour":
        out["threshold"] = model.threshold
    return out


def _images(ds: Dataset, pred: Predictions) -> dict[str, Any]:
    """How many images were predicted and scored, and those left out by why: the gate or unreadable."""
    refused = {ds.paths[i]: m for i, m in pred.failures.items() if m.startswith("ImplausibleImageError")}
    unreadable = {ds.paths[i]: m for i, m in pred.failures.items() if ds.paths[i] not in refused}
    return {
        "n_labelled": int(pred.used.sum()),
        "n_scored": int(pred.scored.sum()),
        "refused": refused,
        "unreadable": unreadable,
    }


def _ood(model, pred: Predictions) -> dict[str, Any] | None:
    if pred.in_distribution is None:
        return None
    flagged = ~pred.in_distribution[pred.scored]
    return {
        "task": model.ood["task"],
        "threshold": float(model.ood["model"].threshold_),
        "n": int(len(flagged)),
        "n_flagged": int(flagged.sum()),
        "flag_rate": float(flagged.mean()),
        "expected_flag_rate": model.metadata.get("ood", {}).get("held_out_flagged"),
    }


def _load(data, kind: str, jobs: int | None, progress: bool) -> Dataset:
    path = Path(data).expanduser()
    is_dphi = kind == "dphi" or (
        kind == "auto" and (path.name == "Training_set.csv" or (path / "Training_set.csv").is_file())
    )
    # DPhi's groups (its originals) come from the pixels; the other layouts name their patients
    kwargs = {"n_jobs": jobs or 1, "progress": progress} if is_dphi else {}
    return load_dataset(path, kind, **kwargs)


def evaluate(
    model,
    data,
    *,
    kind: str = "auto",
    task: str | None = None,
    density_map: str | dict | None = None,
    out=None,
    model_path=None,
    n_boot: int = 1000,
    seed: int = 0,
    jobs: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``model`` (a :class:`~mammo.classifiers.MammogramModel`) on the data set ``data`` (a path
    :func:`~mammo.datasets.load_dataset` reads, or a :class:`Dataset`) and write the folder ``out``
    (default ``runs/evaluate-<data set>-<time>``); returns the content of its ``metrics.json``.

    ``task``: "density", "tumour" or "both" (default: what both the model and the data have);
    ``density_map``: see :func:`map_density`. Raises :class:`EvaluationError` (its subclass
    :class:`LabelMismatchError` for labels on another scale) and :class:`~mammo.datasets.DatasetError`.
    """
    t0 = time.time()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    ds = data if isinstance(data, Dataset) else _load(data, kind, jobs, progress)
    tasks, notes = choose_tasks(model, ds, task), []
    mapping = None
    if "density" in tasks:
        ds, mapping = map_density(model, ds, density_map)
    elif density_map:
        notes.append("--map-density was given but density is not scored; it was not used")
    load_s = time.time() - t0
    pred = predict_dataset(model, ds, tasks, progress=progress)
    predict_s = time.time() - t0 - load_s
    if not pred.scored.any():
        first = next(iter(pred.failures.values()), "")
        raise EvaluationError(
            f"none of the {int(pred.used.sum())} labelled images of {ds.name} could be scored (e.g. {first})"
        )
    results = {t: score_task(model, ds, t, pred, n_boot=n_boot, seed=seed) for t in tasks}
    meta = model.metadata
    metrics = {
        "started": started,
        "model": {
            "path": str(model_path) if model_path else None,
            "sha256": file_sha256(model_path) if model_path else None,
            "pipeline_id": meta.get("pipeline_id"),
            "training_data": {k: meta.get("training_data", {}).get(k) for k in ("name", "n_images", "n_groups")},
        },
        "dataset": {**ds.summary(), "path": str(data) if not isinstance(data, Dataset) else None},
        "config": {"tasks": tasks, "density_map": mapping, "n_boot": n_boot, "seed": seed},
        "images": _images(ds, pred),
        "ood": _ood(model, pred),
        "tasks": results,
        "notes": notes,
        "timing": {
            "load_s": load_s,
            "predict_s": predict_s,
            "ms_per_image": 1000 * predict_s / max(1, int(pred.used.sum())),
            "total_s": 0.0,
        },
    }
    out = Path(out) if out else Path("runs") / f"evaluate-{ds.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    metrics["out"] = str(out)
    write_outputs(metrics, model, ds, pred, out, t0)
    return metrics


def write_outputs(metrics: dict, model, ds: Dataset, pred: Predictions, out: Path, t0: float | None = None) -> Path:
    """Write ``metrics.json``, ``report.md`` with its PNG plots, and ``predictions.csv`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    plots = {}
    for task in metrics["tasks"]:
        rows, y = _task_rows(ds, task, pred)
        title = f"on {ds.name}, per image"
        if task == "tumour":
            curve = {"per image": (y, pred.proba[task][rows, 1])}
            plots["roc_tumour"] = ev.plot_roc(curve, out / "roc_tumour.png", f"ROC {title}").name
            plots["calibration_tumour"] = ev.plot_calibration(
                curve, out / "calibration_tumour.png", title=f"Calibration {title}"
            ).name
        else:
            levels = metrics["tasks"][task]["measured"]
            cms = {f"per {lv}": m["confusion_matrix"] for lv, m in levels.items() if m.get("confusion_matrix")}
            plots["confusion_density"] = ev.plot_confusion(
                cms, model.classes(task), out / "confusion_density.png", f"Density on {ds.name} (rows = truth)"
            ).name
    _write_predictions(model, ds, pred, list(metrics["tasks"]), out / "predictions.csv")
    if t0 is not None:
        metrics["timing"]["total_s"] = time.time() - t0
    clean = jsonable(metrics)
    (out / "metrics.json").write_text(json.dumps(clean, indent=1))
    write_evaluation_report(clean, out / "report.md", plots)
    return out


def _write_predictions(model, ds: Dataset, pred: Predictions, tasks: list[str], path: Path) -> None:
    """One row per predicted image: truth, probabilities, the model's label, OOD fields, why it was left out."""
    table = pd.DataFrame({"file": ds.paths, "group": ds.groups})
    for t in tasks:
        truth = ds.density if t == "density" else ds.tumour
        table[f"{t}_true"] = pd.Series(truth).astype("Int64")
        p = pred.proba[t]
        ok = ~np.isnan(p[:, 0])
        labels = np.full(len(ds), None, dtype=object)
        labels[ok] = model.labels(t, p[ok])
        table[f"{t}_pred"] = labels
        for j, c in enumerate(model.classes(t)):
            table[f"p_{t}_{c}"] = p[:, j].round(6)
    if pred.ood_score is not None:
        table["ood_score"] = pred.ood_score.round(4)
        table["in_distribution"] = np.where(pred.scored, np.where(pred.in_distribution, "true", "false"), "")
    table["error"] = [pred.failures.get(i, "") for i in range(len(ds))]
    table[pred.used].to_csv(path, index=False)
