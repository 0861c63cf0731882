"""Score a saved model on labelled data it was not trained on (the library of ``mammo evaluate``).

:func:`evaluate` loads any data set :func:`mammo.datasets.load_dataset` reads, refuses
label sets that mean something else than the model's classes (unless mapped
explicitly; :mod:`mammo.evaluate_labels`, re-exported here), predicts every labelled
image as ``mammo predict`` would (images the input-quality gate refuses or that cannot
be read are listed and left out), scores the predictions with
:mod:`mammo.evaluation.external` (subgroups as the training report scores them:
:meth:`Dataset.subgroups`, :func:`mammo.evaluation.subgroup_metrics`) and writes
``metrics.json``, ``report.md``, its plots and ``predictions.csv``. The command line is
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
from .datasets import Dataset, load_dataset, too_few_cases
from .evaluate_labels import EvaluationError, LabelMismatchError, choose_tasks, map_density
from .evaluation.external import compare_with_cv, score_density, score_tumour
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
    "crop_shift_check",
    "write_outputs",
]


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


def crop_shift_check(
    model, ds: Dataset, pred: Predictions, tasks: list[str], n: int, *, seed: int = 0, progress: bool = True
) -> dict[str, dict]:
    """Per task, how far the answers for ``n`` random scored images move when their crop moves half a pixel
    (``measured``), beside the model's own cross-validated check (``expected``, None when it has none)."""
    from sklearn.pipeline import Pipeline

    from .features.region import CROP_SHIFT, with_shifted_crop

    scored = np.flatnonzero(pred.scored)
    n = min(int(n), len(scored))
    if n == 0:
        return {}
    pick = np.sort(np.random.default_rng(seed).choice(scored, n, replace=False))
    pipes = {t: Pipeline(with_shifted_crop(p.steps, CROP_SHIFT)) for t, p in model.pipelines.items()}
    shifted = replace(model, pipelines=pipes)
    sample = ds.subset(pick)
    moved = predict_dataset(shifted, sample, tasks, progress=progress)
    out = {}
    for t in tasks:
        ok = moved.scored  # an image the gate refuses once shifted is left out of the comparison
        own, new = pred.proba[t][pick][ok], moved.proba[t][ok]
        if t == "density":
            own, new = model.labels(t, own), model.labels(t, new)
        else:
            own, new = own[:, 1], new[:, 1]
        cv = (model.metadata.get("cv_metrics", {}).get(t) or {}).get("crop_shift")
        out[t] = {"measured": ev.answer_change(t, own, new, CROP_SHIFT), "expected": cv}
    return out


