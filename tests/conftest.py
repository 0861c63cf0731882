"""Shared fixtures: synthetic mammograms, the real-data folder, and offline CNN weights.

The synthetic images come from :mod:`mammo.testing`; test functions get them through
the fixtures here (``mammogram``, ``synthetic_set``, ``dphi_copies``). Module-level
helpers that write whole data sets to disk import :mod:`mammo.testing` themselves.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mammo.storage import keras_home
from mammo.testing import simulate_copies, synthetic_mammogram, write_png

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"
WEIGHTS_FILE = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def pytest_configure(config):
    # The CNN tests need the ImageNet weights. Offline (these machines), point
    # Keras' cache at a copy of ../shared/weights unless KERAS_HOME already
    # holds them; must happen before keras is imported.
    home = keras_home()
    if not (home / "models" / WEIGHTS_FILE.name).is_file() and WEIGHTS_FILE.is_file():
        home = Path(config.rootpath) / ".pytest_cache" / "keras_home"
        (home / "models").mkdir(parents=True, exist_ok=True)
        target = home / "models" / WEIGHTS_FILE.name
        if not target.is_file():
            shutil.copyfile(WEIGHTS_FILE, target)
        os.environ["KERAS_HOME"] = str(home)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    config.addinivalue_line("markers", "needs_weights: skipped unless the MobileNetV2 ImageNet weights are at hand")


def weights_available() -> bool:
    home = keras_home()
    return (home / "models" / WEIGHTS_FILE.name).is_file()


#: Test files whose every test is slow: a real browser, a Dask cluster, Keras training,
#: a real training run, fresh command-line processes.
SLOW_FILES = ("test_browser.py", "test_dask.py", "test_finetune.py", "test_card.py", "test_cli.py")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark the slow tests (the CNN, real data, a browser, training runs) and skip the
    ``needs_weights`` ones when the ImageNet weights are not at hand."""
    skip = (
        None
        if weights_available()
        else pytest.mark.skip(
            reason="MobileNetV2 ImageNet weights not found in $KERAS_HOME/models nor ../shared/weights"
        )
    )
    for item in items:
        heavy = "needs_weights" in item.keywords or "require_data" in getattr(item, "fixturenames", ())
        if heavy or item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
        if skip is not None and "needs_weights" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def weights_file() -> Path:
    """The ImageNet MobileNetV2 weights file Keras would load (skips when there is none)."""
    path = keras_home() / "models" / WEIGHTS_FILE.name
    if not path.is_file():
        pytest.skip(f"MobileNetV2 ImageNet weights not found at {path}")
    return path


@pytest.fixture(scope="session")
def require_data():
    """``require_data(*parts)``: the path of a part of ../shared/data, or a skip when it is absent."""

    def find(*parts: str) -> Path:
        path = DATA.joinpath(*parts)
        if not path.exists():
            pytest.skip(f"real data not found at {path} (../shared/data beside the checkout)")
        return path

    return find


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory):
    """48 synthetic mammograms saved as PNG, with density (1-4) and tumour (0/1) labels."""
    folder = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    paths, density, tumour = [], [], []
    for i in range(48):
        d, t = i % 4 + 1, (i // 4) % 2
        img = synthetic_mammogram(rng, d, t, side="left" if i % 3 else "right", inverted=i % 7 == 0)
        paths.append(str(write_png(img, folder / f"img_{i:03d}.png")))
        density.append(d)
        tumour.append(t)
    return paths, np.array(density), np.array(tumour)


@pytest.fixture(scope="session")
def texture_model(synthetic_set):
    """The session's one fitted model: the web app's demo model (texture + SVM, no TensorFlow;
    :func:`mammo.webapp.demo.demo_model`) on the 48 images of ``synthetic_set``.

    Tests that change it work on a copy; tests that need another kind of model (a CNN,
    missing labels) fit their own.
    """
    from mammo.webapp.demo import demo_model

    paths, density, tumour = synthetic_set
    # the pipelines' default working size: the demo app's 512 costs more and tests nothing more
    return demo_model(paths, density, tumour, texture_size=256)


@pytest.fixture(scope="session")
def texture_model_path(texture_model, tmp_path_factory):
    """``texture_model`` saved with its manifest, as ``mammo train`` saves a model."""
    return texture_model.save(tmp_path_factory.mktemp("model") / "texture.joblib")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def mammogram(rng):
    """:func:`mammo.testing.synthetic_mammogram` drawing from the test's ``rng``: ``mammogram(density=3)``."""
    return functools.partial(synthetic_mammogram, rng)


def _original(rng: np.random.Generator, k: int = 0) -> np.ndarray:
    """A distinct original for the grouping tests: structured tissue, no film label (it would match across originals)."""
    return synthetic_mammogram(
        rng, 1 + k % 4, 0, (256, 256), "left" if k % 2 else "right", structure=True, film_label=False
    )


@pytest.fixture
def original(rng):
    """One original mammogram for the duplicate-grouping tests, from the test's ``rng``."""
    return _original(rng)


@pytest.fixture(scope="session")
def dphi_copies():
    """6 originals x 10 DPhi-style augmented copies (:func:`mammo.testing.simulate_copies`), and the true groups."""
    rng = np.random.default_rng(7)
    return simulate_copies([_original(rng, k) for k in range(6)], 10, seed=3)
