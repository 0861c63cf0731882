"""``mammo evaluate``: a saved model scored on other labelled data (mammo.evaluate, mammo.evaluation.external).

The model is conftest's fitted texture model (no TensorFlow); the data are small
synthetic layouts written here. Every figure in metrics.json is checked against
scikit-learn on predictions made directly by the model.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, brier_score_loss, cohen_kappa_score, confusion_matrix, roc_auc_score

from mammo import evaluation as ev
from mammo.cli import main as mammo_main
from mammo.datasets import load_dataset
from mammo.evaluate import LabelMismatchError, map_density
from mammo.evaluate_cli import main
from mammo.testing import synthetic_mammogram, write_png

FAST = ["--quiet", "--bootstrap", "200", "--jobs", "1"]
#: what `mammo train` would have stored; distinctive values, so the report can be searched for them
CV_METRICS = {
    "tumour": {
        "candidate": "texture+svm",
        "protocol": "5-fold StratifiedGroupKFold, seed 0",
        "metrics": {
            "n": 48,
            "auc": 0.8123,
            "auc_ci95": [0.7011, 0.9022],
            "sens_at_90spec": 0.4567,
            "balanced_accuracy": 0.7345,
            "brier": 0.1789,
        },
        "folds_summary": {"auc": {"mean": 0.8234, "std": 0.0456}},
        "crop_shift": {"images": 48, "shift_px": 0.5, "p_change_median": 0.0123, "p_change_p90": 0.0456},
        # the training data's subgroups: "south" never occurred there, "old" is not in the evaluated data
        "subgroups": {
            "site": [
                {"level": "north", "n": 40, "n_patients": 20, "metric": "auc", "value": 0.7771, "ci95": [0.61, 0.9]},
                {"level": "old", "n": 8, "n_patients": 4, "metric": "auc", "value": None, "too_few": "too few"},
            ]
        },
    },
    "density": {
        "candidate": "texture+svm",
        "protocol": "5-fold StratifiedGroupKFold, seed 0",
        "metrics": {"n": 48, "qwk": 0.6543, "accuracy": 0.5432, "balanced_accuracy": 0.5321, "macro_f1": 0.5012},
        "folds_summary": {"qwk": {"mean": 0.6412, "std": 0.1102}},
    },
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """8 patients x 2 breasts x 2 views at two sites, plus an unreadable and a refused (blank) image."""
    root = tmp_path_factory.mktemp("local")
    rng = np.random.default_rng(5)
    rows = []
    for p in range(8):
        density = p % 4 + 1
        for side in "LR":
            # one malignant breast in six of the patients, none in two: both classes at every level and site
            tumour = int((side == "L" and p % 2 == 0) or (side == "R" and p % 4 == 1))
            for view in ("CC", "MLO"):
                name = f"p{p}_{side}_{view}.png"
                write_png(
                    synthetic_mammogram(rng, density, tumour, side="left" if side == "L" else "right"), root / name
                )
                rows.append(
                    {
                        "path": name,
                        "patient_id": f"pat{p}",
                        "laterality": side,
                        "view": view,
                        "site": "north" if p < 4 else "south",
                        "age": 45 + 4 * p,
                        "density": density,
                        "tumour": tumour,
                    }
                )
    (root / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((300, 240), np.uint8)).save(root / "black.png")
    for name in ("empty.png", "black.png"):
        rows.append(
            {
                "path": name,
                "patient_id": "pat9",
                "laterality": "L",
                "view": "CC",
                "site": "south",
                "age": 60,
                "density": 2,
                "tumour": 1,
            }
        )
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root / "labels.csv"


@pytest.fixture(scope="module")
def cv_model_path(texture_model, tmp_path_factory):
    """The texture model with the cross-validated figures and training summary `mammo train` stores."""
    model = copy.deepcopy(texture_model)
    model.metadata.update(
        cv_metrics=CV_METRICS,
        pipeline_id="synthetic:density=texture+svm;tumour=texture+svm",
        training_data={"name": "synthetic", "n_images": 48, "n_groups": 48},
    )
    return model.save(tmp_path_factory.mktemp("cvmodel") / "model.joblib")


@pytest.fixture(scope="module")
def evaluated(cv_model_path, manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "out"
    assert main([str(cv_model_path), str(manifest), "--out", str(out), *FAST]) == 0
    return out, json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def direct(texture_model, manifest):
    """The good images of the manifest, their labels and the model's own probabilities for them."""
    table = pd.read_csv(manifest)
    table = table[~table["path"].isin(["empty.png", "black.png"])].reset_index(drop=True)
    paths = [str(manifest.parent / p) for p in table["path"]]
    return table, texture_model.predict_proba(paths)


