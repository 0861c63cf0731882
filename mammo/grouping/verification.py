"""Stage 3: verify candidate pairs geometrically and join the copies.

A pair is a copy when ratio-test SIFT matches fit a RANSAC similarity transform with
at least ``threshold`` inliers (:func:`match_inliers`). Pairs are verified most
similar first and joined with union-find, skipping pairs already connected, so the
cost is about one verification per image plus the rejected ones. Then:

* passes between components: a plain rendering's nearest images are often all its
  own poses, so its enhanced twin never became a candidate; each component's best
  pairs with its nearest other components are verified, until nothing merges;
* orphans: an image left alone joins its best-matching candidate when that pair
  reaches ``orphan_threshold`` inliers (a merge of two originals costs some
  evaluation power, a split original leaks).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .retrieval import component_pairs
from .signature import MIRROR, Signature, mirror_x

__all__ = ["UnionFind", "first_appearance", "match_inliers", "verify_pairs"]

_VERIFY_CHUNK = 16  # pairs verified together (in parallel) before the union-find is consulted again


def match_inliers(a: Signature, b: Signature, ratio: float = 0.8, reproj: float = 4.0) -> int:
    """RANSAC-similarity inliers between ``a`` or its mirror image and ``b``.

    Nearest neighbours by one float32 matrix product (BLAS): faster than
    ``cv2.BFMatcher.knnMatch``, which builds a Python object per match, with the same
    inlier counts (docs/grouping.md).
    """
    import cv2

    na = len(a.desc)
    if na < 2 or len(b.desc) < 2:
        return 0
    qa = a.desc.astype(np.float32)
    q = np.vstack([qa, qa[:, MIRROR]])  # a, then its mirror image
    t = b.desc.astype(np.float32)
    d = (t * t).sum(1)[None, :] - 2 * (q @ t.T)  # squared distance minus |q|^2
    rows = np.arange(len(q))
    j = d.argmin(1)
    d1 = d[rows, j]
    d[rows, j] = np.inf
    d2 = d.min(1)
    qn = np.tile((qa * qa).sum(1), 2)
    # Lowe's ratio test on distances = ratio^2 on squared distances
    good = np.maximum(d1 + qn, 0) < ratio * ratio * np.maximum(d2 + qn, 0)
    best = 0
    for half, src in enumerate((a.xy, mirror_x(a))):
        g = good[half * na : (half + 1) * na]
        if g.sum() < 3:
            continue
        dst = b.xy[j[half * na : (half + 1) * na][g]]
        _, inl = cv2.estimateAffinePartial2D(
            np.ascontiguousarray(src[g], np.float32), dst, method=cv2.RANSAC, ransacReprojThreshold=reproj
        )
        if inl is not None:
            best = max(best, int(inl.sum()))
    return best


def first_appearance(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0, 1, ... by first appearance, so that they are stable and readable."""
    first: dict[Any, int] = {}
    return np.array([first.setdefault(g, len(first)) for g in labels.tolist()], dtype=int)


