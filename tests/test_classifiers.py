"""Meta-estimators, task pipelines and the two-task model artifact."""

from __future__ import annotations

import json
import subprocess
import sys

import joblib
import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from mammo.classifiers import (
    ArtifactIntegrityError,
    CappedPCA,
    ClassWeighted,
    MammogramModel,
    OrdinalClassifier,
    load_model,
    make_classifier,
    make_task_pipeline,
)
from mammo.classifiers.estimators import expected_grade, fit_cut_points, quadratic_kappa
from mammo.features.region import BreastCropper


@parametrize_with_checks(
    [
        ClassWeighted(LogisticRegression()),
        OrdinalClassifier(LogisticRegression()),
        OrdinalClassifier(CalibratedClassifierCV(LogisticRegression(), cv=2), decision="qwk"),
        CappedPCA(max_components=3),
    ],
    expected_failed_checks=lambda est: (
        # by design: the grade comes from cut points on the expected grade, not the most probable class
        {"check_classifiers_train": "predict is not argmax(predict_proba) with decision='qwk'"}
        if getattr(est, "decision", None) == "qwk"
        else {}
    ),
    xfail_strict=True,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_class_weighted_balances(rng):
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] + 0.5 * rng.normal(size=400) > 1.3).astype(int)  # ~10% positives
    plain = LogisticRegression().fit(X, y).predict(X).mean()
    balanced = ClassWeighted(LogisticRegression()).fit(X, y).predict(X).mean()
    assert balanced > 1.5 * plain


def test_ordinal_probabilities_are_coherent(rng):
    z = rng.normal(size=600)
    X = np.column_stack([z + 0.3 * rng.normal(size=600), rng.normal(size=600)])
    y = np.digitize(z, [-0.8, 0, 0.8]) + 1
    est = OrdinalClassifier(LogisticRegression()).fit(X, y)
    p = est.predict_proba(X)
    assert p.shape == (600, 4) and np.allclose(p.sum(axis=1), 1) and (p >= 0).all()
    assert list(est.classes_) == [1, 2, 3, 4]
    assert (est.predict(X) == y).mean() > 0.6
    # Ordinal: the expected class rises with the latent score.
    expected = p @ est.classes_
    assert np.corrcoef(expected, z)[0, 1] > 0.85


@pytest.mark.parametrize("k", [2, 3, 4])
def test_quadratic_kappa_matches_sklearn(rng, k):
    for _ in range(20):
        y, pred = rng.integers(0, k, 200), rng.integers(0, k, 200)
        pred[:120] = y[:120]  # some agreement
        assert quadratic_kappa(y, pred, k) == pytest.approx(cohen_kappa_score(y, pred, weights="quadratic"))


def _compressed_ordinal(rng, n):
    """Latent grade, and features whose calibrated probabilities lean to the middle classes."""
    z = rng.normal(size=n)
    X = np.column_stack([z + 0.9 * rng.normal(size=n), rng.normal(size=(n, 2))])
    return X, np.digitize(z, [-1.2, 0, 1.2]) + 1


def test_cut_points_beat_the_midpoints_and_stay_ordered(rng):
    X, y = _compressed_ordinal(rng, 1500)
    score = X[:, 0] * 0.4 + 1.5  # a shrunken expected grade: midpoints rarely predict 0 or 3
    rank = y - 1
    cuts = fit_cut_points(score, rank, 4)
    assert cuts.shape == (3,) and np.all(np.diff(cuts) > 0)
    midpoints = quadratic_kappa(rank, np.searchsorted(np.arange(3) + 0.5, score), 4)
    assert quadratic_kappa(rank, np.searchsorted(cuts, score), 4) > midpoints + 0.05