def test_image_metrics_equal_sklearn_on_the_models_own_predictions(evaluated, direct, texture_model):
    _, m = evaluated
    table, proba = direct
    tum, den = m["tasks"]["tumour"]["measured"]["image"], m["tasks"]["density"]["measured"]["image"]
    y, p = table["tumour"].to_numpy(), proba["tumour"][:, 1]
    assert tum["n"] == len(y) == 32
    assert tum["auc"] == pytest.approx(roc_auc_score(y, p))
    assert tum["brier"] == pytest.approx(brier_score_loss(y, p))
    assert tum["sens_at_90spec"] == pytest.approx(ev.sensitivity_at_specificity(y, p, 0.9))
    assert tum["auc_ci95"][0] <= tum["auc"] <= tum["auc_ci95"][1]
    d = table["density"].to_numpy()
    grades = texture_model.labels("density", proba["density"])
    assert den["qwk"] == pytest.approx(cohen_kappa_score(d, grades, weights="quadratic"))
    assert den["accuracy"] == pytest.approx(accuracy_score(d, grades))
    assert den["confusion_matrix"] == confusion_matrix(d, grades, labels=[1, 2, 3, 4]).tolist()


def test_breast_and_patient_metrics_follow_the_aggregation_rules(evaluated, direct):
    _, m = evaluated
    table, proba = direct
    table = table.assign(p=proba["tumour"][:, 1])
    breast = table.groupby(["patient_id", "laterality"]).agg(p=("p", "mean"), y=("tumour", "max"))
    patient = breast.groupby(level=0).agg(p=("p", "max"), y=("y", "max"))
    measured = m["tasks"]["tumour"]["measured"]
    assert measured["breast"]["n"] == 16 and measured["breast"]["views_per_breast"] == 2
    assert measured["breast"]["auc"] == pytest.approx(roc_auc_score(breast["y"], breast["p"]))
    assert measured["patient"]["n"] == 8
    assert measured["patient"]["auc"] == pytest.approx(roc_auc_score(patient["y"], patient["p"]))
    dens = m["tasks"]["density"]["measured"]["patient"]
    assert dens["n"] == 8 and dens["units_with_disagreeing_labels"] == 0


def test_report_plots_and_predictions_are_written(evaluated):
    out, m = evaluated
    report = (out / "report.md").read_text()
    for png in ("roc_tumour.png", "calibration_tumour.png", "confusion_density.png"):
        assert f"]({png})" in report
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 100
    assert "expected from CV" in report and "measured here, per breast" in report
    pred = pd.read_csv(out / "predictions.csv")
    assert len(pred) == 34 and pred["error"].notna().sum() == 2
    scored = pred[pred["error"].isna()]
    assert (scored["in_distribution"].astype(str).str.lower() == "false").mean() == pytest.approx(m["ood"]["flag_rate"])


def test_expected_column_comes_from_the_artifact(evaluated, texture_model_path, manifest, tmp_path):
    out, m = evaluated
    rows = {r["metric"]: r for r in m["tasks"]["tumour"]["comparison"]}
    assert (
        rows["auc"]["expected"] == 0.8123
        and rows["auc"]["measured"] == m["tasks"]["tumour"]["measured"]["image"]["auc"]
    )
    assert rows["auc"]["expected_folds"] == {"mean": 0.8234, "std": 0.0456}
    assert {r["metric"]: r["expected"] for r in m["tasks"]["density"]["comparison"]}["qwk"] == 0.6543
    report = (out / "report.md").read_text()
    assert "| AUC | 0.812 [0.701, 0.902] | 0.823 ± 0.046 |" in report
    assert "texture+svm under 5-fold StratifiedGroupKFold, seed 0 on synthetic (48 images)" in report
    # a model not saved by `mammo train` has nothing to expect
    plain = tmp_path / "plain"
    assert main([str(texture_model_path), str(manifest), "--out", str(plain), "--task", "tumour", *FAST]) == 0
    mp = json.loads((plain / "metrics.json").read_text())
    assert mp["tasks"]["tumour"]["expected"] is None and mp["tasks"]["tumour"]["comparison"][0]["expected"] is None
    assert "carries no cross-validated figures" in (plain / "report.md").read_text()


