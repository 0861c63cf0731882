"""mammo.storage: one sha256, atomic writes, step records; mammo.conventions: one list of image suffixes."""

from __future__ import annotations

import hashlib

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
    assert len({storage.content_sha256(a), storage.content_sha256(a.reshape(3, 4)),
                storage.content_sha256(a.view(np.int8))}) == 3
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

    assert storage.VERSIONS == {"features": featcache.CACHE_VERSION, "signatures": grouping.SIGNATURE_VERSION,
                                "groups": grouping.GROUPS_VERSION}
    assert grouping.SIGNATURE_VERSION.startswith(storage.SIGNATURE_PREFIX)


def test_image_suffixes_are_one_list(tmp_path):
    from mammo import audit, conventions, grouping, predict

    assert ".dicom" in IMAGE_SUFFIXES and ".dcm" in IMAGE_SUFFIXES
    assert grouping.IMAGE_SUFFIXES is IMAGE_SUFFIXES and audit.IMAGE_SUFFIXES is IMAGE_SUFFIXES
    assert predict.find_images is conventions.find_images
    for name in ("b/scan.DICOM", "a.png", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list_images(tmp_path) == [str(tmp_path / "a.png"), str(tmp_path / "b" / "scan.DICOM")]
