"""One exam at a time: several files of one exam read, told apart, scored and combined.

Which view each file is and how views combine are :mod:`mammo.exams`' rules
(:func:`~mammo.exams.describe_view`, :func:`~mammo.exams.aggregate`); this module only
applies them to an upload: the form fields, the check that the files are one exam, the
images the gate or the reader refused, and one model call for the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import PureWindowsPath

from flask import current_app

from ..exams import VIEWS, ExamResult, View, aggregate, describe_view
from ..features.io import Scan
from .inference import UploadError, read_upload
from .shared import analysis_refusal, density_meanings, state

__all__ = ["MAX_FILES", "RULES", "ExamImage", "read_exam", "score_exam", "combine", "exam_json", "flagged"]

#: Most files one request may carry: the views of one exam (CC and MLO of each breast, plus extra views).
MAX_FILES = 8

#: How each combined result is made, as the page and the API state it (the rules are mammo.exams').
RULES = {
    "breast_p_malignant": "the mean of the P(malignant) of the breast's scored views: the per-breast rule whose AUC the "
    "training and evaluation reports give ('AUC per breast'); a view whose breast is unknown is a "
    "breast of its own, never averaged with another",
    "flagged": "the breast's mean P(malignant) is at or above the model's decision threshold for one image",
    "exam_density": "the median of the scored views' density grades; with an even number of views whose two middle "
    "grades differ, the higher (denser) one",
    "in_distribution": "a breast or the exam is out of distribution when any of its views is",
    "refused": "files that could not be read or that the input-quality gate refused are left out of every "
    "combination and listed with the reason",
}

_CROP_FIELDS = ("crop", "crop_x", "crop_y", "crop_w", "crop_h")


@dataclass
class ExamImage:
    """One file of the uploaded exam: its view, and its scan and prediction, or why it was refused."""

    view: View
    scan: Scan | None = None
    record: dict | None = None
    prepared: object = None  # the breast region the model analysed (mammo.features.region.Mammogram)
    status: int | None = None  # a refused file: the status a single upload of it would get
    reason: str | None = None

    @property
    def refused(self) -> bool:
        return self.reason is not None


def read_exam(files: list, form, *, heatmap: bool = False) -> list[ExamImage]:
    """Read the request's files as one exam; refuse the request as a whole when it cannot be one.

    ``heatmap``: whether the request asked for one (only single images get a heatmap).
    A file that cannot be read does not stop the others: its :class:`ExamImage` says why.

    Raises
    ------
    UploadError
        400 for more than :data:`MAX_FILES` files, a crop box or heatmap, or per-file fields
        that do not pair with the files; 413 for more pixels in all than the exam limit; 422
        for files of different exams (DICOM StudyInstanceUID or PatientID).
    """
    n = len(files)
    if n > MAX_FILES:
        raise UploadError(
            400,
            f"Too many files: one request takes at most {MAX_FILES} images of one exam, this one "
            f"has {n}. Nothing was analysed.",
        )
    if any((form.get(k) or "").strip() for k in _CROP_FIELDS):
        raise UploadError(
            400,
            "A crop box applies to a single image: send several files without one, or crop each "
            "image in its own request.",
        )
    if heatmap:
        raise UploadError(
            400, "The occlusion heatmap is made for a single image: send several files without heatmap=1."
        )
    sides, positions = _per_file(form, "laterality", n), _per_file(form, "view", n)
    limit = current_app.config["MAMMO_MAX_EXAM_PIXELS"] or 2 * current_app.config["MAMMO_MAX_PIXELS"]
    images, total = [], 0
    for k, (name, upload) in enumerate(zip(_names(files), files)):
        scan, status, reason = _read(upload)
        total += scan.pixels.size if scan is not None else 0
        if total > limit:
            raise UploadError(413, f"The exam's images have too many pixels in all (the limit is {limit:,}).")
        try:
            view = describe_view(name, scan.tags if scan is not None else None, laterality=sides[k], view=positions[k])
        except ValueError:
            raise UploadError(400, f"Bad laterality for file {k + 1}: give L, R, left, right or nothing.") from None
        images.append(ExamImage(view, scan, status=status, reason=reason))
    exam_id = _one_exam(images)
    return [replace(im, view=replace(im.view, exam=exam_id)) for im in images]


def _names(files: list) -> list[str]:
    """Each file's base name (any client-side folders dropped), made unique so views can be told apart."""
    out: list[str] = []
    for k, f in enumerate(files):
        base = PureWindowsPath(f.filename or "").name[:200] or f"file {k + 1}"  # PureWindowsPath splits / and \
        name, dup = base, 1
        while name in out:
            dup += 1
            name = f"{base} ({dup})"
        out.append(name)
    return out


