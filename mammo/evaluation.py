"""Metrics, bootstrap confidence intervals, plots and the Markdown report of a training run.

Density is ordinal (BI-RADS 1-4, or 1-3 on mini-MIAS): accuracy, balanced accuracy,
quadratic-weighted Cohen's kappa (QWK, which charges a 1-vs-4 error more than a 2-vs-3
one), macro-F1 and the confusion matrix. Tumour is binary: ROC-AUC with a 95% bootstrap
CI that resamples GROUPS (patients / originals), because images of one group are not
independent; sensitivity at 90% specificity, balanced accuracy, Brier score and a
calibration curve.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    brier_score_loss,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
    roc_curve,
)

__all__ = [
    "density_metrics",
    "tumour_metrics",
    "sensitivity_at_specificity",
    "bootstrap_ci",
    "fast_auc",
    "per_breast_tumour",
    "fold_summary",
    "plot_roc",
    "plot_confusion",
    "plot_calibration",
    "plot_group_sizes",
    "write_report",
    "PRIMARY_METRIC",
]

#: The metric that selects the final candidate per task.
PRIMARY_METRIC = {"density": "qwk", "tumour": "auc"}


def density_metrics(y_true: Sequence[int], proba: np.ndarray, classes: Sequence[int],
                    y_pred: Sequence[int] | None = None) -> dict[str, Any]:
    """Ordinal-class metrics of class predictions (by default the most probable class).

    Parameters
    ----------
    y_true : (n,) int labels
    proba : (n, k) probabilities, columns in the order of ``classes``
    classes : the k class labels
    y_pred : (n,) predicted labels, optional
        The model's own decision (e.g. cut points on the expected grade); default argmax of ``proba``.

    Returns
    -------
    dict with n, accuracy, balanced_accuracy, qwk, macro_f1, confusion_matrix (rows = truth)
    """
    y = np.asarray(y_true)
    classes = np.asarray(classes)
    pred = classes[np.argmax(np.asarray(proba), axis=1)] if y_pred is None else np.asarray(y_pred)
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(_balanced_accuracy(y, pred)),
        "qwk": float(_qwk(y, pred, classes)),
        "macro_f1": float(f1_score(y, pred, labels=classes, average="macro", zero_division=0)),
        "confusion_matrix": confusion_matrix(y, pred, labels=classes).tolist(),
        "classes": [int(c) for c in classes],
    }


def _qwk(y, pred, classes) -> float:
    if len(np.unique(np.concatenate([y, pred]))) < 2:
        return float("nan")  # kappa is undefined when both raters use a single class
    return cohen_kappa_score(y, pred, labels=classes, weights="quadratic")


def _balanced_accuracy(y, pred) -> float:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true" in small folds
        return balanced_accuracy_score(y, pred)


def sensitivity_at_specificity(y_true: Sequence[int], score: Sequence[float], specificity: float = 0.9) -> float:
    """Highest sensitivity among ROC thresholds whose specificity is at least ``specificity``."""
    y = np.asarray(y_true)
    if len(np.unique(y)) < 2:
        return float("nan")
    fpr, tpr, _ = roc_curve(y, score)
    ok = fpr <= 1 - specificity + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def tumour_metrics(y_true: Sequence[int], p_malignant: Sequence[float], y_pred: Sequence[int] | None = None,
                   *, threshold: float = 0.5, n_bins: int = 10) -> dict[str, Any]:
    """Binary metrics of P(malignant).

    ``y_pred`` (e.g. thresholded at each fold's training prevalence, the model's own
    rule) gives the balanced accuracy; without it ``p >= threshold`` does.
    Returns n, n_pos, auc, sens_at_90spec, balanced_accuracy, brier, calibration
    (mean predicted and observed frequency per quantile bin).
    """
    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(p_malignant, dtype=float), 0.0, 1.0)
    pred = (p >= threshold).astype(int) if y_pred is None else np.asarray(y_pred).astype(int)
    two = len(np.unique(y)) == 2
    out: dict[str, Any] = {
        "n": int(len(y)),
        "n_pos": int(y.sum()),
        "auc": float(roc_auc_score(y, p)) if two else float("nan"),
        "sens_at_90spec": sensitivity_at_specificity(y, p, 0.9),
        "balanced_accuracy": float(_balanced_accuracy(y, pred)),
        "brier": float(brier_score_loss(y, p)) if len(y) else float("nan"),
    }
    if two and len(y) >= 2 * n_bins:
        obs, mean_pred = calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
        out["calibration"] = {"mean_predicted": mean_pred.tolist(), "observed": obs.tolist()}
    return out


def per_breast_tumour(y_true: Sequence[int], p_malignant: Sequence[float], breasts: Sequence, groups: Sequence, *,
                      n_boot: int = 1000, seed: int = 0) -> dict[str, Any] | None:
    """Tumour metrics per breast, from the mean P(malignant) of each breast's images (its views).

    The CI resamples whole ``groups`` (patients) of breasts. Returns None when a
    breast's images disagree on the label (the label is then not per breast).
    """
    y = np.asarray(y_true).astype(int)
    ids, first, inverse = np.unique(np.asarray(breasts).astype(str), return_index=True, return_inverse=True)
    n = np.bincount(inverse, minlength=len(ids))
    p = np.bincount(inverse, weights=np.asarray(p_malignant, dtype=float), minlength=len(ids)) / n
    label = np.bincount(inverse, weights=y, minlength=len(ids)) / n
    if not np.all((label == 0) | (label == 1)):
        return None
    label = label.astype(int)
    unit_groups = np.asarray(groups).astype(str)[first]
    out = {k: v for k, v in tumour_metrics(label, p).items() if k in ("n", "n_pos", "auc", "sens_at_90spec", "brier")}
    out["views_per_breast"] = float(n.mean())
    if len(np.unique(label)) == 2:
        out["auc_ci95"] = list(bootstrap_ci(label, p, groups=unit_groups, n_boot=n_boot, seed=seed))
    return out


def fast_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC by the Mann-Whitney rank sum (ties count 1/2): same value as roc_auc_score, far less overhead."""
    from scipy.stats import rankdata

    y = np.asarray(y_true).astype(bool)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def bootstrap_ci(y_true: Sequence[int], score: Sequence[float], metric=fast_auc, *, groups: Sequence | None = None,
                 n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric(y, score)``.

    With ``groups`` whole groups are resampled (a cluster bootstrap): copies of one
    mammogram or images of one patient are not independent, and resampling images
    would make the interval too narrow. Resamples with a single class are skipped.
    """
    y = np.asarray(y_true)
    s = np.asarray(score)
    rng = np.random.default_rng(seed)
    if groups is None:
        members = [np.array([i]) for i in range(len(y))]
    else:
        _, inv = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        order = np.argsort(inv, kind="stable")
        members = np.split(order, np.flatnonzero(np.diff(inv[order])) + 1)
    stats = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        idx = np.concatenate([members[k] for k in pick])
        if len(np.unique(y[idx])) < 2:
            continue
        stats.append(metric(y[idx], s[idx]))
    if not stats:
        return float("nan"), float("nan")
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def fold_summary(per_fold: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation over folds of every scalar metric (NaN folds ignored)."""
    out: dict[str, dict[str, float]] = {}
    keys = [k for k, v in per_fold[0].items() if isinstance(v, (int, float)) and k not in ("n", "n_pos")] if per_fold else []
    for k in keys:
        vals = np.array([f.get(k, np.nan) for f in per_fold], dtype=float)
        vals = vals[~np.isnan(vals)]
        out[k] = {"mean": float(vals.mean()) if len(vals) else float("nan"),
                  "std": float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")}
    return out


# ----------------------------------------------------------------------------- plots

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers
    import matplotlib.pyplot as plt

    return plt


def plot_roc(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], path, title: str = "ROC (pooled out-of-fold)") -> Path:
    """One ROC curve per candidate: ``{name: (y_true, p_malignant)}``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (y, p) in curves.items():
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, p):.3f})", lw=1.4)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.axvline(0.1, ls=":", c="grey", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_confusion(matrices: Mapping[str, Sequence[Sequence[int]]], classes: Sequence, path, title: str = "Confusion matrices") -> Path:
    """A row-normalised confusion matrix (rows = truth) per candidate, counts annotated."""
    plt = _pyplot()
    n = len(matrices)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (name, cm) in zip(axes.flat, matrices.items()):
        cm = np.asarray(cm, dtype=float)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(classes)), [str(c) for c in classes])
        ax.set_yticks(range(len(classes)), [str(c) for c in classes])
        ax.set(title=name, xlabel="predicted", ylabel="true")
        ax.title.set_fontsize(8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_calibration(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], path, n_bins: int = 10) -> Path:
    """Reliability diagram (quantile bins) per candidate: ``{name: (y_true, p_malignant)}``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (y, p) in curves.items():
        if len(np.unique(y)) < 2:
            continue
        obs, pred = calibration_curve(y, np.clip(p, 0, 1), n_bins=n_bins, strategy="quantile")
        ax.plot(pred, obs, marker="o", ms=3, lw=1.2, label=name)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="mean predicted P(malignant)", ylabel="observed fraction malignant", title="Calibration (pooled out-of-fold)",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_group_sizes(groups: Sequence, path, title: str = "Images per group") -> Path:
    """Histogram of group sizes (images per patient / per original mammogram)."""
    plt = _pyplot()
    _, counts = np.unique(np.asarray(groups).astype(str), return_counts=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    bins = np.arange(0.5, counts.max() + 1.5) if counts.max() <= 40 else 40
    ax.hist(counts, bins=bins, color="tab:blue", edgecolor="white")
    ax.set(xlabel="images in group", ylabel="groups", title=f"{title} ({len(counts)} groups, {counts.sum()} images)")
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


# ----------------------------------------------------------------------------- report

def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def _pm(summary: Mapping[str, Mapping[str, float]], key: str) -> str:
    s = summary.get(key)
    if not s:
        return "-"
    return f"{_fmt(s['mean'])} ± {_fmt(s['std'])}"


def comparison_table(task: str, candidates: Mapping[str, Mapping[str, Any]], best: str | None = None) -> str:
    """Markdown table of the candidates of one task: pooled out-of-fold and mean ± std over folds."""
    if task == "density":
        head = "| candidate | QWK (pooled) | QWK (folds) | accuracy | balanced acc. | macro-F1 |\n|---|---|---|---|---|---|\n"
        rows = [
            f"| {name}{' **(selected)**' if name == best else ''} | {_fmt(c['pooled']['qwk'])} | {_pm(c['folds_summary'], 'qwk')} | "
            f"{_fmt(c['pooled']['accuracy'])} | {_fmt(c['pooled']['balanced_accuracy'])} | {_fmt(c['pooled']['macro_f1'])} |"
            for name, c in candidates.items()
        ]
    else:
        breast = any(c.get("per_breast") for c in candidates.values())
        head = ("| candidate | AUC (pooled) [95% CI] | AUC (folds) | sens. @ 90% spec. | balanced acc. | Brier |"
                + (" AUC per breast [95% CI] |" if breast else "") + "\n"
                + "|---|---|---|---|---|---|" + ("---|" if breast else "") + "\n")
        rows = []
        for name, c in candidates.items():
            p = c["pooled"]
            ci = p.get("auc_ci95") or [float("nan")] * 2
            row = (f"| {name}{' **(selected)**' if name == best else ''} | {_fmt(p['auc'])} [{_fmt(ci[0])}, {_fmt(ci[1])}] | "
                   f"{_pm(c['folds_summary'], 'auc')} | {_fmt(p['sens_at_90spec'])} | {_fmt(p['balanced_accuracy'])} | {_fmt(p['brier'])} |")
            if breast:
                b = c.get("per_breast") or {}
                bci = b.get("auc_ci95") or [float("nan")] * 2
                row += f" {_fmt(b.get('auc'))} [{_fmt(bci[0])}, {_fmt(bci[1])}] |" if b else " - |"
            rows.append(row)
    return head + "\n".join(rows) + "\n"


def write_report(metrics: Mapping[str, Any], path, plots: Mapping[str, str] | None = None) -> Path:
    """Write the run's Markdown report from its metrics dict (the content of metrics.json)."""
    plots = dict(plots or {})
    ds = metrics["dataset"]
    cfg = metrics["config"]
    lines = [
        f"# Training report: {ds['name']}",
        "",
        f"Data: `{cfg['data']}` ({ds['n_images']} images, {ds['n_groups']} groups). "
        f"Run started {metrics['started']}, took {metrics['timing']['total_s']:.0f} s.",
        "",
        f"Protocol: {cfg['folds']}-fold StratifiedGroupKFold (seed {cfg['seed']}); the same folds for every candidate "
        "of a task; no group in two folds (checked). "
        + (f"Hyper-parameters were tuned only inside each training fold ({cfg['inner_folds']}-fold grouped inner CV"
           + (f" on about {cfg['tune_max']} images: whole small groups, or an equal share of every large group's "
              "copies" if cfg.get("tune_max") else "") + "); "
           if cfg.get("tune", True) else "Default hyper-parameters (no tuning); ")
        + "probabilities calibrated on grouped splits of the training fold. "
        "Pooled = metrics of all out-of-fold predictions together; folds = mean ± std over the outer folds. "
        "Tumour AUC 95% CI: bootstrap resampling whole groups of the pooled out-of-fold predictions "
        f"({cfg['n_boot']} resamples).",
        "",
    ]
    if "group_sizes" in plots:
        lines += [f"![group sizes]({plots['group_sizes']})", ""]
    for task, t in metrics["tasks"].items():
        lines += [f"## {task}", "", f"{t['n_images']} labelled images in {t['n_groups']} groups; class counts {t['class_counts']}.",
                  f"Test-fold sizes: {t['fold_sizes']}.", ""]
        lines.append(comparison_table(task, t["candidates"], t.get("best")))
        if t.get("best"):
            lines += [f"Selected by grouped CV ({PRIMARY_METRIC[task]}, pooled out-of-fold): **{t['best']}**.", ""]
        sel = t.get("selection_estimate")
        if sel:
            lines += [f"With the choice inside the evaluation (each fold predicted by the candidate that scored best on "
                      f"the other folds: {', '.join(sel['chosen'])}): {sel['metric']} {_fmt(sel['score'])}, against "
                      f"{_fmt(sel['selected_score'])} for {sel['selected']} chosen on all folds. The gap is what picking the "
                      "best of several candidates on the same folds adds to its score.", ""]
        cost = {n: c["fit_s"] for n, c in t["candidates"].items() if "fit_s" in c}
        if cost:
            what = "inner search, fit and prediction" if cfg.get("tune", True) else "fit and prediction"
            lines += [f"Cost, in seconds of one worker summed over the outer folds ({what}): "
                      + ", ".join(f"{n} {s:.0f} s" for n, s in cost.items()) + ".", ""]
        if t.get("leaky"):
            lk = t["leaky"]
            key = PRIMARY_METRIC[task]
            lines += [
                "### Grouped vs. leaky split",
                "",
                f"The selected candidate re-evaluated with a plain StratifiedKFold that ignores groups: "
                f"{lk['test_images_with_group_in_train']:.0%} of test images have a copy / same-group image in training.",
                "",
                f"| split | {key} (pooled) | {key} (folds) | accuracy / balanced acc. |",
                "|---|---|---|---|",
                f"| grouped (honest) | {_fmt(t['candidates'][lk['candidate']]['pooled'][key])} | "
                f"{_pm(t['candidates'][lk['candidate']]['folds_summary'], key)} | "
                f"{_fmt(t['candidates'][lk['candidate']]['pooled'].get('accuracy', t['candidates'][lk['candidate']]['pooled'].get('balanced_accuracy')))} |",
                f"| leaky random | {_fmt(lk['pooled'][key])} | {_pm(lk['folds_summary'], key)} | "
                f"{_fmt(lk['pooled'].get('accuracy', lk['pooled'].get('balanced_accuracy')))} |",
                "",
            ]
        for name in ("roc_" + task, "calibration_" + task, "confusion_" + task):
            if name in plots:
                lines += [f"![{name}]({plots[name]})", ""]
        if t.get("params"):
            lines += ["Hyper-parameters chosen per outer fold (inner grouped CV):", ""]
            for name, plist in t["params"].items():
                lines.append(f"- {name}: {plist}")
            lines.append("")
    if metrics.get("final_model"):
        fm = metrics["final_model"]
        lines += ["## Final model", "", f"`{fm['path']}` (pipeline id `{fm['pipeline_id']}`), refitted on all labelled images; "
                  f"sha256 `{fm['sha256']}`. {fm['selection']}", ""]
    if metrics.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in metrics["notes"]] + [""]
    path = Path(path)
    path.write_text("\n".join(lines))
    return path
