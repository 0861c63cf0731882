"""Streaming images through the stateless part of the task pipelines, in chunks.

A chunk's images are read, cropped and enhanced once, and each feature block computed
once, however many task pipelines use them: step outputs are shared under the chain of
step keys that produced them. Runs in a thread, a worker process or a Dask worker.
"""

from __future__ import annotations

import numpy as np
from sklearn.pipeline import FeatureUnion

from ..storage import step_key
from .pipelines import SCREEN_STEPS

__all__ = ["featurise_chunk", "run_stateless", "screen"]


def featurise_chunk(steps: dict, batch: list, start: int, errors: str):
    """Features of one chunk for every task (runs in a thread, process or Dask worker)."""
    cache: dict = {}
    indices, failures, good = list(range(start, start + len(batch))), {}, batch
    if errors == "record":
        indices, failures = screen(steps, batch, start, cache)
        good = [batch[i - start] for i in indices]
    feats = {task: run_stateless(s, good, cache) if good else None for task, s in steps.items()}
    return indices, feats, failures, len(batch)


def screen(steps: dict, batch: list, start: int, cache: dict) -> tuple[list[int], dict]:
    """Run every task's :data:`~mammo.classifiers.pipelines.SCREEN_STEPS` one image at a time.

    An image that any of them refuses (:data:`~mammo.features.quality.INPUT_ERRORS`) is
    reported in the returned ``{index: message}``; the outputs of the others are put into
    ``cache`` under their step-key chains, so :func:`run_stateless` continues from them.
    Returns ``(kept indices, failures)``.
    """
    from ..features.quality import INPUT_ERRORS

    kept, failures, outputs = [], {}, {}
    for i, image in enumerate(batch, start):
        mine: dict = {}
        try:
            for s in steps.values():
                X, chain = [image], ()
                for name, step in s:
                    if name not in SCREEN_STEPS:
                        break
                    chain = chain + (step_key(step),)
                    if chain not in mine:
                        mine[chain] = step.transform(X)
                    X = mine[chain]
        except INPUT_ERRORS as exc:
            failures[i] = f"{type(exc).__name__}: {exc}"
            continue
        kept.append(i)
        for chain, out in mine.items():
            outputs.setdefault(chain, []).extend(out)
    cache.update(outputs)
    return kept, failures


def run_stateless(steps, batch, cache: dict) -> np.ndarray:
    """Run image/feature steps on a batch, reusing outputs already computed for another task."""
    X, chain = batch, ()
    for _, step in steps:
        if isinstance(step, FeatureUnion):
            parts = []
            for _, block in step.transformer_list:
                key = chain + (step_key(block),)
                if key not in cache:
                    cache[key] = block.transform(X)
                parts.append(cache[key])
            return np.hstack(parts)
        chain = chain + (step_key(step),)
        if chain not in cache:
            cache[chain] = step.transform(X)
        X = cache[chain]
    return np.asarray(X)
