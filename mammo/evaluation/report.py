"""The Markdown report of a training run, written from its metrics dict (the content of ``metrics.json``).

It reads only that dict (the run schema, :mod:`mammo.training.results`), so a report
can be rewritten from a saved ``metrics.json`` alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .metrics import PRIMARY_METRIC

__all__ = ["comparison_table", "subgroup_table", "write_report"]


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def _pm(summary: Mapping[str, Mapping[str, float]], key: str) -> str:
    s = summary.get(key)
    if not s:
        return "-"
    return f"{_fmt(s['mean'])} ± {_fmt(s['std'])}"


def _selected(name: str, best: str | None) -> str:
    return f"{name}{' **(selected)**' if name == best else ''}"


def _density_table(candidates: Mapping[str, Mapping[str, Any]], best: str | None) -> str:
    head = (
        "| candidate | QWK (pooled) | QWK (folds) | accuracy | balanced acc. | macro-F1 |\n|---|---|---|---|---|---|\n"
    )
    rows = [
        f"| {_selected(name, best)} | {_fmt(c['pooled']['qwk'])} | {_pm(c['folds_summary'], 'qwk')} | "
        f"{_fmt(c['pooled']['accuracy'])} | {_fmt(c['pooled']['balanced_accuracy'])} | {_fmt(c['pooled']['macro_f1'])} |"
        for name, c in candidates.items()
    ]
    return head + "\n".join(rows) + "\n"


def _tumour_table(candidates: Mapping[str, Mapping[str, Any]], best: str | None) -> str:
    breast = any(c.get("per_breast") for c in candidates.values())
    head = (
        "| candidate | AUC (pooled) [95% CI] | AUC (folds) | sens. @ 90% spec. | balanced acc. | Brier |"
        + (" AUC per breast [95% CI] |" if breast else "")
        + "\n"
        + "|---|---|---|---|---|---|"
        + ("---|" if breast else "")
        + "\n"
    )
    rows = []
    for name, c in candidates.items():
        p = c["pooled"]
        ci = p.get("auc_ci95") or [float("nan")] * 2
        row = (
            f"| {_selected(name, best)} | {_fmt(p['auc'])} [{_fmt(ci[0])}, {_fmt(ci[1])}] | "
            f"{_pm(c['folds_summary'], 'auc')} | {_fmt(p['sens_at_90spec'])} | {_fmt(p['balanced_accuracy'])} | {_fmt(p['brier'])} |"
        )
        if breast:
            b = c.get("per_breast") or {}
            bci = b.get("auc_ci95") or [float("nan")] * 2
            row += f" {_fmt(b.get('auc'))} [{_fmt(bci[0])}, {_fmt(bci[1])}] |" if b else " - |"
        rows.append(row)
    return head + "\n".join(rows) + "\n"


def comparison_table(task: str, candidates: Mapping[str, Mapping[str, Any]], best: str | None = None) -> str:
    """Markdown table of the candidates of one task: pooled out-of-fold and mean ± std over folds."""
    return _density_table(candidates, best) if task == "density" else _tumour_table(candidates, best)


def _metric_cell(r: Mapping[str, Any] | None) -> str:
    if r is None:
        return "-"
    if r.get("too_few"):
        return r["too_few"]
    ci = r.get("ci95") or [None, None]
    return f"{_fmt(r.get('value'))} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def subgroup_table(task: str, subgroups: Mapping[str, list]) -> list[str]:
    """Markdown lines of the per-subgroup table (:func:`~.metrics.subgroup_metrics`' rows): images,
    patients, the metric with its 95% CI, or why a level has too few cases to score. Rows that
    carry the model's cross-validated row (``expected``, from ``mammo evaluate``) get a column of
    it beside theirs, with the images it was measured on."""
    metric = "AUC" if task == "tumour" else "QWK"
    extra = "malignant images" if task == "tumour" else "accuracy"
    beside = any("expected" in r for rows in subgroups.values() for r in rows)
    head = f"| subgroup | level | images | patients | {extra} | {metric} [95% CI] |"
    lines = [head + (f" expected from CV: {metric} [95% CI] (images) |" if beside else ""), ""]
    lines[1] = "|---" * (7 if beside else 6) + "|"
    for name, rows in subgroups.items():
        for r in rows:
            other = str(r.get("n_pos", "-")) if task == "tumour" else _fmt(r.get("accuracy"))
            line = f"| {name} | {r['level']} | {r['n']} | {r.get('n_patients', '-')} | {other} | {_metric_cell(r)} |"
            if beside:
                e = r.get("expected")
                line += f" {_metric_cell(e)}" + (f" ({e.get('n')})" if e else "") + " |"
            lines.append(line)
    return lines + [""]


def _subgroup_lines(task: str, t: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    if not t.get("subgroups"):
        return []
    lines = [
        "### Subgroups",
        "",
        f"Out-of-fold predictions of the selected candidate, {t.get('best')}, per image in each level of the "
        "data's subgroup columns; 95% CI: bootstrap resampling the level's patients. A level with too few "
        "patients to score is listed with its counts and the reason.",
        "",
        *subgroup_table(task, t["subgroups"]),
    ]
    if f"subgroups_{task}" in plots:
        lines += [f"![subgroups_{task}]({plots[f'subgroups_{task}']})", ""]
    return lines


def _header(metrics: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    ds, cfg = metrics["dataset"], metrics["config"]
    lines = [
        f"# Training report: {ds['name']}",
        "",
        f"Data: `{cfg['data']}` ({ds['n_images']} images, {ds['n_groups']} groups). "
        f"Run started {metrics['started']}, took {metrics['timing']['total_s']:.0f} s.",
        "",
        f"Protocol: {cfg['folds']}-fold StratifiedGroupKFold (seed {cfg['seed']}); the same folds for every candidate "
        "of a task; no group in two folds (checked). "
        + (
            f"Hyper-parameters were tuned only inside each training fold ({cfg['inner_folds']}-fold grouped inner CV"
            + (
                f" on about {cfg['tune_max']} images: whole small groups, or an equal share of every large group's "
                "copies"
                if cfg.get("tune_max")
                else ""
            )
            + "); "
            if cfg.get("tune", True)
            else "Default hyper-parameters (no tuning); "
        )
        + "probabilities calibrated on grouped splits of the training fold. "
        "Pooled = metrics of all out-of-fold predictions together; folds = mean ± std over the outer folds. "
        "Tumour AUC 95% CI: bootstrap resampling whole groups of the pooled out-of-fold predictions "
        f"({cfg['n_boot']} resamples).",
        "",
    ]
    if "group_sizes" in plots:
        lines += [f"![group sizes]({plots['group_sizes']})", ""]
    return lines


def _selection_lines(sel: Mapping[str, Any] | None) -> list[str]:
    if not sel:
        return []
    return [
        f"With the choice inside the evaluation (each fold predicted by the candidate that scored best on "
        f"the other folds: {', '.join(sel['chosen'])}): {sel['metric']} {_fmt(sel['score'])}, against "
        f"{_fmt(sel['selected_score'])} for {sel['selected']} chosen on all folds. The gap is what picking the "
        "best of several candidates on the same folds adds to its score.",
        "",
    ]


def _cost_lines(t: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[str]:
    cost = {n: c["fit_s"] for n, c in t["candidates"].items() if "fit_s" in c}
    if not cost:
        return []
    what = "inner search, fit and prediction" if cfg.get("tune", True) else "fit and prediction"
    return [
        f"Cost, in seconds of one worker summed over the outer folds ({what}): "
        + ", ".join(f"{n} {s:.0f} s" for n, s in cost.items())
        + ".",
        "",
    ]


def _shift_lines(task: str, t: Mapping[str, Any]) -> list[str]:
    shift = {n: c["crop_shift"] for n, c in t["candidates"].items() if c.get("crop_shift")}
    if not shift:
        return []
    n = max(s["images"] for s in shift.values())
    if task == "density":
        what = "density grades unchanged"
        cells = [f"{name} {s['grades_unchanged']:.0%}" for name, s in shift.items()]
    else:
        what = "median (90th percentile) change of P(malignant)"
        cells = [f"{name} {_fmt(s['p_change_median'])} ({_fmt(s['p_change_p90'])})" for name, s in shift.items()]
    return [
        f"Crop-shift check: {n} test-fold images cropped again with the box moved half a pixel, each "
        f"predicted by its fold's model; {what}: " + ", ".join(cells) + ". Another scanner's canvas, an "
        "encoder or a resolution moves the crop by as much or more.",
        "",
    ]


def _leaky_lines(task: str, t: Mapping[str, Any]) -> list[str]:
    lk = t.get("leaky")
    if not lk:
        return []
    key = PRIMARY_METRIC[task]
    grouped = t["candidates"][lk["candidate"]]
    return [
        "### Grouped vs. leaky split",
        "",
        f"The selected candidate re-evaluated with a plain StratifiedKFold that ignores groups: "
        f"{lk['test_images_with_group_in_train']:.0%} of test images have a copy / same-group image in training.",
        "",
        f"| split | {key} (pooled) | {key} (folds) | accuracy / balanced acc. |",
        "|---|---|---|---|",
        f"| grouped (honest) | {_fmt(grouped['pooled'][key])} | {_pm(grouped['folds_summary'], key)} | "
        f"{_fmt(grouped['pooled'].get('accuracy', grouped['pooled'].get('balanced_accuracy')))} |",
        f"| leaky random | {_fmt(lk['pooled'][key])} | {_pm(lk['folds_summary'], key)} | "
        f"{_fmt(lk['pooled'].get('accuracy', lk['pooled'].get('balanced_accuracy')))} |",
        "",
    ]


def _task_lines(task: str, t: Mapping[str, Any], cfg: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    lines = [
        f"## {task}",
        "",
        f"{t['n_images']} labelled images in {t['n_groups']} groups; class counts {t['class_counts']}.",
        f"Test-fold sizes: {t['fold_sizes']}.",
        "",
    ]
    lines.append(comparison_table(task, t["candidates"], t.get("best")))
    if t.get("best"):
        lines += [f"Selected by grouped CV ({PRIMARY_METRIC[task]}, pooled out-of-fold): **{t['best']}**.", ""]
    lines += _selection_lines(t.get("selection_estimate")) + _shift_lines(task, t) + _cost_lines(t, cfg)
    lines += _leaky_lines(task, t)
    for name in ("roc_" + task, "calibration_" + task, "confusion_" + task):
        if name in plots:
            lines += [f"![{name}]({plots[name]})", ""]
    lines += _subgroup_lines(task, t, plots)
    if t.get("params"):
        lines += ["Hyper-parameters chosen per outer fold (inner grouped CV):", ""]
        lines += [f"- {name}: {plist}" for name, plist in t["params"].items()]
        lines.append("")
    return lines


def _ood_lines(ood: Mapping[str, Any]) -> list[str]:
    held = ood["held_out_flagged"]
    folds = ", ".join(f"{100 * r:.1f}%" for r in held["folds"])
    return [
        "## Out-of-distribution score",
        "",
        f"The saved model scores every image by how unlike its training images ({ood['task']} features) it is, "
        f"and flags it `in_distribution: false` above {ood['threshold']:.3g}, the {100 * ood['quantile']:.1f}th "
        "percentile of grouped cross-fitted training scores.",
        f"Under the same grouped folds, models fitted without each fold flagged {100 * held['pooled']:.1f}% of its "
        f"{held['n']} held-out in-domain images (per fold: {folds}).",
        "",
    ]


def write_report(metrics: Mapping[str, Any], path, plots: Mapping[str, str] | None = None) -> Path:
    """Write the run's Markdown report from its metrics dict (the content of metrics.json)."""
    plots = dict(plots or {})
    lines = _header(metrics, plots)
    for task, t in metrics["tasks"].items():
        lines += _task_lines(task, t, metrics["config"], plots)
    if metrics.get("final_model"):
        fm = metrics["final_model"]
        lines += [
            "## Final model",
            "",
            f"`{fm['path']}` (pipeline id `{fm['pipeline_id']}`), refitted on all labelled images; "
            f"sha256 `{fm['sha256']}`. {fm['selection']}",
            "",
        ]
    if metrics.get("ood"):
        lines += _ood_lines(metrics["ood"])
    if metrics.get("refused_images"):
        refused = metrics["refused_images"]
        lines += [
            "## Images left out",
            "",
            f"{len(refused)} image(s) were refused by the input-quality gate "
            "(not a plausible mammogram), as they would be at prediction:",
            "",
        ]
        lines += [f"- `{Path(p).name}`: {m}" for p, m in list(refused.items())[:50]]
        lines += [f"- ... and {len(refused) - 50} more (metrics.json lists all)"] if len(refused) > 50 else []
        lines += [""]
    if metrics.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in metrics["notes"]] + [""]
    path = Path(path)
    path.write_text("\n".join(lines))
    return path
