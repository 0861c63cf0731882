"""Dataset readers on small synthetic data sets in each layout, plus every DatasetError."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mammo.datasets import (
    Dataset,
    DatasetError,
    load_dataset,
    load_dphi,
    load_manifest,
    load_mias,
    load_rsna,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _img(path: Path, seed: int = 0, size: int = 16, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    im = Image.fromarray(a)
    if mode == "RGB":
        im = im.convert("RGB")
    im.save(path)


# ----------------------------------------------------------------------------- DPhi


def _dphi(tmp_path: Path) -> Path:
    root = tmp_path / "dphi"
    labels = ["Density1Benign", "Density3Malignant", "Density4Benign", "Density2Malignant"]
    for i in range(4):
        _img(root / "train" / f"Image_{i + 1}.jpg", i, mode="RGB")
    pd.DataFrame({"filename": [f"Image_{i + 1}.jpg" for i in range(4)], "label": labels}).to_csv(
        root / "Training_set.csv", index=False
    )
    return root


def test_dphi_labels_and_given_groups(tmp_path):
    root = _dphi(tmp_path)
    ds = load_dphi(root, groups=["a", "a", "b", "b"])
    assert ds.density.tolist() == [1, 3, 4, 2]
    assert ds.tumour.tolist() == [0, 1, 0, 1]
    assert list(ds.groups) == ["a", "a", "b", "b"]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in ds.paths)
    paths, y, g = ds.task("tumour")
    assert y.dtype.kind == "i" and y.tolist() == [0, 1, 0, 1]
    s = ds.summary()
    json.dumps(s)
    assert s["n_groups"] == 2 and s["density"]["counts"] == {"1": 1, "2": 1, "3": 1, "4": 1}
    auto = load_dataset(root, groups="filename")
    assert auto.name == "dphi" and len(set(auto.groups)) == 4


def test_dphi_auto_groups_runs_grouping(tmp_path):
    ds = load_dphi(_dphi(tmp_path), groups="auto", progress=False, cache_dir=tmp_path / "cache")
    assert len(ds.groups) == 4 and all(isinstance(g, str) for g in ds.groups)


def test_dphi_bad_label_and_wrong_group_count(tmp_path):
    root = _dphi(tmp_path)
    with pytest.raises(DatasetError, match="2 groups given for 4 images"):
        load_dphi(root, groups=["a", "b"])
    df = pd.read_csv(root / "Training_set.csv")
    df.loc[1, "label"] = "Dense3Bad"
    df.to_csv(root / "Training_set.csv", index=False)
    with pytest.raises(DatasetError, match="Dense3Bad"):
        load_dphi(root, groups="filename")


# ----------------------------------------------------------------------------- MIAS

INFO = """\
header text that is not data
mdb001 G CIRC B 535 425 197
mdb002 G CIRC B 522 280 69
mdb003 D NORM
mdb004 D NORM 
mdb005 F CIRC B 477 133 30
mdb005 F CIRC B 500 168 26
mdb006 F NORM
mdb007 D CALC M *NOTE 3*
mdb008 D CALC B
mdb009 F MISC B 233 994 29
mdb009 F MISC M 313 540 27
mdb010 G NORM
"""


def _mias(tmp_path: Path) -> Path:
    root = tmp_path / "mias"
    root.mkdir()
    (root / "Info.txt").write_text(INFO)
    for n in range(1, 11):
        _img(root / f"mdb{n:03d}.{'pgm' if n % 2 else 'png'}", n)
    return root


def test_mias_layout(tmp_path):
    ds = load_mias(_mias(tmp_path))
    assert len(ds) == 10
    assert [Path(p).suffix for p in ds.paths[:2]] == [".pgm", ".png"]
    assert ds.density.tolist() == [2, 2, 3, 3, 1, 1, 3, 3, 1, 2]
    t = ds.tumour
    assert t[0] == 0 and np.isnan(t[2]) and t[4] == 0 and t[6] == 1 and t[7] == 0
    assert t[8] == 1  # benign and malignant lesion: malignant
    assert list(ds.groups[:4]) == ["mias_patient001", "mias_patient001", "mias_patient002", "mias_patient002"]
    m = ds.meta
    assert m.loc[4, "n_lesions"] == 2 and m.loc[4, "x"] == 477
    assert m.loc[6, "n_lesions"] == 1 and np.isnan(m.loc[6, "x"])  # calcification without a centre
    assert m.loc[2, "n_lesions"] == 0
    paths, y, g = ds.task("tumour")
    assert len(paths) == 6 and set(y) == {0, 1}
    assert load_dataset(ds.paths[0].rsplit("/", 1)[0]).name == "mias"


def test_mias_missing_image(tmp_path):
    root = _mias(tmp_path)
    (root / "mdb003.pgm").unlink()
    with pytest.raises(DatasetError, match="mdb003"):
        load_mias(root)


def test_mias_no_rows(tmp_path):
    (tmp_path / "Info.txt").write_text("nothing here\n")
    with pytest.raises(DatasetError, match="no rows"):
        load_dataset(tmp_path)


# ----------------------------------------------------------------------------- manifest


def test_manifest_letters_and_missing_labels(tmp_path):
    for i in range(5):
        _img(tmp_path / "imgs" / f"{i}.png", i)
    pd.DataFrame(
        {
            "path": [f"imgs/{i}.png" for i in range(5)],
            "patient_id": ["p1", "p1", "p2", "p3", "p3"],
            "density": ["A", "d", "", "2", "C"],
            "tumour": ["Malignant", "B", "1", "", "0"],
            "view": ["CC", "MLO", "CC", "CC", "MLO"],
        }
    ).to_csv(tmp_path / "m.csv", index=False)
    ds = load_dataset(tmp_path / "m.csv")
    assert ds.name == "m"
    np.testing.assert_array_equal(ds.density, [1, 4, np.nan, 2, 3])
    np.testing.assert_array_equal(ds.tumour, [1, 0, 1, np.nan, 0])
    p, y, g = ds.task("density")
    assert y.tolist() == [1, 4, 2, 3] and list(g) == ["p1", "p1", "p3", "p3"]
    p, y, g = ds.task("tumour")
    assert y.tolist() == [1, 0, 1, 0] and len(p) == 4
    assert "view" in ds.meta.columns
    with pytest.raises(ValueError):
        ds.task("age")


def test_manifest_root_and_filename_column(tmp_path):
    _img(tmp_path / "data" / "x.png")
    (tmp_path / "csvs").mkdir()
    pd.DataFrame({"filename": ["x.png"], "cancer": ["M"]}).to_csv(tmp_path / "csvs" / "l.csv", index=False)
    ds = load_manifest(tmp_path / "csvs" / "l.csv", root=tmp_path / "data")
    assert ds.tumour.tolist() == [1] and np.isnan(ds.density[0])
    assert ds.groups[0] == ds.paths[0]  # no group column: each image its own group


@pytest.mark.parametrize(
    "frame, match",
    [
        ({"file": ["a.png"], "density": ["1"]}, "path"),
        ({"path": ["a.png"], "age": ["60"]}, "density"),
        ({"path": ["a.png"], "density": ["E"]}, "A-D"),
        ({"path": ["a.png"], "density": ["5"]}, "A-D"),
        ({"path": ["a.png"], "tumour": ["maybe"]}, "tumour"),
        ({"path": ["a.png", "nope1.png", "nope2.png"], "density": ["1", "1", "1"]}, "2 of 3 .*nope1"),
        ({"path": ["a.png"], "group": [""], "density": ["1"]}, "empty"),
    ],
)
def test_manifest_errors(tmp_path, frame, match):
    _img(tmp_path / "a.png")
    pd.DataFrame(frame).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DatasetError, match=match):
        load_dataset(tmp_path / "m.csv")


# ----------------------------------------------------------------------------- RSNA


def _rsna(tmp_path: Path) -> Path:
    root = tmp_path / "rsna"
    rows = []
    for i, (pid, cancer, dens) in enumerate([(5, 0, ""), (5, 0, ""), (7, 1, "B"), (7, 1, "D")]):
        fn = f"{pid}_{1000 + i}_png.rf.abc{i}.jpg"
        _img(root / "images" / fn, i, mode="RGB")
        rows.append(
            {
                "filename": fn,
                "patient_id": pid,
                "image_id": 1000 + i,
                "laterality": "L",
                "view": "CC",
                "site_id": 2 if not dens else 1,
                "cancer": cancer,
                "density": dens,
            }
        )
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    (root / "holdout").mkdir()
    (root / "holdout" / "case_0000.jpg").write_bytes(b"not an image: reading it would fail")
    return root


def test_rsna_layout_never_reads_holdout(tmp_path, monkeypatch):
    root = _rsna(tmp_path)
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: (opened.append(str(fp)), real_open(fp, *a, **k))[1])
    ds = load_dataset(root)
    assert ds.name == "rsna" and len(ds) == 4
    assert not any("holdout" in p for p in ds.paths + opened)
    assert list(ds.groups) == ["5", "5", "7", "7"]
    assert ds.tumour.tolist() == [0, 0, 1, 1]
    p, y, g = ds.task("density")
    assert y.tolist() == [2, 4] and set(g) == {"7"}
    assert ds.breasts().tolist() == ["5|L", "5|L", "7|L", "7|L"]


def test_breasts_need_a_complete_laterality_column(tmp_path):
    csv = tmp_path / "m.csv"
    for i in range(3):
        _img(tmp_path / f"{i}.png", i)
    csv.write_text("path,patient_id,tumour,laterality\n0.png,a,0,l\n1.png,a,1,R\n2.png,b,0,\n")
    assert load_dataset(csv).breasts() is None  # one side unknown: no breast ids at all
    csv.write_text("path,patient_id,tumour,laterality\n0.png,a,0,l\n1.png,a,1,R\n2.png,b,0,L\n")
    assert load_dataset(csv).breasts().tolist() == ["a|L", "a|R", "b|L"]
    csv.write_text("path,patient_id,tumour\n0.png,a,0\n")
    assert load_dataset(csv).breasts() is None


def test_rsna_refuses_holdout_rows(tmp_path):
    root = _rsna(tmp_path)
    df = pd.read_csv(root / "labels.csv")
    _img(root / "images" / ".." / "holdout" / "case_0001.jpg")
    df.loc[0, "filename"] = "../holdout/case_0001.jpg"
    df.to_csv(root / "labels.csv", index=False)
    with pytest.raises(DatasetError, match="holdout"):
        load_rsna(root)


def test_rsna_missing_column(tmp_path):
    root = _rsna(tmp_path)
    pd.read_csv(root / "labels.csv").drop(columns="patient_id").to_csv(root / "labels.csv", index=False)
    with pytest.raises(DatasetError, match="patient_id"):
        load_rsna(root)


# ----------------------------------------------------------------------------- load_dataset errors


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="no such"):
        load_dataset(tmp_path / "nowhere")


def test_unknown_layout(tmp_path):
    _img(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="unknown layout"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="neither"):
        load_dataset(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="kind"):
        load_dataset(tmp_path, kind="dicom-tree")


def test_dataset_length_mismatch_and_subset(tmp_path):
    with pytest.raises(DatasetError, match="density"):
        Dataset("x", ["a", "b"], np.array([1.0]), np.array([0.0, 1.0]), np.array(["g", "h"]))
    ds = Dataset("x", ["a", "b", "c"], np.array([1.0, np.nan, 3]), np.array([0.0, 1, np.nan]), np.array([1, 1, 2]))
    sub = ds.subset(np.array([False, True, True]))
    assert sub.paths == ["b", "c"] and list(sub.groups) == ["1", "2"] and len(sub.meta) == 2


@pytest.mark.skipif(not (DATA / "mini-mias" / "Info.txt").is_file(), reason="../shared/data/mini-mias not present")
def test_real_mias_counts():
    s = load_dataset(DATA / "mini-mias").summary()
    assert s["n_images"] == 322 and s["n_groups"] == 161
    assert s["density"]["counts"] == {"1": 106, "2": 104, "3": 112}
    assert s["tumour"]["counts"] == {"0": 63, "1": 52}


@pytest.mark.skipif(
    not (DATA / "rsna-screening" / "labels.csv").is_file(), reason="../shared/data/rsna-screening not present"
)
def test_real_rsna_counts():
    ds = load_dataset(DATA / "rsna-screening")
    s = ds.summary()
    assert s["n_images"] == 2550 and s["n_groups"] == 723
    assert s["tumour"]["counts"]["1"] == 879 and s["density"]["n_images"] == 1383
    assert not any("/holdout/" in p for p in ds.paths)
