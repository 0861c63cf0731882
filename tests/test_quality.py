"""The input-quality gate and the out-of-distribution score."""

from __future__ import annotations

import numpy as np
import pytest

from mammo.classifiers.ood import DistributionModel
from mammo.features.io import read_scan
from mammo.features.quality import ImplausibleImageError, InputQualityGate, assess, check_mammogram
from mammo.features.region import crop_breast
from mammo.testing import film_scan, larger_detector, non_mammograms, synthetic_mammogram

#: Corpus images the gate lets through (documented in docs/results.md); the
#: out-of-distribution score is what flags them.
GATE_MISSES = {
    "astronaut (grey)",
    "camera",
    "cell",
    "clock",
    "coffee (grey)",
    "colorwheel (grey)",
    "gravel",
    "logo (grey)",
    "microaneurysms",
    "page",
    "retina (grey)",
    "radial gradient",
    "coins",
}


@pytest.fixture(scope="module")
def corpus():
    return non_mammograms()


def _crop(x):
    return crop_breast(read_scan(x))


def test_gate_refuses_what_is_not_a_mammogram(corpus):
    reasons = {name: assess(_crop(img)).reason for name, img in corpus.items()}
    missed = {name for name, r in reasons.items() if r is None}
    assert missed <= GATE_MISSES, f"newly missed: {missed - GATE_MISSES}"
    assert len(missed) <= 12 and len(corpus) >= 45
    assert reasons["black"] == reasons["white"] == reasons["grey"] == "blank"
    assert reasons["astronaut"] == reasons["coffee"] == "colour"
    assert None not in {
        reasons[n] for n in ("uniform noise", "gaussian noise", "salt and pepper", "horizontal gradient")
    }
    assert reasons["document"] in ("texture", "breast_too_small", "not_breast_shaped")


def test_gate_accepts_synthetic_mammograms_and_their_film_and_detector_copies(rng):
    for i in range(12):
        img = synthetic_mammogram(rng, 1 + i % 4, tumour=i % 2, shape=(256, 208), side="left" if i % 3 else "right")
        for x in (img, 1 - img, img[:, ::-1], film_scan(img, rng)[0], larger_detector(img)[0]):
            report = assess(crop_breast(x))
            assert report.ok, (i, report.reason, report.failed)


def test_gate_raises_a_typed_error_with_reason(corpus):
    with pytest.raises(ImplausibleImageError, match="blank") as exc:
        check_mammogram(_crop(corpus["black"]))
    assert exc.value.reason == "blank" and isinstance(exc.value, ValueError)
    gate = InputQualityGate()
    with pytest.raises(ImplausibleImageError) as exc:
        gate.fit_transform([_crop(corpus["uniform noise"])])
    assert exc.value.reason in ("no_breast", "breast_too_large") and "not a mammogram" in str(exc.value)
    assert InputQualityGate(enabled=False).transform([_crop(corpus["black"])])[0].bbox is not None
    with pytest.raises(TypeError, match="Mammogram"):
        gate.transform([np.zeros((32, 32))])


def test_gate_passes_real_mammograms(require_data):
    DATA = require_data()
    paths = (
        sorted((DATA / "mini-mias").glob("*.png"))[::16]
        + sorted((DATA / "rsna-screening" / "images").glob("*.jpg"))[::100]
        + sorted((DATA / "dphi-sprint31" / "train").glob("*.jpg"))[::250]
    )
    assert len(paths) > 60
    refused = [(p.name, r.reason) for p in paths if not (r := assess(_crop(p))).ok]
    assert not refused


# ------------------------------------------------------------------ out-of-distribution model


def test_distribution_model_scores_and_threshold():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 20)) @ rng.normal(size=(20, 20))
    model = DistributionModel(n_components=8).fit(X)
    assert model.threshold_ == pytest.approx(np.quantile(model.training_scores_, 0.975))
    new = rng.normal(size=(2000, 20)) @ rng.normal(size=(20, 20))  # another covariance: mostly flagged
    assert (~model.predict(new)).mean() > 0.5 and model.predict(np.tile(X.mean(0), (5, 1))).all()
    assert model.predict(X[:50] + rng.normal(scale=1e-3, size=(50, 20))).mean() > 0.9
    assert not model.predict(np.full((1, 20), np.nan))[0] and np.isinf(model.score_samples(np.full((1, 20), np.nan)))[0]


