"""The final refit: each task's selected candidate on all its labelled images, as one saved model."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
from sklearn.pipeline import Pipeline

from ..classifiers.model import MammogramModel, split_pipeline
from ..classifiers.pipelines import make_task_pipeline
from ..datasets import Dataset
from .candidates import Candidate
from .config import TrainConfig
from .tuning import PARAM_GRIDS, configure, tune

__all__ = ["fit_final_model"]


def fit_final_model(
    ds: Dataset,
    best: Mapping[str, Candidate],
    features: Mapping[str, Mapping[str, np.ndarray]],
    config: TrainConfig,
    metadata: dict,
) -> tuple[MammogramModel, dict]:
    """Refit each task's selected candidate on all its labelled images into one MammogramModel.

    ``features[task][feature_set]`` are the cached feature rows of the task's labelled
    images (extra blocks included), identical to what the pipeline's own stateless steps
    compute (see tests); the classifier tails are fitted on them, and the stateless
    steps are fitted (validated / CNN loaded) on two images. With ``config.tune``,
    hyper-parameters are chosen by the same grouped inner CV, now over all labelled data.
    Returns the model and ``{task: hyper-parameters}``.
    """
    options = config.fit_options
    pipelines, labels, cached, chosen = {}, {}, {}, {}
    for task, cand in best.items():
        _, y, g = ds.task(task)
        X = features[task][cand.feature_set]
        params, _ = tune(task, cand, X, y, g, PARAM_GRIDS[cand.model] if config.tune else [], options)
        pipe = make_task_pipeline(
            task,
            cand.feature_set,
            cand.model,
            **config.pipeline_options,
            extra_blocks=cand.extra_blocks,
            random_state=config.seed,
        )
        configure(Pipeline(split_pipeline(pipe)[1]), params, y, g, config.seed)  # sets params on pipe's own steps
        pipelines[task] = pipe
        labels[task] = ds.density if task == "density" else ds.tumour
        cached[task] = X
        chosen[task] = params
    model = MammogramModel(pipelines, metadata=dict(metadata))
    meanings = {"density": ds.density_meanings} if ds.density_meanings else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(ds.paths, features=cached, class_meanings=meanings, groups=ds.groups, **labels)
    return model, chosen
