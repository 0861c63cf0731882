"""The batch command line: mammo predict."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mammo.cli import main as mammo_main
from mammo.conventions import find_images
from mammo.predict import main
from mammo.testing import write_dicom


@pytest.fixture
def folder(tmp_path, synthetic_set):
    paths = synthetic_set[0]
    root = tmp_path / "scans"
    (root / "sub").mkdir(parents=True)
    for p in paths[:3]:
        shutil.copy(p, root)
    shutil.copy(paths[3], root / "sub")
    from PIL import Image

    image = np.asarray(Image.open(paths[4]), np.float32) / 255
    write_dicom((image * 4095).astype(np.uint16), root / "sub" / "scan.dcm", bits_stored=12)
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image, and not picked up from a folder")
    (root / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    return root


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_folder_with_good_and_bad_files(folder, texture_model_path, capsys):
    code = main([str(folder), "--model", str(texture_model_path), "--quiet", "--batch-size", "2"])
    out, err = capsys.readouterr()
    rows = _rows(out)
    assert code == 1 and "5 predicted, 2 failed" in err
    assert len(rows) == 7 and not any("notes.txt" in r["file"] for r in rows)
    bad = {r["file"].rsplit("/", 1)[-1]: r["error"] for r in rows if r["error"]}
    assert set(bad) == {"empty.png", "truncated.jpg"}
    assert "EmptyImageError" in bad["empty.png"]
    good = [r for r in rows if not r["error"]]
    assert any(r["file"].endswith("scan.dcm") for r in good)
    for r in good:
        p = [float(r[f"p_density_{c}"]) for c in (1, 2, 3, 4)]
        assert abs(sum(p) - 1) < 1e-4 and int(r["density_label"]) in (1, 2, 3, 4)
        assert r["tumour_label"] in ("Benign", "Malignant") and 0 <= float(r["p_malignant"]) <= 1


def test_csv_file_and_exit_zero_when_all_good(folder, texture_model_path, tmp_path, texture_model, synthetic_set):
    out = tmp_path / "out" / "pred.csv"
    code = main(
        [str(folder / "*.png"), str(folder / "sub"), "--model", str(texture_model_path), "--out", str(out), "--quiet"]
    )
    assert code == 1  # empty.png matches the glob
    code = main([str(folder / "sub"), "--model", str(texture_model_path), "--out", str(out), "--quiet"])
    assert code == 0
    rows = _rows(out.read_text())
    assert [r["file"].rsplit("/", 1)[-1] for r in rows] == ["img_003.png", "scan.dcm"]
    expected = texture_model.predict_proba([synthetic_set[0][3]])["tumour"][0, 1]
    assert float(rows[0]["p_malignant"]) == pytest.approx(expected, abs=1e-6)


def test_labels_follow_the_models_own_rule(folder, texture_model, tmp_path):
    """The CSV's labels are the model's (cut points, tumour threshold), as in the API and web page."""
    import copy

    images = sorted(str(p) for p in folder.glob("img_*.png"))
    recs = texture_model.predict_records(images)
    for threshold, forced in ((None, None), (0.0, "Malignant"), (1.01, "Benign")):
        model = copy.deepcopy(texture_model)
        if threshold is not None:
            model.metadata["tasks"]["tumour"]["threshold"] = threshold
        path = model.save(tmp_path / f"model-{threshold}.joblib")
        out = tmp_path / f"pred-{threshold}.csv"
        assert main([*images, "--model", str(path), "--out", str(out), "--quiet"]) == 0
        rows = _rows(out.read_text())
        assert [int(r["density_label"]) for r in rows] == [rec["density"]["label"] for rec in recs]
        names = [r["tumour_label"] for r in rows]
        if forced is None:
            assert names == [("Benign", "Malignant")[rec["tumour"]["label"]] for rec in recs]
        else:
            assert set(names) == {forced} and {float(r["tumour_threshold"]) for r in rows} == {threshold}


def test_usage_errors(tmp_path, folder, texture_model_path, capsys):
    assert mammo_main(["predict", str(tmp_path / "nothing"), "--model", str(texture_model_path)]) == 2
    assert "mammo predict: error: no images found" in capsys.readouterr().err
    assert mammo_main(["predict", str(folder), "--model", str(tmp_path / "missing.joblib")]) == 2
    assert "model file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_help_and_dispatch(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "glob" in capsys.readouterr().out
    assert mammo_main(["--help"]) == 0
    assert "predict" in capsys.readouterr().out
    out = subprocess.run([sys.executable, "-m", "mammo.cli", "predict", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--model" in out.stdout


def test_find_images_dedups(folder):
    paths, missing = find_images([str(folder), str(folder / "img_000.png"), "nope/*.png"])
    assert len(paths) == len(set(paths)) == 7 and missing == ["nope/*.png"]


def test_not_a_mammogram_gets_an_error_row_and_every_row_its_ood_fields(folder, texture_model_path, capsys):
    from PIL import Image
    from skimage.data import astronaut

    Image.fromarray(astronaut()).save(folder / "photo.jpg")
    Image.fromarray(np.zeros((300, 240), np.uint8)).save(folder / "black.png")
    code = main([str(folder), "--model", str(texture_model_path), "--quiet"])
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in _rows(capsys.readouterr().out)}
    assert code == 1
    assert "ImplausibleImageError" in rows["photo.jpg"]["error"] and "colour" in rows["photo.jpg"]["error"]
    assert "blank" in rows["black.png"]["error"] and rows["black.png"]["p_malignant"] == ""
    good = [r for r in rows.values() if not r["error"]]
    assert len(good) == 5 and all(
        float(r["ood_score"]) >= 0 and r["in_distribution"] in ("true", "false") for r in good
    )


# ------------------------------------------------------------------ --by breast | exam
@pytest.fixture
def exam_folder(tmp_path, synthetic_set):
    """Exam P1: four PNG views named by the file-name convention and one bad file;
    exam 1.2.9: two DICOM views whose names say nothing (their tags do)."""
    import pydicom
    from PIL import Image

    paths = synthetic_set[0]
    root = tmp_path / "exams"
    root.mkdir()
    for src, name in zip(paths[:4], ("P1_L_CC.png", "P1_L_MLO.png", "P1_R_CC.png", "P1_R_MLO.png")):
        shutil.copy(src, root / name)
    (root / "P1_R_XCCL.png").write_bytes(b"")  # unreadable: refused, the rest still combined
    for k, (side, view) in enumerate((("L", "CC"), ("R", "MLO"))):
        image = np.asarray(Image.open(paths[4 + k]), np.float32) / 255
        dcm = root / f"img{k}.dcm"
        write_dicom((image * 4095).astype(np.uint16), dcm, bits_stored=12)
        ds = pydicom.dcmread(dcm)
        ds.StudyInstanceUID, ds.ImageLaterality, ds.ViewPosition = "1.2.9", side, view
        ds.save_as(dcm)
    return root


def _image_rows(folder, model_path, capsys):
    assert main([str(folder), "--model", str(model_path), "--quiet"]) == 1
    return {r["file"]: r for r in _rows(capsys.readouterr().out)}


def test_by_breast_averages_the_views_of_each_breast(exam_folder, texture_model_path, capsys):
    per_image = _image_rows(exam_folder, texture_model_path, capsys)
    assert main([str(exam_folder), "--model", str(texture_model_path), "--quiet", "--by", "breast"]) == 1
    rows = _rows(capsys.readouterr().out)
    scored = {(r["exam"], r["laterality"]): r for r in rows if not r["refused"]}
    assert set(scored) == {("P1", "L"), ("P1", "R"), ("1.2.9", "L"), ("1.2.9", "R")}
    left = scored[("P1", "L")]
    files = left["files"].split(";")
    assert (
        left["n_views"] == "2"
        and left["views"] == "CC;MLO"
        and [f.rsplit("/", 1)[-1] for f in files] == ["P1_L_CC.png", "P1_L_MLO.png"]
    )
    assert float(left["p_malignant"]) == pytest.approx(
        np.mean([float(per_image[f]["p_malignant"]) for f in files]), abs=1e-6
    )
    assert scored[("1.2.9", "R")]["views"] == "MLO"  # from the DICOM tags
    (bad,) = [r for r in rows if r["refused"]]
    assert bad["exam"] == "P1" and bad["files"].endswith("P1_R_XCCL.png")


def test_by_exam_gives_one_density_per_exam(exam_folder, texture_model_path, tmp_path, capsys):
    per_image = _image_rows(exam_folder, texture_model_path, capsys)
    out = tmp_path / "exams.csv"
    assert (
        main([str(exam_folder), "--model", str(texture_model_path), "--quiet", "--by", "exam", "--out", str(out)]) == 1
    )
    rows = {r["exam"]: r for r in csv.DictReader(open(out))}
    assert set(rows) == {"P1", "1.2.9"}
    p1 = rows["P1"]
    assert p1["n_images"] == "5" and p1["n_scored"] == "4" and "P1_R_XCCL.png" in p1["refused"]
    grades = sorted(int(r["density_label"]) for f, r in per_image.items() if "/P1_" in f and r["density_label"])
    assert int(p1["density_label"]) == grades[len(grades) // 2]  # the median, denser middle
    right = [float(per_image[f]["p_malignant"]) for f in per_image if f.endswith(("P1_R_CC.png", "P1_R_MLO.png"))]
    assert float(p1["p_malignant_right"]) == pytest.approx(np.mean(right), abs=1e-6)


def test_a_views_manifest_overrides_names_and_tags(exam_folder, texture_model_path, tmp_path, capsys):
    views = tmp_path / "views.csv"
    views.write_text(
        f"path,exam,laterality,view\n{exam_folder / 'P1_L_CC.png'},E9,R,CC\n{exam_folder / 'img0.dcm'},E9,R,MLO\n"
    )
    main(
        [
            str(exam_folder / "P1_L_CC.png"),
            str(exam_folder / "img0.dcm"),
            "--model",
            str(texture_model_path),
            "--quiet",
            "--by",
            "breast",
            "--views",
            str(views),
        ]
    )
    (row,) = _rows(capsys.readouterr().out)
    assert (row["exam"], row["laterality"], row["views"], row["n_views"]) == ("E9", "R", "CC;MLO", "2")


def test_views_needs_by_and_a_bad_laterality_is_one_line(exam_folder, texture_model_path, tmp_path, capsys):
    views = tmp_path / "views.csv"
    views.write_text(f"path,laterality\n{exam_folder / 'P1_L_CC.png'},middle\n")
    with pytest.raises(SystemExit) as exc:
        main([str(exam_folder), "--model", str(texture_model_path), "--views", str(views)])
    assert exc.value.code == 2
    assert (
        mammo_main(
            ["predict", str(exam_folder), "--model", str(texture_model_path), "--by", "exam", "--views", str(views)]
        )
        == 2
    )
    assert "laterality 'middle'" in capsys.readouterr().err


def test_an_exam_of_four_dicom_views_by_their_tags(tmp_path, synthetic_set, texture_model_path, capsys):
    """Four DICOM views whose names say nothing: breast, view and exam come from the header."""
    from PIL import Image

    root = tmp_path / "dicom_exam"
    root.mkdir()
    for k, (side, view) in enumerate((("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))):
        image = np.asarray(Image.open(synthetic_set[0][10 + k]), np.float32) / 255
        tags = {"StudyInstanceUID": "1.2.840.9", "PatientID": "p5", "ImageLaterality": side, "ViewPosition": view}
        write_dicom((image * 4095).astype(np.uint16), root / f"image{k}.dcm", bits_stored=12, **tags)
    assert main([str(root), "--model", str(texture_model_path), "--quiet", "--by", "breast"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert [(r["exam"], r["laterality"], r["views"], r["n_views"]) for r in rows] == [
        ("1.2.840.9", "L", "CC;MLO", "2"),
        ("1.2.840.9", "R", "CC;MLO", "2"),
    ]
    assert main([str(root), "--model", str(texture_model_path), "--quiet", "--by", "exam"]) == 0
    (exam,) = _rows(capsys.readouterr().out)
    assert exam["n_scored"] == "4" and exam["p_malignant_left"] and exam["p_malignant_right"] and exam["density_label"]
