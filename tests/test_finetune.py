"""Partial fine-tuning of MobileNetV2 (mammo.classifiers.finetune) and its place in the training run."""

from __future__ import annotations

import numpy as np
import pytest

from mammo.features.cnn import resolve_weights

pytestmark = pytest.mark.needs_weights

W = resolve_weights("imagenet")  # the 224 px ImageNet file, at a small input side for speed
SIZE = 96


def test_class_weights_are_sklearns_balanced_weights():
    from mammo.classifiers.finetune import balanced_class_weight

    w = balanced_class_weight(np.array([0, 0, 0, 1, 2, 2]))
    assert w == pytest.approx({0: 2 / 3, 1: 2.0, 2: 1.0})  # n / (classes x count)
    assert balanced_class_weight(np.array([0, 0, 2, 2])) == {0: 1.0, 2: 1.0}  # a class absent from the fold


def test_only_the_blocks_after_the_cut_train_and_batchnorm_stays_frozen():
    import keras

    from mammo.classifiers.finetune import build_finetune_model

    model = build_finetune_model(3, weights=W, input_size=SIZE)
    assert model.input_shape == (None, 6, 6, 96) and model.output_shape == (None, 3)
    top = [layer for layer in model.layers if isinstance(layer, keras.Model)][0]
    names = {layer.name for layer in top.layers}
    assert "block_13_expand" in names and "Conv_1" in names
    assert not any(n.startswith(("Conv1", "block_12_", "block_1_")) for n in names)  # the cut part is not there
    bn = [layer for layer in top.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and not any(layer.trainable for layer in bn)
    trainable = {w.path.split("/")[-2] for w in model.trainable_weights}
    assert {"block_16_project", "Conv_1"} <= trainable and any(n.startswith("dense") for n in trainable)
    assert not any(n.endswith("_BN") or n.endswith("_bn") for n in trainable)


def test_fine_tuning_leaves_the_shared_backbone_and_batchnorm_statistics_untouched(rng):
    from mammo.classifiers.finetune import build_finetune_model, fit_predict_finetuned
    from mammo.features.cnn import load_backbone

    shared = load_backbone(W, SIZE)
    before = [w.copy() for w in shared.get_layer("block_16_project").get_weights()]
    maps = rng.normal(size=(24, 6 * 6 * 96)).astype(np.float16)
    idx = np.arange(24) % 2
    epochs = []
    proba = fit_predict_finetuned(
        maps,
        idx,
        np.arange(16),
        np.arange(16, 24),
        2,
        map_shape=(6, 6, 96),
        epochs=2,
        batch_size=8,
        weights=W,
        input_size=SIZE,
        on_epoch_end=lambda: epochs.append(1),
    )
    assert proba.shape == (8, 2) and len(epochs) == 2  # progress is reported per epoch
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    for a, b in zip(before, shared.get_layer("block_16_project").get_weights()):
        np.testing.assert_array_equal(a, b)
    # the next fold's model starts from ImageNet, not from this fold's training
    fresh = build_finetune_model(2, weights=W, input_size=SIZE)
    top = [layer for layer in fresh.layers if hasattr(layer, "get_layer")][0]
    for a, b in zip(before, top.get_layer("block_16_project").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fine_tuning_learns_a_visual_signal_under_grouped_folds(rng, mammogram):
    from mammo.features import CNNActivations
    from mammo.training import finetune_cv, make_folds

    # 20 "originals" per class, 2 copies each (noise differs); tumours are bright blobs
    y = np.repeat(np.arange(40) % 2, 2)
    g = np.repeat(np.arange(40), 2).astype(str)
    imgs = [mammogram(density=2, tumour=int(t), shape=(96, 96)) for t in y]
    act = CNNActivations(weights=W, input_size=SIZE).fit(imgs)
    maps = act.transform(imgs)
    folds = make_folds(y, g, 2, 0)
    options = dict(map_shape=act.map_shape_, epochs=8, batch_size=8, weights=W, input_size=SIZE, n_boot=50)
    res = finetune_cv("tumour", maps, y, g, folds, **options, progress=False)
    assert res.oof_proba.shape == (80, 2) and res.fit_s > 0 and len(res.folds) == 2
    assert res.pooled["auc"] > 0.8
    # the same schedule on shuffled labels: the signal, not the schedule, makes the score
    shuffled = finetune_cv("tumour", maps, rng.permutation(y), g, folds, **options, progress=False)
    assert shuffled.pooled["auc"] < res.pooled["auc"] - 0.2


def test_fine_tuning_does_not_warn_about_retracing(caplog, rng):
    """One new model per fold, traced once by design: no TensorFlow warning in the user's run log."""
    from mammo.training import finetune_cv, make_folds

    g = np.repeat(np.arange(30), 2)
    y = g % 2
    maps = rng.normal(size=(len(y), 6 * 6 * 96)).astype(np.float16)
    finetune_cv(
        "tumour",
        maps,
        y,
        g,
        make_folds(y, g, 5, 0),
        map_shape=(6, 6, 96),
        epochs=1,
        batch_size=16,
        weights=W,
        input_size=SIZE,
        n_boot=10,
        progress=False,
    )
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
