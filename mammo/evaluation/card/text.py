"""The card's wording: the fixed statements (intended and out-of-scope use, limitations) and
the sentences made from a run's records. Every number in them is read from those records."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..metrics import PRIMARY_METRIC

if TYPE_CHECKING:
    from .content import TaskCard

NOT_MEASURED = "not measured in this run"
RESEARCH_ONLY = "Research use only, not for diagnosis."
TITLES = {"density": "Density", "tumour": "Tumour"}
#: How the sentences name the selection metrics.
METRIC_LABELS = {"qwk": "QWK", "auc": "AUC"}
TAGS = ("mammography", "breast-density", "breast-cancer", "research-only")

INTENDED_USE = (
    (
        "Research and teaching: studying how texture and CNN features, grouped cross-validation and calibration "
        "behave on mammograms, and comparing pipelines on de-identified research images."
    ),
    (
        "Per mammogram image: a breast density grade (in the training data set's classes) and a probability that "
        "the image shows a malignant tumour, each read together with this card."
    ),
    "Users: researchers and trainees able to judge the evaluation below.",
)
OUT_OF_SCOPE = (
    (
        "Diagnosis, screening, triage, recall or any other decision about a person's care: the model is not a "
        "medical device and has not been clinically validated."
    ),
    "Replacing, checking or second-guessing a radiologist's reading, or reassuring anyone about a finding.",
    (
        "Images unlike the training data (other scanners, sites, film archives, views, implants, tomosynthesis, "
        "ultrasound, MRI) without a new evaluation on such images; the out-of-distribution flag catches only some."
    ),
    (
        "Quoting its scores as the accuracy of a clinical test: they are cross-validated estimates on one research "
        "data set."
    ),
)
SUBGROUPS = (
    "Results by subgroup (scanner, site, age, density grade for the tumour task, lesion type): "
    f"{NOT_MEASURED}; the run scores all images of a task together."
)
SUBGROUPS_MEASURED = (
    "Per image, the selected pipeline's out-of-fold predictions under the grouped cross-validation, scored in "
    "each level of the data's subgroup columns (site, machine, view, laterality, age band, where the data have "
    "them); 95% CI: bootstrap resampling the level's patients. A level with too few patients to score is "
    "listed with its counts and the reason, not left out."
)
SUBGROUPS_UNMEASURED = f"Density grade for the tumour task and lesion type: {NOT_MEASURED}."
SOURCE_RUN = "Written by mammo train from the run's metrics.json and the saved model's metadata."
SOURCE_METADATA = (
    "Built from the saved model's metadata alone, without its run's metrics.json: the fold spread of "
    "the candidates not selected, the selection estimate and the leaky-split contrast are not in it."
)

_GROUPS = {
    "dphi": "an original mammogram and its augmented copies (near-duplicates found from the pixels)",
    "mias": "a patient (the left and right mammograms of one woman)",
    "rsna": "a patient (all her views of both breasts)",
}
_MANIFEST_GROUP = "a value of the manifest's group or patient_id column, or a single image where it has none"


def fmt(value: Any, digits: int = 3) -> str:
    """A recorded number as the card shows it; "–" when there is none."""
    v = num(value)
    return "–" if v is None else f"{v:.{digits}f}"


def num(value: Any) -> float | None:
    """``value`` as a float, or None for a missing, non-numeric or NaN value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        return None
    return float(value)


def group_meaning(data: Mapping[str, Any]) -> str | None:
    """What a group of the training data is, from the data set's name; None when not recorded."""
    if data.get("name") in _GROUPS:
        return _GROUPS[data["name"]]
    # a run's data-set summary counts groups; the built-in layouts are named above, the rest are manifests
    return _MANIFEST_GROUP if "n_groups" in data else None


def trained_on(data: Mapping[str, Any], group: str | None = None) -> str:
    """ "Trained on <set>: N images in G groups (a group is ...)."""
    n = data.get("n_images")
    if n is None:
        return "Training data: not recorded in the model's metadata."
    what = data.get("name") or data.get("source") or "an unnamed data set"
    groups = data.get("n_groups")
    tail = "" if groups is None else f" in {groups} groups" + (f"; a group is {group}" if group else "")
    return f"Trained on {what}: {n} images{tail}."


