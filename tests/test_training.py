"""The training protocol piece by piece: folds, cross-validation, the inner search, selection, deep baselines.

End-to-end runs through the command line are in test_train_pipeline.py.
"""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from mammo.evaluation import fast_auc
from mammo.training import (
    Candidate,
    CVResult,
    FitOptions,
    TrainingDataError,
    check_task_data,
    cross_validate,
    deep_head_cv,
    limit_dataset,
    make_folds,
    selection_estimate,
)

# ----------------------------------------------------------------------------- folds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_group_in_two_folds(seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 40, 400).astype(str)
    y = rng.integers(0, 3, 400)
    folds = make_folds(y, groups, 5, seed)
    seen = np.zeros(len(y), int)
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert len(np.intersect1d(train, test)) == 0
        seen[test] += 1
    assert (seen == 1).all()  # a partition: every image tested exactly once
    again = make_folds(y, groups, 5, seed)  # same seed, same folds for every candidate
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again))


def test_check_task_data_and_limit():
    y = np.array([0, 0, 0, 1, 1, 1])
    with pytest.raises(TrainingDataError, match="groups"):
        check_task_data("tumour", y, np.array(list("aabbcc")), 5)
    with pytest.raises(TrainingDataError, match="only one class"):
        check_task_data("tumour", np.zeros(6, int), np.arange(6).astype(str), 2)
    with pytest.raises(TrainingDataError, match="class 1"):
        check_task_data("tumour", np.array([0, 0, 0, 0, 1, 1]), np.array(list("abcdee")), 2)
    check_task_data("tumour", y, np.arange(6).astype(str), 3)

    from mammo.datasets import Dataset

    rng = np.random.default_rng(0)
    ds = Dataset(
        "x",
        [f"{i}.png" for i in range(200)],
        rng.integers(1, 5, 200),
        rng.integers(0, 2, 200),
        np.repeat(np.arange(50), 4).astype(str),
    )
    sub = limit_dataset(ds, 50, 0)
    assert 30 <= len(sub) <= 70
    kept = set(sub.groups)
    assert all((ds.groups[np.isin(ds.groups, list(kept))] == g).sum() == 4 for g in kept)  # whole groups


def test_tuning_subset_keeps_every_group_when_groups_are_copies():
    from mammo.training.folds import group_subset

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), 50).astype(str)  # 60 originals x 50 copies
    y = np.repeat(rng.integers(1, 5, 60), 50)
    keep = group_subset(y, groups, 600, 0)
    assert 550 <= len(keep) <= 650 and len(set(groups[keep])) == 60 and set(y[keep]) == set(y)
    # small groups (patients): whole groups, about n images
    pg = np.repeat(np.arange(1500), 2).astype(str)
    keep = group_subset(np.tile([0, 1], 1500), pg, 1000, 0)
    assert 800 <= len(keep) <= 1200
    assert all((pg[keep] == g).sum() == 2 for g in set(pg[keep]))


# ----------------------------------------------------------------------------- cross-validation


def test_leaky_split_inflates_and_grouped_split_does_not():
    """Copies of one original share a fingerprint and a label that carries no real signal."""
    rng = np.random.default_rng(0)
    n_groups, copies = 40, 6
    fingerprint = rng.normal(size=(n_groups, 20))
    label = rng.permutation(np.arange(n_groups) % 2)
    g = np.repeat(np.arange(n_groups), copies).astype(str)
    X = np.repeat(fingerprint, copies, axis=0) + 0.05 * rng.normal(size=(n_groups * copies, 20))
    y = np.repeat(label, copies)
    kw = dict(n_boot=100, progress=False)
    cands, options = [Candidate("texture", "svm")], FitOptions(inner_folds=3, seed=0, tune=False)
    grouped = cross_validate("tumour", {"texture": X}, y, g, make_folds(y, g, 5, 0), cands, options, **kw)[
        "texture+svm"
    ]
    ids = np.arange(len(y)).astype(str)
    leaky = cross_validate(
        "tumour", {"texture": X}, y, ids, make_folds(y, g, 5, 0, grouped=False), cands, options, **kw
    )["texture+svm"]
    assert leaky.pooled["auc"] > 0.95
    assert grouped.pooled["auc"] < 0.75
    assert grouped.pooled["auc_ci95"][0] < 0.5 < grouped.pooled["auc_ci95"][1] + 0.2