def test_ordinal_qwk_decision_uses_held_out_predictions(rng, monkeypatch):
    X, y = _compressed_ordinal(rng, 1600)
    train, test = np.arange(800), np.arange(800, 1600)
    groups = np.repeat(np.arange(200), 4)  # four related samples per group
    splits = [(np.flatnonzero(groups % 3 != i), np.flatnonzero(groups % 3 == i)) for i in range(3)]
    seen = {}
    real_fit = fit_cut_points

    def spy(score, rank, k, **kw):
        seen["score"], seen["rank"] = score, rank
        return real_fit(score, rank, k, **kw)

    monkeypatch.setattr("mammo.classifiers.estimators.fit_cut_points", spy)
    est = OrdinalClassifier(CalibratedClassifierCV(LogisticRegression(), cv=splits), decision="qwk")
    est.fit(X[train], y[train])
    # Each sample's score comes from the calibrated models that did NOT see it (split i's pair).
    for i, (_, te) in enumerate(splits):
        above = np.column_stack([e.calibrated_classifiers_[i].predict_proba(X[te])[:, 1] for e in est.estimators_])
        above = np.minimum.accumulate(above, axis=1)
        cum = np.hstack([np.ones((len(te), 1)), above, np.zeros((len(te), 1))])
        assert np.allclose(seen["score"][te], expected_grade(cum[:, :-1] - cum[:, 1:]))
        assert np.array_equal(seen["rank"][te], y[te] - 1)
    in_sample = expected_grade(est.predict_proba(X[train]))
    assert not np.allclose(seen["score"], in_sample)
    assert est.cut_points_.shape == (3,) and np.all(np.diff(est.cut_points_) > 0)
    assert np.array_equal(est.predict(X[test]), est.decide(est.predict_proba(X[test])))
    plain = OrdinalClassifier(CalibratedClassifierCV(LogisticRegression(), cv=splits)).fit(X[train], y[train])
    assert plain.cut_points_ is None
    qwk = cohen_kappa_score(y[test], est.predict(X[test]), weights="quadratic")
    assert qwk > cohen_kappa_score(y[test], plain.predict(X[test]), weights="quadratic") + 0.02
    # Same probabilities: only the decision rule differs.
    assert np.allclose(est.predict_proba(X[test]), plain.predict_proba(X[test]))
    # At most max_cut_samples held-out predictions fit the cut points, from every fold.
    OrdinalClassifier(CalibratedClassifierCV(LogisticRegression(), cv=splits), decision="qwk", max_cut_samples=100).fit(
        X[train], y[train]
    )
    assert 90 <= len(seen["score"]) <= 100
    assert np.bincount(seen["rank"], minlength=4).min() > 0


def test_ordinal_classifier_pickled_before_cut_points_still_predicts_argmax(rng):
    X, y = _compressed_ordinal(rng, 300)
    est = OrdinalClassifier(LogisticRegression()).fit(X, y)
    state = est.__getstate__()
    for key in ("decision", "max_cut_samples", "cut_points_"):
        state.pop(key)
    old = OrdinalClassifier.__new__(OrdinalClassifier)
    old.__setstate__(state)
    assert old.get_params()["decision"] == "argmax" and old.cut_points_ is None
    assert np.array_equal(old.predict(X), old.classes_[old.predict_proba(X).argmax(1)])


def test_ordinal_qwk_decision_needs_cross_validated_calibration(rng):
    X, y = _compressed_ordinal(rng, 200)
    with pytest.raises(ValueError, match="needs a CalibratedClassifierCV"):
        OrdinalClassifier(LogisticRegression(), decision="qwk").fit(X, y)
    with pytest.raises(ValueError, match="decision must be one of"):
        OrdinalClassifier(LogisticRegression(), decision="median").fit(X, y)
    with pytest.raises(ValueError, match="max_cut_samples must be >= 2"):
        OrdinalClassifier(CalibratedClassifierCV(LogisticRegression()), decision="qwk", max_cut_samples=1).fit(X, y)


def test_make_task_pipeline_steps_and_errors():
    assert [n for n, _ in make_task_pipeline("density", "texture", "svm").steps] == [
        "read",
        "crop",
        "check",
        "enhance",
        "features",
        "scale",
        "reduce",
        "clf",
    ]
    assert [n for n, _ in make_task_pipeline("tumour", "cnn", "xgboost").steps] == [
        "read",
        "crop",
        "check",
        "enhance",
        "features",
        "select",
        "clf",
    ]
    assert [n for n, _ in make_task_pipeline("tumour", "texture", "xgboost").steps] == [
        "read",
        "crop",
        "check",
        "enhance",
        "features",
        "clf",
    ]
    assert isinstance(make_classifier("density", "svm"), OrdinalClassifier)
    for bad in [dict(task="age"), dict(task="density", feature_set="sift"), dict(task="density", model="knn")]:
        with pytest.raises(ValueError, match="must be one of"):
            make_task_pipeline(**bad)


def test_make_pipeline_is_the_old_name_of_make_task_pipeline():
    from sklearn.pipeline import make_pipeline as sklearn_make_pipeline

    from mammo.classifiers import make_pipeline

    assert make_pipeline is make_task_pipeline and make_pipeline is not sklearn_make_pipeline
    assert repr(make_pipeline("tumour", "combined", "svm")) == repr(make_task_pipeline("tumour", "combined", "svm"))


