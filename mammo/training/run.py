"""One training run, end to end: data -> features -> per task (CV of every candidate, selection,
contrasts, deep baselines) -> the final model -> ``metrics.json``, ``report.md``, plots, out-of-fold file,
and beside the saved model its card (``MODEL_CARD.md`` and ``MODEL_CARD.html``, :mod:`mammo.evaluation.card`).

See :mod:`mammo.training` for the protocol; :class:`~mammo.training.results.RunResult`
for what it produces.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np

from .. import evaluation as ev
from ..classifiers.finetune import LEARNING_RATE
from ..classifiers.model import file_sha256
from ..datasets import Dataset, too_few_cases
from ..evaluation.card import write_model_card
from ..features.blocks import blocks_of
from .candidates import DEEP_HEAD, FINE_TUNED, candidates
from .config import TrainConfig
from .cv import best_candidate, cross_validate, ood_holdout_rate, selection_estimate
from .data import FeatureTable, compute_features, drop_refused, load_data, usable_tasks
from .deep import deep_head_cv, finetune_cv
from .final import fit_final_model
from .folds import make_folds
from .results import CVResult, FinalModel, LeakyContrast, RunResult, TaskResult, artifact_metadata, jsonable

__all__ = ["run", "evaluate_task", "subgroup_results"]


def run(config: TrainConfig) -> RunResult:
    """Run the comparison described by ``config``, write its run folder and return what it produced."""
    from threadpoolctl import threadpool_limits

    # Classifier work here is many small BLAS calls; with threads they contend for the
    # shared cores (sigmoid calibration measured many times slower, docs/results.md).
    # The CNN runtime has its own pool.
    with threadpool_limits(1):
        return _run(config)


def _run(config: TrainConfig) -> RunResult:
    t0 = time.time()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    timing: dict[str, float] = {}
    say = (lambda *a: None) if not config.progress else (lambda *a: print(*a, file=sys.stderr, flush=True))
    ds = load_data(config)
    timing["load_s"] = time.time() - t0
    say(f"{ds.name}: {len(ds)} images, {len(set(ds.groups))} groups")
    notes: list[str] = []
    tasks = usable_tasks(ds, config, notes)
    out = config.out or Path("runs") / f"{ds.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)

    t = time.time()
    table, cache = compute_features(ds, tasks, config)
    timing["features_s"] = time.time() - t
    say(f"features: {dict(cache.stats)} in {timing['features_s']:.0f} s")
    if cache.refused:
        ds = drop_refused(ds, cache.refused)
        notes.append(_refused_note(cache.refused))
        say(notes[-1])
        tasks = usable_tasks(ds, config, notes)
    notes += _run_notes(config, tasks)
    result = RunResult(
        started,
        ds.summary(),
        config.to_json(),
        {"root": str(cache.root), **{k: int(v) for k, v in cache.stats.items()}},
        notes=notes,
        timing=timing,
        refused=dict(cache.refused),
    )
    plots = {"group_sizes": ev.plot_group_sizes(ds.groups, out / "group_sizes.png").name}
    features = {}
    for task in tasks:
        t = time.time()
        result.tasks[task], features[task] = evaluate_task(task, ds, table, config, notes)
        timing[f"cv_{task}_s"] = time.time() - t
        plots.update(_write_task_outputs(result.tasks[task], out))
        key, best = ev.PRIMARY_METRIC[task], result.tasks[task].best
        say(f"{task}: best {best} {key}={result.tasks[task].best_result.pooled[key]:.3f} ({time.time() - t:.0f} s)")
    model_meta = None
    if config.save_model:
        t = time.time()
        result.final_model, model_meta = _save_final_model(ds, result, features, config, out)
        timing["final_model_s"] = time.time() - t
    timing["total_s"] = time.time() - t0
    metrics = result.to_json()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    ev.write_report(metrics, out / "report.md", plots)
    say(f"wrote {out / 'report.md'}")
    if model_meta is not None:
        say(f"wrote {write_model_card(out, jsonable(model_meta), metrics)[0]}")
    print(out)
    return result


def evaluate_task(
    task: str, ds: Dataset, table: FeatureTable, config: TrainConfig, notes: list[str]
) -> tuple[TaskResult, dict[str, np.ndarray]]:
    """Cross-validate every candidate of ``task``, select, contrast, add the deep baselines.

    Returns the task's result and its feature matrix per feature set (for the final refit);
    notes about the task are appended to ``notes``.
    """
    paths, y, g = ds.task(task)
    cands = candidates(config.feature_sets, config.models, config.extra_blocks)
    X = {fs: table.matrix(paths, (*blocks_of(fs), *config.extra_blocks)) for fs in config.feature_sets}
    folds = make_folds(y, g, config.folds, config.seed)
    res = cross_validate(
        task,
        X,
        y,
        g,
        folds,
        cands,
        config.fit_options,
        n_jobs=config.jobs,
        n_boot=config.n_boot,
        progress=config.progress,
        shifted=_shifted_matrices(table.shifted, paths, config),
    )
    best = best_candidate(task, res)
    selection = selection_estimate(task, y, np.unique(y), folds, res) if len(res) > 1 else None
    leaky = None
    if config.leaky and len(set(g)) < len(g):  # the deliberately leaky contrast
        leaky = leaky_contrast(task, X, y, g, res[best], config)
    res.update(_deep_baselines(task, table, paths, y, g, folds, config))
    note = add_per_breast(ds, paths, y, g, res, n_boot=config.n_boot, seed=config.seed) if task == "tumour" else None
    if note:
        notes.append(note)
    notes += _task_notes(task, res, len(folds), config)
    subgroups = subgroup_results(task, ds, paths, y, g, res[best], n_boot=config.n_boot, seed=config.seed)
    return TaskResult(task, y, g, folds, best, res, leaky, selection, np.asarray(paths, dtype=str), subgroups), X


def _shifted_matrices(shifted: FeatureTable | None, paths, config: TrainConfig) -> dict | None:
    """Per feature set, ``(rows of paths, features)`` of the task's images in the crop-shift sample."""
    if shifted is None:
        return None
    rows = np.array([i for i, p in enumerate(paths) if p in shifted.rows], dtype=int)
    if not len(rows):
        return None
    names = [paths[i] for i in rows]
    return {fs: (rows, shifted.matrix(names, (*blocks_of(fs), *config.extra_blocks))) for fs in config.feature_sets}


