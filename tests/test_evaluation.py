"""evaluation: metric definitions, the group bootstrap, plots and the report."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mammo import evaluation as ev


def test_density_metrics_perfect_and_ordinal_penalty():
    y = np.array([1, 2, 3, 4, 1, 2, 3, 4])
    eye = np.eye(4)
    perfect = ev.density_metrics(y, eye[y - 1], [1, 2, 3, 4])
    assert perfect["accuracy"] == perfect["qwk"] == perfect["macro_f1"] == perfect["balanced_accuracy"] == 1.0
    assert perfect["confusion_matrix"] == (2 * np.eye(4, dtype=int)).tolist()
    near = ev.density_metrics(y, eye[np.minimum(y - 1, 2)], [1, 2, 3, 4])  # 4 -> 3: off by one
    far = ev.density_metrics(y, eye[np.where(y == 4, 0, y - 1)], [1, 2, 3, 4])  # 4 -> 1: off by three
    assert near["accuracy"] == far["accuracy"] == 0.75
    assert near["qwk"] > far["qwk"]  # quadratic weights charge distant errors more


def test_density_metrics_missing_class_in_fold():
    y = np.array([1, 1, 2, 2])
    m = ev.density_metrics(y, np.eye(4)[[0, 1, 1, 3]], [1, 2, 3, 4])
    assert np.array(m["confusion_matrix"]).shape == (4, 4)
    assert m["accuracy"] == 0.5


def test_sensitivity_at_specificity():
    y = np.array([0] * 10 + [1] * 10)
    s = np.r_[np.linspace(0, 0.5, 10), np.linspace(0.3, 1.0, 10)]
    sens = ev.sensitivity_at_specificity(y, s, 0.9)
    # threshold just above the 9th negative (0.444): positives above it
    assert sens == pytest.approx(np.mean(s[10:] > s[8]))
    assert ev.sensitivity_at_specificity(y, np.r_[np.zeros(10), np.ones(10)], 0.9) == 1.0


def test_tumour_metrics_values():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.5 * y + rng.uniform(0, 0.6, 400), 0, 1)
    m = ev.tumour_metrics(y, p)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert len(m["calibration"]["observed"]) == 10
    assert m["n_pos"] == y.sum()
    one_class = ev.tumour_metrics(np.zeros(5), np.linspace(0, 1, 5))
    assert np.isnan(one_class["auc"])


def test_per_breast_tumour_averages_each_breasts_views():
    y = np.array([1, 1, 0, 0, 0, 0, 1, 1])
    p = np.array([0.9, 0.1, 0.4, 0.2, 0.3, 0.5, 0.6, 0.7])
    breasts = np.array(["a|L", "a|L", "a|R", "a|R", "b|L", "b|L", "c|R", "c|R"])
    groups = np.array(["a", "a", "a", "a", "b", "b", "c", "c"])
    out = ev.per_breast_tumour(y, p, breasts, groups, n_boot=50)
    # breast means: a|L 0.5 (1), a|R 0.3 (0), b|L 0.4 (0), c|R 0.65 (1)
    assert out["n"] == 4 and out["n_pos"] == 2 and out["views_per_breast"] == 2
    assert out["auc"] == pytest.approx(roc_auc_score([1, 0, 0, 1], [0.5, 0.3, 0.4, 0.65]))
    assert out["auc"] > roc_auc_score(y, p)  # the views disagree; their mean does not
    assert len(out["auc_ci95"]) == 2
    y_mixed = y.copy()
    y_mixed[1] = 0  # a breast whose images disagree on the label
    assert ev.per_breast_tumour(y_mixed, p, breasts, groups) is None


def test_group_bootstrap_is_wider_than_image_bootstrap_for_copies():
    rng = np.random.default_rng(0)
    n = 30
    y0 = rng.integers(0, 2, n)
    s0 = 0.6 * y0 + rng.normal(0, 0.4, n)
    copies = 10  # ten identical copies per group: the effective sample size is n, not 10n
    y, s = np.repeat(y0, copies), np.repeat(s0, copies)
    g = np.repeat(np.arange(n), copies)
    lo_g, hi_g = ev.bootstrap_ci(y, s, groups=g, n_boot=400, seed=1)
    lo_i, hi_i = ev.bootstrap_ci(y, s, n_boot=400, seed=1)
    auc = roc_auc_score(y, s)
    assert lo_g <= auc <= hi_g and lo_i <= auc <= hi_i
    assert hi_g - lo_g > 2 * (hi_i - lo_i)


def test_fold_summary():
    s = ev.fold_summary(
        [{"auc": 0.6, "n": 3, "confusion_matrix": [[1]]}, {"auc": 0.8, "n": 4}, {"auc": float("nan"), "n": 2}]
    )
    assert s["auc"]["mean"] == pytest.approx(0.7)
    assert s["auc"]["std"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert set(s) == {"auc"}


def test_plots_and_report(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    p = np.clip(0.4 * y + rng.uniform(0, 0.6, 100), 0, 1)
    paths = [
        ev.plot_roc({"a": (y, p), "b": (y, 1 - p)}, tmp_path / "roc.png"),
        ev.plot_calibration({"a": (y, p)}, tmp_path / "cal.png"),
        ev.plot_confusion({"a": [[3, 1], [0, 4]], "b": [[2, 2], [1, 3]]}, [0, 1], tmp_path / "cm.png"),
        ev.plot_group_sizes(np.repeat(np.arange(10), 3), tmp_path / "g.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cand = {"pooled": ev.tumour_metrics(y, p), "folds_summary": {"auc": {"mean": 0.8, "std": 0.05}}}
    cand["pooled"]["auc_ci95"] = [0.7, 0.9]
    metrics = {
        "dataset": {"name": "toy", "n_images": 100, "n_groups": 50},
        "config": {"data": "toy.csv", "folds": 5, "seed": 0, "inner_folds": 3, "n_boot": 100},
        "started": "now",
        "timing": {"total_s": 1.0},
        "tasks": {
            "tumour": {
                "n_images": 100,
                "n_groups": 50,
                "class_counts": {"0": 50, "1": 50},
                "fold_sizes": [20] * 5,
                "best": "texture+svm",
                "candidates": {"texture+svm": cand},
            }
        },
    }
    text = ev.write_report(metrics, tmp_path / "report.md", {"roc_tumour": "roc.png"}).read_text()
    assert "| texture+svm **(selected)** |" in text
    assert "[0.700, 0.900]" in text and "0.800 ± 0.050" in text
    assert "![roc_tumour](roc.png)" in text


def test_fast_auc_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)  # with ties
    assert ev.fast_auc(y, s) == pytest.approx(roc_auc_score(y, s))


# ----------------------------------------------------------------------------- subgroups


def _subgroup_data(seed: int = 3):
    """60 patients x 2 images at sites A (40 patients) and B (20), plus a site C of 3 patients."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"p{i}" for i in range(63)], 2)
    site = np.where(np.arange(126) < 80, "A", np.where(np.arange(126) < 120, "B", "C"))
    y = np.tile([0, 1], 63)  # one malignant and one non-malignant image per patient
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 126), 0, 1)
    grade = rng.integers(1, 5, 126)
    pred = np.clip(grade + rng.integers(-1, 2, 126), 1, 4)
    return y, p, grade, pred, groups, {"site": site}


