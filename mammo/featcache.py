"""On-disk cache of per-image feature blocks, so a second run or a new classifier reuses them.

A feature block (GLCM, LBP, CNN, ...) of one image is stored once under a key made of

* the sha256 of the image FILE BYTES (renaming or moving a file keeps its features;
  editing it invalidates them), and
* a hash of the block's full parameter chain: every stateless step before it (read,
  crop, enhance) and the block itself, as class name + ``get_params`` (the same key
  :class:`~mammo.classifiers.MammogramModel` uses to share work between tasks).

Layout: ``<root>/<block name>-<chain hash>/<sha[:2]>/<sha>.npy`` plus a ``chain.json``
that records the chain as structured JSON (``{"block", "version", "chain": [{"class",
"params"}, ...]}``), which ``mammo cache`` reads. Files are written atomically
(:func:`mammo.storage.atomic_open`), so concurrent runs can share one cache.

Examples
--------
>>> from mammo.classifiers import make_task_pipeline  # doctest: +SKIP
>>> cache = FeatureCache()  # doctest: +SKIP
>>> X = cache.transform(paths, make_task_pipeline("tumour", "combined", "svm"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import FeatureUnion, Pipeline
from tqdm.auto import tqdm

from .classifiers.pipelines import SCREEN_STEPS, split_pipeline
from .storage import FEATURES_VERSION, atomic_open, atomic_write, cache_root, content_sha256, step_key, step_record

__all__ = [
    "FeatureCache",
    "FeatureComputationError",
    "default_cache_dir",
    "content_sha256",
    "chain_key",
    "chain_record",
]

CACHE_VERSION = FEATURES_VERSION  # the registry in mammo.storage holds it; this name stays for old imports
CHAIN_FORMAT = 2  # chain.json: 1 (no "format" key) held step_key strings, 2 holds step_record dicts


class FeatureComputationError(RuntimeError):
    """An image could not be turned into features (names the image and the cause)."""


def default_cache_dir() -> Path:
    """``<cache root>/features`` (:func:`mammo.storage.cache_root`)."""
    return cache_root() / "features"


def chain_key(steps: Sequence, block) -> str:
    """Key of a block and every step before it (class + parameters); its sha256 names the block's folder."""
    return "\n".join([f"mammo-featcache-v{CACHE_VERSION}"] + [step_key(s) for s in steps] + [step_key(block)])


def chain_record(name: str, steps: Sequence, block) -> dict:
    """What ``chain.json`` holds: the same chain as :func:`chain_key`, as structured JSON."""
    return {
        "format": CHAIN_FORMAT,
        "block": name,
        "version": CACHE_VERSION,
        "chain": [step_record(s) for s in [*steps, block]],
    }


