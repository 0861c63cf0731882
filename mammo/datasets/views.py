"""A data set's groups widened to the probable other views of each breast (see :mod:`mammo.grouping.views`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..classifiers.model import split_pipeline
from ..classifiers.pipelines import make_task_pipeline
from ..featcache import FeatureCache
from ..features.extra import IntensityFeatures
from ..grouping.views import RegionShape, SameBreastLinker, link_views
from ._base import Dataset, DatasetError

__all__ = ["view_descriptors", "fit_view_linker", "group_views"]

_PERCENTILES = tuple(range(2, 99, 4))


def view_descriptors(
    paths: Sequence[str],
    *,
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int = 1,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """``{block: (n_images, n_features)}`` for the linker's small blocks (:data:`mammo.grouping.views.SMALL_BLOCKS`) and ``"cnn"``.

    The grey levels and the shape come from the plain crop (the enhancement would erase
    the machine's own rendering, which the two views share); texture and the embedding
    are the task pipelines' own blocks, read from the feature cache ``mammo train`` fills.
    Images the input-quality gate refuses get rows of NaN.
    """
    cache = FeatureCache(cache_dir, n_jobs=n_jobs, progress=progress)
    plain = split_pipeline(make_task_pipeline("density", "combined", "svm", enhance=False))[0][:-1]
    out = cache.blocks(
        paths,
        plain,
        [("intensity", IntensityFeatures(percentiles=_PERCENTILES)), ("shape", RegionShape())],
        desc="view descriptors",
        errors="skip",
    )
    steps = split_pipeline(make_task_pipeline("density", "combined", "svm"))[0]
    union = dict(steps[-1][1].transformer_list)
    out.update(
        cache.blocks(paths, steps[:-1], [(b, union[b]) for b in ("glcm", "lbp", "cnn")], desc="texture", errors="skip")
    )
    return out


def _usable(desc: dict[str, np.ndarray]) -> np.ndarray:
    """Rows the input-quality gate did not refuse (their descriptors are finite)."""
    return np.all(np.column_stack([np.isfinite(v).all(axis=1) for v in desc.values()]), axis=1)


def fit_view_linker(
    reference: Dataset, *, n_jobs: int = 1, progress: bool = True, cache_dir: str | os.PathLike | None = None
) -> SameBreastLinker:
    """A :class:`SameBreastLinker` fitted on a data set whose groups are patients, with laterality and view.

    Raises :class:`DatasetError` when ``reference`` lacks the ``laterality`` or ``view`` column.
    """
    missing = [c for c in ("laterality", "view") if c not in reference.meta.columns]
    if missing:
        raise DatasetError(
            f"{reference.name}: cannot learn the views of one breast without a {' and '.join(missing)} column "
            "(use a data set with patient ids, laterality and view, such as rsna-screening)"
        )
    desc = view_descriptors(reference.paths, n_jobs=n_jobs, progress=progress, cache_dir=cache_dir)
    ok = _usable(desc)
    meta = reference.meta
    return SameBreastLinker().fit(
        {k: v[ok] for k, v in desc.items()},
        reference.groups[ok],
        meta["laterality"].to_numpy()[ok],
        meta["view"].to_numpy()[ok],
    )


def group_views(
    ds: Dataset,
    linker: SameBreastLinker,
    *,
    min_groups: int = 5,
    n_jobs: int = 1,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """``ds`` with its groups (copies, patients) joined where they are probably views of one breast.

    An image the input-quality gate refuses stays with its unit's other images, or alone. The old group of each
    image is kept in ``meta["unit_group"]``.
    """
    desc = view_descriptors(ds.paths, n_jobs=n_jobs, progress=progress, cache_dir=cache_dir)
    ok = _usable(desc)
    linked = link_views(
        {k: v[ok] for k, v in desc.items()},
        linker,
        units=ds.groups[ok],
        density=ds.density[ok],
        tumour=ds.tumour[ok],
        min_groups=min_groups,
    )
    of_unit = {u: f"view{g:04d}" for u, g in zip(ds.groups[ok], linked)}
    groups = np.array([of_unit.get(u, f"alone-{u}") for u in ds.groups], dtype=object)
    meta = ds.meta.copy()
    meta["unit_group"] = ds.groups
    return replace(ds, groups=groups, meta=meta)