def test_crop_shift_is_measured_here_beside_the_models_cv_figure(evaluated, direct, texture_model, manifest):
    out, m = evaluated
    tumour, density = m["tasks"]["tumour"]["crop_shift"], m["tasks"]["density"]["crop_shift"]
    assert m["config"]["shift_check"] == 200
    assert tumour["expected"] == CV_METRICS["tumour"]["crop_shift"] and density["expected"] is None
    # every scored image (fewer than 200 here), each cropped again half a pixel off
    assert tumour["measured"]["images"] == density["measured"]["images"] == m["images"]["n_scored"]
    assert 0.0 <= tumour["measured"]["p_change_median"] <= tumour["measured"]["p_change_p90"] <= 1.0
    assert 0.0 <= density["measured"]["grades_unchanged"] <= 1.0
    # the same figure from the model's own predictions with its crop step shifted
    from dataclasses import replace

    from sklearn.pipeline import Pipeline

    from mammo.evaluation import answer_change
    from mammo.features.region import ShiftedBreastCropper

    table, proba = direct
    paths = [str(manifest.parent / p) for p in table["path"]]
    pipes = {  # written out here rather than with with_shifted_crop, which the check uses
        t: Pipeline([(k, ShiftedBreastCropper(**s.get_params()) if k == "crop" else s) for k, s in p.steps])
        for t, p in texture_model.pipelines.items()
    }
    moved = replace(texture_model, pipelines=pipes).predict_proba(paths)
    want = answer_change("tumour", proba["tumour"][:, 1], moved["tumour"][:, 1], 0.5)
    assert tumour["measured"]["p_change_median"] == pytest.approx(want["p_change_median"], abs=1e-6)
    report = (out / "report.md").read_text()
    assert "Crop-shift check: " in report and "(expected from CV: P(malignant) moved by a median 0.012" in report
    assert "no cross-validated figure in the model" in report  # density


def test_subgroups_with_too_few_patients_are_listed_not_dropped(evaluated):
    out, m = evaluated
    sub = m["tasks"]["tumour"]["subgroups"]
    assert set(sub) == {"site", "view", "laterality", "age band"}
    sites = {r["level"]: r for r in sub["site"]}
    assert set(sites) == {"north", "south"} and sum(r["n"] for r in sites.values()) == 32
    # 4 patients per site, fewer than MIN_PATIENTS: counted and named, not scored
    north = sites["north"]
    assert (north["n"], north["n_patients"], north["n_pos"]) == (16, 4, 6)
    assert north["value"] is None and north["ci95"] is None and north["too_few"].startswith("too few cases")
    assert all(r["too_few"] for rows in sub.values() for r in rows)
    assert {r["level"] for r in sub["age band"]} == {"0-49", "50-59", "60-69", "70+"}
    report = (out / "report.md").read_text()
    assert (
        "| site | north | 16 | 4 | 6 | too few cases: 3 patients with a malignant image, 4 with a non-malignant"
        in report
    )
    assert (out / "subgroups_tumour.png").stat().st_size > 1000 and "![subgroups_tumour]" in report


def test_subgroups_stand_beside_the_models_own_cv_subgroups(evaluated):
    out, m = evaluated
    sites = {r["level"]: r for r in m["tasks"]["tumour"]["subgroups"]["site"]}
    assert sites["north"]["expected"] == {"n": 40, "value": 0.7771, "ci95": [0.61, 0.9], "too_few": None}
    assert sites["south"]["expected"] is None  # the training data had no such level
    assert "old" not in sites  # a level only the training data had is not invented here
    assert all(r["expected"] is None for r in m["tasks"]["tumour"]["subgroups"]["view"])  # CV had no view column
    assert all("expected" not in r for rows in m["tasks"]["density"]["subgroups"].values() for r in rows)
    report = (out / "report.md").read_text()
    tumour = report[report.index("## tumour") :]
    assert "expected from CV: AUC [95% CI] (images)" in tumour
    assert "| site | north | 16 | 4 | 6 | too few cases" in tumour and "| 0.777 [0.610, 0.900] (40) |" in tumour
    density = report[report.index("## density") : report.index("## tumour")]
    assert "expected from CV: QWK" not in density