def test_cross_fitting_is_grouped():
    """Copies of one original never vouch for each other: the threshold is set on unseen groups."""
    rng = np.random.default_rng(1)
    originals = rng.normal(size=(30, 12))
    X = np.repeat(originals, 20, axis=0) + rng.normal(scale=0.01, size=(600, 12))
    groups = np.repeat(np.arange(30), 20)
    grouped = DistributionModel(n_components=4).fit(X, groups=groups)
    leaky = DistributionModel(n_components=4).fit(X)
    assert grouped.threshold_ > leaky.threshold_
    unseen = rng.normal(size=(500, 12))  # new originals from the same distribution
    assert (~grouped.predict(unseen)).mean() < 0.05 and (~leaky.predict(unseen)).mean() > 0.15


def test_distribution_model_contract():
    from sklearn.base import clone

    model = DistributionModel(n_components=3, quantile=0.9, cv=3)
    assert clone(model).get_params() == model.get_params() and not [k for k in vars(model) if k.endswith("_")]
    with pytest.raises(ValueError):
        DistributionModel(quantile=0.2).fit(np.zeros((10, 3)))
    with pytest.raises(ValueError):
        DistributionModel().fit(np.zeros((3, 3)))
    fitted = model.fit(np.random.default_rng(0).normal(size=(40, 5)))
    assert fitted is model and model.n_features_in_ == 5
    with pytest.raises(ValueError):
        model.score_samples(np.zeros((2, 4)))


def test_model_flags_non_mammograms_and_reports_ood_fields(texture_model, corpus):
    from mammo.features.io import read_scan

    assert (
        texture_model.ood is not None
        and texture_model.metadata["ood"]["threshold"] == texture_model.ood["model"].threshold_
    )
    misses = [read_scan(corpus[n]) for n in sorted(GATE_MISSES)]
    records = texture_model.with_gate(False).predict_records(misses)
    flagged = [not r["in_distribution"] and r["ood_score"] > r["ood_threshold"] for r in records]
    assert np.mean(flagged) >= 0.9, dict(zip(sorted(GATE_MISSES), flagged))
    # images like the training ones are in distribution
    rng = np.random.default_rng(5)
    fresh = [synthetic_mammogram(rng, 1 + i % 4, side="left" if i % 3 else "right") for i in range(20)]
    flags = [r["in_distribution"] for r in texture_model.predict_records(fresh)]
    assert np.mean(flags) >= 0.8


def test_batch_prediction_records_refused_images_and_goes_on(texture_model, corpus, synthetic_set):
    paths = synthetic_set[0][:3]
    batch = [paths[0], corpus["black"], paths[1], corpus["astronaut"], paths[2]]
    ((indices, proba, ood, failures),) = list(texture_model.iter_predict(batch, errors="record"))
    assert indices == [0, 2, 4] and set(failures) == {1, 3}
    assert "ImplausibleImageError" in failures[1] and "blank" in failures[1] and "colour" in failures[3]
    assert proba["tumour"].shape == (3, 2) and ood[0].shape == (3,)
    with pytest.raises(ImplausibleImageError):
        texture_model.predict_proba([corpus["black"]])


def test_old_model_loads_with_the_gate_and_a_retrain_warning(texture_model, tmp_path, corpus):
    from dataclasses import replace

    from sklearn.pipeline import Pipeline

    from mammo.classifiers import OldArtifactWarning, load_model

    old = replace(
        texture_model,
        pipelines={t: Pipeline([s for s in p.steps if s[0] != "check"]) for t, p in texture_model.pipelines.items()},
        metadata={**texture_model.metadata, "format_version": 1},
        ood=None,
    )
    path = old.save(tmp_path / "old.joblib")
    with pytest.warns(OldArtifactWarning, match="Retrain it"):
        loaded = load_model(path)
    assert all("check" in p.named_steps for p in loaded.pipelines.values())
    with pytest.raises(ImplausibleImageError):
        loaded.predict_proba([corpus["white"]])
    (rec,) = loaded.predict_records([synthetic_mammogram(np.random.default_rng(3), 2)])
    assert "ood_score" not in rec and 0 <= rec["tumour"]["p_malignant"] <= 1
