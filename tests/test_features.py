"""Breast region, enhancement, texture and CNN transformers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from skimage.feature import local_binary_pattern
from sklearn.base import clone

from mammo.features import BreastCropper, CNNActivations, CNNEmbedding, Enhancer, GLCMFeatures, LBPFeatures, read_image
from mammo.features.quality import InputQualityGate
from mammo.features.region import Mammogram, breast_mask, crop_breast, is_inverted
from mammo.features.texture import glcm_features, lbp8_uniform, lbp_features

TRANSFORMERS = [
    BreastCropper(),
    InputQualityGate(),
    Enhancer(),
    GLCMFeatures(),
    LBPFeatures(),
    CNNEmbedding(),
    CNNActivations(),
]


# ------------------------------------------------------------------ contract
@pytest.mark.parametrize("est", TRANSFORMERS, ids=lambda e: type(e).__name__)
def test_estimator_contract(est):
    # The image transformers take lists of images, not 2-D feature arrays, so
    # sklearn's check_estimator does not apply; check the parts of the
    # contract that do: params round-trip, clone, and no state from __init__.
    params = est.get_params()
    twin = clone(est)
    assert twin.get_params() == params and twin is not est
    assert not [k for k in vars(est) if k.endswith("_")]
    assert set(vars(est)) == set(params)


@pytest.mark.parametrize(
    "est",
    [
        BreastCropper(size=8),
        InputQualityGate(enabled="yes"),
        Enhancer(clip_limit=2.0),
        GLCMFeatures(levels=1),
        LBPFeatures(radii=()),
        CNNEmbedding(input_size=8),
        CNNActivations(batch_size=0),
    ],
    ids=lambda e: type(e).__name__,
)
def test_bad_params_raise_in_fit_not_init(est):
    with pytest.raises(ValueError):
        est.fit([np.zeros((32, 32), np.float32)])


# ------------------------------------------------------------------ region
def test_crop_finds_breast_drops_label_and_flips(mammogram):
    img = mammogram(side="right")
    m = crop_breast(img, size=None)
    assert m.flipped and not m.inverted
    # The film label sat in a background corner: it is outside the crop or blanked.
    assert m.pixels.max() < 0.99
    # Chest wall now on the left: the left column is mostly breast.
    assert m.mask[:, 0].mean() > 0.5 and m.mask[:, -1].mean() < 0.2
    assert m.mask.mean() > 0.6  # cropped tightly


def test_inverted_image_is_detected_and_undone(mammogram):
    img = mammogram(density=3)
    normal, inverted = crop_breast(img), crop_breast(1 - img)
    assert not normal.inverted and inverted.inverted and is_inverted(1 - img)
    np.testing.assert_allclose(normal.pixels, inverted.pixels, atol=1e-5)


def test_mask_is_largest_component_and_resize_keeps_aspect(mammogram):
    img = mammogram(shape=(300, 200))
    mask = breast_mask(img)
    assert mask.shape == img.shape and not mask[4:14, -24:-8].any()
    m = BreastCropper(size=128).fit_transform([img])[0]
    assert max(m.pixels.shape) == 128 and m.pixels.shape == m.mask.shape and m.pixels.dtype == np.float32


def test_constant_image_does_not_crash():
    m = crop_breast(np.zeros((64, 64), np.float32))
    assert m.pixels.shape[0] > 0 and m.mask.all()


# ------------------------------------------------------------------ enhance
def test_enhancement_raises_local_contrast_and_stays_in_range(mammogram):
    m = crop_breast(mammogram(density=2))
    out = Enhancer().fit_transform([m])[0]
    assert out.pixels.min() >= 0 and out.pixels.max() <= 1
    inside = m.mask
    assert out.pixels[inside].std() > m.pixels[inside].std()
    assert (out.pixels[~m.mask] == 0).all()
    same = Enhancer(clip_limit=0, unsharp_amount=0).fit_transform([m])[0]
    np.testing.assert_allclose(same.pixels[inside], m.pixels[inside], atol=1e-6)


# ------------------------------------------------------------------ texture
def test_glcm_names_shape_and_mask(rng):
    img = rng.random((64, 64)).astype(np.float32)
    est = GLCMFeatures(distances=(1, 3), levels=16).fit([img])
    X = est.transform([img, np.full((64, 64), 0.5, np.float32)])
    assert X.shape == (2, 12) and len(est.get_feature_names_out()) == 12
    names = list(est.get_feature_names_out())
    assert names[0] == "glcm_contrast_d1"
    # A constant image has zero contrast; noise has a lot.
    assert X[1, names.index("glcm_contrast_d1")] == 0 and X[0, 0] > 10
    # Pixels outside the mask do not count: a masked-out noisy half changes nothing.
    half = np.zeros((64, 64), bool)
    half[:, :32] = True
    mixed = np.where(half, 0.5, img).astype(np.float32)
    np.testing.assert_allclose(glcm_features(mixed, half, distances=(1,), levels=16)[:1], 0)


def test_lbp8_matches_skimage_on_ramps():
    # Bilinear interpolation is exact on linear ramps, so the 3x3 operator
    # and scikit-image's interpolated one must agree there exactly.
    rows, cols = np.mgrid[0:40, 0:40]
    for a, b in [(1, 0), (0, 1), (2, 3), (-1, 2)]:
        ramp = (a * rows + b * cols).astype(np.float64)
        ramp = ((ramp - ramp.min()) / np.ptp(ramp) * 255).astype(np.uint8)
        ours = lbp8_uniform(ramp)[2:-2, 2:-2]
        ref = local_binary_pattern(ramp, 8, 1, method="uniform")[2:-2, 2:-2]
        assert (ours == ref).mean() > 0.9, (a, b)


def test_lbp_histograms(rng):
    img = rng.random((64, 64)).astype(np.float32)
    est = LBPFeatures(radii=(1, 2)).fit([img])
    X = est.transform([img])
    assert X.shape == (1, 20) == (1, len(est.get_feature_names_out()))
    np.testing.assert_allclose(X[0, :10].sum(), 1, rtol=1e-5)
    np.testing.assert_allclose(X[0, 10:].sum(), 1, rtol=1e-5)
    flat = lbp_features(np.full((32, 32), 0.4, np.float32), radii=(1,))
    assert flat[8] == pytest.approx(1.0)  # all neighbours >= centre: uniform code P
    assert LBPFeatures(points=16, radii=(1,)).fit([img]).transform([img]).shape == (1, 18)


def test_texture_accepts_mammograms_and_rotation_invariance(rng):
    img = rng.random((48, 48)).astype(np.float32)
    g = GLCMFeatures(distances=(1,)).fit([img])
    a, b = g.transform([Mammogram(img)]), g.transform([np.rot90(img).copy()])
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # angle-averaged GLCM


def test_transformers_pickle_without_fitted_surprises(rng):
    est = GLCMFeatures().fit([rng.random((32, 32))])
    assert pickle.loads(pickle.dumps(est)).get_feature_names_out().tolist() == est.get_feature_names_out().tolist()


# ------------------------------------------------------------------ CNN
@pytest.mark.needs_weights
def test_cnn_embedding_shape_batches_and_pickle(mammogram):
    imgs = [mammogram(d) for d in (1, 2, 3)]
    est = CNNEmbedding(batch_size=2).fit(imgs)
    X = est.transform(imgs)
    assert X.shape == (3, 1280) and np.isfinite(X).all() and X.std() > 0
    assert len(est.weights_sha256_) == 64
    assert len(est.get_feature_names_out()) == 1280
    blob = pickle.dumps(est)
    assert len(blob) < 100_000  # the Keras model is never pickled
    np.testing.assert_allclose(pickle.loads(blob).transform(imgs), X, atol=1e-5)


@pytest.mark.needs_weights
def test_cnn_multi_layer_embedding(mammogram):
    from mammo.features.cnn import MULTI_LAYERS, n_features

    imgs = [mammogram(d) for d in (1, 4)]
    last = CNNEmbedding().fit(imgs).transform(imgs)
    multi = CNNEmbedding(layers="multi", backend="onnx").fit(imgs)
    X = multi.transform(imgs)
    names = multi.get_feature_names_out()
    assert X.shape == (2, n_features("multi")) == (2, len(names)) == (2, 5792)
    assert n_features("multi") == sum(MULTI_LAYERS.values()) * 2 - MULTI_LAYERS["out_relu"]
    # the last layer's mean is the "last" embedding; the std columns are spreads (>= 0)
    out = [i for i, n in enumerate(names) if n.startswith("cnn_out_relu_mean_")]
    np.testing.assert_allclose(X[:, out], last, atol=1e-4)
    std = np.array(["_std_" in n for n in names])
    assert (X[:, std] >= 0).all() and X[:, std].max() > 0
    # the same statistics from Keras itself
    keras = CNNEmbedding(layers="multi", backend="keras").fit(imgs).transform(imgs)
    assert np.abs(keras - X).max() <= 1e-4
    # built over the process's one MobileNetV2, not a second copy of it
    from mammo.features.cnn import load_backbone

    inner = [layer for layer in load_backbone(layers="multi").layers if hasattr(layer, "get_layer")][0]
    assert inner.get_layer("Conv1") is load_backbone(layers="last").get_layer("Conv1")
    with pytest.raises(ValueError, match="layers must be one of"):
        CNNEmbedding(layers="all").fit(imgs)


@pytest.mark.needs_weights
def test_cnn_activations_are_the_backbone_map_at_the_cut(mammogram, weights_file):
    import keras

    from mammo.features.cnn import FINETUNE_CUT, load_backbone

    imgs = [mammogram(d) for d in (1, 4, 2)]
    est = CNNActivations(batch_size=2).fit(imgs)
    A = est.transform(imgs)
    assert est.map_shape_ == (14, 14, 96) and A.shape == (3, 14 * 14 * 96) == (3, len(est.get_feature_names_out()))
    assert A.dtype == np.float16 and np.isfinite(A).all() and A.std() > 0
    # the rest of the network, run from these maps, gives the pooled embedding
    backbone = load_backbone()
    rest = keras.Model(backbone.get_layer(FINETUNE_CUT).output, backbone.output)
    pooled = np.asarray(rest(A.reshape(-1, *est.map_shape_).astype(np.float32), training=False))
    emb = CNNEmbedding(backend="keras").fit(imgs).transform(imgs)
    assert np.abs(pooled - emb).max() < 0.02 * np.abs(emb).max()  # float16 maps
    blob = pickle.dumps(est)
    assert len(blob) < 100_000
    np.testing.assert_array_equal(pickle.loads(blob).transform(imgs), A)

    assert CNNActivations(weights=str(weights_file), input_size=96).fit(imgs).map_shape_ == (6, 6, 96)
    with pytest.raises(ValueError, match="no layer 'block_99_add'"):
        CNNActivations(cut="block_99_add").fit(imgs)


def test_cnn_embedding_pickled_before_layers_existed_loads_as_last():
    est = CNNEmbedding(input_size=96)
    state = est.__getstate__()
    del state["layers"]
    old = CNNEmbedding.__new__(CNNEmbedding)
    old.__setstate__(state)
    assert old.get_params()["layers"] == "last" and old.input_size == 96


@pytest.mark.needs_weights
def test_onnx_and_keras_backends_agree(mammogram):
    imgs = [mammogram(d) for d in (1, 4)]
    onnx = CNNEmbedding(backend="onnx").fit(imgs).transform(imgs)
    keras = CNNEmbedding(backend="keras").fit(imgs).transform(imgs)
    assert np.abs(onnx - keras).max() <= 1e-4


@pytest.mark.needs_weights
def test_cnn_weights_from_path_and_missing_file(tmp_path, mammogram, weights_file):

    from mammo.features.cnn import WeightsUnavailableError

    img = [mammogram()]
    by_path = CNNEmbedding(weights=str(weights_file), backend="keras").fit(img)
    np.testing.assert_allclose(by_path.transform(img), CNNEmbedding(backend="keras").fit(img).transform(img), atol=1e-5)
    with pytest.raises(WeightsUnavailableError, match="not found"):
        CNNEmbedding(weights=str(tmp_path / "missing.h5")).fit(img)


def test_imagenet_download_failure_is_explained(tmp_path, monkeypatch):
    # An empty Keras cache and no network: the error says how to fix it offline.
    import subprocess
    import sys

    # In a child process: urllib keeps the proxies of its first request for the whole process.
    code = (
        "import re\n"
        "import mammo.features.cnn as c\n"
        "try:\n    c.load_backbone('imagenet')\n"
        "except c.WeightsUnavailableError as e:\n    print('OK', 'KERAS_HOME' in str(e))\n"
        # another input side needs another file; the message names it and the way out
        "try:\n    c.build_backbone('imagenet', 96)\n"
        "except c.WeightsUnavailableError as e:\n"
        "    print('OK96', bool(re.search(r'for 96 px.*_96_no_top[.]h5.*224 px file', str(e))))\n"
    )
    env = {
        **__import__("os").environ,
        "KERAS_HOME": str(tmp_path),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "OK True" in out.stdout and "OK96 True" in out.stdout, out.stdout + out.stderr[-2000:]


def test_other_input_sizes_need_their_own_imagenet_file():
    from mammo.features.cnn import WEIGHTS_FILENAME, imagenet_filename

    assert imagenet_filename(224) == imagenet_filename(300) == WEIGHTS_FILENAME
    assert imagenet_filename(96) == WEIGHTS_FILENAME.replace("_224_", "_96_")


# ------------------------------------------------------------------ real data
def test_region_on_real_images(require_data):
    folder = require_data("rsna-screening", "images")
    import pandas as pd

    labels = pd.read_csv(folder.parent / "labels.csv")
    # Site 1 stores no inverted images; site 2 about a third. Polarity must follow.
    site1 = labels[labels.site_id == 1].filename.head(15)
    assert not any(crop_breast(read_image(folder / f)).inverted for f in site1)
    site2 = labels[labels.site_id == 2].filename.head(60)
    flags = [crop_breast(read_image(folder / f)).inverted for f in site2]
    assert 0.1 < np.mean(flags) < 0.7
    for f in site2.head(10):
        m = crop_breast(read_image(folder / f))
        assert (
            0.3 < m.mask.mean() <= 1
            and m.mask[:, : m.mask.shape[1] // 2].sum() >= m.mask[:, m.mask.shape[1] // 2 :].sum()
        )
