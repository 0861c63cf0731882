"""Views of an exam and the per-breast / per-exam aggregation rules (mammo.exams)."""

from __future__ import annotations

import numpy as np
import pytest

from mammo.evaluation.metrics import per_breast_tumour, tumour_metrics
from mammo.exams import aggregate, describe_view, exam_density


@pytest.mark.parametrize(
    "name, side, view, exam",
    [
        ("P001_L_CC.png", "L", "CC", "P001"),
        ("P001-RMLO.dcm", "R", "MLO", "P001"),
        ("case 7 left mlo.jpg", "L", "MLO", "case_7"),
        ("/data/x/p9.right.cc.tif", "R", "CC", "p9"),
        ("LCC.png", "L", "CC", "LCC"),  # nothing left over: the stem names the exam
        ("mdb001.png", None, None, "mdb001"),
        ("Lisa_scan.png", None, None, "Lisa_scan"),  # a word that merely starts with L is no side
    ],
)
def test_views_from_file_names(name, side, view, exam):
    v = describe_view(name)
    assert (v.laterality, v.view, v.exam) == (side, view, exam)
    assert v.source == ("filename" if side else "unknown")


def test_given_values_beat_dicom_tags_which_beat_the_file_name():
    tags = {"ImageLaterality": "R", "ViewPosition": "MLO", "StudyInstanceUID": "1.2.3", "PatientID": "p7"}
    v = describe_view("P001_L_CC.dcm", tags)
    assert (v.laterality, v.view, v.exam, v.source) == ("R", "MLO", "1.2.3", "dicom")
    v = describe_view("P001_L_CC.dcm", tags, laterality="left", view="cc", exam="mine")
    assert (v.laterality, v.view, v.exam, v.source) == ("L", "CC", "mine", "given")
    # Laterality (the series-level tag) when ImageLaterality is absent; PatientID without a study
    v = describe_view("x.dcm", {"Laterality": "L", "PatientID": "p7"})
    assert (v.laterality, v.exam) == ("L", "p7")
    # empty form fields count as not given
    assert describe_view("P001_L_CC.png", laterality="", view="").laterality == "L"


def test_a_bad_laterality_is_refused():
    with pytest.raises(ValueError, match="laterality"):
        describe_view("a.png", laterality="middle")


@pytest.mark.parametrize(
    "grades, want", [([2], 2), ([2, 3], 3), ([1, 2, 4], 2), ([2, 2, 3, 3], 3), ([1, 2, 2, 4], 2), ([], None)]
)
def test_exam_density_is_the_median_grade_taking_the_denser_middle(grades, want):
    assert exam_density(grades) == want


def _record(grade: int, p: float, ood: bool = True) -> dict:
    return {"density": {"label": grade}, "tumour": {"p_malignant": p}, "in_distribution": ood}


def test_aggregate_an_exam_of_four_views():
    views = [describe_view(n) for n in ("P1_L_CC.png", "P1_L_MLO.png", "P1_R_CC.png", "P1_R_MLO.png", "P1.png")]
    records = [_record(2, 0.2), _record(3, 0.4), _record(3, 0.9, ood=False), None, _record(4, 0.5)]
    (exam,) = aggregate(views, records)
    assert exam.exam == "P1" and exam.refused == {"P1_R_MLO.png": "refused"}
    assert exam.density == 3  # grades 2, 3, 3, 4 -> the denser middle
    left, right, unknown = exam.breasts
    assert (left.laterality, left.images, left.views) == ("L", ["P1_L_CC.png", "P1_L_MLO.png"], ["CC", "MLO"])
    assert left.p_malignant == pytest.approx(0.3) and left.density == 3 and left.in_distribution is True
    assert right.p_malignant == pytest.approx(0.9) and right.n_views == 1 and right.in_distribution is False
    assert unknown.laterality is None and unknown.images == ["P1.png"]  # never averaged with another breast
    assert exam.in_distribution is False  # one view out of distribution
    d = exam.to_dict()
    assert d["breasts"][0]["n_views"] == 2 and d["refused"] == {"P1_R_MLO.png": "refused"}


def test_every_image_refused_gives_an_exam_without_results():
    (exam,) = aggregate([describe_view("a_L_CC.png")], ["not a mammogram"])
    assert exam.density is None and exam.breasts == [] and exam.refused == {"a_L_CC.png": "not a mammogram"}


def test_exams_are_kept_apart_and_in_order():
    views = [describe_view(n) for n in ("B_L_CC.png", "A_L_CC.png", "B_R_CC.png")]
    exams = aggregate(views, [_record(1, 0.1), _record(2, 0.2), _record(3, 0.3)])
    assert [e.exam for e in exams] == ["B", "A"] and [len(e.breasts) for e in exams] == [2, 1]
    with pytest.raises(ValueError):
        aggregate(views, [None])


def test_the_breast_rule_is_the_one_the_reports_score():
    """The AUC over aggregate()'s breasts equals the reports' 'AUC per breast'."""
    rng = np.random.default_rng(0)
    names, y, p, breasts, groups = [], [], [], [], []
    for patient in range(40):
        for side in "LR":
            label = int(rng.random() < 0.3)
            for view in ("CC", "MLO")[: rng.integers(1, 3)]:
                names.append(f"p{patient}_{side}_{view}.png")
                y.append(label)
                p.append(float(np.clip(0.3 * label + rng.random() * 0.7, 0, 1)))
                breasts.append(f"p{patient}{side}")
                groups.append(f"p{patient}")
    exams = aggregate([describe_view(n) for n in names], [_record(2, q) for q in p])
    label_of = dict(zip(breasts, y))
    flat = [(label_of[f"{b.exam}{b.laterality}"], b.p_malignant) for e in exams for b in e.breasts]
    ours = tumour_metrics(np.array([a for a, _ in flat]), np.array([b for _, b in flat]))["auc"]
    report = per_breast_tumour(y, p, breasts, groups, n_boot=10)["auc"]
    assert ours == pytest.approx(report)
