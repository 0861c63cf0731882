"""``mammo recalibrate``: only the calibration, the tumour threshold and the density cut points change.

The model is conftest's texture model (no TensorFlow); the new site's sample is a small
synthetic manifest of other images, written here, with patients of two images each. The
method's arithmetic is also checked on plain arrays, where the miscalibration is known.
"""

from __future__ import annotations

import copy
import inspect
import json

import joblib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from mammo import recalibrate as rc
from mammo.classifiers import OrdinalClassifier, load_model
from mammo.classifiers.estimators import expected_grade, fit_cut_points
from mammo.classifiers.pipelines import split_pipeline
from mammo.cli import main as mammo_main
from mammo.datasets import MIAS_DENSITY_CLASSES, load_dataset
from mammo.evaluate import LabelMismatchError
from mammo.recalibrate_cli import build_parser, main, recalibrate_model, sample_features
from mammo.storage import file_sha256
from mammo.testing import synthetic_mammogram

FAST = ["--quiet", "--bootstrap", "50", "--folds", "3", "--min-cases", "6"]
OPTIONS = {"n_folds": 3, "min_cases": 6, "n_boot": 50, "progress": False}


def _manifest(root, n_patients=18, seed=11, tumour=lambda p: int(p % 3 == 0), density=lambda p: p % 4 + 1):
    """``n_patients`` x 2 images (L and R breast, one view); brighter than the training images (another site)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(n_patients):
        for side in "LR":
            img = synthetic_mammogram(rng, density(p), tumour(p), side="left" if side == "L" else "right")
            name = f"s{p}_{side}.png"
            Image.fromarray((np.clip(img * 0.8 + 0.15, 0, 1) * 255).astype(np.uint8)).save(root / name)
            rows.append(
                {"path": name, "patient_id": f"p{p}", "laterality": side, "density": density(p), "tumour": tumour(p)}
            )
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root / "labels.csv"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return _manifest(tmp_path_factory.mktemp("site2") / "images")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("featcache")


@pytest.fixture(scope="module")
def recalibrated(texture_model, texture_model_path, sample, cache_dir):
    before = joblib.hash(texture_model)
    new, record, curves = recalibrate_model(
        texture_model, sample, cache_dir=cache_dir, model_path=texture_model_path, **OPTIONS
    )
    assert joblib.hash(texture_model) == before  # the original model is left as it was
    return new, record, curves


@pytest.fixture(scope="module")
def features(texture_model, sample, cache_dir):
    ds = load_dataset(sample)
    _, feats, refused, _ = sample_features(texture_model, ds, ["density", "tumour"], cache_dir=cache_dir, progress=0)
    assert not refused
    return ds, feats


def _tail_input(model, task, X):
    pre = split_pipeline(model.pipelines[task])[1][:-1]
    return Pipeline(pre).transform(X)


def test_features_and_raw_scores_are_bit_identical(texture_model, recalibrated, features, tmp_path):
    new, _, _ = recalibrated
    reloaded = load_model(new.save(tmp_path / "new.joblib"))
    ds, feats = features
    for task in ("density", "tumour"):
        for model in (new, reloaded):
            direct = model.transform(ds.paths[:6])[task]
            assert np.array_equal(direct, texture_model.transform(ds.paths[:6])[task])
            Xt = _tail_input(model, task, feats[task])
            assert np.array_equal(Xt, _tail_input(texture_model, task, feats[task]))
            old_clf, new_clf = texture_model.pipelines[task].steps[-1][1], model.pipelines[task].steps[-1][1]
            for a, b in zip(rc.raw_scores(old_clf, Xt), rc.raw_scores(new_clf, Xt)):
                assert np.array_equal(a, b)  # uncalibrated decision scores: bit for bit
            for p, q in zip(rc.problems(old_clf), rc.problems(new_clf)):
                for m, n in zip(p.calibrated_classifiers_, q.calibrated_classifiers_):
                    assert joblib.hash(m.estimator) == joblib.hash(n.estimator)  # the fitted classifier itself
        # ... while the calibrated probabilities did change
        Xt = _tail_input(new, task, feats[task])
        assert not np.allclose(
            texture_model.pipelines[task].steps[-1][1].predict_proba(Xt),
            new.pipelines[task].steps[-1][1].predict_proba(Xt),
        )


def test_only_the_calibration_changes(texture_model, recalibrated):
    new, _, _ = recalibrated
    for task in ("density", "tumour"):
        old_pipe, new_pipe = texture_model.pipelines[task], new.pipelines[task]
        assert [n for n, _ in old_pipe.steps] == [n for n, _ in new_pipe.steps]
        for (_, a), (_, b) in zip(old_pipe.steps[:-1], new_pipe.steps[:-1]):
            assert a is b  # scaling, PCA and every image step: the same fitted objects
        old_clf, new_clf = old_pipe.steps[-1][1], new_pipe.steps[-1][1]
        assert type(old_clf) is type(new_clf) and old_clf.classes_.tolist() == new_clf.classes_.tolist()
        for p, q in zip(rc.problems(old_clf), rc.problems(new_clf)):
            assert len(p.calibrated_classifiers_) == len(q.calibrated_classifiers_) == 3
            for m, n in zip(p.calibrated_classifiers_, q.calibrated_classifiers_):
                assert m.estimator is n.estimator
                assert type(m.calibrators[0]) is type(n.calibrators[0])
                assert (m.calibrators[0].a_, m.calibrators[0].b_) != (n.calibrators[0].a_, n.calibrators[0].b_)
    assert new.ood is texture_model.ood


def test_calibrators_threshold_and_cut_points_are_refitted_on_the_sample(texture_model, recalibrated, features):
    new, record, _ = recalibrated
    ds, feats = features
    y = {"tumour": ds.tumour.astype(int), "density": ds.density.astype(int)}
    for task in ("density", "tumour"):
        old_clf, new_clf = texture_model.pipelines[task].steps[-1][1], new.pipelines[task].steps[-1][1]
        Xt = _tail_input(texture_model, task, feats[task])
        targets = [(y[task] > c).astype(int) for c in old_clf.classes_[:-1]] if task == "density" else [y[task]]
        for p, q, s, t in zip(rc.problems(old_clf), rc.problems(new_clf), rc.raw_scores(old_clf, Xt), targets):
            for j, (m, n) in enumerate(zip(p.calibrated_classifiers_, q.calibrated_classifiers_)):
                expected = clone(m.calibrators[0]).fit(s[:, j], t)
                assert (n.calibrators[0].a_, n.calibrators[0].b_) == (expected.a_, expected.b_)
                # the scores are those scikit-learn's own member calibrates
                assert np.allclose(m.calibrators[0].predict(s[:, j]), m.predict_proba(Xt)[:, 1])
    assert new.threshold == pytest.approx(np.mean(y["tumour"] == 1)) != texture_model.threshold
    assert texture_model.threshold == 0.5  # left alone
    clf = new.pipelines["density"].steps[-1][1]
    grade = expected_grade(clf.predict_proba(_tail_input(new, "density", feats["density"])))
    assert np.allclose(clf.cut_points_, fit_cut_points(grade, y["density"] - 1, 4))
    assert record["tasks"]["density"]["cut_points"]["after"] == pytest.approx([c + 1 for c in clf.cut_points_])


def test_calibrated_proba_is_the_installed_classifiers_predict_proba(texture_model, recalibrated, features):
    new, _, _ = recalibrated
    _, feats = features
    for task in ("density", "tumour"):
        Xt = _tail_input(new, task, feats[task])
        for model in (texture_model, new):
            clf = model.pipelines[task].steps[-1][1]
            cals = [[m.calibrators[0] for m in p.calibrated_classifiers_] for p in rc.problems(clf)]
            mine = rc.calibrated_proba(cals, rc.raw_scores(clf, Xt), ordinal=task == "density")
            assert np.allclose(mine, clf.predict_proba(Xt), atol=1e-12, rtol=0)


def test_the_new_artifact_records_what_it_was_recalibrated_on(texture_model_path, recalibrated, sample):
    new, record, _ = recalibrated
    stored = new.metadata["recalibration"]
    assert stored["data"]["path"] == str(sample.resolve())
    assert stored["data"]["label_file_sha256"] == file_sha256(sample)
    assert stored["data"]["n_images"] == 36 and stored["data"]["n_patients"] == 18
    assert len(stored["data"]["images_sha256"]) == 64
    assert stored["source_model"] == {"path": str(texture_model_path), "sha256": file_sha256(texture_model_path)}
    assert stored["date"].endswith("UTC") and stored["not_recalibrated"] == []
    tumour = stored["tasks"]["tumour"]
    assert tumour["threshold"] == {"before": 0.5, "after": new.threshold, "rule": rc.THRESHOLD_RULE}
    assert tumour["n_images"] == 36 and tumour["class_counts"] == {"0": 24, "1": 12}
    assert tumour["calibrators_refitted"] == 3 and stored["tasks"]["density"]["calibrators_refitted"] == 9
    for key in ("brier", "ece", "sensitivity", "specificity", "auc"):
        assert key in tumour["cv"]["before"] and key in tumour["cv"]["after"] and key in tumour["cv"]["difference"]
    assert len(tumour["cv"]["difference"]["brier_ci95"]) == 2
    assert json.loads(json.dumps(stored)) == stored  # plain JSON: the model card can show it


def test_cv_effect_is_out_of_fold_and_grouped(texture_model, recalibrated, features):
    _, record, curves = recalibrated
    ds, _ = features
    folds = record["tasks"]["tumour"]["cv"]["folds"]
    assert len(folds) == 3 and sum(f["n_test"] for f in folds) == 36
    c = curves["tumour"]
    # before: the stored model's own predictions of the sample
    assert np.allclose(c["before"], texture_model.predict_proba(ds.paths)["tumour"])
    assert record["tasks"]["tumour"]["cv"]["before"]["brier"] == pytest.approx(
        np.mean((c["before"][:, 1] - c["y"]) ** 2)
    )
    assert record["tasks"]["tumour"]["cv"]["after"]["brier"] == pytest.approx(np.mean((c["after"][:, 1] - c["y"]) ** 2))


def test_recalibration_corrects_a_known_shift_on_arrays():
    """A logistic model trained at prevalence 0.5, applied where the log-odds are shifted by -2 and halved."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 1))
    y_train = (rng.random(600) < 1 / (1 + np.exp(-2 * x[:, 0]))).astype(int)
    clf = CalibratedClassifierCV(LogisticRegression(), method="sigmoid", cv=3).fit(x, y_train)
    x_new = rng.normal(size=(900, 1))
    y_new = (rng.random(900) < 1 / (1 + np.exp(-(x_new[:, 0] - 2)))).astype(int)
    groups = np.arange(900) // 3
    scores = rc.raw_scores(clf, x_new)
    before = clf.predict_proba(x_new)
    pred = (before[:, 1] >= 0.5).astype(int)
    effect = rc.cross_validated_effect("tumour", clf, scores, before, pred, y_new, groups, n_folds=5, n_boot=100)
    assert effect["after"]["brier"] < effect["before"]["brier"] - 0.02
    assert effect["after"]["ece"] < effect["before"]["ece"] / 2
    assert effect["difference"]["brier_ci95"][1] < 0  # the gain is not a resampling accident
    assert effect["after"]["auc"] == pytest.approx(effect["before"]["auc"], abs=0.01)  # ranking kept
    calibration = rc.fit_calibration("tumour", clf, scores, y_new)
    assert calibration.threshold == pytest.approx(y_new.mean())
    ratios = rc.slope_ratios(clf, calibration)
    assert all(0.3 < r < 0.8 for r in ratios[0])  # the log-odds slope was halved
    new = rc.install(clf, calibration)
    assert np.allclose(new.predict_proba(x_new), rc.calibrated_proba(calibration.calibrators, scores, ordinal=False))
    assert np.mean(new.predict_proba(x_new)[:, 1]) == pytest.approx(y_new.mean(), abs=0.02)
    assert clf.predict_proba(x_new) == pytest.approx(before)  # the original keeps its calibration