def _deep_baselines(task: str, table: FeatureTable, paths, y, g, folds, config: TrainConfig) -> dict[str, CVResult]:
    """The deep baselines the configuration asks for, under the task's folds (reported, never selected)."""
    res = {}
    baseline = {"seed": config.seed, "n_boot": config.n_boot, "progress": config.progress}
    if config.deep_head:
        # After the candidates, not beside them: the machine is already saturated (running
        # it in a thread beside the sklearn workers measured the same wall time).
        res[DEEP_HEAD.name] = deep_head_cv(task, table.block("cnn", paths), y, g, folds, **baseline)
    if config.fine_tune:
        res[FINE_TUNED.name] = finetune_cv(
            task,
            table.block("trunk", paths),
            y,
            g,
            folds,
            map_shape=table.map_shape,
            epochs=config.fine_tune_epochs,
            input_size=config.cnn_input_size,
            **baseline,
        )
    return res


def leaky_contrast(
    task: str, X: dict, y: np.ndarray, g: np.ndarray, grouped: CVResult, config: TrainConfig
) -> LeakyContrast:
    """The selected candidate under a plain StratifiedKFold that ignores groups (what a careless split reports).

    It uses the hyper-parameters grouped CV used (chosen most often, with ``--tune``), without
    a new search: the split is then the only difference (and the contrast costs no tuning).
    """
    cand = grouped.candidate
    leaky_folds = make_folds(y, g, config.folds, config.seed, grouped=False)
    image_ids = np.arange(len(y)).astype(str)  # calibration splits ignore groups too
    fixed = json.loads(Counter(json.dumps(p, sort_keys=True) for p in grouped.params).most_common(1)[0][0])
    options = replace(config.fit_options, tune=False, params=fixed)
    lk = cross_validate(
        task,
        X,
        y,
        image_ids,
        leaky_folds,
        [cand],
        options,
        n_jobs=config.jobs,
        n_boot=config.n_boot,
        progress=config.progress,
    )[cand.name]
    shared = np.mean(np.concatenate([np.isin(g[te], g[tr]) for tr, te in leaky_folds]))
    return LeakyContrast(
        cand.name,
        fixed,
        lk.pooled,
        lk.folds_summary,
        lk.folds,
        float(shared),
        lk.fit_s,
        f"StratifiedKFold({config.folds}, shuffle=True, random_state={config.seed}), groups ignored",
    )