def test_subgroup_metrics_equal_sklearn_on_known_predictions():
    from sklearn.metrics import accuracy_score, cohen_kappa_score

    y, p, grade, pred, groups, cols = _subgroup_data()
    tum = ev.subgroup_metrics("tumour", y, groups, cols, proba=p, n_boot=100)["site"]
    den = ev.subgroup_metrics("density", grade, groups, cols, pred=pred, classes=[1, 2, 3, 4], n_boot=100)["site"]
    assert [r["level"] for r in tum] == ["A", "B", "C"] == [r["level"] for r in den]
    for rows in (tum, den):
        for r, level in zip(rows, "ABC"):
            m = cols["site"] == level
            assert (r["n"], r["n_patients"]) == (m.sum(), len(set(groups[m])))
            assert r["ci95"][0] <= r["value"] <= r["ci95"][1]
    for r in tum:
        m = cols["site"] == r["level"]
        assert r["metric"] == "auc" and r["value"] == pytest.approx(roc_auc_score(y[m], p[m]))
        assert r["n_pos"] == y[m].sum()
    for r in den:
        m = cols["site"] == r["level"]
        assert r["metric"] == "qwk"
        assert r["value"] == pytest.approx(cohen_kappa_score(grade[m], pred[m], weights="quadratic"))
        assert r["accuracy"] == pytest.approx(accuracy_score(grade[m], pred[m]))