def test_model_predicts_both_tasks(texture_model, synthetic_set):
    paths, density, tumour = synthetic_set
    proba = texture_model.predict_proba(paths)
    assert proba["density"].shape == (48, 4) and proba["tumour"].shape == (48, 2)
    for p in proba.values():
        np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    # Synthetic density is a brightness/texture ramp: the fit must pick it up.
    assert np.corrcoef(proba["density"] @ np.arange(1, 5), density)[0, 1] > 0.5
    labels = texture_model.predict(paths)
    assert set(labels["density"]) <= {1, 2, 3, 4} and set(labels["tumour"]) <= {0, 1}
    rec = texture_model.predict_records(paths[:1])[0]
    assert set(rec) == {"density", "tumour", "ood_score", "in_distribution", "ood_threshold"}
    assert 0 <= rec["tumour"]["p_malignant"] <= 1 and rec["ood_score"] >= 0
    assert rec["density"]["meaning"].startswith(("A", "B", "C", "D"))
    json.dumps(rec)


def test_each_pipeline_alone_matches_model(texture_model, synthetic_set):
    paths = synthetic_set[0][:5]
    proba = texture_model.predict_proba(paths)
    for task, pipe in texture_model.pipelines.items():
        np.testing.assert_allclose(pipe.predict_proba(paths), proba[task], rtol=1e-6)


def test_image_work_runs_once_for_both_tasks(texture_model, synthetic_set, monkeypatch):
    calls = []
    original = BreastCropper.transform
    monkeypatch.setattr(BreastCropper, "transform", lambda self, X: calls.append(len(X)) or original(self, X))
    texture_model.predict_proba(synthetic_set[0][:10])
    assert sum(calls) == 10


def test_analyse_reads_once_and_matches(texture_model, synthetic_set, monkeypatch):
    paths = synthetic_set[0][:3]
    expected_records, expected_images = texture_model.predict_records(paths), texture_model.preprocess(paths)
    calls = []
    original = BreastCropper.transform
    monkeypatch.setattr(BreastCropper, "transform", lambda self, X: calls.append(len(X)) or original(self, X))
    records, images = texture_model.analyse(paths)
    assert sum(calls) == 3 and records == expected_records
    for got, want in zip(images, expected_images):
        np.testing.assert_array_equal(got.pixels, want.pixels)


def test_metadata(texture_model):
    meta = texture_model.metadata
    assert meta["tasks"]["density"]["classes"] == [1, 2, 3, 4]
    assert meta["tasks"]["tumour"]["class_meanings"]["1"].startswith("Malignant")
    assert meta["tasks"]["density"]["n_train"] == 48 and meta["tasks"]["density"]["features"] == ["glcm", "lbp"]
    assert meta["tasks"]["tumour"]["feature_set"] == "texture" and meta["tasks"]["tumour"]["model"] == "SVC"
    assert "scikit-learn" in meta["versions"] and meta["cnn_weights"] is None


def test_missing_labels_exclude_image_from_that_task_only(synthetic_set):
    paths, density, tumour = synthetic_set
    d = density.astype(float)
    d[:10] = np.nan
    model = MammogramModel({t: make_task_pipeline(t, "texture", "svm") for t in ("density", "tumour")})
    model.fit(paths, density=d, tumour=tumour)
    assert model.metadata["tasks"]["density"]["n_train"] == 38
    assert model.metadata["tasks"]["tumour"]["n_train"] == 48
    with pytest.raises(ValueError, match="labels"):
        model.fit(paths, density=density[:5], tumour=tumour)
    with pytest.raises(ValueError, match="no labels"):
        model.fit(paths, density=density)


def test_save_load_manifest(texture_model, synthetic_set, tmp_path):
    path = texture_model.save(tmp_path / "m.joblib")
    manifest = tmp_path / "m.joblib.manifest.json"
    loaded = load_model(path, manifest=manifest)
    np.testing.assert_array_equal(
        loaded.predict_proba(synthetic_set[0][:3])["tumour"],
        texture_model.predict_proba(synthetic_set[0][:3])["tumour"],
    )
    sha = json.loads(manifest.read_text())["sha256"]
    assert load_model(path, manifest=sha).metadata == texture_model.metadata
    tampered = tmp_path / "t.joblib"
    tampered.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ArtifactIntegrityError):
        load_model(tampered, manifest=manifest)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "none.joblib")
    joblib.dump({"not": "a model"}, tmp_path / "other.joblib")
    with pytest.raises(TypeError, match="MammogramModel"):
        load_model(tmp_path / "other.joblib")


def test_bad_image_raises_documented_error(texture_model, tmp_path):
    from mammo.features.io import ImageReadError

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError):
        texture_model.predict_proba([str(bad)])