def test_density_cut_points_are_scored_by_their_own_predictions():
    """With density_decision="qwk", metrics score the cut-point grade, not argmax of the probabilities."""
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(0)
    n_groups, copies = 150, 3
    z = np.repeat(rng.normal(size=n_groups), copies)
    X = np.column_stack([z + 0.9 * rng.normal(size=len(z)), rng.normal(size=(len(z), 3))])
    y = np.digitize(z, [-1.2, 0, 1.2]) + 1  # rare outer grades: probabilities lean to the middle
    g = np.repeat(np.arange(n_groups), copies).astype(str)
    folds = make_folds(y, g, 4, 0)
    kw = dict(n_boot=10, progress=False)
    cands = [Candidate("texture", "svm")]
    plain = cross_validate(
        "density",
        {"texture": X},
        y,
        g,
        folds,
        cands,
        FitOptions(inner_folds=3, seed=0, density_decision="argmax"),
        **kw,
    )["texture+svm"]
    cut = cross_validate(
        "density", {"texture": X}, y, g, folds, cands, FitOptions(inner_folds=3, seed=0, density_decision="qwk"), **kw
    )["texture+svm"]
    assert np.allclose(plain.oof_proba, cut.oof_proba)  # same models, same probabilities
    assert np.array_equal(plain.oof_pred, plain.oof_proba.argmax(1) + 1)
    assert not np.array_equal(cut.oof_pred, plain.oof_pred)
    assert cut.pooled["qwk"] == pytest.approx(cohen_kappa_score(y, cut.oof_pred, weights="quadratic"))
    assert cut.pooled["qwk"] > plain.pooled["qwk"] + 0.02
    # the outer grades, which argmax rarely predicts, are predicted more often
    assert np.isin(cut.oof_pred, [1, 4]).sum() > np.isin(plain.oof_pred, [1, 4]).sum()


# ----------------------------------------------------------------------------- the inner search


@pytest.mark.parametrize("model", ["svm", "xgboost"])
def test_search_scores_equal_refitting_every_grid_point(model):
    """_tune fits the steps before the classifier once per inner split: same scores as whole tails."""
    from mammo.training import tuning as tn

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 3)
    y = groups % 2
    X = rng.normal(size=(len(y), 200)).astype(np.float32) + 0.6 * y[:, None]
    cand = Candidate("cnn", model)
    best, scores = tn.tune(
        "tumour", cand, X, y, groups, tn.PARAM_GRIDS[model], FitOptions(inner_folds=3, seed=0, tune_max=None)
    )
    assert len(scores) == len(tn.PARAM_GRIDS[model]) and json.dumps(best, sort_keys=True) in scores

    inner = list(StratifiedGroupKFold(3, shuffle=True, random_state=1).split(X, y, groups))
    for params in tn.PARAM_GRIDS[model]:
        proba = np.zeros((len(y), 2))
        for tr, te in inner:
            tail, _ = tn.configure(tn.make_tail("tumour", cand, 0), params, y[tr], groups[tr], 0)
            proba[te] = tn.predict_columns("tumour", tail.fit(X[tr], y[tr]), X[te], [0, 1])[0]
        assert scores[json.dumps(params, sort_keys=True)] == pytest.approx(
            tn.score("tumour", y, proba, [0, 1]), abs=1e-12
        )


def test_tuned_parameters_must_belong_to_the_classifier():
    from mammo.training import tuning as tn

    y, groups = np.tile([0, 1], 20), np.arange(40)
    with pytest.raises(ValueError, match="classifier step"):
        tn.configure(tn.make_tail("tumour", Candidate("cnn", "svm"), 0), {"max_components": 4}, y, groups, 0)


# ----------------------------------------------------------------------------- selection


def _folds(n_folds, per_fold):
    idx = np.arange(n_folds * per_fold).reshape(n_folds, per_fold)
    return [(np.setdiff1d(idx, te), te) for te in idx]


def test_selection_estimate_never_lets_a_fold_choose_its_own_candidate():
    folds = _folds(5, 20)
    y = np.tile(np.repeat([0, 1], 10), 5)
    good = y + 0.1 * np.random.default_rng(0).random(len(y))  # separates every fold perfectly
    a = good.copy()
    a[folds[0][1]] = 1 - a[folds[0][1]]  # "a": perfect on folds 1-4, inverted on fold 0
    b = np.random.default_rng(1).random(len(y))  # "b": noise, except perfect on fold 0
    b[folds[0][1]] = good[folds[0][1]]
    results = {}
    for name, score in (("a", a), ("b", b)):
        proba = np.column_stack([1 - score, score])
        results[name] = CVResult(pooled={"auc": fast_auc(y, score)}, oof_proba=proba)
    sel = selection_estimate("tumour", y, np.array([0, 1]), folds, results)
    # fold 0 is predicted by "a", the best on folds 1-4, although "b" is perfect on fold 0 itself
    assert sel.chosen == ["a"] * 5 and sel.selected == "a"
    assert sel.score == pytest.approx(fast_auc(y, a)) and sel.selected_score == pytest.approx(fast_auc(y, a))
    # "c" is perfect on folds 0-1 and "d" on folds 2-3, noise elsewhere: every fold is predicted by the
    # candidate that is perfect on MORE of the other folds, which is the one that is noise on it
    folds = _folds(4, 20)
    y = np.tile(np.repeat([0, 1], 10), 4)
    on_01 = np.isin(np.arange(len(y)), np.concatenate([folds[0][1], folds[1][1]]))
    noise = np.random.default_rng(2).random(len(y))
    results = {
        n: CVResult(pooled={"auc": fast_auc(y, sc)}, oof_proba=np.column_stack([1 - sc, sc]))
        for n, sc in (("c", np.where(on_01, y, noise)), ("d", np.where(on_01, noise, y)))
    }
    sel = selection_estimate("tumour", y, np.array([0, 1]), folds, results)
    assert sel.chosen == ["d", "d", "c", "c"]
    assert sel.score == pytest.approx(fast_auc(y, noise), abs=1e-9) and sel.score < 0.7 < sel.selected_score