class UnionFind:
    """Disjoint sets of 0..n-1; a set's root is its smallest member."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        p = self.parent
        while p[i] != i:
            p[i] = p[p[i]]
            i = p[i]
        return int(i)

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)

    def roots(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(len(self.parent))])


class _Verifier:
    """The union-find and every verified score, fed chunk by chunk."""

    def __init__(self, sigs: list[Signature], threshold: int, pool: ThreadPoolExecutor | None) -> None:
        n = len(sigs)
        self.sigs, self.threshold, self.pool = sigs, threshold, pool
        self.uf = UnionFind(n)
        self.best = np.zeros(n, int)  # per image, its best score and partner so far
        self.best_j = np.full(n, -1)
        self.edges: list[tuple[int, int, int]] = []
        self.verified: list[tuple[int, int, int]] = []

    def chunk(self, batch: list[tuple[int, int]]) -> None:
        """Verify the pairs of ``batch`` not yet connected (in parallel threads), then join the copies."""
        uf, sigs = self.uf, self.sigs
        batch = [(i, j) for i, j in batch if uf.find(i) != uf.find(j)]
        scores = (
            self.pool.map(lambda ij: match_inliers(sigs[ij[0]], sigs[ij[1]]), batch)
            if self.pool
            else (match_inliers(sigs[i], sigs[j]) for i, j in batch)
        )
        for (i, j), sc in zip(batch, scores):
            i, j, sc = int(i), int(j), int(sc)
            self.verified.append((i, j, sc))
            for x, z in ((i, j), (j, i)):
                if sc > self.best[x]:
                    self.best[x], self.best_j[x] = sc, z
            if sc >= self.threshold and uf.find(i) != uf.find(j):
                uf.union(i, j)
                self.edges.append((i, j, sc))

    def verify(self, pairs: list[tuple[int, int]], bar: Any = None) -> None:
        """Verify ``pairs`` in order, chunk by chunk (``bar``: a tqdm bar to advance)."""
        # The chunk size is fixed, not tied to n_jobs, so the result does not depend on n_jobs.
        for start in range(0, len(pairs), _VERIFY_CHUNK):
            self.chunk(pairs[start : start + _VERIFY_CHUNK])
            if bar is not None:
                bar.update(len(pairs[start : start + _VERIFY_CHUNK]))


def _component_passes(
    v: _Verifier, bow: np.ndarray, n_component_neighbors: int, pairs_per_component: int, max_passes: int
) -> int:
    """Verify pairs between nearby components until a pass merges nothing; returns the passes run."""
    n_passes = 0
    for _ in range(max_passes):
        roots = v.uf.roots()  # once per pass: its own merges do not change which pairs it verifies
        before = len(v.edges)
        for c in np.unique(roots):
            v.verify(component_pairs(bow, roots, c, n_component_neighbors, pairs_per_component))
        n_passes += 1
        if len(v.edges) == before:
            break
    return n_passes


def _attach_orphans(v: _Verifier, orphan_threshold: int) -> int:
    """Join each image still alone to its best verified partner if that pair is good enough."""
    roots = v.uf.roots()
    sizes = np.bincount(roots, minlength=len(roots))
    n = 0
    for i in np.flatnonzero(sizes[roots] == 1):
        if v.best_j[i] >= 0 and v.best[i] >= orphan_threshold:
            v.uf.union(i, int(v.best_j[i]))
            v.edges.append((int(i), int(v.best_j[i]), int(v.best[i])))
            n += 1
    return n


def verify_pairs(
    sigs: list[Signature],
    bow: np.ndarray,
    order: list[tuple[int, int]],
    *,
    threshold: int,
    orphan_threshold: int,
    n_component_neighbors: int,
    pairs_per_component: int,
    max_passes: int,
    n_jobs: int,
    progress: bool,
) -> tuple[np.ndarray, dict]:
    """Verify candidate pairs most similar first, then between components, then orphans.

    Returns the group labels (by first appearance) and the details that
    :func:`~mammo.grouping.find_duplicate_groups` documents, in these indices.
    """
    from joblib import effective_n_jobs
    from threadpoolctl import threadpool_limits

    workers = effective_n_jobs(n_jobs)
    # BLAS and cv2 release the GIL while matching, so threads verify a chunk in
    # parallel; one BLAS thread per product, as the matrices are small and OpenBLAS's
    # own threads would compete with the verification threads
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    with threadpool_limits(limits=1, user_api="blas"), pool or contextlib.nullcontext():
        v = _Verifier(sigs, threshold, pool)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(order), desc="verify", unit="pair", mininterval=1.0)
        v.verify(order, bar)
        if bar is not None:
            bar.close()
        n_passes = _component_passes(v, bow, n_component_neighbors, pairs_per_component, max_passes)
        n_orphans = _attach_orphans(v, orphan_threshold)
    details = {
        "n_candidate_pairs": len(order),
        "n_verified_pairs": len(v.verified),
        "n_orphans_attached": n_orphans,
        "n_keypoints_median": float(np.median([2 * len(s.desc) for s in sigs])),  # both orientations
        "threshold": threshold,
        "orphan_threshold": orphan_threshold,
        "n_passes": n_passes,
        "edges": v.edges,
        "verified": v.verified,
        "best_inliers": v.best,
    }
    return first_appearance(v.uf.roots()), details