def test_subgroup_levels_with_too_few_patients_are_listed_with_their_counts(tmp_path):
    from functools import partial

    from mammo.datasets import MIN_PATIENTS, too_few_cases

    y, p, grade, pred, groups, cols = _subgroup_data()
    rule = partial(too_few_cases, "tumour")
    rows = {r["level"]: r for r in ev.subgroup_metrics("tumour", y, groups, cols, proba=p, too_few=rule)["site"]}
    assert set(rows) == {"A", "B", "C"}  # nothing dropped
    assert (
        rows["C"]["value"] is None and rows["C"]["ci95"] is None and (rows["C"]["n"], rows["C"]["n_patients"]) == (6, 3)
    )
    assert rows["C"]["too_few"] == (
        f"too few cases: 3 patients with a malignant image, 3 with a non-malignant one (at least {MIN_PATIENTS} of each needed)"
    )
    assert "too_few" not in rows["A"] and "too_few" not in rows["B"]
    # tumour counts patients on each side: 20 patients, all of them benign, are too few for an AUC
    assert too_few_cases("tumour", np.zeros(40), np.repeat(np.arange(20), 2)).startswith("too few cases: 0 patients")
    assert too_few_cases("density", [1] * 9, range(9)) == f"too few cases: 9 patients (at least {MIN_PATIENTS} needed)"
    assert too_few_cases("density", [1] * 10, range(10)) is None
    text = "\n".join(ev.subgroup_table("tumour", {"site": list(rows.values())}))
    assert "| site | C | 6 | 3 | 3 | too few cases: 3 patients" in text
    assert f"| site | A | 80 | 40 | 40 | {rows['A']['value']:.3f} [" in text
    png = ev.plot_subgroups("tumour", {"site": list(rows.values())}, tmp_path / "sub.png", overall=0.7)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dataset_subgroups_from_the_meta_columns():
    import pandas as pd

    from mammo.datasets import Dataset

    meta = pd.DataFrame(
        {
            "Site_ID": ["1", "2", "", "1"],
            "machine_id": ["21", "170", "21", "49"],
            "View": ["CC", "MLO", "CC", "AT"],
            "age": ["49.9", "50", "", "71"],
            "other": list("abcd"),
        }
    )
    ds = Dataset("x", list("abcd"), [1, 2, 3, 4], [0, 1, 0, 1], list("ggkh"), meta)
    sub = ds.subgroups()
    assert list(sub) == ["site", "machine", "view", "age band"]  # no laterality column, "other" is not one
    assert sub["site"].tolist() == ["1", "2", "unknown", "1"]
    assert sub["age band"].tolist() == ["0-49", "50-59", "unknown", "70+"]
    assert {k: v.tolist() for k, v in ds.subgroups([1, 3]).items()}["machine"] == ["170", "49"]
    assert Dataset("y", ["a"], [1], [0], ["g"]).subgroups() == {}
