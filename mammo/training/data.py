"""A run's inputs: the data set, the tasks it can evaluate, and every feature block once per image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classifiers.model import split_pipeline
from ..classifiers.pipelines import make_task_pipeline
from ..datasets import Dataset, load_dataset
from ..featcache import FeatureCache
from ..features.blocks import block_order, blocks_of
from ..features.cnn import CNNActivations
from ..features.region import CROP_SHIFT, with_shifted_crop
from .config import TrainConfig
from .folds import TrainingDataError, check_task_data, limit_dataset

__all__ = ["FeatureTable", "load_data", "usable_tasks", "feature_plan", "compute_features", "drop_refused"]


def load_data(config: TrainConfig) -> Dataset:
    """The data set (``--views-from``: groups joined across views of one breast; ``--limit``: a stratified
    subset of whole groups)."""
    path = Path(config.data).expanduser()
    is_dphi = config.kind == "dphi" or (
        config.kind == "auto" and (path.name == "Training_set.csv" or (path / "Training_set.csv").is_file())
    )
    kwargs = {"n_jobs": config.jobs, "progress": config.progress} if is_dphi else {}
    ds = load_dataset(path, config.kind, **kwargs)
    if config.views_from:
        ds = _group_views(ds, config)
    return limit_dataset(ds, config.limit, config.seed) if config.limit else ds


def _group_views(ds: Dataset, config: TrainConfig) -> Dataset:
    """``ds`` with groups joined where two are probably views of one breast (``--views-from``)."""
    from ..datasets.views import fit_view_linker, group_views

    options = {"n_jobs": config.jobs, "progress": config.progress, "cache_dir": config.cache_dir}
    linker = fit_view_linker(load_dataset(Path(config.views_from).expanduser()), **options)
    return group_views(ds, linker, min_groups=config.folds, **options)


def usable_tasks(ds: Dataset, config: TrainConfig, notes: list[str]) -> list[str]:
    """The requested tasks that have labels (the others get a note); TrainingDataError if none,
    or if a task's data cannot make ``config.folds`` honest folds."""
    tasks = []
    for task in config.tasks:
        _, y, g = ds.task(task)
        if len(y) == 0:
            notes.append(f"{task}: no labelled images, skipped")
            continue
        check_task_data(task, y, g, config.folds)
        tasks.append(task)
    if not tasks:
        raise TrainingDataError(f"{ds.name}: no labelled images for {list(config.tasks)}")
    return tasks


@dataclass
class FeatureTable:
    """Every block the run needs, one row per image: ``blocks[name][rows[path]]``.

    ``shifted``: the same blocks of a sample of the images cropped half a pixel off
    (:class:`~mammo.features.region.ShiftedBreastCropper`), for the crop-shift check.
    """

    blocks: dict[str, np.ndarray]
    rows: dict[str, int]
    map_shape: tuple | None = None  # of the fine-tuning trunk's activation maps
    shifted: FeatureTable | None = None

    def block(self, name: str, paths: Sequence[str]) -> np.ndarray:
        return self.blocks[name][np.array([self.rows[p] for p in paths])]

    def matrix(self, paths: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """The columns of blocks ``names``, side by side, for ``paths``."""
        rows = np.array([self.rows[p] for p in paths])
        return np.hstack([self.blocks[b][rows] for b in names])


def feature_plan(config: TrainConfig) -> tuple[list, dict]:
    """``(stateless steps before the blocks, {block name: transformer})`` for what the run needs.

    The blocks are those of the task pipelines the run can build (so their cache keys are
    the saved model's), in registry order, then the extra blocks, then with ``fine_tune``
    the frozen trunk of the fine-tuned network. The deep head needs the CNN block.
    """
    sets = [*config.feature_sets, *(["cnn"] if config.deep_head else [])]
    union: dict = {}
    for fs in sets:
        steps = split_pipeline(
            make_task_pipeline("density", fs, "svm", **config.pipeline_options, extra_blocks=config.extra_blocks)
        )[0]
        union.update(steps[-1][1].transformer_list)
    names = [*block_order({b for fs in sets for b in blocks_of(fs)}), *config.extra_blocks]
    blocks = {n: union[n] for n in names}
    if config.fine_tune:  # the frozen part of the fine-tuned network, run once per image
        blocks["trunk"] = CNNActivations(input_size=config.cnn_input_size)
    return steps[:-1], blocks


def compute_features(ds: Dataset, tasks: Sequence[str], config: TrainConfig) -> tuple[FeatureTable, FeatureCache]:
    """Every needed block of every image labelled for ``tasks``, from the on-disk cache (computed once).

    Images the input-quality gate refuses (not a plausible mammogram) are not in the
    table; ``cache.refused`` maps their paths to the reason. An unreadable file stops the run.
    """
    used = np.any(np.column_stack([~np.isnan(ds.density if tk == "density" else ds.tumour) for tk in tasks]), axis=1)
    images = [p for p, u in zip(ds.paths, used) if u]
    steps, blocks = feature_plan(config)
    cache = FeatureCache(config.cache_dir, n_jobs=config.jobs, progress=config.progress)
    got = cache.blocks(images, steps, list(blocks.items()), desc=f"{ds.name} features", errors="skip")
    map_shape = blocks["trunk"].fit().map_shape_ if config.fine_tune else None
    cache.refused = {images[i]: message for i, message in sorted(cache.refused.items())}
    rows = {p: i for i, p in enumerate(images) if p not in cache.refused}
    shifted = _shifted_features(list(rows), steps, blocks, cache, config)
    return FeatureTable(got, rows, map_shape, shifted), cache


def _shifted_features(images: list[str], steps: list, blocks: dict, cache: FeatureCache, config: TrainConfig):
    """The blocks of ``config.shift_check`` random images (of ``images``) cropped half a pixel off, or None."""
    n = min(int(config.shift_check), len(images))
    if n == 0:
        return None
    sample = [images[i] for i in np.sort(np.random.default_rng(config.seed).choice(len(images), n, replace=False))]
    moved = with_shifted_crop(steps, CROP_SHIFT)
    wanted = [(k, b) for k, b in blocks.items() if k != "trunk"]
    # blocks() starts a new record of refusals (for the sample's indices); the run's
    # refusals and cache counts stay those of its own images
    refused_before, stats_before = cache.refused, type(cache.stats)(cache.stats)
    got = cache.blocks(sample, moved, wanted, desc="crop-shift check", errors="skip")
    refused = {sample[i] for i in cache.refused}
    cache.refused, cache.stats = refused_before, stats_before
    rows = {p: i for i, p in enumerate(sample) if p not in refused}
    return FeatureTable(got, rows)


def drop_refused(ds: Dataset, refused: dict[str, str]) -> Dataset:
    """The data set without the images the pipeline refused (see :func:`compute_features`)."""
    if not refused:
        return ds
    return ds.subset(np.array([p not in refused for p in ds.paths]))