def _rows(ds: Dataset, paths) -> list[int]:
    """The rows of ``ds`` that hold ``paths`` (a task's images)."""
    index = {p: i for i, p in enumerate(ds.paths)}
    return [index[p] for p in paths]


def subgroup_results(task: str, ds: Dataset, paths, y, g, result: CVResult, *, n_boot: int, seed: int) -> dict | None:
    """``result``'s out-of-fold predictions (the selected candidate's) scored in every level of the data's
    subgroup columns (:meth:`Dataset.subgroups`), or None without any: tumour AUC of P(malignant), density
    QWK of the model's own grades; levels with too few cases listed as such (:func:`~mammo.datasets.too_few_cases`)."""
    columns = ds.subgroups(_rows(ds, paths))
    if not columns:
        return None
    if task == "tumour":
        scores = {"proba": result.oof_proba[:, 1]}
    else:
        scores = {"pred": result.oof_pred, "classes": np.unique(y)}
    rule = partial(too_few_cases, task)
    return ev.subgroup_metrics(task, y, g, columns, too_few=rule, n_boot=n_boot, seed=seed, **scores)


def add_per_breast(ds: Dataset, paths, y, g, res: dict[str, CVResult], *, n_boot: int, seed: int) -> str | None:
    """Add per-breast tumour metrics (views averaged) to every result when breasts have several images;
    returns the note that explains them (or why there are none), or None.

    A breast lies inside one patient, hence inside one test fold: its views' out-of-fold
    probabilities all come from the same model.
    """
    breasts = ds.breasts()
    if breasts is None:
        return None
    tb = breasts[_rows(ds, paths)]
    if len(set(tb)) == len(tb):
        return None  # one image per breast: nothing to average
    for r in res.values():
        r.per_breast = ev.per_breast_tumour(y, r.oof_proba[:, 1], tb, g, n_boot=n_boot, seed=seed)
    first = next(iter(res.values())).per_breast
    if first is None:
        return "tumour: labels differ between images of one breast, so no per-breast metrics"
    return (
        f"tumour: 'AUC per breast' scores the mean P(malignant) of each breast's images (patient + "
        f"laterality; {first['n']} breasts, {first['views_per_breast']:.1f} images each on average). "
        "Selection stays per image"
    )


def _refused_note(refused: dict[str, str]) -> str:
    """One line naming the images the pipeline refused and why (the first few by name)."""
    shown = "; ".join(f"{Path(p).name} ({m})" for p, m in list(refused.items())[:5])
    more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
    return (
        f"{len(refused)} image(s) left out: refused by the input-quality gate (not a plausible mammogram), as "
        f"they would be at prediction: {shown}{more}"
    )


def _run_notes(config: TrainConfig, tasks: list[str]) -> list[str]:
    """What the report must say about the deep baselines and the density decision."""
    notes = []
    if config.deep_head:
        notes.append(
            f"{DEEP_HEAD.name}: a Keras head (Dense 128, dropout, softmax; 10 epochs, class-weighted) on the "
            "frozen CNN embedding; a baseline, reported but not selectable for the saved model"
        )
    if config.fine_tune:
        notes.append(
            f"{FINE_TUNED.name}: MobileNetV2's blocks 13-16 and Conv_1 retrained from the ImageNet weights "
            f"(BatchNorm frozen) with a new softmax, {config.fine_tune_epochs} epochs, Adam {LEARNING_RATE:g}, "
            "batch 32, class-weighted; a baseline, reported but not selectable for the saved model"
        )
    if "density" in tasks:
        notes.append(
            "density: "
            + (
                "each scikit-learn candidate grades by cut points on its expected grade, fitted in each training fold "
                "to maximise quadratic-weighted kappa on the calibration folds' held-out predictions (--density-decision "
                "qwk); the deep baselines take the most probable class"
                if config.density_decision == "qwk"
                else "every model takes the most probable class (--density-decision argmax)"
            )
        )
    return notes


