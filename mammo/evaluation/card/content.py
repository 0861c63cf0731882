"""What a model card says, as data: :func:`build_card` reads the records of a run (the saved
model's metadata and, when at hand, ``metrics.json``) into a :class:`ModelCard` of sections,
sentences and text tables that :mod:`.render` lays out as Markdown and HTML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..metrics import PRIMARY_METRIC
from . import text as wording
from .text import NOT_MEASURED, fmt, num

__all__ = ["Candidate", "ModelCard", "Score", "Section", "Table", "TaskCard", "build_card"]

_TASKS = ("density", "tumour")
#: The comparison table's metrics per task, the selection metric first.
_COLUMNS = {
    "density": {"qwk": "QWK", "accuracy": "accuracy", "balanced_accuracy": "balanced acc.", "macro_f1": "macro-F1"},
    "tumour": {
        "auc": "AUC",
        "sens_at_90spec": "sens. @ 90% spec.",
        "balanced_accuracy": "balanced acc.",
        "brier": "Brier",
    },
}
assert all(next(iter(c)) == PRIMARY_METRIC[t] for t, c in _COLUMNS.items())


@dataclass(frozen=True)
class Score:
    """One metric of one candidate as the run recorded it: the pooled out-of-fold value, its 95% CI
    and the mean and standard deviation over the outer folds (None where not recorded)."""

    value: float | None
    ci95: tuple[float, float] | None = None
    fold_mean: float | None = None
    fold_std: float | None = None

    @property
    def text(self) -> str:
        """``0.812 [0.701, 0.905]``, or the value alone without a CI."""
        return fmt(self.value) + (f" [{fmt(self.ci95[0])}, {fmt(self.ci95[1])}]" if self.ci95 else "")

    @property
    def folds_text(self) -> str:
        return "–" if self.fold_mean is None else f"{fmt(self.fold_mean)} ± {fmt(self.fold_std)}"


def _score(pooled: Mapping | None, folds_summary: Mapping | None, key: str) -> Score:
    pooled = pooled or {}
    ci = pooled.get(f"{key}_ci95")
    ci = (
        (float(ci[0]), float(ci[1]))
        if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(num(c) is not None for c in ci)
        else None
    )
    spread = (folds_summary or {}).get(key) or {}
    return Score(num(pooled.get(key)), ci, num(spread.get("mean")), num(spread.get("std")))


@dataclass
class Table:
    """A table as text cells; ``highlight`` is the index of the selected row, if any."""

    header: list[str]
    rows: list[list[str]]
    highlight: int | None = None


@dataclass
class Section:
    """One titled part of the card: an optional table, sentences, sub-sections (rendered in that order)."""

    title: str
    lines: list[str] = field(default_factory=list)
    table: Table | None = None
    subsections: list[Section] = field(default_factory=list)


@dataclass
class Candidate:
    """One row of a task's comparison: a candidate pipeline and its scores by metric."""

    name: str
    selected: bool
    scores: dict[str, Score]


@dataclass
class TaskCard:
    """One task: the candidates compared, the saved pipeline, and the task's data."""

    task: str
    title: str
    columns: dict[str, str]
    candidates: list[Candidate]
    chosen: str | None
    pipeline_name: str
    data: list[str] = field(default_factory=list)
    pipeline: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    ci_method: str | None = None

    @property
    def metric(self) -> str:
        return next(iter(self.columns))

    @property
    def chosen_score(self) -> Score | None:
        """The saved pipeline's selection metric, or None when the run scored no candidate."""
        row = next((c for c in self.candidates if c.selected), None)
        return None if row is None or row.scores[self.metric].value is None else row.scores[self.metric]

    @property
    def headline(self) -> str:
        """One sentence: the saved pipeline and its cross-validated score with the 95% CI."""
        s, label = self.chosen_score, self.columns[self.metric]
        if s is None:
            return f"{self.title} pipeline: {self.pipeline_name}; cross-validated performance {NOT_MEASURED}."
        ci = f"95% CI {fmt(s.ci95[0])}–{fmt(s.ci95[1])}" if s.ci95 else f"95% CI {NOT_MEASURED}"
        spread = f"; {s.folds_text} over folds" if s.fold_mean is not None else ""
        return f"{self.title} pipeline: {self.chosen}, {label} {fmt(s.value)} ({ci}{spread}), pooled out-of-fold grouped CV."

    @property
    def table(self) -> Table | None:
        """The comparison of every candidate (pooled [95% CI], folds, the other metrics), or None."""
        if not self.candidates:
            return None
        key, label = self.metric, self.columns[self.metric]
        others = [k for k in self.columns if k != key]
        has_ci = any(c.scores[key].ci95 for c in self.candidates)
        header = [
            "candidate",
            f"{label}, pooled" + (" [95% CI]" if has_ci else ""),
            f"{label}, mean ± std over folds",
            *(
                self.columns[k] + (" [95% CI]" if any(c.scores[k].ci95 for c in self.candidates) else "")
                for k in others
            ),
        ]
        rows = [
            [
                c.name + (" (selected)" if c.selected else ""),
                c.scores[key].text,
                c.scores[key].folds_text,
                *(c.scores[k].text for k in others),
            ]
            for c in self.candidates
        ]
        return Table(header, rows, next((i for i, c in enumerate(self.candidates) if c.selected), None))


