"""``mammo recalibrate MODEL DATA --out NEW``: a saved model's calibration refitted on a new site's sample.

:func:`recalibrate_model` loads the sample as ``mammo evaluate`` does (same layouts, label
checks and ``--map-density``), computes its features through the on-disk feature cache,
refits each task's calibration (:mod:`mammo.recalibrate`) and returns the new model, whose
metadata record what it was recalibrated on; :func:`main` saves it and writes
``recalibration.md``, ``recalibration.json`` and the before/after plots beside it. Exit
status 0 when written, 2 for a usage error or a sample that cannot recalibrate the model
(one line on stderr), 1 for anything else. docs/recalibrate.md describes the method.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.pipeline import Pipeline

from . import evaluation as ev
from . import recalibrate as rc
from .classifiers.pipelines import split_pipeline
from .datasets import DATASET_KINDS, Dataset
from .storage import check_output_dir, file_sha256, json_sha256, jsonable

if TYPE_CHECKING:
    from .classifiers import MammogramModel

__all__ = ["LABEL_FILES", "build_parser", "main", "recalibrate_model", "sample_features", "write_outputs"]

#: The label file of a data set folder, per layout (a manifest is its own label file).
LABEL_FILES = ("labels.csv", "Training_set.csv", "Info.txt")


def sample_features(model, ds: Dataset, tasks: Sequence[str], *, cache_dir=None, jobs: int = 1, progress=True):
    """``(images, {task: feature rows}, refused, cache)`` of every image labelled for ``tasks``, from the
    feature cache (computed once, with a progress bar). Rows of images the input-quality gate refuses are NaN;
    ``refused`` maps their paths to the reason. An unreadable file stops the run."""
    from .featcache import FeatureCache

    values = [ds.density if t == "density" else ds.tumour for t in tasks]
    used = np.flatnonzero(np.any([~np.isnan(v) for v in values], axis=0))
    images = [ds.paths[i] for i in used]
    cache = FeatureCache(cache_dir, n_jobs=jobs, progress=progress)
    feats, refused = {}, {}
    for t in tasks:
        steps = split_pipeline(model.pipelines[t])[0]
        blocks = list(steps[-1][1].transformer_list)
        got = cache.blocks(images, steps[:-1], blocks, desc=f"{ds.name} features", errors="skip")
        refused.update({images[i]: message for i, message in cache.refused.items()})
        feats[t] = np.hstack([got[n] for n, _ in blocks])
    return images, feats, refused, cache


def _label_file(data) -> Path | None:
    path = Path(data).expanduser().resolve()
    if path.is_file():
        return path
    return next((path / n for n in LABEL_FILES if (path / n).is_file()), None)


def _task_record(task, model, clf, calibration, new_clf, y, groups, effect) -> dict[str, Any]:
    """What the artifact keeps about one recalibrated task (the CV effect without its per-image arrays)."""
    ratios = rc.slope_ratios(clf, calibration)
    out = {
        "n_images": int(len(y)),
        "n_patients": int(len(set(groups))),
        "class_counts": {str(c): int((y == c).sum()) for c in np.unique(y)},
        "method": rc.problems(clf)[0].calibrated_classifiers_[0].method,
        "calibrators_refitted": int(sum(len(c) for c in calibration.calibrators)),
        "slope_ratio": ratios,
        "warnings": [w for w in [rc.ranking_warning(ratios, rc.problem_names(clf))] if w],
        "cv": {k: effect[k] for k in ("before", "after", "difference", "folds")},
    }
    if task == "tumour":
        out["threshold"] = {"before": model.threshold, "after": calibration.threshold, "rule": rc.THRESHOLD_RULE}
    else:
        out["cut_points"] = {"before": rc._grades(clf.cut_points_), "after": rc._grades(new_clf.cut_points_)}
    return out


def _recalibrate_task(model, task, X, y, groups, options: dict) -> tuple[Any, dict, dict]:
    """``(new classifier, record, {"y", "before", "after", "pred"})`` for one task's feature rows ``X``."""
    pre, (_, clf) = split_pipeline(model.pipelines[task])[1][:-1], model.pipelines[task].steps[-1]
    Xt = Pipeline(pre).transform(X) if pre else X  # the fitted scaling / reduction / selection, unchanged
    scores = rc.raw_scores(clf, Xt)
    before = clf.predict_proba(Xt)
    effect = rc.cross_validated_effect(task, clf, scores, before, model.labels(task, before), y, groups, **options)
    calibration = rc.fit_calibration(task, clf, scores, y)
    new_clf = rc.install(clf, calibration)
    record = _task_record(task, model, clf, calibration, new_clf, y, groups, effect)
    return new_clf, record, {"y": y, "before": before, "after": effect["proba_after"], "pred": effect["pred_after"]}


