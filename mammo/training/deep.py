"""The deep baselines, under the same folds as the candidates: a Keras head on the frozen CNN
embedding, and MobileNetV2 with its last blocks fine-tuned (:mod:`mammo.classifiers.finetune`).

Both are reported beside the candidates but are not selectable for the saved model:
they are not scikit-learn pipelines. Both grade density by the most probable class
(they have no held-out predictions inside the training fold to fit cut points on).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import numpy as np

from ..classifiers.finetune import LEARNING_RATE, balanced_class_weight, fit_predict_finetuned
from .candidates import DEEP_HEAD, FINE_TUNED
from .cv import summarise
from .results import CVResult

__all__ = ["deep_head_cv", "finetune_cv"]


@contextlib.contextmanager
def _quiet_retracing():
    """Hide TensorFlow's retracing warning: each fold's new model is traced once, by design,
    and TensorFlow warns from the sixth trace on."""
    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tf_log.setLevel(level)


def _fit_head(X, idx, train, test, n_classes: int, *, seed: int, epochs: int, batch_size: int) -> np.ndarray:
    """Train the head on one training fold; class probabilities of the test fold."""
    import keras

    keras.utils.set_random_seed(seed)
    mu, sd = X[train].mean(0), X[train].std(0) + 1e-6
    weight = balanced_class_weight(idx[train])
    model = keras.Sequential(
        [
            keras.Input((X.shape[1],)),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(128, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-4)),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(n_classes, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit((X[train] - mu) / sd, idx[train], epochs=epochs, batch_size=batch_size, class_weight=weight, verbose=0)
    # a direct call: predict() would trace one more tf.function per fold
    proba = keras.ops.convert_to_numpy(model((X[test] - mu) / sd, training=False))
    keras.backend.clear_session()
    return proba


def deep_head_cv(
    task: str,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    folds,
    *,
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 256,
    n_boot: int = 1000,
    progress: bool = True,
) -> CVResult:
    """A small Keras classifier head (Dense-Dropout-softmax) on the frozen CNN embedding, class-weighted.

    Fixed architecture and schedule (nothing tuned, so nothing can leak from the test fold);
    inputs standardised with the training fold's mean and std. 10 epochs scored like 20
    and 40 on DPhi, RSNA and mini-MIAS, within the head's run-to-run spread, at a fraction
    of the cost (docs/results.md).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before _fit_head imports keras
    from tqdm.auto import tqdm

    classes = np.unique(y)
    idx = np.searchsorted(classes, y)
    proba = np.zeros((len(y), len(classes)))
    t = time.perf_counter()
    with _quiet_retracing():
        for train, test in tqdm(folds, desc=f"{task} deep head", unit="fold", disable=not progress):
            proba[test] = _fit_head(X, idx, train, test, len(classes), seed=seed, epochs=epochs, batch_size=batch_size)
    fit_s = time.perf_counter() - t  # like the candidates' fit_s: training and prediction, not the metrics
    params = [{"epochs": epochs, "batch_size": batch_size, "hidden": 128, "dropout": [0.2, 0.5]}] * len(folds)
    return CVResult(
        **summarise(task, y, groups, proba, classes, folds, n_boot, seed),
        oof_proba=proba,
        params=params,
        fit_s=fit_s,
        candidate=DEEP_HEAD,
    )


def finetune_cv(
    task: str,
    maps: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    folds,
    *,
    map_shape,
    seed: int = 0,
    epochs: int = 6,
    batch_size: int = 32,
    weights: str = "imagenet",
    input_size: int = 224,
    n_boot: int = 1000,
    progress: bool = True,
) -> CVResult:
    """Partial fine-tuning of MobileNetV2 (:mod:`mammo.classifiers.finetune`) under the same folds.

    ``maps`` are the frozen activation maps (:class:`~mammo.features.cnn.CNNActivations`)
    of the images in ``y``'s order. A fixed schedule, nothing tuned on the test fold.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tqdm.auto import tqdm

    classes = np.unique(y)
    idx = np.searchsorted(classes, y)
    proba = np.zeros((len(y), len(classes)))
    t = time.perf_counter()
    # by epoch: one fold takes minutes
    with (
        _quiet_retracing(),
        tqdm(total=len(folds) * epochs, desc=f"{task} fine-tuning", unit="epoch", disable=not progress) as bar,
    ):
        for train, test in folds:
            proba[test] = fit_predict_finetuned(
                maps,
                idx,
                train,
                test,
                len(classes),
                map_shape=map_shape,
                seed=seed,
                epochs=epochs,
                batch_size=batch_size,
                weights=weights,
                input_size=input_size,
                on_epoch_end=bar.update,
            )
    fit_s = time.perf_counter() - t
    params = [
        {
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": LEARNING_RATE,
            "retrained": "blocks 13-16, Conv_1",
            "batchnorm": "frozen",
        }
    ] * len(folds)
    return CVResult(
        **summarise(task, y, groups, proba, classes, folds, n_boot, seed),
        oof_proba=proba,
        params=params,
        fit_s=fit_s,
        candidate=FINE_TUNED,
    )
