"""On-disk cache of per-image feature blocks, so a second run or a new classifier reuses them.

A feature block (GLCM, LBP, CNN, ...) of one image is stored once under a key made of

* the sha256 of the image FILE BYTES (renaming or moving a file keeps its features;
  editing it invalidates them), and
* a hash of the block's full parameter chain: every stateless step before it (read,
  crop, enhance) and the block itself, as class name + ``get_params`` (the same key
  :class:`~mammo.classifiers.MammogramModel` uses to share work between tasks).

Layout: ``<root>/<block name>-<chain hash>/<sha[:2]>/<sha>.npy`` plus a ``chain.json``
that records the parameter chain in readable form. Files are written atomically
(temporary name, then ``os.replace``), so concurrent runs can share one cache.

Examples
--------
>>> from mammo.classifiers import make_task_pipeline  # doctest: +SKIP
>>> cache = FeatureCache()  # doctest: +SKIP
>>> X = cache.transform(paths, make_task_pipeline("tumour", "combined", "svm"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import FeatureUnion, Pipeline
from tqdm.auto import tqdm

from .classifiers.model import split_pipeline, step_key
from .features.cnn import cache_dir

__all__ = ["FeatureCache", "FeatureComputationError", "default_cache_dir", "content_sha256", "chain_key"]

CACHE_VERSION = "1"  # bump when the on-disk layout or the feature semantics change


class FeatureComputationError(RuntimeError):
    """An image could not be turned into features (names the image and the cause)."""


def default_cache_dir() -> Path:
    """``$MAMMO_CACHE_DIR/features`` or ``~/.cache/mammo/features``."""
    return cache_dir() / "features"


def content_sha256(item: Any) -> str:
    """sha256 of an image source: a file's bytes, raw bytes, or an array's dtype/shape/data."""
    h = hashlib.sha256()
    if isinstance(item, (str, os.PathLike)):
        with open(item, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        h.update(bytes(item))
    else:
        a = np.ascontiguousarray(item)
        h.update(f"array:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def chain_key(steps: Sequence, block) -> str:
    """Readable key of a block and every step before it (class + parameters)."""
    return "\n".join([f"mammo-featcache-v{CACHE_VERSION}"] + [step_key(s) for s in steps] + [step_key(block)])


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
    """

    def __init__(self, root=None, *, batch_size: int = 32, n_jobs: int = 1, progress: bool = True):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.batch_size = int(batch_size)
        self.n_jobs = max(1, int(n_jobs))
        self.progress = progress
        self.stats: Counter = Counter()
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
        key = chain_key(steps, block)
        d = self.root / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:20]}"
        if not (d / "chain.json").is_file():
            d.mkdir(parents=True, exist_ok=True)
            _atomic_write(d / "chain.json", json.dumps({"block": name, "chain": key.split("\n")}, indent=1).encode())
        return d

    # --------------------------------------------------------------- compute
    def blocks(self, images: Sequence, steps: Sequence, blocks: Sequence[tuple[str, Any]], *, desc: str = "features") -> dict:
        """``{name: (n_images, n_features) array}`` for each ``(name, transformer)`` block.

        ``steps`` are the stateless ``(name, transformer)`` steps before the blocks
        (read, crop, enhance). Blocks already on disk for an image are loaded;
        the others are computed from one shared read/crop/enhance per image.
        """
        images = list(images)
        digests = [self.digest(x) for x in images]
        pre = [s for _, s in steps]
        dirs = {name: self.block_dir(pre, name, blk) for name, blk in blocks}
        paths = {name: [dirs[name] / d[:2] / f"{d}.npy" for d in digests] for name, _ in blocks}
        missing = {name: np.array([not p.is_file() for p in paths[name]], dtype=bool) for name, _ in blocks}
        todo = np.flatnonzero(np.any(np.column_stack([missing[n] for n, _ in blocks]), axis=1)) if blocks else []
        for name, _ in blocks:
            self.stats[f"hit:{name}"] += int((~missing[name]).sum())
        if len(todo):
            self._compute(images, todo, steps, blocks, missing, paths, desc)
        out = {}
        for name, _ in blocks:
            out[name] = np.stack([np.load(p) for p in paths[name]]) if images else np.empty((0, 0), np.float32)
        return out

    def _compute(self, images, todo, steps, blocks, missing, paths, desc) -> None:
        # Fit (validate; the CNN loads its weights) on clones so the caller's steps stay untouched.
        steps = [(n, clone(s)) for n, s in steps]
        blocks = [(n, clone(b)) for n, b in blocks]
        X = [images[todo[0]]]
        try:
            for _, s in steps:
                X = s.fit(X).transform(X)
            for _, b in blocks:
                b.fit(X)
        except Exception as exc:
            raise FeatureComputationError(f"{_name(images[todo[0]])}: {type(exc).__name__}: {exc}") from exc

        def work(idx):
            batch = [images[i] for i in idx]
            try:
                X = batch
                for _, s in steps:
                    X = s.transform(X)
                res = {}
                for name, b in blocks:
                    need = missing[name][idx]
                    if need.any():
                        res[name] = (idx[need], b.transform([x for x, k in zip(X, need) if k]))
                return res
            except Exception as exc:
                bad = _first_failure(batch, steps)
                raise FeatureComputationError(f"{_name(bad[0])}: {type(exc).__name__}: {exc}") from exc

        chunks = [todo[i : i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        with tqdm(total=len(todo), desc=desc, unit="img", disable=not self.progress) as bar:
            with ThreadPoolExecutor(self.n_jobs) as pool:
                # Results are feature rows only (the images die inside ``work``), so
                # queueing every batch at once costs little memory.
                for idx, res in zip(chunks, pool.map(work, chunks)):
                    for name, (rows, feats) in res.items():
                        for i, f in zip(rows, feats):
                            p = paths[name][i]
                            p.parent.mkdir(parents=True, exist_ok=True)
                            _save_npy(p, _stored(f))
                        self.stats[f"computed:{name}"] += len(rows)
                    bar.update(len(idx))

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


def _first_failure(batch, steps):
    for item in batch:
        try:
            X = [item]
            for _, s in steps:
                X = s.transform(X)
        except Exception as exc:  # noqa: BLE001 - we are locating the culprit
            return item, exc
    return batch[0], None


def _name(item) -> str:
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"<{type(item).__name__}>"


def _stored(row: np.ndarray) -> np.ndarray:
    """float32, or float16 for a block that returns it (large activation maps, half the disk)."""
    return row if row.dtype == np.float16 else np.asarray(row, dtype=np.float32)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{id(arr)}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
    os.replace(tmp, path)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