def test_selection_estimate_scores_density_by_the_models_own_grades():
    folds = _folds(4, 12)
    classes = np.array([1, 2, 3, 4])
    y = np.tile(np.repeat(classes, 3), 4)
    flat = np.full((len(y), 4), 0.25)
    flat[:, 0] = 0.4  # the most probable grade is always 1
    results = {
        "cut": CVResult(pooled={"qwk": 1.0}, oof_proba=flat, oof_pred=y.copy()),
        "argmax": CVResult(pooled={"qwk": 0.0}, oof_proba=flat, oof_pred=np.ones_like(y)),
    }
    sel = selection_estimate("density", y, classes, folds, results)
    assert sel.chosen == ["cut"] * 4 and sel.score == pytest.approx(1.0)


# ----------------------------------------------------------------------------- deep baselines


@pytest.mark.slow
def test_deep_head_learns_a_separable_signal_under_grouped_folds():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(30), 3).astype(str)
    y = np.repeat(np.arange(30) % 3, 3)
    X = rng.normal(size=(90, 40))
    X[:, :12] += 3.0 * np.repeat(np.eye(3)[y], 4, axis=1)  # four informative columns per class
    res = deep_head_cv("density", X, y, g, make_folds(y, g, 3, 0), epochs=30, batch_size=16, n_boot=50, progress=False)
    assert res.oof_proba.shape == (90, 3)
    np.testing.assert_allclose(res.oof_proba.sum(1), 1, rtol=1e-5)
    assert res.pooled["qwk"] > 0.6 and res.fit_s > 0
    shuffled = deep_head_cv(
        "density", X, rng.permutation(y), g, make_folds(y, g, 3, 0), epochs=30, batch_size=16, n_boot=50, progress=False
    )
    assert shuffled.pooled["qwk"] < res.pooled["qwk"] - 0.3