def test_argmax_density_stays_argmax():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 2))
    y = np.clip(np.round(x[:, 0] + 2.5), 1, 4).astype(int)
    clf = OrdinalClassifier(CalibratedClassifierCV(LogisticRegression(), cv=3), decision="argmax").fit(x, y)
    calibration = rc.fit_calibration("density", clf, rc.raw_scores(clf, x), y)
    assert calibration.cut_points is None and rc.install(clf, calibration).cut_points_ is None


def test_isotonic_calibrators_are_refitted_too():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 1))
    y = (x[:, 0] + rng.normal(size=500) > 0.5).astype(int)
    clf = CalibratedClassifierCV(LogisticRegression(), method="isotonic", cv=3).fit(x[:250], y[:250])
    scores = rc.raw_scores(clf, x[250:])
    calibration = rc.fit_calibration("tumour", clf, scores, y[250:])
    new = rc.install(clf, calibration)
    assert rc.slope_ratios(clf, calibration) is None  # no slope to compare
    assert np.allclose(new.predict_proba(x[250:]), rc.calibrated_proba(calibration.calibrators, scores, ordinal=False))
    assert not np.allclose(new.predict_proba(x[250:]), clf.predict_proba(x[250:]))


def test_a_reversed_ranking_is_flagged():
    """Where the classes are swapped, the refitted slopes turn negative and the record says so."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, 1))
    y = (x[:, 0] + rng.normal(size=600) > 0).astype(int)
    clf = CalibratedClassifierCV(LogisticRegression(), cv=3).fit(x, y)
    scores = rc.raw_scores(clf, x)
    names = rc.problem_names(clf)
    assert names == ["class 1"]
    assert rc.ranking_warning(rc.slope_ratios(clf, rc.fit_calibration("tumour", clf, scores, y)), names) is None
    ratios = rc.slope_ratios(clf, rc.fit_calibration("tumour", clf, scores, 1 - y))
    warning = rc.ranking_warning(ratios, names)
    assert max(ratios[0]) < 0 and "wrong way round" in warning and "class 1 member 3" in warning


# --------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def cli_run(texture_model_path, sample, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("recal") / "new" / "model.joblib"
    code = main([str(texture_model_path), str(sample), "--out", str(out), "--cache-dir", str(cache_dir), *FAST])
    assert code == 0
    return out


def test_cli_writes_the_model_and_its_report(cli_run, texture_model_path):
    folder = cli_run.parent
    assert (folder / "model.joblib.manifest.json").is_file()
    for name in ("recalibration.md", "recalibration.json", "recalibration_tumour.png", "recalibration_density.png"):
        assert (folder / name).is_file(), name
    report = (folder / "recalibration.md").read_text()
    assert "Brier score" in report and "specificity at the threshold" in report and "QWK" in report
    model = load_model(cli_run, manifest=str(cli_run) + ".manifest.json")
    assert model.metadata["recalibration"]["source_model"]["path"] == str(texture_model_path)
    assert json.loads((folder / "recalibration.json").read_text())["tasks"].keys() == {"density", "tumour"}


def test_evaluate_predict_and_the_web_app_read_a_recalibrated_model(cli_run, sample, tmp_path, capsys):
    from mammo.evaluate_cli import main as evaluate_main
    from mammo.predict import main as predict_main

    model = load_model(cli_run)
    out = tmp_path / "eval"
    assert evaluate_main([str(cli_run), str(sample), "--out", str(out), "--quiet", "--bootstrap", "20"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tasks"]["tumour"]["threshold"] == model.threshold
    images = sorted(str(p) for p in sample.parent.glob("*.png"))[:3]
    assert predict_main([*images, "--model", str(cli_run), "--out", str(tmp_path / "p.csv"), "--quiet"]) == 0
    table = pd.read_csv(tmp_path / "p.csv")
    expected = model.predict_proba(images)["tumour"][:, 1]
    assert np.allclose(table.sort_values("file")["p_malignant"].to_numpy(), expected, atol=1e-5)
    assert np.allclose(table["tumour_threshold"], model.threshold, atol=1e-6)
    pytest.importorskip("flask_wtf")
    from mammo.webapp import create_app

    client = create_app({"MAMMO_MODEL": str(cli_run), "TESTING": True}).test_client()
    with open(images[0], "rb") as fh:
        resp = client.post("/api/predict", data={"file": (fh, "a.png")}, content_type="multipart/form-data")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["tumour"]["threshold"] == pytest.approx(model.threshold)


def test_recalibrating_twice_keeps_the_history(cli_run, sample, cache_dir, tmp_path):
    again = tmp_path / "again.joblib"
    assert main([str(cli_run), str(sample), "--out", str(again), "--cache-dir", str(cache_dir), *FAST]) == 0
    meta = load_model(again).metadata
    assert len(meta["recalibration_history"]) == 1
    assert meta["recalibration"]["source_model"]["path"] == str(cli_run)


def _error(argv, capsys) -> str:
    assert mammo_main(["recalibrate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_clear_errors(texture_model, texture_model_path, sample, cache_dir, tmp_path, capsys):
    common = ["--out", str(tmp_path / "new.joblib"), "--cache-dir", str(cache_dir), *FAST]
    one_class = _manifest(tmp_path / "one", n_patients=6, tumour=lambda p: 0)
    err = _error([str(texture_model_path), str(one_class), "--task", "tumour", *common], capsys)
    assert "mammo recalibrate: error: tumour: every labelled image of the sample is class 0" in err
    few = _manifest(tmp_path / "few", n_patients=12, tumour=lambda p: int(p == 0))
    err = _error([str(texture_model_path), str(few), "--task", "tumour", *common], capsys)
    assert "too few cases" in err and "2 images of 1 patient(s) are class 1 (Malignant)" in err
    err = _error([str(texture_model_path), str(sample), *common, "--min-cases", "100"], capsys)
    assert "--min-cases" in err
    err = _error([str(tmp_path / "missing.joblib"), str(sample), *common], capsys)
    assert "model file not found" in err
    # density on another scale (the model grades mini-MIAS tissue F/G/D, the sample BI-RADS)
    mias = copy.deepcopy(texture_model)
    mias.metadata["tasks"]["density"]["class_meanings"] = {str(c): m for c, m in MIAS_DENSITY_CLASSES.items()} | {
        "4": "X - other"
    }
    path = mias.save(tmp_path / "mias.joblib")
    err = _error([str(path), str(sample), "--task", "density", *common], capsys)
    assert "density labels do not match" in err and "--map-density" in err
    with pytest.raises(LabelMismatchError):
        recalibrate_model(mias, sample, task="density", cache_dir=cache_dir, **OPTIONS)
    with pytest.raises(SystemExit) as exc:
        main([str(texture_model_path), str(sample), "--out", str(texture_model_path)])
    assert exc.value.code == 2 and "--out must name a new file" in capsys.readouterr().err


def test_dispatch_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        mammo_main(["recalibrate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "calibration" in out and "--out NEW" in out
    assert mammo_main(["--help"]) == 0 and "recalibrate" in capsys.readouterr().out


def test_each_option_sets_the_recalibrate_model_keyword_of_its_dest():
    args = vars(build_parser().parse_args(["m.joblib", "sample.csv", "--out", "new.joblib"]))
    keywords = inspect.signature(recalibrate_model).parameters
    handled_by_main = {"model", "data", "out", "report", "manifest"}
    assert set(args) - handled_by_main <= set(keywords) - {"model", "data", "model_path"}
    # the command line's defaults are the library's
    assert all(args[k] == keywords[k].default for k in set(args) - handled_by_main)