def _task_notes(task: str, res: dict[str, CVResult], n_folds: int, config: TrainConfig) -> list[str]:
    """Where the protocol fell back: inner searches skipped, calibration splits not grouped."""
    notes = []
    if config.tune:
        skipped = {n: n_folds - r.searched_folds for n, r in res.items() if r.searched_folds is not None}
        if any(skipped.values()):
            notes.append(
                f"{task}: the inner search was skipped (too few images or groups per class for "
                f"{config.inner_folds} inner folds) in {sum(skipped.values())} of {n_folds * len(skipped)} "
                "candidate-folds; those used the default hyper-parameters"
            )
    if not all(r.grouped_calibration is not False for r in res.values()):
        notes.append(
            f"{task}: some calibration splits could not be grouped (a class in too few groups); "
            "those used sklearn's stratified 3-fold calibration inside the training fold"
        )
    return notes


def _write_task_outputs(t: TaskResult, out: Path) -> dict[str, str]:
    """The task's plots and ``oof_<task>.npz`` (image paths, labels, groups, every candidate's out-of-fold predictions)."""
    plots = {}
    if t.task == "tumour":
        curves = {n: (t.y, r.oof_proba[:, 1]) for n, r in t.candidates.items()}
        plots["roc_tumour"] = ev.plot_roc(curves, out / "roc_tumour.png").name
        plots["calibration_tumour"] = ev.plot_calibration(curves, out / "calibration_tumour.png").name
    else:
        cms = {n: r.pooled["confusion_matrix"] for n, r in t.candidates.items()}
        plots["confusion_density"] = ev.plot_confusion(
            cms,
            t.classes.tolist(),
            out / "confusion_density.png",
            "Density confusion matrices (pooled out-of-fold, rows = truth)",
        ).name
    if t.subgroups:
        plots[f"subgroups_{t.task}"] = ev.plot_subgroups(
            t.task,
            t.subgroups,
            out / f"subgroups_{t.task}.png",
            overall=t.best_result.pooled[ev.PRIMARY_METRIC[t.task]],
            title=f"{t.task}: {t.best}, out-of-fold, per subgroup (95% CI)",
        ).name
    extra = {} if t.paths is None else {"paths": t.paths}
    np.savez_compressed(
        out / f"oof_{t.task}.npz",
        y=t.y,
        groups=t.groups.astype(str),
        **extra,
        **{n.replace("+", "__"): r.oof_proba for n, r in t.candidates.items()},
        **{n.replace("+", "__") + "__pred": r.oof_pred for n, r in t.candidates.items() if r.oof_pred is not None},
    )
    return plots


def _save_final_model(
    ds: Dataset, result: RunResult, features: dict, config: TrainConfig, out: Path
) -> tuple[FinalModel, dict]:
    """Refit each task's selected candidate on all its labelled images and save it in the run folder;
    returns what metrics.json says of it and the saved model's metadata."""
    meta = artifact_metadata(result, config.pipeline_options)
    best = {task: t.best_result.candidate for task, t in result.tasks.items()}
    model, chosen = fit_final_model(ds, best, features, config, meta)
    model.metadata["final_params"] = chosen
    if model.ood is not None:
        task = model.ood["task"]
        _, y, g = ds.task(task)
        result.ood = {
            "task": task,
            "threshold": model.ood["model"].threshold_,
            "quantile": model.ood["model"].quantile,
            "held_out_flagged": ood_holdout_rate(
                features[task][best[task].feature_set], g, make_folds(y, g, config.folds, config.seed)
            ),
        }
        model.metadata["ood"]["held_out_flagged"] = result.ood["held_out_flagged"]["pooled"]
    path = model.save(out / "model.joblib")
    return FinalModel(path.name, file_sha256(path), meta["pipeline_id"], chosen, meta["selection"]), model.metadata