@pytest.mark.slow
def test_deep_head_does_not_warn_about_retracing(caplog):
    """One new model per fold is traced once by design: no TensorFlow warning in the user's run log."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(30), 4)
    y = g % 2
    X = rng.normal(size=(len(y), 20)).astype(np.float32) + y[:, None]
    deep_head_cv("tumour", X, y, g, make_folds(y, g, 5, 0), epochs=2, n_boot=10, progress=False)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


# ----------------------------------------------------------------------------- candidates, configuration, run schema


def test_candidates_carry_the_names_the_report_and_the_model_use():
    from mammo.training import DEEP_HEAD, candidates

    c = Candidate("texture", "svm", ("intensity",))
    assert c.name == "texture+svm" and c.pipeline_name == "texture&intensity+svm"
    assert c.blocks == ("glcm", "lbp", "intensity") and c.selectable
    assert DEEP_HEAD.name == "cnn+keras-head" and not DEEP_HEAD.selectable
    assert [x.name for x in candidates(["texture", "cnn"], ["xgboost", "svm"])] == [
        "texture+xgboost",
        "texture+svm",
        "cnn+xgboost",
        "cnn+svm",
    ]


def test_the_command_line_becomes_a_train_config():
    from mammo.training import TrainConfig
    from mammo.training.cli import build_parser, config_from_args

    default = config_from_args(build_parser().parse_args(["data"]))
    assert default == TrainConfig("data", jobs=default.jobs)  # the CLI's defaults are the library's
    # one option per field, named by its dest
    assert set(vars(build_parser().parse_args(["data"]))) == {f.name for f in fields(TrainConfig)}
    cfg = config_from_args(
        build_parser().parse_args(
            [
                "d",
                "--no-deep",
                "--no-enhance",
                "--no-leaky",
                "--bootstrap",
                "10",
                "--extra-blocks",
                "intensity",
                "--quiet",
                "--tune",
                "--density-decision",
                "argmax",
            ]
        )
    )
    assert (cfg.deep_head, cfg.enhance, cfg.leaky, cfg.n_boot, cfg.extra_blocks, cfg.progress) == (
        False,
        False,
        False,
        10,
        ("intensity",),
        False,
    )
    assert cfg.fit_options == FitOptions(inner_folds=3, seed=0, tune=True, tune_max=1000, density_decision="argmax")
    assert cfg.pipeline_options["enhance"] is False and cfg.to_json()["param_grids"] is not None


def test_mammo_train_help_introduces_itself_as_mammo_train(capsys):
    from mammo.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out.startswith("usage: mammo train ") and "python -m" not in out.split("Examples")[0]


def test_the_old_module_and_the_checkout_script_run_the_same_command():
    import subprocess
    import sys
    from pathlib import Path

    import mammo.train_pipeline as tp

    assert tp.main is __import__("mammo.training.cli", fromlist=["main"]).main
    assert tp.BLOCKS == {"texture": ("glcm", "lbp"), "cnn": ("cnn",), "combined": ("glcm", "lbp", "cnn")}
    root = Path(__file__).resolve().parents[1]
    for cmd in (
        [sys.executable, "-m", "mammo.train_pipeline", "--help"],
        [sys.executable, "train_pipeline.py", "--help"],
    ):
        out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True).stdout
        assert out.startswith("usage: mammo train ")


def test_run_schema_serialises_as_metrics_json():
    from mammo.training import RunResult, TaskResult

    y, g = np.array([0, 1, 0, 1]), np.array(["a", "a", "b", "b"])
    folds = [(np.array([0, 1]), np.array([2, 3])), (np.array([2, 3]), np.array([0, 1]))]
    r = CVResult(
        pooled={"auc": float("nan"), "n": np.int64(4)},
        oof_proba=np.zeros((4, 2)),
        params=[{}, {}],
        grouped_calibration=True,
        searched_folds=0,
        candidate=Candidate("texture", "svm"),
    )
    task = TaskResult("tumour", y, g, folds, "texture+svm", {"texture+svm": r})
    m = RunResult(
        "now", {"name": "toy"}, {"folds": 2}, {}, {"tumour": task}, ["a note"], timing={"total_s": 1.0}
    ).to_json()
    assert list(m) == ["started", "dataset", "config", "feature_cache", "tasks", "notes", "timing"]
    t = m["tasks"]["tumour"]
    assert list(t) == [
        "n_images",
        "n_groups",
        "class_counts",
        "fold_sizes",
        "groups_shared_between_folds",
        "best",
        "candidates",
        "params",
    ]
    assert t["candidates"]["texture+svm"] == {
        "pooled": {"auc": None, "n": 4},
        "folds": [],
        "folds_summary": {},
        "params": [{}, {}],
        "grouped_calibration": True,
        "searched_folds": 0,
        "fit_s": 0.0,
    }
    assert t["params"] == {} and t["class_counts"] == {"0": 2, "1": 2} and t["fold_sizes"] == [2, 2]


def test_crop_shift_summary_compares_each_moved_answer_with_its_own():
    from mammo.training.cv import crop_shift_summary

    own_pred = np.array([1, 2, 3, 2, 1])
    shifted = [(np.array([0, 1]), None, np.array([1, 3])), (np.array([3]), None, np.array([2]))]
    s = crop_shift_summary("density", shifted, None, own_pred)
    assert s == {"images": 3, "shift_px": 0.5, "grades_unchanged": 2 / 3}
    own = np.column_stack([1 - np.array([0.2, 0.5, 0.9]), [0.2, 0.5, 0.9]])
    moved = [(np.array([2, 0]), np.array([[0.2, 0.8], [0.7, 0.3]]), None)]
    s = crop_shift_summary("tumour", moved, own, None)
    assert s["images"] == 2 and s["p_change_median"] == pytest.approx(0.1)
    assert s["p_change_p90"] == pytest.approx(0.1)
    assert crop_shift_summary("tumour", [], own, None) is None


def test_cross_validate_predicts_the_shifted_rows_with_each_test_folds_model():
    rng = np.random.default_rng(0)
    n = 60
    y = np.repeat([0, 1], n // 2)
    g = np.arange(n) // 2
    X = rng.normal(size=(n, 5)) + y[:, None]
    rows = np.arange(0, n, 3)
    folds = make_folds(y, g, 3, 0)

    def check(moved):
        cv = cross_validate(
            "tumour",
            {"texture": X},
            y,
            g,
            folds,
            [Candidate("texture", "svm")],
            n_jobs=1,
            n_boot=50,
            progress=False,
            shifted={"texture": (rows, moved)},
        )
        return cv["texture+svm"]

    same = check(X[rows])  # unmoved features: the same answers
    assert same.crop_shift["images"] == len(rows) and same.crop_shift["p_change_median"] == pytest.approx(0, abs=1e-9)
    moved = check(X[rows] + 0.5)
    assert moved.crop_shift["p_change_median"] > 0.01 and "crop_shift" in moved.to_json()