class FeatureCache:
    """Compute feature blocks once per image and keep them on disk.

    Parameters
    ----------
    root : path or None
        Cache folder (default :func:`default_cache_dir`).
    batch_size : int
        Images read, cropped and enhanced together (and passed to each block).
    n_jobs : int
        Batches processed at once by threads: one batch's reading and texture
        overlap another's CNN forward pass (both release the GIL).
    progress : bool
        Show a tqdm bar while computing.

    Attributes
    ----------
    stats : Counter
        ``computed:<block>`` and ``hit:<block>`` image counts since creation;
        tests and benchmarks read them to prove reuse.
    refused : dict
        ``{image index: message}`` of the last :meth:`blocks` call with ``errors="skip"``.
    """

    def __init__(self, root=None, *, batch_size: int = 32, n_jobs: int = 1, progress: bool = True):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.batch_size = int(batch_size)
        self.n_jobs = max(1, int(n_jobs))
        self.progress = progress
        self.stats: Counter = Counter()
        self.refused: dict[int, str] = {}
        self._digests: dict = {}

    # ------------------------------------------------------------------ keys
    def digest(self, item: Any) -> str:
        """Content sha256 of an image source, memoised per (path, size, mtime)."""
        if isinstance(item, (str, os.PathLike)):
            st = os.stat(item)
            memo = (os.fspath(item), st.st_size, st.st_mtime_ns)
            if memo not in self._digests:
                self._digests[memo] = content_sha256(item)
            return self._digests[memo]
        return content_sha256(item)

    def block_dir(self, steps: Sequence, name: str, block) -> Path:
        d = self.root / f"{name}-{content_sha256(chain_key(steps, block).encode())[:20]}"
        if _chain_format(d / "chain.json") != CHAIN_FORMAT:
            # new, or written by an older mammo: same key, so the features stay valid
            atomic_write(d / "chain.json", json.dumps(chain_record(name, steps, block), indent=1))
        return d

    # --------------------------------------------------------------- compute
    def blocks(
        self,
        images: Sequence,
        steps: Sequence,
        blocks: Sequence[tuple[str, Any]],
        *,
        desc: str = "features",
        errors: str = "raise",
    ) -> dict:
        """``{name: (n_images, n_features) array}`` for each ``(name, transformer)`` block.

        ``steps`` are the stateless ``(name, transformer)`` steps before the blocks
        (read, crop, check, enhance). Blocks already on disk for an image are loaded;
        the others are computed from one shared read/crop/enhance per image.

        With ``errors="skip"``, an image that the input-quality gate refuses (not a
        plausible mammogram, :class:`~mammo.features.quality.ImplausibleImageError`) gets
        a row of NaN and its message in :attr:`refused` (``{index: message}``, for this
        call). An unreadable file always raises :class:`FeatureComputationError`, as
        does a refused image with ``errors="raise"``.
        """
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
        images = list(images)
        self.refused = {}
        digests = [self.digest(x) for x in images]
        pre = [s for _, s in steps]
        dirs = {name: self.block_dir(pre, name, blk) for name, blk in blocks}
        paths = {name: [dirs[name] / d[:2] / f"{d}.npy" for d in digests] for name, _ in blocks}
        missing = {name: np.array([not p.is_file() for p in paths[name]], dtype=bool) for name, _ in blocks}
        todo = np.flatnonzero(np.any(np.column_stack([missing[n] for n, _ in blocks]), axis=1)) if blocks else []
        for name, _ in blocks:
            self.stats[f"hit:{name}"] += int((~missing[name]).sum())
        if len(todo):
            self._compute(images, todo, steps, blocks, missing, paths, desc, errors)
        return {name: self._load(paths[name]) for name, _ in blocks}

    def _load(self, paths: list) -> np.ndarray:
        rows = [np.load(p) if i not in self.refused else None for i, p in enumerate(paths)]
        width = next((r.shape for r in rows if r is not None), None)
        if width is None:
            return np.empty((len(paths), 0), np.float32)
        blank = np.full(width, np.nan, dtype=np.float32)
        return np.stack([r if r is not None else blank for r in rows])

    def _compute(self, images, todo, steps, blocks, missing, paths, desc, errors="raise") -> None:
        from .features.quality import INPUT_ERRORS, ImplausibleImageError

        # Fit (validate; the CNN loads its weights) on clones so the caller's steps stay untouched.
        steps = [(n, clone(s)) for n, s in steps]
        blocks = [(n, clone(b)) for n, b in blocks]
        screen = [(n, s) for n, s in steps if n in SCREEN_STEPS]
        rest = [(n, s) for n, s in steps if n not in SCREEN_STEPS]
        self._fit_on_first(images, todo, steps, blocks, errors)

        def work(idx):
            kept, X = [], []
            for i in idx:
                try:
                    x = [images[i]]
                    for _, s in screen:
                        x = s.transform(x)
                except INPUT_ERRORS as exc:
                    if errors == "raise" or not isinstance(exc, ImplausibleImageError):
                        raise FeatureComputationError(f"{_name(images[i])}: {type(exc).__name__}: {exc}") from exc
                    self.refused[int(i)] = f"{type(exc).__name__}: {exc}"
                    continue
                kept.append(i)
                X += x
            kept = np.asarray(kept, dtype=int)
            try:
                for _, s in rest:
                    X = s.transform(X) if len(kept) else X
                res = {}
                for name, b in blocks:
                    need = missing[name][kept] if len(kept) else np.zeros(0, bool)
                    if need.any():
                        res[name] = (kept[need], b.transform([x for x, k in zip(X, need) if k]))
                return res
            except Exception as exc:
                raise FeatureComputationError(
                    f"{_name(images[idx[0]])} (or another image of its batch): {type(exc).__name__}: {exc}"
                ) from exc

        chunks = [todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        with tqdm(total=len(todo), desc=desc, unit="img", disable=not self.progress) as bar:
            with ThreadPoolExecutor(self.n_jobs) as pool:
                # Results are feature rows only (the images die inside ``work``), so
                # queueing every batch at once costs little memory.
                for idx, res in zip(chunks, pool.map(work, chunks)):
                    for name, (rows, feats) in res.items():
                        for i, f in zip(rows, feats):
                            with atomic_open(paths[name][i]) as fh:
                                np.save(fh, _stored(f))
                        self.stats[f"computed:{name}"] += len(rows)
                    bar.update(len(idx))

    def _fit_on_first(self, images, todo, steps, blocks, errors: str) -> None:
        """Fit the steps and blocks on the first image that every step accepts."""
        from .features.quality import INPUT_ERRORS, ImplausibleImageError

        for i in todo:
            X = [images[i]]
            try:
                for _, s in steps:
                    X = s.fit(X).transform(X)
            except INPUT_ERRORS as exc:
                if errors == "raise" or not isinstance(exc, ImplausibleImageError):
                    raise FeatureComputationError(f"{_name(images[i])}: {type(exc).__name__}: {exc}") from exc
                continue
            except Exception as exc:
                raise FeatureComputationError(f"{_name(images[i])}: {type(exc).__name__}: {exc}") from exc
            try:
                for _, b in blocks:
                    b.fit(X)
            except Exception as exc:
                raise FeatureComputationError(f"{_name(images[i])}: {type(exc).__name__}: {exc}") from exc
            return

    def transform(self, images: Sequence, pipeline: Pipeline, *, desc: str = "features") -> np.ndarray:
        """The feature matrix ``pipeline``'s stateless part would produce, from the cache.

        ``pipeline`` is a task pipeline from :func:`mammo.classifiers.make_task_pipeline`
        (or just its stateless steps ending in a FeatureUnion).
        """
        steps = split_pipeline(pipeline)[0] if isinstance(pipeline, Pipeline) else list(pipeline)
        union = steps[-1][1]
        if not isinstance(union, FeatureUnion):
            raise TypeError(f"the last stateless step must be a FeatureUnion, got {type(union).__name__}")
        blocks = list(union.transformer_list)
        got = self.blocks(images, steps[:-1], blocks, desc=desc)
        return np.hstack([got[n] for n, _ in blocks])


def _name(item) -> str:
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"<{type(item).__name__}>"


def _stored(row: np.ndarray) -> np.ndarray:
    """float32, or float16 for a block that returns it (large activation maps, half the disk)."""
    return row if row.dtype == np.float16 else np.asarray(row, dtype=np.float32)


def _chain_format(path: Path) -> int | None:
    """The format of a ``chain.json`` (None when absent or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("format", 1) if isinstance(data, dict) else None