@dataclass
class ModelCard:
    """The card's content, rendered alike by :func:`card_markdown` and :func:`card_html`."""

    title: str
    pipeline_id: str | None
    summary: list[str]
    tasks: list[TaskCard]
    sections: list[Section]
    source: str
    front_matter: dict[str, Any]


# ------------------------------------------------------------------------------------ builder


def build_card(
    metadata: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None = None,
    model_file: Mapping[str, Any] | None = None,
) -> ModelCard:
    """The card of a saved model from its ``metadata`` and, if given, its run's ``metrics.json`` dict.

    ``model_file`` (``{"file": name, "sha256": hex}``) names the artifact; without it the
    run's ``final_model`` entry does.
    """
    meta, run = dict(metadata or {}), dict(metrics or {})
    fm = run.get("final_model") or {}
    model_file = dict(model_file or ({"file": fm.get("path"), "sha256": fm.get("sha256")} if fm else {}))
    known = {**(run.get("tasks") or {}), **(meta.get("cv_metrics") or {}), **(meta.get("tasks") or {})}
    tasks = [_task_card(t, meta, run) for t in _TASKS if t in known]
    data = run.get("dataset") or meta.get("training_data") or {}
    group = wording.group_meaning(data)
    summary = [wording.trained_on(data, group), *(t.headline for t in tasks), wording.RESEARCH_ONLY]
    title = f"Model card: {meta.get('pipeline_id') or model_file.get('file') or 'mammo model'}"
    results = [Section(t.title, t.findings, t.table) for t in tasks if t.table]
    sections = [
        Section("At a glance", summary),
        Section("Intended use", list(wording.INTENDED_USE)),
        Section("Out-of-scope use", list(wording.OUT_OF_SCOPE)),
        Section(
            "Training data",
            wording.training_lines(data, group, run),
            subsections=[Section(t.title, t.data) for t in tasks if t.data],
        ),
        Section("Evaluation protocol", wording.evaluation_lines(meta, run, group, tasks)),
        Section(
            "Candidates compared",
            [] if results else [f"Cross-validated comparison: {NOT_MEASURED}."],
            subsections=results,
        ),
        Section(
            "Chosen pipelines",
            [] if tasks else ["The saved pipelines are not described in the model's metadata."],
            subsections=[Section(t.title, t.pipeline) for t in tasks],
        ),
        _subgroup_section(meta, run),
        Section("Out-of-distribution rate", wording.ood_lines(meta.get("ood"), run.get("ood"))),
        Section(
            "Limitations",
            wording.limitations(
                data, meta, tasks, any(_subgroups(t, meta, run) for t in _TASKS), _crop_shifts(meta, run)
            ),
        ),
        *([Section("Notes from the run", [str(n) for n in run["notes"]])] if run.get("notes") else []),
        Section("Versions and hashes", table=Table(["item", "value"], _provenance(meta, run, model_file))),
    ]
    source = wording.SOURCE_RUN if run else wording.SOURCE_METADATA
    front = {
        "library_name": "mammo",
        "tags": list(wording.TAGS),
        "model_name": meta.get("pipeline_id"),
        "model_sha256": model_file.get("sha256"),
    }
    return ModelCard(title, meta.get("pipeline_id"), summary, tasks, sections, source, front)


def _candidates(task: str, meta: Mapping, run: Mapping) -> tuple[dict[str, Mapping], str | None]:
    """``{name: {"pooled", "folds_summary", "per_breast"?}}`` and the selected name, from the run or the metadata."""
    rt = (run.get("tasks") or {}).get(task)
    if rt:
        return dict(rt.get("candidates") or {}), rt.get("best")
    cv = (meta.get("cv_metrics") or {}).get(task) or {}
    best = cv.get("candidate")
    # the metadata keeps the fold spread of the selected candidate only
    return {
        n: {"pooled": p, "folds_summary": cv.get("folds_summary") if n == best else None}
        for n, p in (cv.get("table") or {}).items()
    }, best