def _per_file(form, key: str, n: int) -> list[str | None]:
    """The repeated form field ``key``: one value per file in the files' order ("" = not given), or none at all."""
    values = [(v or "").strip() for v in form.getlist(key)]
    if not values:
        return [None] * n
    if len(values) != n:
        raise UploadError(
            400,
            f"Give one '{key}' field per file, in the files' order (empty when not known): "
            f"got {len(values)} for {n} files.",
        )
    if key == "view":
        for k, v in enumerate(values):
            if v and v.upper() not in VIEWS:
                raise UploadError(400, f"Bad view for file {k + 1}: give one of {', '.join(VIEWS)} or nothing.")
    return [v or None for v in values]


def _read(upload) -> tuple[Scan | None, int | None, str | None]:
    """``(scan, None, None)``, or ``(None, status, reason)`` with what a single upload of the file would answer."""
    data = upload.read()
    if not data:
        return None, 400, "The uploaded file is empty."
    try:
        return read_upload(data, max_pixels=current_app.config["MAMMO_MAX_PIXELS"]), None, None
    except UploadError as exc:
        return None, exc.status, exc.message


def _one_exam(images: list[ExamImage]) -> str:
    """The exam's name; refuses files whose DICOM headers name different studies or patients."""
    tags = [im.scan.tags for im in images if im.scan is not None]
    studies = {t["StudyInstanceUID"] for t in tags if "StudyInstanceUID" in t}
    patients = {t["PatientID"] for t in tags if "PatientID" in t}
    n = max(len(studies), len(patients))
    if n > 1:
        raise UploadError(
            422,
            f"These files belong to {n} different exams (their DICOM StudyInstanceUID or PatientID "
            "differ); upload one exam at a time.",
        )
    named = {im.view.exam for im in images}
    # what the files say about the exam, in describe_view's order; files that disagree are still one upload
    return next(iter(studies or patients or (named if len(named) == 1 else {"exam"})))


def score_exam(images: list[ExamImage]) -> float:
    """Predict every readable image in one ``model.analyse`` call under one inference slot; returns the seconds.

    When the batch fails (the gate refuses the first implausible image of a batch), the images
    are scored one at a time, so a refused one is marked and the others still scored.

    Raises
    ------
    UploadError
        422 when no file could be scored.
    """
    todo = [im for im in images if not im.refused]
    st = state()
    model = st["model"]
    t0 = time.perf_counter()
    results: list = []
    if todo:
        with st["slots"]:
            try:
                records, prepared = model.analyse([im.scan for im in todo])
                results = list(zip(records, prepared))
            except ValueError:  # ImplausibleImageError, ImageReadError: find which image
                results = [_analyse_one(model, im.scan) for im in todo]
    for im, res in zip(todo, results):
        if isinstance(res, UploadError):
            im.status, im.reason = res.status, res.message
        else:
            im.record, im.prepared = res
    if all(im.refused for im in images):
        reasons = "; ".join(f"file {k + 1}: {im.reason}" for k, im in enumerate(images))
        raise UploadError(422, f"None of the {len(images)} files could be analysed. {reasons}")
    return time.perf_counter() - t0


def _analyse_one(model, scan: Scan):
    try:
        records, prepared = model.analyse([scan])
    except ValueError as exc:
        return analysis_refusal(exc)
    return records[0], prepared[0]


def combine(images: list[ExamImage]) -> ExamResult:
    """The exam's per-breast and exam-level results (:func:`mammo.exams.aggregate`)."""
    (exam,) = aggregate([im.view for im in images], [im.reason if im.refused else im.record for im in images])
    return exam


def flagged(p_malignant: float | None) -> bool | None:
    """Whether a breast's combined P(malignant) reaches the model's threshold (None without a tumour score)."""
    return None if p_malignant is None else p_malignant >= state()["model"].threshold


def exam_json(images: list[ExamImage], exam: ExamResult) -> dict:
    """The ``views``, ``breasts`` and ``exam`` parts of the API's answer for several files."""
    views = []
    for im in images:
        v = {
            "name": im.view.name,
            "laterality": im.view.laterality,
            "view": im.view.view,
            "view_source": im.view.source,
        }
        if im.refused:
            v.update(error=im.reason, status=im.status)
        else:
            height, width = im.scan.shape
            v.update(im.record, image={"width": width, "height": height, "crop": None})
        views.append(v)
    d = exam.to_dict()
    breasts = []
    for b in d["breasts"]:
        b.pop("exam")
        breasts.append({**b, "flagged": flagged(b["p_malignant"])})
    summary = {
        "id": d["exam"],
        "images": d["images"],
        "n_scored": sum(not im.refused for im in images),
        "density": d["density"],
        "density_meaning": None
        if d["density"] is None
        else density_meanings().get(str(d["density"]), str(d["density"])),
        "in_distribution": d["in_distribution"],
        "refused": d["refused"],
        "threshold": state()["model"].threshold,
        "rules": RULES,
    }
    return {"views": views, "breasts": breasts, "exam": summary}
