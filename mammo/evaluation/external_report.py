"""The Markdown report of ``mammo evaluate``, written from its metrics dict (the content of ``metrics.json``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .report import _fmt, subgroup_table

__all__ = ["write_evaluation_report"]

_LEVELS = ("image", "breast", "patient")
_CI_KEY = {"auc": "auc_ci95", "qwk": "qwk_ci95"}
_SHOWN_FAILURES = 50


def _ci(value, ci) -> str:
    if not ci or ci[0] is None:
        return _fmt(value)
    return f"{_fmt(value)} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _cell(level: Mapping[str, Any] | None, key: str) -> str:
    if not level:
        return "-"
    return _ci(level.get(key), level.get(_CI_KEY.get(key, "")))


def _header(m: Mapping[str, Any]) -> list[str]:
    model, ds, cfg = m["model"], m["dataset"], m["config"]
    trained = model["training_data"]
    what = model["pipeline_id"] or Path(model["path"] or "model").name
    lines = [f"# Evaluation: {what} on {ds['name']}", ""]
    if model["path"]:
        lines.append(f"Model `{model['path']}` (sha256 `{model['sha256']}`).")
    if trained.get("name"):
        lines.append(f"Trained on {trained['name']} ({trained['n_images']} images, {trained['n_groups']} groups).")
    lines += [
        f"Data: `{ds['path']}` ({ds['n_images']} images, {ds['n_groups']} groups); scored: {', '.join(cfg['tasks'])}. "
        f"Run started {m['started']}, took {m['timing']['total_s']:.0f} s "
        f"({m['timing']['ms_per_image']:.0f} ms per image predicted).",
        "",
        "*Expected from CV* is the model's own pooled out-of-fold figure from the grouped cross-validation "
        "`mammo train` ran on its training data (stored in the model); *measured here* is the same metric of "
        "its predictions on these images. Per breast: each breast's views averaged; per patient: the mean "
        "density probabilities, the highest breast P(malignant) (docs/evaluate.md). 95% CI: percentile "
        f"bootstrap resampling whole patients ({cfg['n_boot']} resamples).",
        "",
    ]
    if cfg.get("density_map"):
        mapping = ", ".join(f"{k} -> {v}" for k, v in cfg["density_map"].items())
        lines += [f"Density labels mapped onto the model's classes as the user asked: {mapping}.", ""]
    return lines


def _left_out(images: Mapping[str, Any]) -> list[str]:
    failed = {**images["refused"], **images["unreadable"]}
    if not failed:
        return [f"All {images['n_labelled']} labelled images were scored.", ""]
    lines = [
        "## Images left out",
        "",
        f"{len(failed)} of {images['n_labelled']} labelled images were left out: {len(images['refused'])} refused "
        f"by the input-quality gate (not a plausible mammogram), {len(images['unreadable'])} unreadable.",
        "",
    ]
    lines += [f"- `{p}`: {msg}" for p, msg in list(failed.items())[:_SHOWN_FAILURES]]
    if len(failed) > _SHOWN_FAILURES:
        lines.append(f"- ... and {len(failed) - _SHOWN_FAILURES} more (metrics.json lists all)")
    return lines + [""]


def _ood(ood: Mapping[str, Any] | None) -> list[str]:
    if not ood:
        return []
    expected = ood.get("expected_flag_rate")
    lines = [
        "## Out-of-distribution score",
        "",
        f"{100 * ood['flag_rate']:.1f}% of the {ood['n']} scored images ({ood['n_flagged']}) were flagged "
        f"`in_distribution: false` (their {ood['task']} features are unlike the training images'; threshold "
        f"{ood['threshold']:.3g}).",
    ]
    if expected is not None:
        lines.append(f"On held-out images of its own training data the model flagged {100 * expected:.1f}%.")
    return lines + [""]


def _comparison(t: Mapping[str, Any]) -> list[str]:
    levels = [lv for lv in _LEVELS if lv in t["measured"]]
    exp = t.get("expected") or {}
    lines = [
        "| metric | expected from CV | CV folds (mean ± std) | "
        + " | ".join(f"measured here, per {lv}" for lv in levels)
        + " |",
        "|---|---|---|" + "---|" * len(levels),
    ]
    for row in t["comparison"]:
        key, folds = row["metric"], row["expected_folds"]
        folds_txt = f"{_fmt(folds['mean'])} ± {_fmt(folds['std'])}" if folds else "-"
        exp_txt = _ci(row["expected"], exp.get("metrics", {}).get(_CI_KEY.get(key, "")))
        lines.append(
            f"| {row['label']} | {exp_txt} | {folds_txt} | "
            + " | ".join(_cell(t["measured"][lv], key) for lv in levels)
            + " |"
        )
    counts = [str(t["measured"][lv].get("n", "-")) if t["measured"][lv] else "-" for lv in levels]
    lines.append(f"| n | {exp.get('metrics', {}).get('n', '-')} | | " + " | ".join(counts) + " |")
    return lines + [""]


def _subgroups(task: str, subgroups: Mapping[str, list], plots: Mapping[str, str]) -> list[str]:
    if not subgroups:
        return []
    lines = ["### Subgroups (per image)", ""]
    if any("expected" in r for rows in subgroups.values() for r in rows):
        lines += [
            "Beside each level: the same level in the model's own grouped CV, where its training data had it.",
            "",
        ]
    lines += subgroup_table(task, subgroups)
    if f"subgroups_{task}" in plots:
        lines += [f"![subgroups_{task}]({plots[f'subgroups_{task}']})", ""]
    return lines


def _shift(task: str, check: Mapping[str, Any] | None) -> list[str]:
    if not check:
        return []

    def said(s: Mapping[str, Any]) -> str:
        if task == "density":
            return f"{s['grades_unchanged']:.0%} of density grades unchanged"
        return f"P(malignant) moved by a median {s['p_change_median']:.3f} (90th percentile {s['p_change_p90']:.3f})"

    m, e = check["measured"], check.get("expected")
    expected = (
        f"expected from CV: {said(e)}, on {e['images']} images" if e else "no cross-validated figure in the model"
    )
    return [
        f"Crop-shift check: {m['images']} of these images cropped again half a pixel off; {said(m)} ({expected}).",
        "",
    ]


def _task(task: str, t: Mapping[str, Any], plots: Mapping[str, str]) -> list[str]:
    exp = t.get("expected")
    source = (
        f"Expected: {exp['candidate']} under {exp['protocol']} on {exp['training_data']} "
        f"({exp['training_images']} images)."
        if exp
        else "The model carries no cross-validated figures (it was not saved by `mammo train`)."
    )
    lines = [
        f"## {task}",
        "",
        f"{t['n_images']} scored images in {t['n_groups']} groups; class counts "
        f"{t['class_counts']}"
        + (
            f"; decision threshold P(malignant) >= {t['threshold']:.3f}."
            if task == "tumour"
            else "; graded by the model's own rule."
        ),
        source,
        "",
    ]
    lines += _comparison(t) + _shift(task, t.get("crop_shift"))
    if task == "tumour" and "breast" in t["measured"] and t["measured"]["breast"] is None:
        lines += ["No per-breast figures: the images of one breast disagree on the label.", ""]
    for lv in ("breast", "patient"):
        disagree = (t["measured"].get(lv) or {}).get("units_with_disagreeing_labels")
        if disagree:
            lines += [
                f"{disagree} {lv}(s) whose images disagree on the grade are left out of the per-{lv} figures.",
                "",
            ]
    for name in ("roc_" + task, "calibration_" + task, "confusion_" + task):
        if name in plots:
            lines += [f"![{name}]({plots[name]})", ""]
    return lines + _subgroups(task, t.get("subgroups", {}), plots)


def write_evaluation_report(metrics: Mapping[str, Any], path, plots: Mapping[str, str] | None = None) -> Path:
    """Write the evaluation's Markdown report from its metrics dict (the content of its metrics.json)."""
    plots = dict(plots or {})
    lines = _header(metrics) + _left_out(metrics["images"]) + _ood(metrics.get("ood"))
    for task, t in metrics["tasks"].items():
        lines += _task(task, t, plots)
    if metrics.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in metrics["notes"]] + [""]
    path = Path(path)
    path.write_text("\n".join(lines))
    return path