def recalibrate_model(
    model: MammogramModel,
    data: str | os.PathLike | Dataset,
    *,
    kind: str = "auto",
    task: str | None = None,
    density_map: str | dict | None = None,
    n_folds: int = 5,
    seed: int = 0,
    min_cases: int = 10,
    n_boot: int = 1000,
    cache_dir=None,
    jobs: int = 1,
    progress: bool = True,
    model_path=None,
) -> tuple[Any, dict, dict]:
    """Recalibrate ``model`` on the labelled data set ``data`` (a path or a :class:`Dataset`).

    Returns ``(new model, record, curves)``: the new model shares every fitted step with
    ``model`` but its calibrators, tumour threshold and density cut points, and holds
    ``record`` as ``metadata["recalibration"]`` (earlier ones move to
    ``metadata["recalibration_history"]``); ``curves[task]`` has the sample's labels and its
    probabilities before and after (out of fold). Raises :class:`~mammo.recalibrate.RecalibrationError`,
    :class:`~mammo.evaluate.EvaluationError` (e.g. labels on another scale) and
    :class:`~mammo.datasets.DatasetError`.
    """
    from .evaluate import _load, choose_tasks, map_density  # mammo evaluate's loading and label checks

    ds = data if isinstance(data, Dataset) else _load(data, kind, jobs, progress)
    tasks = choose_tasks(model, ds, task)
    mapping = None
    if "density" in tasks:
        ds, mapping = map_density(model, ds, density_map)
    clfs = {t: model.pipelines[t].steps[-1][1] for t in tasks}
    meanings = {t: model.metadata.get("tasks", {}).get(t, {}).get("class_meanings", {}) for t in tasks}
    for t in tasks:  # before any feature is computed
        _, y, g = ds.task(t)
        rc.check_sample(t, clfs[t], y, g, n_folds=n_folds, min_cases=min_cases, meanings=meanings[t])
    images, feats, refused, cache = sample_features(model, ds, tasks, cache_dir=cache_dir, jobs=jobs, progress=progress)
    row = {p: i for i, p in enumerate(images)}
    pipelines, records, curves = dict(model.pipelines), {}, {}
    options = {"n_folds": n_folds, "seed": seed, "n_boot": n_boot}
    for t in tasks:
        paths, y, g = ds.task(t)
        keep = np.array([p not in refused for p in paths], dtype=bool)
        y, g = y[keep], g[keep]
        rc.check_sample(t, clfs[t], y, g, n_folds=n_folds, min_cases=min_cases, meanings=meanings[t])
        X = feats[t][[row[p] for p, k in zip(paths, keep) if k]]
        new_clf, records[t], curves[t] = _recalibrate_task(model, t, X, y, g, options)
        pipelines[t] = Pipeline([*model.pipelines[t].steps[:-1], (model.pipelines[t].steps[-1][0], new_clf)])
    record = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "source_model": {"path": str(model_path), "sha256": file_sha256(model_path)} if model_path else {"path": None},
        "data": {**_data_record(data, ds, [p for p in images if p not in refused], cache), "density_map": mapping},
        "tasks": records,
        "not_recalibrated": [t for t in model.pipelines if t not in tasks],
        "protocol": f"{n_folds}-fold StratifiedGroupKFold by patient (seed {seed}) on the sample: in each fold the "
        "calibration refitted on the other folds' images and scored on this fold's; the saved calibration is "
        "refitted on every image",
        "n_boot": n_boot,
    }
    record["data"]["refused"] = dict(sorted(refused.items()))
    return replace(model, pipelines=pipelines, metadata=_metadata(model.metadata, record)), record, curves


def _data_record(data, ds: Dataset, used: list[str], cache) -> dict[str, Any]:
    """Which sample: its path, label file and its sha256, the images' content hashes, images and patients."""
    label_file = None if isinstance(data, Dataset) else _label_file(data)
    return {
        "path": None if isinstance(data, Dataset) else str(Path(data).expanduser().resolve()),
        "name": ds.name,
        "label_file": str(label_file) if label_file else None,
        "label_file_sha256": file_sha256(label_file) if label_file else None,
        "images_sha256": json_sha256([cache.digest(p) for p in used]),  # the sample's pixels, in order
        "n_images": len(used),
        "n_patients": int(len(set(ds.groups[np.isin(ds.paths, used)]))),
    }


def _metadata(old: dict, record: dict) -> dict:
    meta = copy.deepcopy(old)
    if "recalibration" in meta:
        meta["recalibration_history"] = [*meta.get("recalibration_history", []), meta["recalibration"]]
    meta["recalibration"] = jsonable(record)
    if "tumour" in record["tasks"]:
        meta.setdefault("tasks", {}).setdefault("tumour", {})["threshold"] = record["tasks"]["tumour"]["threshold"][
            "after"
        ]
    return meta