def training_lines(data: Mapping[str, Any], group: str | None, run: Mapping[str, Any]) -> list[str]:
    """The training-data section: the set, what a group is, a subset, images left out."""
    lines = [trained_on(data)]
    if group and data.get("n_groups") is not None:
        lines.append(f"A group is {group}; all images of a group stay on one side of every split.")
    limit = (run.get("config") or {}).get("limit")
    if limit:
        lines.append(f"A subset of about {limit} images (whole groups, stratified by label) was used (--limit).")
    refused = run.get("refused_images") or {}
    if refused:
        lines.append(
            f"{len(refused)} image(s) were left out: the input-quality gate refused them as not plausible "
            "mammograms, as it would at prediction."
        )
    return lines


def task_data_lines(task: str, meta: Mapping[str, Any], run: Mapping[str, Any]) -> list[str]:
    """A task's labelled images, groups, images per class (with the classes' meanings), fold sizes."""
    rt = (run.get("tasks") or {}).get(task) or {}
    td = (meta.get("training_data") or {}).get(task)
    td = td if isinstance(td, Mapping) else {}
    info = (meta.get("tasks") or {}).get(task) or {}
    n = rt.get("n_images", td.get("n_images", info.get("n_train")))
    groups = rt.get("n_groups", td.get("n_groups"))
    counts = rt.get("class_counts") or td.get("counts") or info.get("class_counts") or {}
    meanings = info.get("class_meanings") or {}
    lines = []
    if n is not None:
        lines.append(f"{n} labelled images" + (f" in {groups} groups." if groups is not None else "."))
    if counts:
        lines.append(
            "Images per class: " + "; ".join(f"{meanings.get(str(c), c)}: {k}" for c, k in counts.items()) + "."
        )
    if rt.get("fold_sizes"):
        lines.append("Test-fold sizes: " + ", ".join(str(s) for s in rt["fold_sizes"]) + " images.")
    return lines


def _protocol(meta: Mapping[str, Any], run: Mapping[str, Any]) -> str | None:
    cfg = run.get("config") or {}
    if "folds" in cfg:
        return f"{cfg['folds']}-fold StratifiedGroupKFold, seed {cfg.get('seed')}"
    cv = (meta.get("cv_metrics") or {}).values()
    return next((c["protocol"] for c in cv if isinstance(c, Mapping) and c.get("protocol")), None)


def evaluation_lines(
    meta: Mapping[str, Any], run: Mapping[str, Any], group: str | None, tasks: list[TaskCard]
) -> list[str]:
    """The evaluation protocol: folds, what a group is, pooled vs folds, CI methods, tuning, selection."""
    protocol = _protocol(meta, run)
    if not protocol:
        return [
            (
                f"Cross-validation: {NOT_MEASURED}. The model's metadata records no evaluation, so how well it "
                "does is unknown."
            )
        ]
    lines = [
        (
            f"Grouped cross-validation ({protocol}): every candidate of a task is scored on the same outer "
            "folds, and no group has images in two folds" + (f"; a group is {group}." if group else ".")
        ),
        (
            "Pooled: all out-of-fold predictions scored together; over folds: the mean ± standard deviation of "
            "the outer folds' scores."
        ),
    ]
    for t in tasks:
        if t.chosen_score is not None:
            label = f"{t.title} {t.columns[t.metric]} 95% CI"
            lines.append(
                f"{label}: {t.ci_method}."
                if t.ci_method
                else f"{label}: {NOT_MEASURED}; the spread over folds stands in for it."
            )
    cfg = run.get("config") or {}
    if "tune" in cfg:
        lines.append(
            f"Hyper-parameters searched by a {cfg.get('inner_folds')}-fold grouped inner CV inside each "
            "training fold only."
            if cfg["tune"]
            else "Default hyper-parameters (no search)."
        )
    selection = meta.get("selection") or (run.get("final_model") or {}).get("selection")
    if selection:
        lines.append(f"Selection: {selection}")
    return lines


