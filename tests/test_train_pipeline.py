"""``mammo train`` + featcache: every layout end to end through the CLI on tiny synthetic sets.

The texture feature set keeps these runs free of TensorFlow; ``--jobs 1`` avoids
spawning worker processes for a few dozen images. The protocol's parts (folds, CV,
tuning, selection, deep baselines) are tested one by one in test_training.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammo.classifiers import load_model, make_task_pipeline
from mammo.featcache import FeatureCache
from mammo.testing import synthetic_mammogram, write_png
from mammo.training import make_folds
from mammo.training.cli import main

FAST = ["--feature-sets", "texture", "--models", "svm", "--no-deep", "--jobs", "1", "--quiet", "--bootstrap", "200"]
TUNED = [*FAST, "--tune"]


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMMO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_manifest(root, n_patients=16, per_patient=2, seed=0):
    """path,patient_id,density,tumour: two views per patient; labels follow the patient."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = ["path,patient_id,density,tumour"]
    for p in range(n_patients):
        d, t = p % 4 + 1, (p // 4) % 2
        for v in range(per_patient):
            name = f"p{p:02d}_{v}.png"
            write_png(synthetic_mammogram(rng, d, t, side="left" if v % 2 else "right"), root / name)
            rows.append(f"{name},pat{p},{d},{t}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def run(args):
    return main([str(a) for a in args])


# ----------------------------------------------------------------------------- layouts


@pytest.mark.slow
def test_manifest_end_to_end_writes_report_metrics_and_model(tmp_path, cache_env, capsys):
    csv = make_manifest(tmp_path / "man")
    out = tmp_path / "run"
    assert run([csv, "--kind", "manifest", "--folds", "4", "--out", out, *TUNED]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["tasks"]) == {"density", "tumour"}
    dens = m["tasks"]["density"]["candidates"]["texture+svm"]
    assert {"qwk", "accuracy", "balanced_accuracy", "macro_f1", "confusion_matrix"} <= set(dens["pooled"])
    assert len(dens["folds"]) == 4 and "qwk" in dens["folds_summary"]
    assert all(p["C"] in (0.3, 1.0, 3.0) for p in dens["params"])  # tuned inside each training fold
    assert dens["searched_folds"] == 4
    tum = m["tasks"]["tumour"]["candidates"]["texture+svm"]["pooled"]
    assert {"auc", "auc_ci95", "sens_at_90spec", "brier", "balanced_accuracy"} <= set(tum)
    lo, hi = tum["auc_ci95"]
    assert lo <= tum["auc"] <= hi
    # the synthetic density signal (brightness, blobs) is learnable across patients
    assert dens["pooled"]["qwk"] > 0.5
    # patient pairs: the leaky split is reported next to the grouped one
    leaky = m["tasks"]["density"]["leaky"]
    assert leaky["test_images_with_group_in_train"] > 0.5
    # refitted with the parameters grouped CV chose most often (no new search)
    counts = {c: [p["C"] for p in dens["params"]].count(c) for c in (0.3, 1.0, 3.0)}
    assert counts[leaky["params"]["C"]] == max(counts.values()) and set(leaky["params"]) == {"C"}
    report = (out / "report.md").read_text()
    assert "| texture+svm **(selected)**" in report and "Grouped vs. leaky" in report
    # the crop-shift check: every image of this small set, each predicted once, by its fold's model
    assert m["config"]["shift_check"] == 200
    assert dens["crop_shift"]["images"] == 32 and 0.0 <= dens["crop_shift"]["grades_unchanged"] <= 1.0
    shift = m["tasks"]["tumour"]["candidates"]["texture+svm"]["crop_shift"]
    assert shift["images"] == 32 and 0.0 <= shift["p_change_median"] <= shift["p_change_p90"] <= 1.0
    assert "Crop-shift check: 32 test-fold images" in report and "density grades unchanged: texture+svm" in report
    # what each candidate cost is recorded and reported
    assert dens["fit_s"] > 0 and leaky["fit_s"] > 0
    assert "Cost, in seconds of one worker summed over the outer folds (inner search, fit and prediction)" in report
    assert "texture+svm " in report
    for png in ("roc_tumour.png", "calibration_tumour.png", "confusion_density.png", "group_sizes.png"):
        assert (out / png).stat().st_size > 1000
    # the saved artifact: manifest-verified load, metadata, and predictions from files
    model = load_model(out / "model.joblib", manifest=out / "model.joblib.manifest.json")
    meta = model.metadata
    assert meta["pipeline_id"] == "labels:density=texture+svm;tumour=texture+svm"
    assert meta["training_data"]["n_images"] == 32
    assert meta["cv_metrics"]["density"]["candidate"] == "texture+svm"
    assert "hyper-parameters from a grouped inner CV" in meta["selection"]  # --tune
    assert "texture+svm" in meta["cv_metrics"]["tumour"]["table"]
    paths = sorted(str(p) for p in (tmp_path / "man").glob("*.png"))[:3]
    proba = model.predict_proba(paths)
    assert proba["density"].shape == (3, 4) and proba["tumour"].shape == (3, 2)
    # the tails were fitted on cached features: they must equal what the pipeline computes itself
    cached = FeatureCache(cache_env / "features", progress=False).transform(paths, model.pipelines["density"])
    np.testing.assert_allclose(model.transform(paths)["density"], cached, rtol=1e-5, atol=1e-6)


def make_mias(root):
    """A mini-MIAS layout: Info.txt + 40 PNGs, 20 patients (left/right pairs)."""
    root.mkdir()
    rng = np.random.default_rng(1)
    lines = []
    for n in range(1, 41):
        bg = "FGD"[((n + 1) // 2) % 3]
        d = "FGD".index(bg) + 1
        patient = (n + 1) // 2
        if patient % 4 == 0:
            lines.append(f"mdb{n:03d} {bg} NORM")
            t = 0
        else:
            sev = "M" if patient % 2 else "B"
            t = sev == "M"
            lines.append(f"mdb{n:03d} {bg} CIRC {sev} 100 100 20")
        write_png(synthetic_mammogram(rng, d, int(t), side="left" if n % 2 == 0 else "right"), root / f"mdb{n:03d}.png")
    (root / "Info.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
def test_mias_layout(tmp_path, cache_env):
    root = make_mias(tmp_path / "mias")
    out = tmp_path / "run"
    assert run([root, "--folds", "3", "--out", out, "--no-model", *FAST, "--models", "svm", "xgboost"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"]["name"] == "mias"
    # two candidates: the score of choosing between them, with the choice made on other folds
    sel = m["tasks"]["density"]["selection_estimate"]
    assert len(sel["chosen"]) == 3 and set(sel["chosen"]) <= {"texture+svm", "texture+xgboost"}
    assert sel["selected"] == m["tasks"]["density"]["best"]
    assert "With the choice inside the evaluation" in (out / "report.md").read_text()
    # no search unless --tune: the models' fixed defaults in every fold
    assert m["config"]["tune"] is False and m["config"]["param_grids"] is None
    assert m["tasks"]["density"]["candidates"]["texture+svm"]["searched_folds"] == 0
    assert "over the outer folds (fit and prediction)" in (out / "report.md").read_text()
    assert m["tasks"]["density"]["class_counts"].keys() == {"1", "2", "3"}  # F/G/D: 3 ordinal classes
    assert m["tasks"]["tumour"]["n_images"] == 30  # normal images have no tumour label
    assert not (out / "model.joblib").exists()


def test_rsna_layout_never_reads_holdout(tmp_path, cache_env):
    root = tmp_path / "rsna"
    (root / "images").mkdir(parents=True)
    (root / "holdout").mkdir()
    (root / "holdout" / "case_0001.jpg").write_bytes(b"not an image: reading it would fail the run")
    rng = np.random.default_rng(2)
    rows = ["site_id,patient_id,image_id,laterality,view,cancer,density,filename"]
    for p in range(12):
        d, t = "ABCD"[p % 4], (p // 4) % 2
        for v in range(2):
            name = f"{p}_{v}_png.rf.x.jpg"
            img = synthetic_mammogram(rng, "ABCD".index(d) + 1, t, inverted=p % 5 == 0)
            Image.fromarray((img * 255).astype(np.uint8)).save(root / "images" / name, quality=95)
            rows.append(f"1,{p},{v},L,CC,{t},{d if p < 10 else ''},{name}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert run([root, "--folds", "3", "--out", out, "--no-model", "--no-leaky", *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"]["name"] == "rsna"
    assert m["tasks"]["density"]["n_images"] == 20 and m["tasks"]["tumour"]["n_images"] == 24
    assert m["feature_cache"]["computed:glcm"] == 24  # images/ only


def _augment(img, rng):
    """A DPhi-like copy: rotation by a multiple of 90 degrees, flips, a small shift, optional contrast change."""
    out = np.rot90(img, rng.integers(4))
    if rng.random() < 0.5:
        out = out[:, ::-1]
    dy, dx = rng.integers(-6, 7, 2)
    out = np.roll(out, (dy, dx), axis=(0, 1))
    if rng.random() < 0.5:
        out = np.clip((out - 0.5) * 1.3 + 0.5, 0, 1)
    return np.ascontiguousarray(out)


@pytest.mark.slow
def test_dphi_layout_groups_augmented_copies(tmp_path, cache_env):
    root = tmp_path / "dphi"
    (root / "train").mkdir(parents=True)
    rng = np.random.default_rng(3)
    rows, truth = ["filename,label"], []
    k = 0
    for orig in range(12):
        d, t = orig % 4 + 1, (orig // 4) % 2
        base = synthetic_mammogram(rng, d, t, shape=(224, 224))
        for _ in range(4):
            name = f"Image_{k}.jpg"
            Image.fromarray((_augment(base, rng) * 255).astype(np.uint8)).convert("RGB").save(
                root / "train" / name, quality=95
            )
            rows.append(f"{name},Density{d}{'Malignant' if t else 'Benign'}")
            truth.append(orig)
            k += 1
    (root / "Training_set.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert run([root, "--kind", "dphi", "--folds", "3", "--out", out, "--no-model", *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())
    oof = np.load(out / "oof_density.npz", allow_pickle=False)
    # the gate may refuse a few synthetic copies: compare the images the run kept
    names = [Path(p).name for p in oof["paths"]]
    assert len(names) >= 0.9 * len(truth) and len(names) == len(oof["y"])
    groups = oof["groups"]
    truth = np.array([truth[int(n.split("_")[1].split(".")[0])] for n in names])
    # every original's copies share one group (merging originals would be allowed, splitting one is a leak)
    for orig in range(12):
        assert len(set(groups[truth == orig])) == 1, f"original {orig} split over groups {set(groups[truth == orig])}"
    folds = make_folds(oof["y"], groups, 3, 0)
    for train, test in folds:
        assert not set(truth[train]) & set(truth[test])
    assert m["tasks"]["density"]["groups_shared_between_folds"] == 0


# ----------------------------------------------------------------------------- deep baselines


@pytest.mark.slow
@pytest.mark.needs_weights
def test_keras_head_runs_beside_the_candidates_and_is_reported(tmp_path, cache_env):
    csv = make_manifest(tmp_path / "man", n_patients=12)
    out = tmp_path / "run"
    args = [a for a in FAST if a != "--no-deep"]
    assert run([csv, "--tasks", "density", "--folds", "3", "--no-model", "--out", out, *args]) == 0
    m = json.loads((out / "metrics.json").read_text())
    cands = m["tasks"]["density"]["candidates"]
    assert set(cands) == {"texture+svm", "cnn+keras-head"}
    assert m["tasks"]["density"]["best"] == "texture+svm"  # the head is reported, never selected
    assert len(cands["cnn+keras-head"]["folds"]) == 3 and cands["cnn+keras-head"]["fit_s"] > 0
    assert "cnn+keras-head" in (out / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.needs_weights
def test_fine_tuned_baseline_is_reported_not_selected_and_its_maps_cached(tmp_path, cache_env):
    csv = make_manifest(tmp_path / "man", n_patients=12)
    args = [
        csv,
        "--tasks",
        "tumour",
        "--folds",
        "2",
        "--no-model",
        "--no-leaky",
        "--fine-tune",
        "--fine-tune-epochs",
        "1",
        *FAST,
    ]
    assert run([*args, "--out", tmp_path / "r1"]) == 0
    m = json.loads((tmp_path / "r1" / "metrics.json").read_text())
    cands = m["tasks"]["tumour"]["candidates"]
    assert set(cands) == {"texture+svm", "cnn+fine-tuned"}
    assert m["tasks"]["tumour"]["best"] == "texture+svm"  # reported, never selected
    assert len(cands["cnn+fine-tuned"]["folds"]) == 2 and cands["cnn+fine-tuned"]["params"][0]["epochs"] == 1
    assert m["config"]["fine_tune_epochs"] == 1 and any(n.startswith("cnn+fine-tuned:") for n in m["notes"])
    assert "cnn+fine-tuned" in (tmp_path / "r1" / "report.md").read_text()
    assert m["feature_cache"]["computed:trunk"] == 24
    # the frozen maps are cached in half precision and reused by the next run
    (trunk,) = cache_env.glob("features/trunk-*")
    row = np.load(next(trunk.glob("*/*.npy")))
    assert row.dtype == np.float16 and row.shape == (14 * 14 * 96,)
    assert run([*args, "--out", tmp_path / "r2"]) == 0
    m2 = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert m2["feature_cache"]["hit:trunk"] == 24 and "computed:trunk" not in m2["feature_cache"]
    # the same folds and seed: the same out-of-fold probabilities
    a, b = np.load(tmp_path / "r1" / "oof_tumour.npz"), np.load(tmp_path / "r2" / "oof_tumour.npz")
    np.testing.assert_allclose(a["cnn__fine-tuned"], b["cnn__fine-tuned"], atol=1e-5)


# ----------------------------------------------------------------------------- cache


def test_second_run_reuses_cached_features(tmp_path, cache_env, monkeypatch):
    csv = make_manifest(tmp_path / "man", n_patients=8)
    from mammo.features import texture

    calls = {"n": 0}
    orig = texture.GLCMFeatures.transform

    def counting(self, X):
        calls["n"] += len(X)
        return orig(self, X)

    monkeypatch.setattr(texture.GLCMFeatures, "transform", counting)
    args = ["--tasks", "density", "--folds", "2", "--no-model", "--no-leaky", "--shift-check", "0", *FAST]
    assert run([csv, "--out", tmp_path / "r1", *args]) == 0
    first = calls["n"]
    assert first >= 16
    assert run([csv, "--out", tmp_path / "r2", *args, "--models", "xgboost"]) == 0  # a new classifier
    assert calls["n"] == first
    m = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert m["feature_cache"]["hit:glcm"] == 16 and "computed:glcm" not in m["feature_cache"]
    assert "crop_shift" not in m["tasks"]["density"]["candidates"]["texture+xgboost"]  # --shift-check 0
    # a changed parameter (working resolution) is a different key: recomputed
    assert run([csv, "--out", tmp_path / "r3", *args, "--texture-size", "128"]) == 0
    assert calls["n"] == 2 * first


def test_cache_is_keyed_by_content_not_name(tmp_path):
    rng = np.random.default_rng(0)
    a, b = tmp_path / "a.png", tmp_path / "renamed.png"
    write_png(synthetic_mammogram(rng, 2, 0), a)
    shutil.copyfile(a, b)
    cache = FeatureCache(tmp_path / "c", progress=False)
    pipe = make_task_pipeline("tumour", "texture", "svm", texture_size=128)
    x1 = cache.transform([a], pipe)
    x2 = cache.transform([b], pipe)
    np.testing.assert_array_equal(x1, x2)
    assert cache.stats["computed:glcm"] == 1 and cache.stats["hit:glcm"] == 1
    write_png(synthetic_mammogram(rng, 4, 1), b)  # new content under the same name
    cache.transform([b], pipe)
    assert cache.stats["computed:glcm"] == 2


# ----------------------------------------------------------------------------- errors


def test_error_exits(tmp_path, cache_env, capsys):
    from mammo.cli import run as run_command

    def fails(args, match):
        try:
            code = run_command("train", [str(a) for a in args])
        except SystemExit as exc:  # bad arguments: argparse exits
            code = exc.code
        assert code == 2
        err = capsys.readouterr().err
        assert match in err and "Traceback" not in err

    fails([tmp_path / "nowhere", *FAST], "no such file or folder")
    (tmp_path / "empty").mkdir()
    fails([tmp_path / "empty", *FAST], "unknown layout")
    csv = make_manifest(tmp_path / "man", n_patients=4)
    fails([csv, "--folds", "5", *FAST], "groups")
    fails([csv, "--folds", "1", *FAST], "--folds")
    fails([csv, "--shift-check", "-1", *FAST], "--shift-check")
    one = tmp_path / "one.csv"
    one.write_text(
        "path,patient_id,tumour\n" + "\n".join(f"{tmp_path}/man/p0{i}_0.png,p{i},0" for i in range(4)) + "\n"
    )
    fails([one, "--kind", "manifest", "--folds", "2", *FAST], "only one class")
    bad = tmp_path / "bad"
    make_manifest(bad, n_patients=8)
    (bad / "p00_0.png").write_bytes(b"\x89PNG truncated")
    fails([bad / "labels.csv", "--folds", "2", "--tasks", "density", *FAST], "p00_0.png")


def test_extra_block_is_evaluated_and_saved(tmp_path, cache_env):
    from sklearn.base import clone

    from mammo.features.extra import IntensityFeatures

    est = IntensityFeatures(bins=8)
    assert clone(est).get_params() == est.get_params()
    rng = np.random.default_rng(0)
    dense, fatty = synthetic_mammogram(rng, 4, 0), synthetic_mammogram(rng, 1, 0)
    f = est.fit_transform([dense, fatty])
    names = list(est.get_feature_names_out())
    assert f.shape == (2, len(names))
    assert f[0, names.index("int_mean")] > f[1, names.index("int_mean")]
    with pytest.raises(ValueError):
        IntensityFeatures(bins=1).fit()

    csv = make_manifest(tmp_path / "man", n_patients=8)
    out = tmp_path / "run"
    assert (
        run(
            [
                csv,
                "--tasks",
                "density",
                "--folds",
                "2",
                "--no-leaky",
                "--extra-blocks",
                "intensity",
                "--out",
                out,
                *FAST,
            ]
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["feature_cache"]["computed:intensity"] == 16
    model = load_model(out / "model.joblib")
    assert model.metadata["pipeline_id"] == "labels:density=texture&intensity+svm"
    assert "intensity" in model.metadata["tasks"]["density"]["features"]
    assert "default hyper-parameters, as in the cross-validation" in model.metadata["selection"]  # no --tune
    assert model.predict_proba([str(tmp_path / "man" / "p00_0.png")])["density"].shape == (1, 4)


def test_no_enhance_trains_and_saves_on_unenhanced_crops(tmp_path, cache_env):
    csv = make_manifest(tmp_path / "man", n_patients=8)
    out = tmp_path / "run"
    assert run([csv, "--tasks", "density", "--folds", "2", "--no-leaky", "--no-enhance", "--out", out, *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["enhance"] is False
    # its own cache entries: unenhanced features are not confused with enhanced ones
    assert m["feature_cache"]["computed:glcm"] == 16
    step = load_model(out / "model.joblib").pipelines["density"].named_steps["enhance"]
    assert (step.clip_limit, step.unsharp_amount) == (0.0, 0.0)
    out2 = tmp_path / "run2"
    assert run([csv, "--tasks", "density", "--folds", "2", "--no-leaky", "--out", out2, *FAST]) == 0
    assert json.loads((out2 / "metrics.json").read_text())["feature_cache"]["computed:glcm"] == 16


def test_mias_model_explains_its_own_density_classes(tmp_path, cache_env):
    from mammo.classifiers import DENSITY_CLASSES

    root = make_mias(tmp_path / "mias")
    out = tmp_path / "run"
    assert run([root, "--folds", "3", "--tasks", "density", "--no-leaky", "--out", out, *FAST]) == 0
    model = load_model(out / "model.joblib")
    meanings = model.metadata["tasks"]["density"]["class_meanings"]
    assert meanings == {"1": "F - fatty", "2": "G - fatty-glandular", "3": "D - dense-glandular"}
    record = model.predict_records([str(root / "mdb001.png")])[0]["density"]
    assert record["meaning"] == meanings[str(record["label"])]
    assert record["meaning"] not in DENSITY_CLASSES.values()


def test_density_decision_reaches_the_saved_model_and_its_predictions(tmp_path, cache_env):
    import io

    from mammo.predict import predict_to_csv

    csv = make_manifest(tmp_path / "man", n_patients=12)
    out = tmp_path / "run"
    assert run([csv, "--tasks", "density", "--folds", "2", "--no-leaky", "--out", out, *FAST]) == 0  # qwk: the default
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["density_decision"] == "qwk"
    assert "texture__svm__pred" in np.load(out / "oof_density.npz").files
    model = load_model(out / "model.joblib")
    clf = model.pipelines["density"].steps[-1][1]
    assert clf.decision == "qwk" and clf.cut_points_.shape == (3,)
    paths = sorted(str(p) for p in (tmp_path / "man").glob("*.png"))
    proba = model.predict_proba(paths)["density"]
    labels = model.predict(paths)["density"]
    assert np.array_equal(labels, clf.classes_[np.searchsorted(clf.cut_points_, proba @ np.arange(4))])
    assert [r["density"]["label"] for r in model.predict_records(paths)] == labels.tolist()
    # Mass split between grades 1 and 4: argmax says 1 or 4, the expected grade passes through 2 and 3.
    a = np.linspace(0, 1, 41)
    two_point = np.column_stack([1 - a, 0 * a, 0 * a, a])
    assert set(model.labels("density", two_point)) == {1, 2, 3, 4}
    assert model.record({"density": two_point[20]})["density"]["label"] in (2, 3)
    buf = io.StringIO()
    predict_to_csv(model, paths, buf, progress=False)
    rows = buf.getvalue().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows] == labels.tolist()


def test_per_breast_tumour_metrics_when_breasts_have_several_views(tmp_path, cache_env):
    """RSNA-style labels: one per breast, two views each; the report adds AUC per breast."""
    from sklearn.metrics import roc_auc_score

    root = tmp_path / "man"
    root.mkdir()
    rng = np.random.default_rng(1)
    rows = ["path,patient_id,laterality,view,tumour"]
    for p in range(12):
        for side in "LR":
            t = int(side == "L" and p % 2 == 0)  # a cancer in the left breast of every other patient
            for view in ("CC", "MLO"):
                name = f"p{p:02d}_{side}_{view}.png"
                write_png(synthetic_mammogram(rng, 2, t), root / name)
                rows.append(f"{name},pat{p},{side},{view},{t}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert (
        run([root / "labels.csv", "--tasks", "tumour", "--folds", "3", "--no-leaky", "--no-model", "--out", out, *FAST])
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    b = m["tasks"]["tumour"]["candidates"]["texture+svm"]["per_breast"]
    assert (b["n"], b["n_pos"], b["views_per_breast"]) == (24, 6, 2.0)
    oof = np.load(out / "oof_tumour.npz")
    breast = np.repeat(np.arange(24), 2)  # rows follow the manifest: two views per breast
    mean_p = np.bincount(breast, weights=oof["texture__svm"][:, 1]) / 2
    assert b["auc"] == pytest.approx(roc_auc_score(oof["y"][::2], mean_p))
    report = (out / "report.md").read_text()
    assert "AUC per breast [95% CI]" in report and "24 breasts, 2.0 images each" in report


def make_subgroup_manifest(root):
    """12 patients, a left CC and a right MLO view each, with site, machine and age columns."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(4)
    rows = ["path,patient_id,laterality,view,site_id,machine_id,age,density,cancer"]
    for p in range(12):
        for side, view in (("L", "CC"), ("R", "MLO")):
            t = int((side == "L" and p % 3 == 0) or (side == "R" and p % 3 == 1))
            name = f"p{p:02d}_{side}.png"
            write_png(synthetic_mammogram(rng, p % 4 + 1, t, side="left" if side == "L" else "right"), root / name)
            rows.append(
                f"{name},pat{p},{side},{view},{1 + p // 6},{170 if p == 11 else 21},{40 + 4 * p},{p % 4 + 1},{t}"
            )
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


@pytest.mark.slow
def test_subgroups_of_the_selected_candidate_in_metrics_report_and_card(tmp_path, cache_env, monkeypatch):
    """Per-subgroup scores of the out-of-fold predictions; a level with too few patients is listed, not scored."""
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    import mammo.datasets.subgroups

    monkeypatch.setattr(mammo.datasets.subgroups, "MIN_PATIENTS", 3)  # 6 patients per site count, 1 does not
    out = tmp_path / "run"
    assert run([make_subgroup_manifest(tmp_path / "man"), "--folds", "3", "--no-leaky", "--out", out, *FAST]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for task, key in (("tumour", "texture__svm"), ("density", "texture__svm__pred")):
        sub = m["tasks"][task]["subgroups"]
        assert list(sub) == ["site", "machine", "view", "laterality", "age band"]
        oof = np.load(out / f"oof_{task}.npz")
        site = np.array([int(str(p).rsplit("/p", 1)[1][:2]) // 6 + 1 for p in oof["paths"]])
        for r in sub["site"]:
            mask = site == int(r["level"])
            assert (r["n"], r["n_patients"], "too_few" in r) == (12, 6, False)
            score = oof[key][mask, 1] if task == "tumour" else oof[key][mask]
            expected = (
                roc_auc_score(oof["y"][mask], score)
                if task == "tumour"
                else cohen_kappa_score(oof["y"][mask], score, weights="quadratic")
            )
            assert r["value"] == pytest.approx(expected)
        machines = {r["level"]: r for r in sub["machine"]}
        assert list(machines) == ["21", "170"] and machines["170"]["value"] is None
        assert machines["170"]["n"] == 2 and machines["170"]["too_few"].startswith("too few cases: ")
    report = (out / "report.md").read_text()
    row = "| machine | 170 | 2 | 1 | 0 | too few cases: 0 patients with a malignant image, 1 with a non-malignant one"
    assert "### Subgroups" in report and row in report and "| machine | 170 | 2 | 1 | - | too few cases" in report
    assert "![subgroups_tumour](subgroups_tumour.png)" in report and (out / "subgroups_density.png").is_file()
    card = (out / "MODEL_CARD.md").read_text()
    assert row in card and "not measured in this run; the run" not in card
    # the model carries them too, so a card built from its metadata alone shows them
    meta = load_model(out / "model.joblib").metadata
    assert meta["cv_metrics"]["tumour"]["subgroups"] == m["tasks"]["tumour"]["subgroups"]
