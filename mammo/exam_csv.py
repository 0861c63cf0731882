"""``mammo predict --by breast|exam``: the per-image predictions combined per breast or per exam.

Which exam, breast and view each file is comes from a views manifest when given (a CSV
with a ``path`` or ``file`` column and any of ``exam`` / ``patient_id``, ``laterality``,
``view``), else from the DICOM header, else from the file name (:mod:`mammo.exams`).
The rules that combine views are :mod:`mammo.exams`' own, the same as on the web page.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from .conventions import InputError
from .exams import ExamResult, View, aggregate, describe_view

__all__ = ["read_views", "views_for_files", "write_aggregated", "BREAST_COLUMNS", "EXAM_COLUMNS"]

BREAST_COLUMNS = [
    "exam",
    "laterality",
    "n_views",
    "views",
    "files",
    "density_label",
    "tumour_label",
    "p_malignant",
    "in_distribution",
    "refused",
    "pipeline_id",
]
EXAM_COLUMNS = [
    "exam",
    "n_images",
    "n_scored",
    "density_label",
    "p_malignant_left",
    "p_malignant_right",
    "p_malignant_other",
    "in_distribution",
    "refused",
    "pipeline_id",
]
_EXAM_COLS = ("exam", "patient_id", "study", "study_instance_uid")


def read_views(path: str | os.PathLike) -> dict[str, dict]:
    """``{resolved file path: {"exam", "laterality", "view"}}`` from a views manifest CSV."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise InputError(f"cannot read the views manifest {path}: {exc.strerror or exc}") from exc
    if not rows:
        raise InputError(f"{path}: the views manifest has no rows")
    cols = {c.strip().lower(): c for c in rows[0]}
    file_col = cols.get("path") or cols.get("file") or cols.get("filename")
    if file_col is None:
        raise InputError(f"{path}: the views manifest needs a 'path' (or 'file') column; found {list(rows[0])}")
    exam_col = next((cols[c] for c in _EXAM_COLS if c in cols), None)
    base = Path(path).resolve().parent
    out = {}
    for row in rows:
        file = Path(row[file_col].strip())
        key = str((file if file.is_absolute() else base / file).resolve())
        out[key] = {
            "exam": row.get(exam_col, "") if exam_col else "",
            "laterality": row.get(cols.get("laterality", ""), "") or "",
            "view": row.get(cols.get("view", ""), "") or "",
        }
    return out


def views_for_files(paths: list[str], manifest: dict[str, dict] | None = None) -> list[View]:
    """One :class:`~mammo.exams.View` per file: the manifest's values, else DICOM tags, else the name."""
    from .features.io import read_tags

    views = []
    for p in paths:
        given = (manifest or {}).get(str(Path(p).resolve()), {})
        try:
            views.append(describe_view(p, read_tags(p), **given))
        except ValueError as exc:  # a manifest's laterality that is not L/R
            raise InputError(str(exc)) from exc
    return views


def _record(model, density: np.ndarray | None, tumour: np.ndarray | None, ood) -> dict:
    rec: dict = {}
    if density is not None:
        rec["density"] = {"label": int(model.labels("density", density[None])[0])}
    if tumour is not None:
        rec["tumour"] = {"p_malignant": float(tumour[1])}
    if ood is not None:
        rec["in_distribution"] = bool(ood)
    return rec


def collect_records(model, paths: list[str], *, progress: bool = True) -> tuple[list, int]:
    """Per path: a record for :func:`mammo.exams.aggregate`, or the reason it failed; and the failure count."""
    records: list = [None] * len(paths)
    failed = 0
    for indices, proba, ood, failures in model.iter_predict(paths, errors="record", progress=progress):
        for k, i in enumerate(indices):
            records[i] = _record(
                model,
                proba["density"][k] if "density" in proba else None,
                proba["tumour"][k] if "tumour" in proba else None,
                None if ood is None else ood[1][k],
            )
        for i, message in failures.items():
            records[i] = message
            failed += 1
    return records, failed


def _fmt(p: float | None) -> str:
    return "" if p is None else f"{p:.6f}"


def _flag(v: bool | None) -> str:
    return "" if v is None else ("true" if v else "false")


def _breast_rows(model, exam: ExamResult, pipeline_id: str) -> list[dict]:
    rows = []
    for b in exam.breasts:
        tumour = (
            ""
            if b.p_malignant is None
            else (
                "Malignant"
                if int(model.labels("tumour", np.array([[1 - b.p_malignant, b.p_malignant]]))[0])
                else "Benign"
            )
        )
        rows.append(
            {
                "exam": exam.exam,
                "laterality": b.laterality or "",
                "n_views": b.n_views,
                "views": ";".join(v or "?" for v in b.views),
                "files": ";".join(b.images),
                "density_label": "" if b.density is None else b.density,
                "tumour_label": tumour,
                "p_malignant": _fmt(b.p_malignant),
                "in_distribution": _flag(b.in_distribution),
                "refused": "",
                "pipeline_id": pipeline_id,
            }
        )
    for file, why in exam.refused.items():
        rows.append({"exam": exam.exam, "files": file, "refused": why, "pipeline_id": pipeline_id})
    return rows


def _exam_row(exam: ExamResult, pipeline_id: str) -> dict:
    side = {b.laterality: b.p_malignant for b in exam.breasts if b.laterality}
    other = [b.p_malignant for b in exam.breasts if not b.laterality and b.p_malignant is not None]
    return {
        "exam": exam.exam,
        "n_images": len(exam.images),
        "n_scored": len(exam.images) - len(exam.refused),
        "density_label": "" if exam.density is None else exam.density,
        "p_malignant_left": _fmt(side.get("L")),
        "p_malignant_right": _fmt(side.get("R")),
        "p_malignant_other": ";".join(_fmt(p) for p in other),
        "in_distribution": _flag(exam.in_distribution),
        "refused": ";".join(f"{Path(f).name}: {why}" for f, why in exam.refused.items()),
        "pipeline_id": pipeline_id,
    }


def write_aggregated(
    model, paths: list[str], out, by: str, *, views: list[View] | None = None, progress: bool = True
) -> int:
    """Write one CSV row per breast (``by="breast"``) or per exam (``"exam"``); returns the failure count."""
    if by not in ("breast", "exam"):
        raise ValueError(f"by must be 'breast' or 'exam', got {by!r}")
    views = views_for_files(paths) if views is None else views
    records, failed = collect_records(model, paths, progress=progress)
    pipeline_id = model.metadata.get("pipeline_id", "")
    writer = csv.DictWriter(out, fieldnames=BREAST_COLUMNS if by == "breast" else EXAM_COLUMNS)
    writer.writeheader()
    for exam in aggregate(views, records):
        writer.writerows(_breast_rows(model, exam, pipeline_id) if by == "breast" else [_exam_row(exam, pipeline_id)])
    return failed
