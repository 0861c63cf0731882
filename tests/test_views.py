"""Linking the views of one breast (mammo.grouping.views) on synthetic descriptors with known truth."""

import numpy as np
import pytest
from sklearn.base import clone

from mammo.features.region import crop_breast
from mammo.grouping.views import RegionShape, SameBreastLinker, link_views, probable_pairs, same_breast_pairs


def toy_set(n_breasts=60, seed=0, noise=0.3):
    """Two views per breast: descriptors share the breast's latent values plus noise."""
    rng = np.random.default_rng(seed)
    latent = {
        b: rng.normal(size=(n_breasts, d))
        for b, d in (("intensity", 8), ("shape", 6), ("glcm", 4), ("lbp", 5), ("cnn", 32))
    }
    desc = {
        b: np.repeat(v, 2, axis=0) + noise * rng.normal(size=(2 * n_breasts, v.shape[1])) for b, v in latent.items()
    }
    patients = np.repeat(np.arange(n_breasts) // 2, 2)  # two breasts per patient
    laterality = np.repeat(np.where(np.arange(n_breasts) % 2, "R", "L"), 2)
    views = np.tile(["CC", "MLO"], n_breasts)
    return desc, patients, laterality, views


def test_same_breast_pairs_are_other_views_of_one_side():
    pairs = same_breast_pairs(
        [1, 1, 1, 1, 2, 2], ["L", "L", "R", "L", "L", "L"], ["CC", "MLO", "CC", "MLO", "CC", "CC"]
    )
    assert pairs.tolist() == [[0, 1], [0, 3]]


def test_linker_finds_the_other_view_and_groups_keep_labels_apart():
    desc, patients, laterality, views = toy_set(seed=0)
    linker = SameBreastLinker(max_iter=100).fit(desc, patients, laterality, views)
    new, p2, l2, v2 = toy_set(seed=1)
    truth = same_breast_pairs(p2, l2, v2)
    tumour = np.repeat(np.arange(60) % 2, 2).astype(float)  # each breast's own label, both views
    groups = link_views(new, linker, tumour=tumour, min_groups=5)
    recall = np.mean(groups[truth[:, 0]] == groups[truth[:, 1]])
    assert recall >= 0.8
    for g in np.unique(groups):  # never across labels
        assert len(set(tumour[groups == g])) == 1
    for c in (0.0, 1.0):  # every class keeps min_groups groups, none over 1/min_groups of it
        sizes = np.bincount(groups[tumour == c])
        sizes = sizes[sizes > 0]
        assert len(sizes) >= 5 and sizes.max() <= (tumour == c).sum() / 5
    # a random linker-free grouping of the same sizes would keep few pairs: the test can fail
    shuffled = np.random.default_rng(0).permutation(groups)
    assert np.mean(shuffled[truth[:, 0]] == shuffled[truth[:, 1]]) < 0.5


def test_units_stay_together_and_unknown_labels_join_either():
    desc, patients, laterality, views = toy_set(seed=2)
    linker = SameBreastLinker(max_iter=50).fit(desc, patients, laterality, views)
    units = np.arange(120) // 4  # copies of one image must never be split
    density = np.where(np.arange(120) < 8, np.nan, (np.arange(120) // 4) % 3 + 1.0)
    groups = link_views(desc, linker, units=units, density=density, min_groups=3)
    for u in np.unique(units):
        assert len(set(groups[units == u])) == 1
    known = ~np.isnan(density)
    for g in np.unique(groups):
        assert len(set(density[known & (groups == g)])) <= 1


def test_too_few_units_of_a_class_are_never_joined():
    desc, patients, laterality, views = toy_set(seed=3, noise=0.01)
    linker = SameBreastLinker(max_iter=50).fit(desc, patients, laterality, views)
    tumour = np.zeros(120)
    tumour[:8] = 1  # four breasts: fewer than min_groups
    groups = link_views(desc, linker, tumour=tumour, min_groups=5)
    assert len(set(groups[:8])) == 8


class TableLinker:
    """A stand-in linker whose pair probabilities are a given table."""

    def __init__(self, table):
        self.table = np.asarray(table, dtype=float)

    def _proba(self, Z, pairs):
        return self.table[pairs[:, 0], pairs[:, 1]]


def test_average_linkage_does_not_chain_through_one_chance_pair():
    # two breasts (0, 1) and (2, 3); one chance pair 1-2 as probable as a true one
    table = np.zeros((4, 4))
    table[0, 1] = table[2, 3] = 0.9
    table[1, 2] = 0.8
    desc = {"x": np.zeros((4, 1))}
    kwargs = {"min_groups": 1, "min_proba": 0.5}
    assert link_views(desc, TableLinker(table), linkage="average", **kwargs).tolist() == [0, 0, 1, 1]
    assert link_views(desc, TableLinker(table), linkage="single", **kwargs).tolist() == [0, 0, 0, 0]
    groups, details = link_views(desc, TableLinker(table), return_details=True, **kwargs)
    assert {tuple(p) for p in details["pairs"][details["joined"]].tolist()} == {(0, 1), (2, 3)}
    with pytest.raises(ValueError, match="linkage"):
        link_views(desc, TableLinker(table), linkage="complete")


def test_linker_refuses_data_without_two_views():
    desc, patients, laterality, _ = toy_set()
    with pytest.raises(ValueError, match="no two views"):
        SameBreastLinker().fit(desc, patients, laterality, ["CC"] * 120)


def test_region_shape_describes_where_the_breast_sits(mammogram):
    shape = RegionShape()
    assert clone(shape).get_params() == {}
    X = shape.fit_transform([crop_breast(mammogram(density=2), size=128)])
    assert X.shape == (1, 6) and list(shape.get_feature_names_out())[:2] == ["area", "aspect"]
    area, aspect, box_share, top, bottom, flipped = X[0]
    assert 0 < area <= 1 and 0 < box_share <= 1 and 0 <= top < bottom <= 1 and flipped in (0, 1)


def test_a_reference_without_laterality_or_view_is_refused_clearly():
    from mammo.datasets import Dataset, DatasetError
    from mammo.datasets.views import fit_view_linker

    ds = Dataset("toy", ["a.png", "b.png"], [1, 2], [0, 1], ["p1", "p2"])
    with pytest.raises(DatasetError, match="laterality and view"):
        fit_view_linker(ds)


def test_probable_pairs_rank_the_other_view_first():
    desc, patients, laterality, views = toy_set(seed=4)
    linker = SameBreastLinker(max_iter=50).fit(desc, patients, laterality, views)
    new, p2, l2, v2 = toy_set(seed=5, n_breasts=20)
    pairs = probable_pairs(new, linker, min_proba=0.5)
    truth = {tuple(t) for t in same_breast_pairs(p2, l2, v2).tolist()}
    assert pairs and [p for _, _, p in pairs] == sorted((p for _, _, p in pairs), reverse=True)
    found = {(i, j) for i, j, _ in pairs}
    assert len(found & truth) >= 0.8 * len(truth) and len(found - truth) <= len(truth)


def _write_set(folder, rows, seed):
    """PNGs of synthetic mammograms: a breast's two views share its density and side, each draw its own noise."""
    from PIL import Image

    from mammo.testing import synthetic_mammogram

    rng = np.random.default_rng(seed)
    out = []
    for k, row in enumerate(rows):
        img = synthetic_mammogram(rng, row["density"], row["tumour"], (160, 128), row["side"], film_label=False)
        path = folder / f"img{k:03d}.png"
        Image.fromarray((img * 255).astype(np.uint8)).save(path)
        out.append({**row, "path": str(path)})
    return out


@pytest.fixture(scope="module")
def view_reference(tmp_path_factory):
    """An RSNA-like reference (``ref.csv``: 8 patients, both views of both breasts) and the one
    linker fitted on it through :func:`~mammo.datasets.views.fit_view_linker`, shared by the tests below."""
    import pandas as pd

    from mammo.datasets import load_dataset
    from mammo.datasets.views import fit_view_linker

    folder = tmp_path_factory.mktemp("views-reference")
    rows = [
        {"patient_id": p, "laterality": lat, "view": v, "density": 1 + p % 4, "tumour": (p // 4) % 2}
        for p in range(8)
        for lat in ("L", "R")
        for v in ("CC", "MLO")
    ]
    for r in rows:
        r["side"] = "left" if r["laterality"] == "L" else "right"
    (folder / "ref").mkdir()
    csv = folder / "ref.csv"
    pd.DataFrame(_write_set(folder / "ref", rows, 0)).drop(columns="side").to_csv(csv, index=False)
    reference = load_dataset(csv)
    linker = fit_view_linker(reference, progress=False)
    assert linker.n_pairs_ == 16  # one CC/MLO pair per breast, two breasts per patient
    return csv, sorted(map(str, reference.paths)), linker


@pytest.fixture
def shared_linker(view_reference, monkeypatch):
    """``ref.csv``, with ``fit_view_linker`` answering the module's fitted linker for it (no refit per test)."""
    from mammo.datasets import views

    csv, paths, linker = view_reference

    def fitted(reference, **_):
        assert sorted(map(str, reference.paths)) == paths  # the commands did read --views-from
        return linker

    monkeypatch.setattr(views, "fit_view_linker", fitted)
    return csv


@pytest.mark.needs_weights
def test_train_views_from_joins_groups_within_labels(tmp_path, shared_linker):
    import pandas as pd

    from mammo.training.config import TrainConfig
    from mammo.training.data import load_data

    rows = [{"density": 1 + k % 4, "tumour": (k // 4) % 2, "side": "left" if k % 3 else "right"} for k in range(40)]
    (tmp_path / "new").mkdir()
    pd.DataFrame(_write_set(tmp_path / "new", rows, 1)).drop(columns="side").to_csv(tmp_path / "new.csv", index=False)
    config = TrainConfig(data=str(tmp_path / "new.csv"), views_from=str(shared_linker), jobs=1, progress=False)
    ds = load_data(config)
    assert list(ds.meta["unit_group"]) == [str(p) for p in ds.paths]  # no ids: each image was its own unit
    assert len(set(ds.groups)) < len(ds)
    for g in set(ds.groups):
        members = ds.groups == g
        assert len(set(ds.density[members])) == 1 and len(set(ds.tumour[members])) == 1
    assert config.to_json()["views_from"] == str(shared_linker)


@pytest.mark.needs_weights
def test_audit_lists_probable_views_of_one_breast_across_a_split(tmp_path, shared_linker):
    import pandas as pd

    from mammo.audit import audit
    from mammo.conventions import InputError

    (tmp_path / "mine").mkdir()
    mine = _write_set(tmp_path / "mine", [{"density": 1 + k % 4, "tumour": 0, "side": "left"} for k in range(8)], 1)
    split = pd.DataFrame({"path": [r["path"] for r in mine], "split": ["train", "test"] * 4})
    split.to_csv(tmp_path / "split.csv", index=False)
    with pytest.raises(InputError, match="--split"):
        audit(tmp_path / "mine", tmp_path / "out0", views_from=shared_linker, progress=False)
    rep = audit(
        tmp_path / "mine",
        tmp_path / "out",
        split_csv=tmp_path / "split.csv",
        views_from=shared_linker,
        progress=False,
        n_sheets=0,
    )
    pairs = pd.read_csv(tmp_path / "out" / "view_pairs.csv")
    assert rep["n_probable_view_pairs"] == len(pairs)
    assert list(pairs.columns) == ["path_a", "split_a", "path_b", "split_b", "probability"]
    assert (pairs["split_a"] != pairs["split_b"]).all() and (pairs["probability"] >= 0.5).all()