@pytest.mark.needs_weights
def test_cnn_model_round_trip_in_fresh_process(synthetic_set, tmp_path):
    paths, density, tumour = synthetic_set
    model = MammogramModel({t: make_task_pipeline(t, "combined", "xgboost") for t in ("density", "tumour")})
    model.fit(paths, density=density, tumour=tumour)
    assert len(model.metadata["cnn_weights"]["sha256"]) == 64
    path = model.save(tmp_path / "cnn.joblib")
    expected = model.predict_proba(paths[:6])
    code = (
        "import json, sys, joblib\n"
        "m = joblib.load(sys.argv[1])\n"
        "p = m.predict_proba(json.loads(sys.argv[2]))\n"
        "print(json.dumps({k: v.tolist() for k, v in p.items()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), json.dumps(paths[:6])], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for task in ("density", "tumour"):
        np.testing.assert_array_equal(np.asarray(got[task]), expected[task])


def _dphi(require_data, n, seed=0):
    import pandas as pd

    root = require_data("dphi-sprint31")
    df = pd.read_csv(root / "Training_set.csv").sample(n, random_state=seed)
    paths = [str(root / "train" / f) for f in df.filename]
    density = df.label.str.extract(r"Density(\d)")[0].astype(int).to_numpy()
    tumour = df.label.str.endswith("Malignant").astype(int).to_numpy()
    return paths, density, tumour


@pytest.mark.needs_weights
def test_fit_predict_on_real_images(tmp_path, require_data):
    paths, density, tumour = _dphi(require_data, 96)
    model = MammogramModel({t: make_task_pipeline(t, "combined", "svm") for t in ("density", "tumour")})
    model.fit(paths[:72], density=density[:72], tumour=tumour[:72])
    proba = model.predict_proba(paths[72:])
    assert proba["density"].shape == (24, 4) and np.isfinite(proba["tumour"]).all()
    # Copies of one original sit on both sides of this random split, so this is
    # a smoke test of the plumbing on real files, not an accuracy estimate.
    assert (model.predict(paths[72:])["density"] == density[72:]).mean() > 0.25
    rsna = require_data("rsna-screening", "images")
    real = sorted(str(p) for p in rsna.glob("*.jpg"))[:4]
    assert model.predict_proba(real)["tumour"].shape == (4, 2)


def test_capped_pca_caps_to_the_data(rng):
    X = rng.normal(size=(20, 5))
    assert CappedPCA(max_components=128).fit(X).transform(X).shape == (20, 5)
    assert CappedPCA(max_components=3).fit(X).transform(X).shape == (20, 3)
    assert CappedPCA(max_components=128).fit(X[:4]).n_components_ == 4
    with pytest.raises(ValueError, match="max_components"):
        CappedPCA(max_components=0).fit(X)


def test_pipeline_without_enhancement_keeps_grey_levels(synthetic_set):

    paths = synthetic_set[0][:2]
    plain = make_task_pipeline("density", "texture", "svm", enhance=False)
    read, crop, enh = (plain.named_steps[n] for n in ("read", "crop", "enhance"))
    cropped = crop.transform(read.transform(paths))
    out = enh.transform(cropped)
    for c, o in zip(cropped, out):
        np.testing.assert_array_equal(o.pixels[c.mask], c.pixels[c.mask])  # grey levels untouched in the breast
        assert not o.pixels[~c.mask].any()  # background blanked, as with enhancement
    enhanced = make_task_pipeline("density", "texture", "svm").named_steps["enhance"].transform(cropped)
    assert not np.allclose(enhanced[0].pixels, out[0].pixels)
    feats = plain.named_steps["features"].fit(out)
    X_plain = feats.transform(out)
    X_enh = feats.transform(enhanced)
    assert not np.allclose(X_plain, X_enh)


def test_feature_selection_skips_constant_columns_silently():
    """Dead CNN channels (zero on every image) get F = 0 without warnings; the selection is unchanged."""
    import warnings

    from sklearn.feature_selection import SelectKBest, f_classif

    from mammo.classifiers.estimators import f_classif_constant_safe

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    X = rng.normal(size=(90, 40)) + 0.5 * y[:, None] * (np.arange(40) % 3 == 0)
    X[:, [1, 7, 20]] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f, p = f_classif_constant_safe(X, y)
        ours = SelectKBest(f_classif_constant_safe, k=10).fit(X, y).get_support()
    assert np.all(f[[1, 7, 20]] == 0) and np.all(p[[1, 7, 20]] == 1) and np.isfinite(f).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = SelectKBest(f_classif, k=10).fit(X, y).get_support()
    assert np.array_equal(ours, theirs)
