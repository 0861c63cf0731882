"""One exam at a time: which view each image is, and the results per breast and per exam.

A screening exam is several images: usually a craniocaudal (CC) and a mediolateral-oblique
(MLO) view of each breast. Each image is described by a :class:`View`, found in this order:

1. what the caller says (the web form's fields, a manifest's columns);
2. the DICOM header: ``StudyInstanceUID`` (else ``PatientID``) names the exam,
   ``ImageLaterality`` (else ``Laterality``) the breast, ``ViewPosition`` the view;
3. the file name, split into words at ``-``, ``_``, ``.`` and spaces: a word ``L``,
   ``R``, ``LEFT`` or ``RIGHT`` is the breast, ``CC``, ``MLO``, ``ML``, ``LM``, ``XCCL``,
   ``XCCM``, ``SIO`` or ``AT`` the view, a word joining both (``LCC``, ``RMLO``, ...) gives
   the two, and the words left over name the exam (``P001_L_CC.png``, ``P001-RMLO.dcm``:
   exam ``P001``). Case does not matter.

Aggregation rules, the same everywhere (web page, API, ``mammo predict --by``):

* **breast**: P(malignant) is the mean of the breast's views' P(malignant), the rule whose
  AUC the training and evaluation reports give as "AUC per breast"
  (:func:`mammo.evaluation.metrics.per_breast_tumour`). An image whose breast is unknown is
  a breast of its own: views are never averaged across what may be two breasts.
* **exam density**: the median of the views' density grades; with an even number of views
  whose two middle grades differ, the higher (denser) one, as dense tissue is the finding
  that lowers mammography's sensitivity.
* Images that were refused (unreadable, not a mammogram) are left out of both and listed;
  a breast or exam counts as out of distribution when any of its views is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import PurePath

__all__ = ["View", "BreastResult", "ExamResult", "describe_view", "aggregate", "exam_density", "LATERALITIES", "VIEWS"]

LATERALITIES = ("L", "R")
#: View positions (DICOM ViewPosition code strings) recognised in file names.
VIEWS = ("CC", "MLO", "ML", "LM", "XCCL", "XCCM", "SIO", "AT")
_SIDE_WORDS = {"L": "L", "R": "R", "LEFT": "L", "RIGHT": "R"}
_BOTH = re.compile(rf"^(L|R)({'|'.join(VIEWS)})$")
_SPLIT = re.compile(r"[-_. ]+")


@dataclass(frozen=True)
class View:
    """Which exam, breast and view one image is.

    ``laterality`` is ``"L"``, ``"R"`` or None (unknown); ``view`` a view position such as
    ``"CC"`` or ``"MLO"``, or None; ``source`` says where the breast came from:
    ``"given"``, ``"dicom"``, ``"filename"`` or ``"unknown"``.
    """

    name: str
    exam: str
    laterality: str | None = None
    view: str | None = None
    source: str = "unknown"


def _side(value) -> str | None:
    word = str(value or "").strip().upper()
    return _SIDE_WORDS.get(word)


def _view_code(value) -> str | None:
    word = str(value or "").strip().upper()
    return word if word else None


def _from_filename(name: str) -> tuple[str | None, str | None, str]:
    """``(laterality, view, exam)`` read off a file name (see the module docstring)."""
    words = [w for w in _SPLIT.split(PurePath(name).stem) if w]
    side = view = None
    rest = []
    for w in words:
        up = w.upper()
        both = _BOTH.match(up)
        if both and side is None and view is None:
            side, view = both.group(1), both.group(2)
        elif up in _SIDE_WORDS and side is None:
            side = _SIDE_WORDS[up]
        elif up in VIEWS and view is None:
            view = up
        else:
            rest.append(w)
    return side, view, "_".join(rest) or PurePath(name).stem


def describe_view(
    name: str,
    tags: Mapping | None = None,
    *,
    laterality: str | None = None,
    view: str | None = None,
    exam: str | None = None,
) -> View:
    """The :class:`View` of one image: the caller's values, else the DICOM tags, else the file name.

    Parameters
    ----------
    name : str
        The file's name (a path is fine).
    tags : mapping, optional
        DICOM attributes as read (:attr:`mammo.features.io.Scan.tags`).
    laterality, view, exam : str, optional
        What the caller knows (a form field, a manifest column); empty strings count as
        not given. ``laterality`` accepts L/R/left/right.

    Raises
    ------
    ValueError
        A ``laterality`` that is not L, R, left or right.
    """
    tags = dict(tags or {})
    f_side, f_view, f_exam = _from_filename(name)
    given_side = _side(laterality)
    if laterality not in (None, "") and given_side is None:
        raise ValueError(f"{name}: laterality {laterality!r} is not L, R, left or right")
    tag_side = _side(tags.get("ImageLaterality")) or _side(tags.get("Laterality"))
    side, source = next(
        ((s, src) for s, src in ((given_side, "given"), (tag_side, "dicom"), (f_side, "filename")) if s),
        (None, "unknown"),
    )
    position = _view_code(view) or _view_code(tags.get("ViewPosition")) or f_view
    exam_id = (
        (str(exam).strip() if exam not in (None, "") else None)
        or tags.get("StudyInstanceUID")
        or tags.get("PatientID")
        or f_exam
    )
    return View(str(name), str(exam_id), side, position, source)


def exam_density(grades: Sequence[int]) -> int | None:
    """The exam's density grade from its views' grades (median; the higher of two middles)."""
    ordered = sorted(int(g) for g in grades)
    return ordered[len(ordered) // 2] if ordered else None


@dataclass
class BreastResult:
    """One breast of one exam: its views and the combined result."""

    exam: str
    laterality: str | None
    images: list[str]
    views: list[str | None]
    p_malignant: float | None
    density: int | None
    in_distribution: bool | None

    @property
    def n_views(self) -> int:
        return len(self.images)


@dataclass
class ExamResult:
    """One exam: per-breast results, one density grade, and the images left out."""

    exam: str
    images: list[str]
    density: int | None
    breasts: list[BreastResult] = field(default_factory=list)
    in_distribution: bool | None = None
    refused: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        for b, d in zip(self.breasts, out["breasts"]):
            d["n_views"] = b.n_views
        return out


def _all_in(records: list[dict]) -> bool | None:
    flags = [r["in_distribution"] for r in records if "in_distribution" in r]
    return all(flags) if flags else None


def _grade(record: dict) -> int | None:
    return int(record["density"]["label"]) if "density" in record else None


def aggregate(views: Sequence[View], records: Sequence[dict | str | None]) -> list[ExamResult]:
    """Per-exam results from each image's :class:`View` and its prediction record.

    ``records[i]`` is the image's record (:meth:`mammo.classifiers.model.MammogramModel.record`:
    ``{"density": {"label": ...}, "tumour": {"p_malignant": ...}, "in_distribution": ...}``),
    or a string (why it was refused) or None (refused, no reason). Exams come in the order
    of their first image, breasts L before R before unknown.
    """
    if len(views) != len(records):
        raise ValueError(f"{len(views)} views but {len(records)} records")
    exams: dict[str, ExamResult] = {}
    members: dict[str, list[tuple[View, dict]]] = {}
    for v, rec in zip(views, records):
        ex = exams.setdefault(v.exam, ExamResult(v.exam, [], None))
        ex.images.append(v.name)
        if not isinstance(rec, dict):
            ex.refused[v.name] = rec or "refused"
            continue
        members.setdefault(v.exam, []).append((v, rec))
    for exam, ex in exams.items():
        done = members.get(exam, [])
        ex.density = exam_density([g for _, r in done if (g := _grade(r)) is not None])
        ex.in_distribution = _all_in([r for _, r in done])
        ex.breasts = _breasts(exam, done)
    return list(exams.values())


def _breasts(exam: str, done: list[tuple[View, dict]]) -> list[BreastResult]:
    groups: dict[tuple, list[tuple[View, dict]]] = {}
    for k, (v, rec) in enumerate(done):
        key = (v.laterality,) if v.laterality else (None, k)  # unknown side: a breast of its own
        groups.setdefault(key, []).append((v, rec))
    order = sorted(groups, key=lambda key: (LATERALITIES.index(key[0]) if key[0] else 2, key[1:]))
    out = []
    for key in order:
        items = groups[key]
        ps = [r["tumour"]["p_malignant"] for _, r in items if "tumour" in r]
        out.append(
            BreastResult(
                exam=exam,
                laterality=key[0],
                images=[v.name for v, _ in items],
                views=[v.view for v, _ in items],
                p_malignant=float(sum(ps) / len(ps)) if ps else None,
                density=exam_density([g for _, r in items if (g := _grade(r)) is not None]),
                in_distribution=_all_in([r for _, r in items]),
            )
        )
    return out