def test_subgroup_values_equal_sklearn_on_the_models_predictions(
    cv_model_path, manifest, direct, texture_model, tmp_path, monkeypatch
):
    import mammo.datasets.subgroups

    monkeypatch.setattr(mammo.datasets.subgroups, "MIN_PATIENTS", 2)  # the fixture's 4 patients per site count
    out = tmp_path / "out"
    assert main([str(cv_model_path), str(manifest), "--out", str(out), *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())
    table, proba = direct
    sites = {r["level"]: r for r in m["tasks"]["tumour"]["subgroups"]["site"]}
    north = (table["site"] == "north").to_numpy()
    assert sites["north"]["value"] == pytest.approx(roc_auc_score(table["tumour"][north], proba["tumour"][north, 1]))
    south = {r["level"]: r for r in m["tasks"]["density"]["subgroups"]["site"]}["south"]
    grades = texture_model.labels("density", proba["density"][~north])
    assert south["metric"] == "qwk" and south["n"] == 16 and "too_few" not in south
    assert south["value"] == pytest.approx(cohen_kappa_score(table["density"][~north], grades, weights="quadratic"))
    assert south["accuracy"] == pytest.approx(accuracy_score(table["density"][~north], grades))


def test_refused_and_unreadable_images_are_listed_not_fatal(evaluated):
    out, m = evaluated
    images = m["images"]
    assert images["n_labelled"] == 34 and images["n_scored"] == 32
    assert [p.rsplit("/", 1)[-1] for p in images["refused"]] == ["black.png"]
    assert "ImplausibleImageError" in next(iter(images["refused"].values()))
    assert [p.rsplit("/", 1)[-1] for p in images["unreadable"]] == ["empty.png"]
    report = (out / "report.md").read_text()
    assert "2 of 34 labelled images were left out: 1 refused" in report and "empty.png" in report


def make_mias(root):
    """A mini-MIAS layout: 12 images of 6 patients, F/G/D background tissue, benign/malignant or normal."""
    root.mkdir()
    rng = np.random.default_rng(2)
    lines = []
    for n in range(1, 13):
        bg = "FGD"[n % 3]
        tumour = None if n % 4 == 0 else n % 2
        lines.append(f"mdb{n:03d} {bg} NORM" if tumour is None else f"mdb{n:03d} {bg} CIRC {'BM'[tumour]} 100 100 20")
        write_png(
            synthetic_mammogram(rng, "FGD".index(bg) + 1, tumour or 0, side="left" if n % 2 == 0 else "right"),
            root / f"mdb{n:03d}.png",
        )
    (root / "Info.txt").write_text("\n".join(lines) + "\n")
    return root


def _exit_code(args, capsys) -> tuple[int, str]:
    """Exit status and stderr of ``mammo evaluate ARGS`` (expected failures: one line, status 2)."""
    try:
        code = mammo_main(["evaluate", *[str(a) for a in args]])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_density_on_another_scale_is_refused_unless_mapped(texture_model, texture_model_path, tmp_path, capsys):
    mias = make_mias(tmp_path / "mias")
    code, err = _exit_code([texture_model_path, mias, *FAST], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "F - fatty" in err and "A - almost entirely fatty" in err and "--map-density F=1,G=2,D=3" in err
    assert _exit_code([texture_model_path, mias, "--task", "density", *FAST], capsys)[0] == 2
    with pytest.raises(LabelMismatchError):
        map_density(texture_model, load_dataset(mias))
    # tumour (B/M) means the same on both: scored normally
    out = tmp_path / "tumour"
    assert main([str(texture_model_path), str(mias), "--task", "tumour", "--out", str(out), *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["tasks"]) == ["tumour"] and m["tasks"]["tumour"]["n_images"] == 9
    # the explicit mapping: D (3) onto 4, every class present mapped
    out = tmp_path / "mapped"
    assert main([str(texture_model_path), str(mias), "--map-density", "F=1,G=2,D=4", "--out", str(out), *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["density_map"] == {"F (1)": 1, "G (2)": 2, "D (3)": 4}
    assert m["tasks"]["density"]["class_counts"] == {"1": 4, "2": 4, "4": 4}
    assert "Density labels mapped onto the model's classes" in (out / "report.md").read_text()
    for bad, says in (
        ("F=1,G=2", "not mapped"),
        ("F=1,G=2,D=9", "not a model density class"),
        ("F=1,X=2,D=3", "not a data density class"),
        ("F=1,F=2,G=2,D=3", "mapped twice"),
    ):
        code, err = _exit_code(
            [texture_model_path, mias, "--map-density", bad, "--out", tmp_path / "bad", *FAST], capsys
        )
        assert code == 2 and says in err


def test_usage_errors_exit_2_with_one_line(texture_model_path, manifest, tmp_path, capsys):
    not_a_model = tmp_path / "model.joblib"
    not_a_model.write_text("not a model")
    tumour_only = tmp_path / "tumour.csv"
    table = pd.read_csv(manifest).drop(columns="density")
    table.assign(path=[str(manifest.parent / p) for p in table["path"]]).to_csv(tumour_only, index=False)
    for args, says in (
        ([tmp_path / "none.joblib", manifest], "model file not found"),
        ([not_a_model, manifest], "not a readable model file"),
        ([texture_model_path, tmp_path / "nowhere"], "no such file or folder"),
        ([texture_model_path, tumour_only, "--task", "both"], "has no density labels"),
    ):
        code, err = _exit_code([*args, "--out", tmp_path / "out", "--quiet"], capsys)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1
    # a bad argument: argparse's usage, then one error line
    code, err = _exit_code([texture_model_path, manifest, "--bootstrap", "0", "--out", tmp_path / "out"], capsys)
    assert code == 2 and err.strip().splitlines()[-1] == "mammo evaluate: error: --bootstrap must be at least 1"
    code, err = _exit_code([texture_model_path, manifest, "--shift-check", "-1", "--out", tmp_path / "out"], capsys)
    assert code == 2 and err.strip().splitlines()[-1] == "mammo evaluate: error: --shift-check must be 0 or more"
    assert not (tmp_path / "out").exists()


def test_dispatch_help_and_a_fresh_process(texture_model_path, manifest, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        mammo_main(["evaluate", "--help"])
    assert exc.value.code == 0 and "--map-density" in capsys.readouterr().out
    out = tmp_path / "cli"
    assert (
        mammo_main(["evaluate", str(texture_model_path), str(manifest), "--task", "tumour", "--out", str(out), *FAST])
        == 0
    )
    assert "32 images scored, 2 left out" in capsys.readouterr().err
    proc = subprocess.run(
        [sys.executable, "-m", "mammo.cli", "evaluate", str(texture_model_path), str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "no such file" in proc.stderr


def test_unit_rules_on_known_numbers():
    y = np.array([1, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.5, 0.2, 0.4, 0.3, 0.1])
    breasts = np.array(["a|L", "a|L", "a|R", "a|R", "b|L", "b|R"])
    groups = np.array(["a", "a", "a", "a", "b", "b"])
    out = ev.score_tumour(y, p, 0.5, groups, breasts, n_boot=20)
    # breasts: a|L 0.7 (1), a|R 0.3 (0), b|L 0.3, b|R 0.1; patients: a max 0.7 (1), b max 0.3 (0)
    assert out["breast"]["n"] == 4 and out["breast"]["auc"] == 1.0
    assert (
        out["patient"]["n"] == 2
        and out["patient"]["n_pos"] == 1
        and out["patient"]["brier"] == pytest.approx(((0.7 - 1) ** 2 + 0.3**2) / 2)
    )
    ids, first, means, n = ev.unit_means(np.column_stack([p, 1 - p]), breasts)
    assert ids.tolist() == ["a|L", "a|R", "b|L", "b|R"] and first.tolist() == [0, 2, 4, 5]
    np.testing.assert_allclose(means[:, 0], [0.7, 0.3, 0.3, 0.1])
    assert n.tolist() == [2, 2, 1, 1]
    # density: a patient whose images disagree on the grade is left out and counted
    d = np.array([1, 1, 2, 3, 4, 4])
    proba = np.eye(4)[d - 1]
    dens = ev.score_density(
        d, proba, [1, 2, 3, 4], lambda q: np.argmax(q, axis=1) + 1, np.array(["a", "a", "b", "b", "c", "c"]), n_boot=20
    )
    assert dens["patient"]["n"] == 2 and dens["patient"]["units_with_disagreeing_labels"] == 1
    assert dens["patient"]["accuracy"] == 1.0 and "breast" not in dens


def test_fast_qwk_is_sklearns_quadratic_kappa():
    rng = np.random.default_rng(3)
    for classes in ([1, 2, 3, 4], [1, 2, 3], [4, 2, 3, 1]):
        y = rng.choice(classes, 200)
        pred = np.clip(y + rng.integers(-1, 2, 200), min(classes), max(classes))
        assert ev.fast_qwk(y, pred, classes) == pytest.approx(
            cohen_kappa_score(y, pred, labels=sorted(classes), weights="quadratic")
        )
    assert np.isnan(ev.fast_qwk(np.ones(5, int), np.ones(5, int), [1, 2, 3, 4]))