# ------------------------------------------------------------------ outputs
#: The rows of a task's before/after table, in order.
_ROWS = {
    "tumour": ("auc", "brier", "ece", "sensitivity", "specificity", "balanced_accuracy", "sens_at_90spec"),
    "density": ("qwk", "accuracy", "balanced_accuracy", "macro_f1", "brier", "ece"),
}
#: Row labels where they are not ``mammo evaluate``'s (:data:`mammo.evaluation.COMPARED`): figures only the
#: recalibration reports, and decisions it makes at the threshold.
_LABELS = {
    "tumour": {
        "ece": "ECE (10 quantile bins)",
        "sensitivity": "sensitivity at the threshold",
        "specificity": "specificity at the threshold",
        "balanced_accuracy": "balanced accuracy at the threshold",
    },
    "density": {"brier": "Brier score (multi-class)", "ece": "ECE of the most probable grade"},
}


def _cell(figures: dict, key: str) -> str:
    """``figures[key]``, followed by its 95% CI where ``figures`` has one (as ``mammo evaluate`` shows it)."""
    return ev.external_report._ci(figures.get(key), figures.get(f"{key}_ci95"))


def _metric_rows(task: str, cv: dict) -> list[str]:
    """The table's rows: each metric out of fold with the stored and the refitted calibration, and the change."""
    labels = {**dict(ev.COMPARED[task]), **_LABELS[task]}
    rows = []
    for key in _ROWS[task]:
        label = f"{labels[key]} [95% CI]" if f"{key}_ci95" in cv["before"] else labels[key]
        cells = [_cell(cv[side], key) for side in ("before", "after", "difference")]
        rows.append(f"| {label} | {' | '.join(cells)} |")
    return rows


def _task_lines(task: str, rec: dict, plot: str | None) -> list[str]:
    cv = rec["cv"]
    lines = [
        f"## {task}",
        "",
        f"{rec['n_images']} images of {rec['n_patients']} patients ({rec['class_counts']}); "
        f"{rec['calibrators_refitted']} {rec['method']} calibrators refitted.",
        "",
        "| out of fold on the sample | stored calibration | recalibrated | after - before |",
        "|---|---|---|---|",
        *_metric_rows(task, cv),
        "",
    ]
    if task == "tumour":
        th = rec["threshold"]
        lines.append(f"Threshold on P(malignant): {th['before']:.4f} -> {th['after']:.4f} ({th['rule']}).")
        folds = cv["folds"]
        mean = [np.nanmean([f[k] for f in folds]) for k in ("auc_before", "auc_after")]
        lines.append(
            f"Mean AUC within a fold (one calibration per fold, so the ranking a calibration makes): "
            f"{mean[0]:.3f} stored, {mean[1]:.3f} recalibrated."
        )
    else:
        cuts = rec["cut_points"]
        lines.append(f"Cut points on the expected grade: {cuts['before']} -> {cuts['after']}.")
    if rec.get("slope_ratio"):
        ratios = ", ".join(f"{r:.2f}" for row in rec["slope_ratio"] for r in row)
        lines.append(f"Refitted slope / stored slope of each calibrator (1: as in training, 0: no signal): {ratios}.")
    lines += [f"\n**Warning:** {w}." for w in rec.get("warnings", [])]
    if plot:
        lines += ["", f"![{task}]({plot})"]
    return lines + [""]


