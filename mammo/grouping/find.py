"""The stages chained: signatures -> candidates -> verification, with a cache of the final result."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..storage import GROUPS_VERSION, atomic_write, cache_root, json_sha256
from .retrieval import bag_of_words, candidate_pairs
from .signature import Signature, signature_key, signatures
from .verification import first_appearance, verify_pairs

__all__ = ["find_duplicate_groups"]

_TUPLE_LISTS = ("edges", "verified")  # details holding (i, j, inliers) triples


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else cache_root()


def find_duplicate_groups(
    images_or_paths: Sequence[Any],
    *,
    threshold: int | None = None,
    orphan_threshold: int | None = None,
    n_neighbors: int = 10,
    n_words: int = 512,
    n_component_neighbors: int = 10,
    pairs_per_component: int = 3,
    max_passes: int = 5,
    n_jobs: int = 1,
    progress: bool = True,
    cache_dir: str | os.PathLike | None | bool = None,
    return_details: bool = False,
    **signature_params: Any,
) -> np.ndarray | tuple[np.ndarray, dict]:
    """Label each image with the id of its original (augmented copies share a label).

    Parameters
    ----------
    images_or_paths : sequence of paths or 2-D arrays
    threshold : int, optional
        RANSAC inliers that make a pair a copy (default 15: the gap between
        unrelated pairs and copies measured in docs/grouping.md).
    orphan_threshold : int, optional
        An image left in a group of its own joins its best candidate if that pair has
        at least this many inliers (default ``threshold // 2``); 0 attaches every orphan.
    n_neighbors : int
        Candidate pairs per image from the bag-of-words retrieval.
    n_words : int
        Visual vocabulary size.
    n_component_neighbors, pairs_per_component, max_passes : int
        Second pass between components: each component's nearest other components,
        the best image pairs per component, and at most this many passes
        (docs/grouping.md, step 4: why 10 components).
    n_jobs : int
        Processes for the signatures and threads for the pair verification. The
        result does not depend on it.
    progress : bool
        Show tqdm progress bars.
    cache_dir : path, None or False
        Cache folder. Signatures are cached per image under ``<cache>/<signature
        version>/``, keyed by the content sha256 of the file (or array) and the signature
        parameters; the final result (groups and details) under ``<cache>/groups/``,
        keyed by the ordered list of those image hashes, every parameter that affects
        the grouping and ``GROUPS_VERSION`` (:mod:`mammo.storage`). None: ``$MAMMO_CACHE_DIR`` or
        ``~/.cache/mammo``; False: no cache.
    return_details : bool
        Also return a dict with the verified edges and counts.
    **signature_params
        Passed to :func:`image_signature`.

    Returns
    -------
    groups : ndarray of int, shape (n_images,)
        Group labels 0..n_groups-1, numbered by first appearance.
    details : dict, only if ``return_details``
        Counts (``n_unique_images``, ``n_candidate_pairs``, ``n_verified_pairs``,
        ``n_orphans_attached``, ``n_passes``, ...), ``verified`` and ``edges`` (the
        verified pairs and the accepted ones, as (i, j, inliers) with input indices;
        byte-identical images appear by their first occurrence) and ``best_inliers``
        (per image, the best score of any verified pair).
    """
    items = list(images_or_paths)
    if not items:
        return (np.zeros(0, int), {}) if return_details else np.zeros(0, int)
    threshold = 15 if threshold is None else int(threshold)
    params = {
        "threshold": threshold,
        "orphan_threshold": threshold // 2 if orphan_threshold is None else int(orphan_threshold),
        "n_neighbors": int(n_neighbors),
        "n_words": int(n_words),
        "n_component_neighbors": int(n_component_neighbors),
        "pairs_per_component": int(pairs_per_component),
        "max_passes": int(max_passes),
    }
    cache = None if cache_dir is False else _cache_dir(cache_dir)
    # hashing the bytes is cheap next to decoding, which is left for a signature cache miss
    keys = [signature_key(x, signature_params) for x in items]
    result_file = None
    if cache is not None:
        key = json_sha256(
            {"keys": keys, "params": {**params, "signature_params": signature_params}, "version": GROUPS_VERSION}
        )
        result_file = cache / "groups" / f"{key}.json"
    result = None if result_file is None else _load_result(result_file, len(items))
    if result is None:
        result = _group_items(items, keys, cache, signature_params, params, n_jobs, progress)
        if result_file is not None:
            _save_result(result_file, *result)
    return result if return_details else result[0]


def _group_items(
    items: list, keys: list[str], cache: Path | None, signature_params: dict, params: dict, n_jobs: int, progress: bool
) -> tuple[np.ndarray, dict]:
    """Groups and details of ``items`` (signature ``keys``): signatures, then :func:`_group_signatures`.

    Byte-identical images (augmented sets hold many) are one image: signed and verified
    once, and in the same group by definition.
    """
    unique: dict[str, int] = {}
    inverse = np.array([unique.setdefault(k, len(unique)) for k in keys])
    first = np.unique(inverse, return_index=True)[1]
    sigs = signatures([items[i] for i in first], [keys[i] for i in first], cache, signature_params, n_jobs, progress)
    ugroups, details = _group_signatures(sigs, **params, n_jobs=n_jobs, progress=progress)
    # details in terms of the input's indices (a unique image by its first occurrence)
    for name in _TUPLE_LISTS:
        details[name] = [(int(first[i]), int(first[j]), sc) for i, j, sc in details[name]]
    details["best_inliers"] = details["best_inliers"][inverse]
    details["n_unique_images"] = len(first)
    return first_appearance(ugroups[inverse]), details


def _group_signatures(
    sigs: list[Signature], *, n_neighbors: int, n_words: int, **verify: Any
) -> tuple[np.ndarray, dict]:
    """Candidates from bag-of-words neighbours, then :func:`verify_pairs` (its keyword arguments)."""
    bow = bag_of_words(sigs, n_words, seed=0)
    return verify_pairs(sigs, bow, candidate_pairs(bow, n_neighbors), **verify)


def _plain(v: Any) -> Any:
    """``v`` with numpy arrays and scalars as lists and Python numbers, for JSON."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _save_result(fn: Path, groups: np.ndarray, details: dict) -> None:
    """Write groups and details as JSON, atomically (concurrent runs may share the cache)."""
    atomic_write(
        fn,
        json.dumps(
            {
                "version": GROUPS_VERSION,
                "groups": groups.tolist(),
                "details": {k: _plain(v) for k, v in details.items()},
            }
        ),
    )


def _load_result(fn: Path, n: int) -> tuple[np.ndarray, dict] | None:
    """Groups and details from a result file, with the types the computation returns."""
    try:
        data = json.loads(fn.read_text())
    except (OSError, ValueError):
        return None  # absent, or truncated by an interrupted write: recompute
    groups = np.asarray(data.get("groups", []), dtype=int)
    if data.get("version") != GROUPS_VERSION or groups.shape != (n,):
        return None
    details = dict(data["details"])
    for k in _TUPLE_LISTS:
        if k in details:
            details[k] = [tuple(x) for x in details[k]]
    if "best_inliers" in details:
        details["best_inliers"] = np.asarray(details["best_inliers"], dtype=int)
    return groups, details
