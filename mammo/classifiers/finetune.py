"""Partial fine-tuning of ImageNet MobileNetV2 for one task: a deep baseline beside the frozen features.

MobileNetV2's blocks 13-16 and ``Conv_1`` are retrained from the ImageNet weights,
with a new softmax on their average pool. The frozen part, up to
:data:`~mammo.features.cnn.FINETUNE_CUT`, runs once per image
(:class:`~mammo.features.cnn.CNNActivations`, cached on disk by the training run),
so an epoch costs only the retrained top: about 5 ms per image on 2 CPU cores.

BatchNorm layers keep their ImageNet statistics and scales: a batch of 32 DPhi
images holds augmented copies of a few originals, whose statistics would be a
poor estimate of the population's.

On DPhi's grouped 5-fold CV, over three fold seeds, it scored tumour AUC 0.781 / 0.798 /
0.774 against 0.752 / 0.783 / 0.776 for the best frozen-feature candidate of each seed;
density stays below the frozen features (docs/results.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..features.cnn import FINETUNE_CUT, build_backbone, cut_output

__all__ = ["LEARNING_RATE", "balanced_class_weight", "build_finetune_model", "fit_predict_finetuned"]

LEARNING_RATE = 1e-4


def balanced_class_weight(idx: np.ndarray) -> dict:
    """Keras ``class_weight`` for class indices ``idx``: sklearn's "balanced" weights."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(idx)
    return {int(k): float(w) for k, w in zip(present, compute_class_weight("balanced", classes=present, y=idx))}


def build_finetune_model(
    n_classes: int,
    *,
    weights: str = "imagenet",
    input_size: int = 224,
    cut: str = FINETUNE_CUT,
    dropout: float = 0.3,
    learning_rate: float = LEARNING_RATE,
):
    """A compiled Keras model from the activation map at ``cut`` to ``n_classes`` probabilities.

    Every layer after ``cut`` starts from a fresh copy of the ImageNet weights and is
    trainable, except BatchNorm, which is frozen and always runs in inference mode.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    base = build_backbone(weights, input_size)  # a new copy: training must not touch the shared one
    start = cut_output(base, cut)
    top = keras.Model(start, base.output, name=f"mobilenetv2_after_{cut}")
    for layer in top.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    inp = keras.Input(start.shape[1:])
    h = top(inp, training=False)  # BatchNorm uses its moving statistics, also while training
    h = keras.layers.Dropout(dropout)(h)
    out = keras.layers.Dense(n_classes, activation="softmax")(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
    return model


def fit_predict_finetuned(
    maps: np.ndarray,
    idx: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    n_classes: int,
    *,
    map_shape: Sequence[int],
    seed: int = 0,
    epochs: int = 6,
    batch_size: int = 32,
    weights: str = "imagenet",
    input_size: int = 224,
    cut: str = FINETUNE_CUT,
    on_epoch_end: Callable[[], Any] | None = None,
) -> np.ndarray:
    """Fine-tune on ``train`` rows and return class probabilities of ``test`` rows.

    Parameters
    ----------
    maps : ndarray (n, prod(map_shape))
        Flattened activation maps at ``cut`` (:class:`~mammo.features.cnn.CNNActivations`).
    idx : ndarray of int
        Class index (0 .. n_classes-1) of every row.
    epochs : int, default=6
        Passes over the training rows. 1, 3 and 6 epochs gave DPhi tumour AUC 0.67,
        0.76 and 0.80 (docs/results.md).
    on_epoch_end : callable, optional
        Called after every epoch (a progress bar's update).
    """
    import keras

    keras.utils.set_random_seed(seed)
    weight = balanced_class_weight(idx[train])  # like the other candidates
    model = build_finetune_model(n_classes, weights=weights, input_size=input_size, cut=cut)
    shape = (-1, *map_shape)
    callbacks = [keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: on_epoch_end())] if on_epoch_end else []
    model.fit(
        maps[train].astype(np.float32).reshape(shape),
        idx[train],
        epochs=epochs,
        batch_size=batch_size,
        class_weight=weight,
        callbacks=callbacks,
        verbose=0,
    )
    proba = model.predict(maps[test].astype(np.float32).reshape(shape), batch_size=128, verbose=0)
    keras.backend.clear_session()
    return np.asarray(proba, dtype=float)
