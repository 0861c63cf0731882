"""The ``mammo`` command line (issue 17): every expected failure is one plain line and exit 2.

Each failure runs the console script's code in a subprocess, as a fresh shell would: cwd a
temporary folder, HOME there too, no KERAS_HOME or MAMMO_CACHE_DIR exported, no network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

import mammo
from mammo.cli import COMMANDS, expected_error, run

ROOT = Path(mammo.__file__).resolve().parent.parent  # the checkout whose code is under test


def mammo_cli(cwd: Path, *args, **env: str) -> subprocess.CompletedProcess:
    """Run ``mammo ARGS`` in ``cwd`` with a clean environment (plus ``env``)."""
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd / "home"),
        "PYTHONPATH": str(ROOT),
        # a proxy that refuses every connection: offline, and no download waits for a timeout
        **{k: "http://127.0.0.1:9" for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")},
        "NO_PROXY": "",
        "no_proxy": "",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "mammo.cli", *map(str, args)],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def assert_one_line_error(
    res: subprocess.CompletedProcess, command: str, *words: str, prefix: str | None = None
) -> str:
    """Exit status 2, no traceback, and stderr exactly one line ``mammo COMMAND: error: ...`` with ``words``."""
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(prefix or f"mammo {command}: error: "), lines[0]
    for word in words:
        assert word in lines[0]
    return lines[0]


@pytest.fixture
def work(tmp_path, synthetic_set, texture_model_path):
    """A working folder: ``scans/`` with three images, ``empty/``, ``a-file``, and the texture model's files."""
    (tmp_path / "home").mkdir()
    (tmp_path / "scans").mkdir()
    for p in synthetic_set[0][:3]:
        shutil.copy(p, tmp_path / "scans")
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    shutil.copy(texture_model_path, tmp_path / "model.joblib")
    shutil.copy(str(texture_model_path) + ".manifest.json", tmp_path / "model.joblib.manifest.json")
    return tmp_path


# ------------------------------------------------------------------------- model files