def pipeline_lines(task: str, name: str, meta: Mapping[str, Any]) -> list[str]:
    """The saved pipeline of a task: steps, features, classifier, refit, decision rule."""
    info = (meta.get("tasks") or {}).get(task) or {}
    if not info:
        return ["The saved pipeline is not described in the model's metadata."]
    parts = [" → ".join(info.get("steps") or [])]
    if info.get("features"):
        parts.append("features " + ", ".join(info["features"]))
    if info.get("model"):
        parts.append(f"classifier {info['model']}")
    lines = [f"{name}: " + "; ".join(p for p in parts if p) + "."]
    params, n = (meta.get("final_params") or {}).get(task), info.get("n_train")
    if params is not None:
        chosen = ", ".join(f"{k}={v}" for k, v in params.items()) if params else "the model's default hyper-parameters"
        lines.append(f"Refitted on all {n} labelled images with {chosen}.")
    elif n is not None:
        lines.append(f"Fitted on {n} labelled images.")
    if task == "tumour" and num(info.get("threshold")) is not None:
        lines.append(f"Calls an image malignant when P(malignant) is at least {fmt(info['threshold'])}.")
    decision = meta.get("density_decision") if task == "density" else None
    if decision == "qwk":
        lines.append(
            "Grades by cut points on the expected grade, fitted in training to maximise quadratic-weighted "
            "kappa, so the grade need not be the most probable class."
        )
    elif decision == "argmax":
        lines.append("Grades by the most probable class.")
    return lines


def findings(task: str, rt: Mapping[str, Any], n_candidates: int) -> list[str]:
    """What the run measured about its own optimism: the selection estimate and the leaky-split contrast."""
    out = []
    sel = rt.get("selection_estimate")
    if sel:
        out.append(
            f"Choosing the best of the {n_candidates} candidates inside the evaluation (each fold predicted "
            "by the candidate that scored best on the other folds) scores "
            f"{METRIC_LABELS.get(sel['metric'], sel['metric'])} {fmt(sel['score'])}, against {fmt(sel['selected_score'])} for {sel['selected']} "
            "chosen on all folds: the gap is what the choice itself adds."
        )
    lk = rt.get("leaky")
    if lk:
        key = PRIMARY_METRIC[task]
        grouped = ((rt.get("candidates") or {}).get(lk["candidate"]) or {}).get("pooled") or {}
        share = num(lk.get("test_images_with_group_in_train"))
        shared = (
            ""
            if share is None
            else f", where {100 * share:.0f}% of test images had an image of their group in training"
        )
        out.append(
            f"{lk['candidate']} under a split that ignores groups{shared}: {METRIC_LABELS.get(key, key)} "
            f"{fmt((lk.get('pooled') or {}).get(key))}, against {fmt(grouped.get(key))} under the grouped split "
            "(the honest figure)."
        )
    return out


def ood_lines(meta_ood: Mapping[str, Any] | None, run_ood: Mapping[str, Any] | None) -> list[str]:
    """How the out-of-distribution flag works and how often it fired on held-out in-domain images."""
    if not meta_ood and not run_ood:
        return [f"Out-of-distribution rate: {NOT_MEASURED} (the model has no out-of-distribution score)."]
    o = {**(meta_ood or {}), **(run_ood or {})}
    threshold, q = num(o.get("threshold")), num(o.get("quantile"))
    lines = [
        f"Each image gets an out-of-distribution score on the {o.get('task')} pipeline's features"
        + (f": {o['method']}." if o.get("method") else ".")
    ]
    if threshold is not None:
        cut = f", the {100 * q:.1f}th percentile of grouped cross-fitted training scores" if q is not None else ""
        lines.append(
            f"Above {threshold:.3g}{cut}, an image is flagged as unlike the training images, and its "
            "predictions deserve no trust."
        )
    held = o.get("held_out_flagged")
    if isinstance(held, Mapping) and num(held.get("pooled")) is not None:
        folds = ", ".join(f"{100 * f:.1f}%" for f in held.get("folds") or [] if num(f) is not None)
        lines.append(
            f"Held-out rate: models fitted without each fold flagged {100 * held['pooled']:.1f}% of its "
            f"{held.get('n')} in-domain held-out images" + (f" (per fold: {folds})." if folds else ".")
        )
    elif num(held) is not None:
        lines.append(f"Held-out rate: {100 * held:.1f}% of in-domain held-out images flagged.")
    else:
        lines.append(f"Held-out flag rate: {NOT_MEASURED}.")
    return lines