def write_outputs(record: dict, curves: dict, classes: dict, folder: Path) -> Path:
    """Write ``recalibration.json``, ``recalibration.md`` and its plots into ``folder``; returns the report."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = {}
    for task, c in curves.items():
        if task == "tumour":
            pair = {
                "stored calibration": (c["y"], c["before"][:, -1]),
                "recalibrated (out of fold)": (c["y"], c["after"][:, -1]),
            }
            plots[task] = ev.plot_calibration(
                pair, folder / "recalibration_tumour.png", title="Calibration on the sample"
            ).name
        else:
            cms = {
                "stored calibration": record["tasks"][task]["cv"]["before"]["confusion_matrix"],
                "recalibrated (out of fold)": record["tasks"][task]["cv"]["after"]["confusion_matrix"],
            }
            plots[task] = ev.plot_confusion(
                cms, classes[task], folder / "recalibration_density.png", "Density on the sample (rows = truth)"
            ).name
    data = record["data"]
    lines = [
        f"# Recalibration on {data['name']}",
        "",
        f"Model `{record['source_model']['path']}` (sha256 `{record['source_model'].get('sha256')}`), recalibrated "
        f"{record['date']} on `{data['path']}` (labels `{data['label_file']}`, sha256 `{data['label_file_sha256']}`): "
        f"{data['n_images']} images of {data['n_patients']} patients, {len(data['refused'])} refused by the "
        "input-quality gate. Only the calibrators, the tumour threshold and the density cut points were refitted; "
        f"features and classifiers are the original model's. Not recalibrated: {', '.join(record['not_recalibrated']) or 'none'}.",
        "",
        f"Protocol: {record['protocol']}. 95% CIs: percentile bootstrap resampling whole patients "
        f"({record['n_boot']} resamples); the change's CI is paired (both calibrations on each resample).",
        "",
    ]
    for task, rec in record["tasks"].items():
        lines += _task_lines(task, rec, plots.get(task))
    (folder / "recalibration.json").write_text(json.dumps(jsonable(record), indent=1))
    report = folder / "recalibration.md"
    report.write_text("\n".join(lines) + "\n")
    return report


# -------------------------------------------------------------- command line
DESCRIPTION = (
    "Refit a saved model's probability calibration on a new site's labelled sample: the "
    "calibrators, the tumour threshold and the density cut points. Features and classifiers are left "
    "untouched, so the images' raw scores and their ranking by each calibration member stay the same. "
    "A cross-validation on the sample, by patient, reports the effect (Brier score, ECE, calibration "
    "curve, sensitivity and specificity at the threshold, AUC; QWK for density) before and after. The "
    "new model records what it was recalibrated on."
)
EPILOG = (
    "Examples:\n"
    "  mammo recalibrate runs/site1/model.joblib site2-sample.csv --out runs/site2/model.joblib\n"
    "  mammo recalibrate model.joblib ../shared/data/mini-mias --task density --map-density F=1,G=2,D=3 "
    "--out mias.joblib\n"
    "Writes NEW (+ NEW.manifest.json) and recalibration.md, recalibration.json and their plots into --report.\n"
    "Score the new model on other images of the site with 'mammo evaluate NEW DATA'."
)


def build_parser() -> argparse.ArgumentParser:
    """The ``mammo recalibrate`` argument parser; each option's dest is the :func:`recalibrate_model` keyword it
    sets, but for the paths and files :func:`main` handles (``model``, ``data``, ``--out``, ``--report``,
    ``--manifest``)."""
    p = argparse.ArgumentParser(
        prog="mammo recalibrate",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model file saved by 'mammo train' (model.joblib)")
    p.add_argument("data", help="labelled sample of the new site: a data set folder or a CSV manifest")
    p.add_argument("--out", type=Path, required=True, metavar="NEW", help="the recalibrated model file to write")
    p.add_argument("--report", type=Path, default=None, metavar="DIR", help="report folder (default: NEW's folder)")
    p.add_argument("--kind", default="auto", choices=DATASET_KINDS, help="data set layout (default: detected)")
    p.add_argument("--task", choices=("tumour", "density", "both"), default=None, help="default: all the data label")
    p.add_argument(
        "--map-density", dest="density_map", metavar="DATA=MODEL,...", default=None, help="as in 'mammo evaluate'"
    )
    p.add_argument(
        "--folds",
        dest="n_folds",
        type=int,
        default=5,
        metavar="FOLDS",
        help="patient-grouped folds of the effect's CV (default 5)",
    )
    p.add_argument(
        "--min-cases", type=int, default=10, help="images needed on each side of every decision (default 10)"
    )
    p.add_argument(
        "--bootstrap", dest="n_boot", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and the bootstrap (default 0)")
    p.add_argument("--manifest", help="verify the model file's sha256 against this manifest before loading")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default $MAMMO_CACHE_DIR/features)")
    p.add_argument("--jobs", type=int, default=1, help="feature batches computed at once (default 1)")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; see the module docstring for the exit status."""
    from .classifiers import load_model

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n_folds < 2:
        parser.error("--folds must be at least 2")
    for name, value in (("--bootstrap", args.n_boot), ("--min-cases", args.min_cases), ("--jobs", args.jobs)):
        if value < 1:
            parser.error(f"{name} must be at least 1")
    options = vars(args).copy()
    model_path, data, out, report, manifest = (options.pop(k) for k in ("model", "data", "out", "report", "manifest"))
    if out.expanduser().resolve() == Path(model_path).expanduser().resolve():
        parser.error("--out must name a new file: the original model is kept as it is")
    report_dir = report if report is not None else out.parent
    check_output_dir(out.parent)
    check_output_dir(report_dir)
    model = load_model(model_path, manifest=manifest)
    new, record, curves = recalibrate_model(model, data, model_path=model_path, **options)
    new.save(out)
    written = write_outputs(record, curves, {t: model.classes(t) for t in curves}, report_dir)
    print(f"{parser.prog}: recalibrated {', '.join(record['tasks'])}; wrote {out} and {written}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from .cli import run

    raise SystemExit(run("recalibrate", sys.argv[1:]))