def _truncated(work: Path) -> tuple[str, list[str]]:
    data = (work / "model.joblib").read_bytes()
    (work / "bad.joblib").write_bytes(data[: len(data) // 3])
    return "not a readable model file", []


def _not_a_model(work: Path) -> tuple[str, list[str]]:
    joblib.dump({"weights": [1, 2, 3]}, work / "bad.joblib")
    return "not a MammogramModel", []


def _tampered(work: Path) -> tuple[str, list[str]]:
    data = bytearray((work / "model.joblib").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (work / "bad.joblib").write_bytes(bytes(data))
    return "does not match the manifest", ["--manifest", "model.joblib.manifest.json"]


def _newer_format(work: Path) -> tuple[str, list[str]]:
    from mammo.classifiers.model import FORMAT_VERSION

    model = joblib.load(work / "model.joblib")
    model.metadata["format_version"] = FORMAT_VERSION + 1
    model.save(work / "bad.joblib")
    return "newer mammo", ["--manifest", "bad.joblib.manifest.json"]


@pytest.mark.parametrize("make_bad", [_truncated, _not_a_model, _tampered, _newer_format])
def test_predict_refuses_a_bad_model_file_in_one_line(work, make_bad):
    words, manifest = make_bad(work)
    res = mammo_cli(work, "predict", "scans", "--model", "bad.joblib", *manifest)
    assert_one_line_error(res, "predict", "bad.joblib", words)


def test_missing_model_and_manifest(work):
    assert_one_line_error(
        mammo_cli(work, "predict", "scans", "--model", "gone.joblib"), "predict", "model file not found", "gone.joblib"
    )
    res = mammo_cli(work, "predict", "scans", "--model", "model.joblib", "--manifest", "gone.json")
    assert_one_line_error(res, "predict", "gone.json", "manifest")
    # the web app reports its own errors (mammo/webapp/__main__.py), in one line too
    res = mammo_cli(work, "serve", "--model", "gone.joblib")
    assert_one_line_error(res, "serve", "not found", "gone.joblib")


# ------------------------------------------------------------------ images and outputs


@pytest.mark.parametrize("command", ["predict", "inspect", "audit"])
def test_no_images_found(work, command):
    extra = {"predict": ["--model", "model.joblib"], "inspect": ["--out", "o"], "audit": ["--out", "o"]}[command]
    line = assert_one_line_error(mammo_cli(work, command, "nowhere", *extra), command, "no images found", "nowhere")
    assert "no such file" in line
    line = assert_one_line_error(mammo_cli(work, command, "empty", *extra), command, "no images found", "empty")
    assert ".png" in line
    assert not (work / "o").exists()


@pytest.mark.parametrize(
    "command, args",
    [
        ("predict", ["scans", "--model", "model.joblib", "--out", "a-file/predictions.csv"]),
        ("inspect", ["scans", "--out", "a-file/inspect"]),
        ("audit", ["scans", "--out", "a-file/audit"]),
        ("train", ["data", "--out", "a-file/run"]),
    ],
)
def test_output_folder_that_cannot_be_written(work, command, args):
    # checked before any work: the train case fails on --out before it looks for data
    assert_one_line_error(mammo_cli(work, command, *args), command, "cannot write in", "a-file is a file")


def test_data_set_failures(work):
    res = mammo_cli(work, "train", "nowhere", "--out", "runs/x")
    assert_one_line_error(res, "train", "nowhere", "no such file or folder")
    # images without any labels file
    line = assert_one_line_error(mammo_cli(work, "train", "scans", "--out", "runs/x"), "train", "unknown layout")
    assert "Getting data" in line
    (work / "scans" / "labels.csv").write_text("filename,comment\nimg_000.png,none\n")
    res = mammo_cli(work, "train", "scans", "--out", "runs/x")
    assert_one_line_error(res, "train", "labels.csv", "'density'", "'tumour'")
    assert not (work / "runs").exists()


# ----------------------------------------------------------------------- CNN weights


def _manifest(work: Path, paths: list[str], tumour: np.ndarray) -> Path:
    rows = ["path,tumour"] + [f"{p},{int(t)}" for p, t in zip(paths, tumour)]
    (work / "labels.csv").write_text("\n".join(rows) + "\n")
    return work / "labels.csv"


def _no_weights(work: Path) -> dict[str, str]:
    """Empty Keras and mammo caches: the weights (and any ONNX copy of the network) are not on disk."""
    for name in ("keras", "cache"):
        (work / name).mkdir()
    return {"KERAS_HOME": str(work / "keras"), "MAMMO_CACHE_DIR": str(work / "cache")}


def test_train_without_weights_says_where_to_put_them(work, synthetic_set):
    paths, _, tumour = synthetic_set
    csv = _manifest(work, paths[:12], tumour[:12])
    res = mammo_cli(
        work,
        "train",
        csv,
        "--feature-sets",
        "cnn",
        "--models",
        "svm",
        "--tasks",
        "tumour",
        "--folds",
        "2",
        "--no-deep",
        "--no-leaky",
        "--quiet",
        "--out",
        "runs/x",
        **_no_weights(work),
    )
    # one line also means TensorFlow's C++ start-up lines were silenced: Keras was imported
    assert_one_line_error(res, "train", "ImageNet MobileNetV2 weights", str(work / "keras" / "models"))


@pytest.fixture(scope="module")
def cnn_model_path(synthetic_set, tmp_path_factory):
    """A small CNN + SVM tumour model (needs the weights to fit)."""
    from mammo.classifiers import MammogramModel, make_task_pipeline

    paths, _, tumour = synthetic_set
    model = MammogramModel({"tumour": make_task_pipeline("tumour", "cnn", "svm", cnn_layers="last")})
    model.fit(paths[:8], tumour=tumour[:8])
    return model.save(tmp_path_factory.mktemp("cnn") / "cnn.joblib")


@pytest.mark.needs_weights
def test_predict_without_weights_says_where_to_put_them(work, cnn_model_path):
    res = mammo_cli(work, "predict", "scans", "--model", cnn_model_path, "--quiet", **_no_weights(work))
    assert_one_line_error(res, "predict", "ImageNet MobileNetV2 weights", "KERAS_HOME")


def test_tensorflow_start_up_lines_are_silenced(tmp_path):
    code = (
        "import sys; from mammo.cli import quiet_tensorflow\n"
        "with quiet_tensorflow():\n    import tensorflow\n"
        "print('kept', file=sys.stderr)"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == "kept\n"


# --------------------------------------------------------------------- arguments, help


@pytest.mark.parametrize("command", list(COMMANDS))
def test_bad_arguments_are_usage_and_one_error_line(tmp_path, command):
    (tmp_path / "home").mkdir()
    res = mammo_cli(tmp_path, command, "x", "--no-such-option")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    *usage, error = res.stderr.splitlines()
    assert usage[0].startswith(f"usage: mammo {command} ")
    assert all(line.startswith(" ") for line in usage[1:])  # the usage's continuation lines
    assert error.startswith(f"mammo {command}: error: ")


def test_no_or_unknown_command(tmp_path):
    (tmp_path / "home").mkdir()
    for args, words in (([], "no command given"), (["trian"], "unknown command 'trian'")):
        res = mammo_cli(tmp_path, *args)
        assert res.returncode == 2 and res.stderr.splitlines()[0].startswith("usage: mammo ")
        assert res.stderr.splitlines()[-1].startswith(f"mammo: error: {words}")
        assert "train, serve, predict" in res.stderr


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_introduces_the_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        run(command, ["--help"])  # not main(): for serve it re-executes the process
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert out.startswith(f"usage: mammo {command} ")
    assert re.search(rf"^\s*(examples?:\s*)?mammo {command} ", out, re.MULTILINE | re.IGNORECASE)  # an example


# ------------------------------------------------------------- the central error mapping


def test_expected_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys):
    import mammo.caches
    from mammo.datasets import DatasetError
    from mammo.featcache import FeatureComputationError
    from mammo.features.cnn import WeightsUnavailableError
    from mammo.features.io import ImageReadError

    def raising(exc):
        def fail(argv):
            raise exc

        return fail

    monkeypatch.setattr(mammo.caches, "main", raising(DatasetError("no Info.txt\n(not a mini-MIAS layout)")))
    assert run("cache", []) == 2
    assert capsys.readouterr().err == "mammo cache: error: no Info.txt (not a mini-MIAS layout)\n"
    monkeypatch.setattr(mammo.caches, "main", raising(KeyError("a bug")))
    with pytest.raises(KeyError):
        run("cache", [])

    def wrapped(cause: BaseException) -> FeatureComputationError:
        try:
            raise FeatureComputationError(f"a.png: {type(cause).__name__}: {cause}") from cause
        except FeatureComputationError as exc:
            return exc

    unreadable = wrapped(ImageReadError("truncated PNG"))
    assert expected_error(unreadable) is unreadable
    assert expected_error(wrapped(TypeError("a bug in a feature block"))) is None
    weights = WeightsUnavailableError("copy the weights into $KERAS_HOME/models")
    assert expected_error(wrapped(weights)) is weights  # about the machine, not the image named


# ------------------------------------------------------------------------ getting data


def _getting_data() -> str:
    """The README's "Getting data" section, up to the next top-level heading."""
    text = (ROOT / "README.md").read_text()
    assert "\n## Getting data\n" in text
    return text.split("\n## Getting data\n", 1)[1].split("\n## ", 1)[0]


def test_readme_says_where_each_data_set_comes_from_and_how_to_train_on_it():
    from mammo.datasets import DATASET_KINDS

    section = _getting_data()
    for kind in DATASET_KINDS:
        if kind != "auto":  # every layout a loader reads has its subsection and its command
            assert re.search(rf"^### .+ \(`--kind {kind}`\)$", section, re.MULTILINE), kind
            assert re.search(rf"`mammo train \S+ --kind {kind} --out runs/\S+`", section), kind
    for name, layout in (("DPhi", "Training_set.csv"), ("mini-MIAS", "Info.txt"), ("RSNA", "labels.csv")):
        assert f"### {name}" in section and layout in section
    assert "Suckling" in section and "kaggle.com/competitions/rsna-breast-cancer-detection" in section
    assert "data/" in (ROOT / ".gitignore").read_text().split()


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_without_data_points_to_getting_data(tmp_path):
    target = tmp_path / "run" / "model.joblib"  # the $(MODEL) rule, with no data found or given
    res = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "DATA=", f"RUN={tmp_path / 'run'}", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 2
    message = res.stderr.splitlines()[0]
    assert message.startswith("no training data") and "Getting data" in message and "DATA=" in message
    assert not (tmp_path / "run").exists()


def test_train_help_points_to_getting_data(capsys):
    with pytest.raises(SystemExit):
        run("train", ["--help"])
    assert "'Getting data' in the README" in capsys.readouterr().out