def _task_card(task: str, meta: Mapping, run: Mapping) -> TaskCard:
    cands, best = _candidates(task, meta, run)
    columns = dict(_COLUMNS[task])
    if any(c.get("per_breast") for c in cands.values()):
        columns["auc_per_breast"] = "AUC per breast"
    rows = []
    for name, c in cands.items():
        scores = {k: _score(c.get("pooled"), c.get("folds_summary"), k) for k in _COLUMNS[task]}
        if "auc_per_breast" in columns:
            scores["auc_per_breast"] = _score(c.get("per_breast"), None, "auc")
        rows.append(Candidate(str(name), name == best, scores))
    info = (meta.get("tasks") or {}).get(task) or {}
    features, model = ", ".join(info.get("features") or []), info.get("model")
    name = best or " → ".join(x for x in (features, model) if x) or "not recorded"
    method = ((cands.get(best) or {}).get("pooled") or {}).get(f"{PRIMARY_METRIC[task]}_ci_method")
    card = TaskCard(task, wording.TITLES[task], columns, rows, best, name, ci_method=method)
    card.data = wording.task_data_lines(task, meta, run)
    card.pipeline = wording.pipeline_lines(task, name, meta)
    card.findings = wording.findings(task, (run.get("tasks") or {}).get(task) or {}, len(rows))
    return card


def _crop_shifts(meta: Mapping, run: Mapping) -> dict[str, Mapping]:
    """Per task, the selected pipeline's crop-shift check (the run's, else the metadata's); absent when not measured."""
    out = {}
    for task in _TASKS:
        rt = (run.get("tasks") or {}).get(task) or {}
        shift = ((rt.get("candidates") or {}).get(rt.get("best")) or {}).get("crop_shift")
        shift = shift or ((meta.get("cv_metrics") or {}).get(task) or {}).get("crop_shift")
        if shift:
            out[task] = shift
    return out


def _subgroups(task: str, meta: Mapping, run: Mapping) -> Mapping[str, list] | None:
    """A task's per-subgroup rows, from the run or else the model's metadata; None when not measured."""
    rt = (run.get("tasks") or {}).get(task) or {}
    cv = (meta.get("cv_metrics") or {}).get(task) or {}
    return rt.get("subgroups") or cv.get("subgroups") or None


def _subgroup_table(task: str, subgroups: Mapping[str, list]) -> Table:
    metric, extra = ("AUC", "malignant images") if task == "tumour" else ("QWK", "accuracy")
    rows = []
    for name, levels in subgroups.items():
        for r in levels:
            ci = r.get("ci95") or [None, None]
            value = str(r["too_few"]) if r.get("too_few") else Score(num(r.get("value")), _pair(ci)).text
            other = str(r.get("n_pos", "–")) if task == "tumour" else fmt(r.get("accuracy"))
            rows.append([str(name), str(r["level"]), str(r["n"]), str(r.get("n_patients", "–")), other, value])
    return Table(["subgroup", "level", "images", "patients", extra, f"{metric} [95% CI]"], rows)


def _pair(ci) -> tuple[float, float] | None:
    lo, hi = (num(c) for c in ci)
    return None if lo is None or hi is None else (lo, hi)


def _subgroup_section(meta: Mapping, run: Mapping) -> Section:
    """Per task, the selected pipeline's out-of-fold scores per subgroup level, or "not measured"."""
    measured = {t: s for t in _TASKS if (s := _subgroups(t, meta, run))}
    if not measured:
        return Section("Subgroup results", [wording.SUBGROUPS])
    missing = [
        wording.TITLES[t]
        for t in _TASKS
        if t not in measured and t in (run.get("tasks") or meta.get("cv_metrics") or {})
    ]
    subsections = [Section(wording.TITLES[t], table=_subgroup_table(t, s)) for t, s in measured.items()]
    return Section("Subgroup results", wording.subgroup_lines(missing), subsections=subsections)


def _provenance(meta: Mapping, run: Mapping, model_file: Mapping) -> list[list[str]]:
    rows = [
        ["model file", str(model_file.get("file") or "not recorded")],
        ["model sha256", str(model_file.get("sha256") or "not recorded")],
        ["pipeline id", str(meta.get("pipeline_id") or "not recorded")],
    ]
    if run.get("started"):
        rows.append(["training run started", str(run["started"])])
    if (run.get("config") or {}).get("data"):
        rows.append(["training data location", str(run["config"]["data"])])
    if "format_version" in meta:
        rows.append(["model format version", str(meta["format_version"])])
    if "cnn_weights" in meta:
        cnn = meta.get("cnn_weights") or {}
        rows.append(
            [
                "CNN weights",
                f"{Path(str(cnn.get('weights'))).name}, sha256 {cnn.get('sha256')}"
                if cnn
                else "none (no CNN features in the saved pipelines)",
            ]
        )
    options = [
        k
        for k in ("texture_size", "cnn_input_size", "cnn_layers", "flip_tta", "enhance", "density_decision")
        if k in meta
    ]
    if options:
        rows.append(["pipeline options", ", ".join(f"{k}={meta[k]}" for k in options)])
    if meta.get("versions"):
        rows.append(["library versions", ", ".join(f"{k} {v}" for k, v in meta["versions"].items())])
    return rows