def subgroup_lines(unmeasured_tasks: list[str]) -> list[str]:
    """The subgroup section's sentences when some task was scored per subgroup."""
    lines = [SUBGROUPS_MEASURED, SUBGROUPS_UNMEASURED]
    if unmeasured_tasks:
        lines.append(
            f"{', '.join(unmeasured_tasks)} by subgroup: {NOT_MEASURED} (no subgroup column among its images)."
        )
    return lines


def limitations(
    data: Mapping[str, Any],
    meta: Mapping[str, Any],
    tasks: list[TaskCard],
    subgroups: bool = False,
    crop_shift: Mapping[str, Mapping] | None = None,
) -> list[str]:
    """What the card's numbers do not show (``crop_shift``: per task, the selected pipeline's crop-shift check)."""
    name = data.get("name") or data.get("source") or "one data set"
    lines = [
        (
            f"Evaluated only by cross-validation within one data set ({name}), with no external test set: on "
            "images from other scanners, sites, film archives or populations its performance is unknown."
        )
        if any(t.chosen_score for t in tasks)
        else "No cross-validated performance is recorded for this model: how well it does is unknown."
    ]
    n = max((len(t.candidates) for t in tasks), default=0)
    if n > 1:
        lines.append(
            f"Each saved pipeline is the best of up to {n} candidates scored on the same folds, which flatters "
            "its score; the selection estimate, where measured, shows by how much."
        )
    lines.append("It reads each image alone: no other views, prior examinations or clinical information.")
    lines.append("Labels are the training data set's own; density grading varies between readers.")
    threshold = num(((meta.get("tasks") or {}).get("tumour") or {}).get("threshold"))
    if threshold is not None:
        lines.append(
            "P(malignant) is calibrated on the training images, so it reflects their share of malignant cases, "
            f"and the decision threshold is {fmt(threshold)}; where cancer is rarer, as in screening, neither "
            "carries over."
        )
    lines.append(
        "Subgroup results are out-of-fold estimates within the training data's own sites, machines and ages; small "
        "levels have wide intervals, and subgroups absent from the training data are not covered."
        if subgroups
        else f"Performance by subgroup: {NOT_MEASURED}."
    )
    if meta.get("ood"):
        lines.append(
            "The out-of-distribution flag catches images unlike the training ones, not errors on images like them."
        )
    lines.append(_steadiness(crop_shift or {}))
    return lines


def _steadiness(shift: Mapping[str, Mapping]) -> str:
    """One line on how far the answers move when the breast's crop moves by half a pixel."""
    parts = []
    if "density" in shift:
        parts.append(f"changes {1 - shift['density']['grades_unchanged']:.0%} of its density grades")
    if "tumour" in shift:
        t = shift["tumour"]
        parts.append(
            f"moves P(malignant) by a median {fmt(t['p_change_median'])} (90th percentile {fmt(t['p_change_p90'])})"
        )
    if not parts:
        return f"How far the answers move when the breast's crop moves slightly: {NOT_MEASURED}."
    n = max(s["images"] for s in shift.values())
    return (
        f"Moving the breast's crop by half a pixel {' and '.join(parts)} (out-of-fold, up to {n} images). "
        "Another scanner, encoder or resolution moves the crop by as much or more, so an answer near a grade "
        "boundary or the threshold can change on another copy of the same image."
    )