def _task_rows(ds: Dataset, task: str, pred: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """The scored images labelled for ``task``: their indices and labels."""
    values = ds.density if task == "density" else ds.tumour
    rows = np.flatnonzero(~np.isnan(values) & pred.scored)
    if not len(rows):
        raise EvaluationError(f"{task}: no labelled image of {ds.name} could be scored (all were left out)")
    return rows, values[rows].astype(int)


def score_task(model, ds: Dataset, task: str, pred: Predictions, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Everything ``metrics.json`` says about one task: data counts, measured levels, the model's
    cross-validated figures beside them, and subgroups (levels with too few cases listed as such)."""
    rows, y = _task_rows(ds, task, pred)
    groups, proba = ds.groups[rows], pred.proba[task][rows]
    breasts = ds.breasts()
    breasts = None if breasts is None else breasts[rows]
    classes = model.classes(task)
    sub = partial(
        ev.subgroup_metrics,
        task,
        y,
        groups,
        ds.subgroups(rows),
        too_few=partial(too_few_cases, task),
        n_boot=n_boot,
        seed=seed,
    )
    if task == "density":
        decide = partial(model.labels, "density")  # the model's own grading rule
        measured = score_density(y, proba, classes, decide, groups, breasts, n_boot=n_boot, seed=seed)
        subgroups = sub(pred=decide(proba), classes=classes)
    else:
        measured = score_tumour(y, proba[:, 1], model.threshold, groups, breasts, n_boot=n_boot, seed=seed)
        subgroups = sub(proba=proba[:, 1])
    expected = _expected(model, task)
    _beside_cv(subgroups, model.metadata.get("cv_metrics", {}).get(task, {}).get("subgroups"))
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


def _beside_cv(subgroups: dict[str, list], cv: dict[str, list] | None) -> None:
    """Give every measured subgroup row the model's cross-validated row for the same column and
    level (``expected``; None where training had no such level). Nothing when the model stored none."""
    if not cv:
        return
    for name, rows in subgroups.items():
        by_level = {r["level"]: r for r in cv.get(name, [])}
        for r in rows:
            e = by_level.get(r["level"])
            r["expected"] = None if e is None else {k: e.get(k) for k in ("n", "value", "ci95", "too_few")}


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


def _model_record(model, model_path) -> dict[str, Any]:
    """What the evaluation's ``metrics.json`` says of the model: its file, hash, pipeline and training data."""
    meta = model.metadata
    return {
        "path": str(model_path) if model_path else None,
        "sha256": file_sha256(model_path) if model_path else None,
        "pipeline_id": meta.get("pipeline_id"),
        "training_data": {k: meta.get("training_data", {}).get(k) for k in ("name", "n_images", "n_groups")},
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
    shift_check: int = 200,
) -> dict[str, Any]:
    """Score ``model`` (a :class:`~mammo.classifiers.MammogramModel`) on the data set ``data`` (a path
    :func:`~mammo.datasets.load_dataset` reads, or a :class:`Dataset`) and write the folder ``out``
    (default ``runs/evaluate-<data set>-<time>``); returns the content of its ``metrics.json``.

    ``task``: "density", "tumour" or "both" (default: what both the model and the data have);
    ``density_map``: see :func:`map_density`. ``shift_check``: images cropped again half a pixel off
    (:func:`crop_shift_check`; 0 skips it). Raises :class:`EvaluationError` (its subclass
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
    for t, check in crop_shift_check(model, ds, pred, tasks, shift_check, seed=seed, progress=progress).items():
        results[t]["crop_shift"] = check
    metrics = {
        "started": started,
        "model": _model_record(model, model_path),
        "dataset": {**ds.summary(), "path": str(data) if not isinstance(data, Dataset) else None},
        "config": {"tasks": tasks, "density_map": mapping, "n_boot": n_boot, "seed": seed, "shift_check": shift_check},
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
        plots.update(_task_plots(metrics["tasks"][task], task, model, ds, pred, out))
    _write_predictions(model, ds, pred, list(metrics["tasks"]), out / "predictions.csv")
    if t0 is not None:
        metrics["timing"]["total_s"] = time.time() - t0
    clean = jsonable(metrics)
    (out / "metrics.json").write_text(json.dumps(clean, indent=1))
    write_evaluation_report(clean, out / "report.md", plots)
    return out


def _task_plots(t: dict, task: str, model, ds: Dataset, pred: Predictions, out: Path) -> dict[str, str]:
    """One task's plots (ROC and calibration, or confusion matrices; subgroups): ``{name: file name}``."""
    rows, y = _task_rows(ds, task, pred)
    title = f"on {ds.name}, per image"
    plots = {}
    if task == "tumour":
        curve = {"per image": (y, pred.proba[task][rows, 1])}
        plots["roc_tumour"] = ev.plot_roc(curve, out / "roc_tumour.png", f"ROC {title}").name
        plots["calibration_tumour"] = ev.plot_calibration(
            curve, out / "calibration_tumour.png", title=f"Calibration {title}"
        ).name
    else:
        cms = {f"per {lv}": m["confusion_matrix"] for lv, m in t["measured"].items() if m.get("confusion_matrix")}
        plots["confusion_density"] = ev.plot_confusion(
            cms, model.classes(task), out / "confusion_density.png", f"Density on {ds.name} (rows = truth)"
        ).name
    if t["subgroups"]:
        overall = t["measured"]["image"][ev.PRIMARY_METRIC[task]]
        plots[f"subgroups_{task}"] = ev.plot_subgroups(
            task, t["subgroups"], out / f"subgroups_{task}.png", overall, f"{task} {title}, per subgroup (95% CI)"
        ).name
    return plots


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
