"""mammo.storage: one sha256, atomic writes, step records; mammo.conventions: one list of image suffixes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from mammo import storage
from mammo.conventions import IMAGE_SUFFIXES, list_images


def test_one_sha256_for_files_bytes_and_arrays(tmp_path):
    data = bytes(range(256)) * 5000  # more than one read chunk
    path = tmp_path / "a.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert storage.file_sha256(path) == storage.content_sha256(path) == storage.content_sha256(str(path)) == expected
    assert storage.content_sha256(data) == expected
    a = np.arange(12, dtype=np.uint8)
    # an array's hash covers its dtype and shape, not only its bytes
    assert (
        len(
            {
                storage.content_sha256(a),
                storage.content_sha256(a.reshape(3, 4)),
                storage.content_sha256(a.view(np.int8)),
            }
        )
        == 3
    )
    assert storage.content_sha256(a[::2]) == storage.content_sha256(a[::2].copy())
    assert storage.json_sha256({"b": 1, "a": (1, 2)}) == storage.json_sha256({"a": [1, 2], "b": 1})


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary_on_error(tmp_path):
    target = tmp_path / "sub" / "f.json"
    storage.atomic_write(target, "old")
    with pytest.raises(RuntimeError):
        with storage.atomic_open(target) as fh:
            fh.write(b"half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]
    storage.atomic_write(target, b"new")
    assert target.read_bytes() == b"new"


def test_step_record_is_step_key_as_json():
    from mammo.features.texture import GLCMFeatures

    step = GLCMFeatures(levels=16)
    rec = storage.step_record(step)
    assert rec["class"] == "mammo.features.texture.GLCMFeatures"
    assert rec["params"]["levels"] == 16 and isinstance(rec["params"]["distances"], list)
    assert storage.step_key(step).startswith("mammo.features.texture.GLCMFeatures[")


def test_every_cache_version_is_in_the_registry():
    from mammo import featcache, grouping

    assert storage.VERSIONS == {
        "features": featcache.CACHE_VERSION,
        "signatures": grouping.SIGNATURE_VERSION,
        "groups": grouping.GROUPS_VERSION,
    }
    assert grouping.SIGNATURE_VERSION.startswith(storage.SIGNATURE_PREFIX)


def test_image_suffixes_are_one_list(tmp_path):
    from mammo import audit, conventions, grouping, predict

    assert ".dicom" in IMAGE_SUFFIXES and ".dcm" in IMAGE_SUFFIXES
    assert grouping.IMAGE_SUFFIXES is IMAGE_SUFFIXES and audit.IMAGE_SUFFIXES is IMAGE_SUFFIXES
    assert predict.images_for_command is conventions.images_for_command  # one image search for the CLI
    for name in ("b/scan.DICOM", "a.png", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list_images(tmp_path) == [str(tmp_path / "a.png"), str(tmp_path / "b" / "scan.DICOM")]


def test_a_fresh_shell_in_the_checkout_finds_its_weights_and_caches(tmp_path):
    """``make`` puts the weights in <checkout>/.cache/keras and keeps caches in .cache/mammo;
    the library and the console script find them with nothing exported (issue 17)."""
    import subprocess
    import sys

    checkout = Path(storage.__file__).resolve().parent.parent
    if storage.checkout_cache() is None or not (checkout / ".cache" / "keras" / "models").is_dir():
        pytest.skip("not a set-up checkout (make setup creates .cache/keras/models)")
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_HOME", "MAMMO_CACHE_DIR")}
    code = (
        "import os; from mammo.features import cnn; from mammo import storage; "
        "print(os.environ['KERAS_HOME']); print(cnn.resolve_weights('imagenet')); print(storage.cache_root())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == str(checkout / ".cache" / "keras")
    assert out[1].startswith(str(checkout / ".cache" / "keras" / "models"))
    want_cache = checkout / ".cache" / "mammo"
    assert out[2] == str(want_cache if want_cache.is_dir() else Path.home() / ".cache" / "mammo")
    # an exported variable still wins
    env["KERAS_HOME"] = str(tmp_path / "k")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == str(tmp_path / "k")


def test_keras_home_outside_a_checkout(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setattr(storage, "checkout_cache", lambda: None)
    assert storage.keras_home() == Path.home() / ".keras"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert storage.keras_home() == tmp_path
