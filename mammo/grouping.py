"""Near-duplicate discovery: give augmented copies of one original mammogram one group.

Data sets such as DPhi Sprint 31 hold many augmented copies (rotation by any angle with
black fill, flips, zoom, shift, a plain and a contrast-enhanced rendering) of a few
originals and no ids. Splitting such copies across train and test leaks, so the groups
are recovered from the pixels:

1. :func:`image_signature`: CLAHE (which maps the plain and the enhanced rendering
   to nearly the same local contrast), then SIFT keypoints restricted to the eroded
   tissue mask (so the straight edges of rotation fill and frame never match), for the
   image and its mirror image (the mirror's descriptors are a permutation of the
   image's, so SIFT runs once). SIFT is invariant to rotation and scale, and its
   gradient-orientation histograms to monotone contrast changes; the mirror copy makes
   the match invariant to flips. Byte-identical files are signed once.
2. Candidates: a flip-symmetric bag of visual words (tf-idf, cosine) gives each image
   its ``n_neighbors`` most similar images.
3. Verification: ratio-test matches between the two keypoint sets and a RANSAC
   similarity transform; a pair with at least ``threshold`` inliers is a copy. Pairs are
   verified most-similar first and joined with union-find, skipping pairs already
   connected, so the cost is about one verification per image plus the rejected ones.
   A second pass verifies the best pairs between each component and its nearest other
   components (a plain rendering's nearest images are often all its own poses).
4. Orphans (images left alone) are attached to their best-matching candidate when it
   reaches ``orphan_threshold`` inliers: a merge of two originals costs some
   evaluation power, a split original leaks.

Signatures are cached per image and the final groups per list of images (see
:func:`find_duplicate_groups`). The validation of this procedure (ground truth built
from mini-MIAS, and DPhi label purity) is in ``docs/grouping.md``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "image_signature",
    "find_duplicate_groups",
    "group_report",
    "contact_sheet",
    "audit_split",
    "audit",
    "list_images",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pnm", ".tif", ".tiff", ".bmp", ".dcm")
SIGNATURE_VERSION = "sift-clahe-v3"  # bump when image_signature changes: keys the cache
# bump when anything after the signatures changes (candidates, verification, passes,
# orphans, details): keys the cache of final results
GROUPS_VERSION = "dup-groups-v2"
_N_DESC = 128
_VERIFY_CHUNK = 16  # pairs verified together (in parallel) before the union-find is consulted again
_FILL_LEVEL = 4  # uint8 grey level below which a pixel is rotation/shift fill


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    from .features.cnn import cache_dir as cache_root

    return Path(cache_dir) if cache_dir is not None else cache_root()


def _to_uint8(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {np.shape(image)}")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    a = a.astype(np.float32)
    if a.size and (a.min() < 0 or a.max() > 1):
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return np.ascontiguousarray(np.round(a * 255).astype(np.uint8))


class _Sig(NamedTuple):
    """One image's keypoints, unmirrored only: its mirror image's are derived (:data:`_MIRROR`)."""

    xy: np.ndarray  # (n, 2) float32, keypoint positions in the resized image
    desc: np.ndarray  # (n, 128) uint8, SIFT descriptors (OpenCV's values are integers 0..255)
    width: int  # of the resized image: a mirrored keypoint sits at x' = width - 0.5 - x (see _mirror_x)


def _mirror_permutation() -> np.ndarray:
    # OpenCV lays a SIFT descriptor out as 4 x 4 spatial cells (rows and columns of the
    # keypoint's rotated frame) x 8 orientation bins relative to the keypoint angle.
    # Mirroring the image mirrors that frame across its orientation axis: cell row r
    # becomes 3 - r, the column stays, relative orientation bin o becomes -o (mod 8).
    # Checked against SIFT run on a mirrored DPhi image: keypoints found at mirrored
    # positions had identical descriptors.
    cells = np.arange(128).reshape(4, 4, 8)
    return cells[::-1][:, :, (-np.arange(8)) % 8].ravel()


_MIRROR = _mirror_permutation()


def _signature_parts(image: np.ndarray, size: int = 224, n_features: int = 300, clahe_clip: float = 8.0,
                     erode: int = 7) -> _Sig:
    """The work of :func:`image_signature` (same parameters and defaults), compact."""
    import cv2

    cv2.setNumThreads(1)
    im = _to_uint8(image)
    h, w = im.shape
    scale = size / max(h, w)
    if scale != 1:
        im = cv2.resize(im, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    empty = _Sig(np.zeros((0, 2), np.float32), np.zeros((0, _N_DESC), np.uint8), im.shape[1])
    if im.max() == im.min():
        return empty
    t, _ = cv2.threshold(im, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = im > t
    lower = im[(im > _FILL_LEVEL) & ~mask]
    if lower.size and lower.mean() > 0.5 * im[mask].mean():
        # no dark background in view (a zoomed copy filled with tissue): Otsu would split
        # the tissue itself, so only the black fill is left out
        mask = im > _FILL_LEVEL
    mask = cv2.erode(mask.astype(np.uint8), np.ones((erode, erode), np.uint8))
    im = cv2.createCLAHE(clipLimit=clahe_clip, tileGridSize=(8, 8)).apply(im)
    # one SIFT run: the mirror image's descriptors are a permutation of these, which
    # halves the cost of the signatures (the v2 signatures ran SIFT on the mirror too)
    kps, desc = cv2.SIFT_create(nfeatures=n_features).detectAndCompute(im, mask)
    if desc is None or not kps:
        return empty
    xy = np.array([k.pt for k in kps], np.float32)
    return _Sig(xy, np.clip(np.round(desc), 0, 255).astype(np.uint8), im.shape[1])


def _mirror_x(s: _Sig) -> np.ndarray:
    """Keypoint positions in the mirror image."""
    # SIFT's 2x upsampled first octave puts keypoint coordinates a quarter pixel off
    # pixel centres, so the mirror of x is width - 0.5 - x (measured), not width - 1 - x
    return np.column_stack([s.width - 0.5 - s.xy[:, 0], s.xy[:, 1]]).astype(np.float32)


def _sig_rows(s: _Sig) -> np.ndarray:
    """The (n, 131) array of :func:`image_signature`: the keypoints, then their mirror images."""
    mx = _mirror_x(s)
    return np.vstack([
        np.hstack([s.xy, np.zeros((len(s.xy), 1), np.float32), s.desc.astype(np.float32)]),
        np.hstack([mx, np.ones((len(s.xy), 1), np.float32), s.desc[:, _MIRROR].astype(np.float32)]),
    ]).astype(np.float32)


def image_signature(
    image: np.ndarray,
    *,
    size: int = 224,
    n_features: int = 300,
    clahe_clip: float = 8.0,
    erode: int = 7,
) -> np.ndarray:
    """Flip-, rotation-, scale- and contrast-robust keypoint signature of one image.

    Parameters
    ----------
    image : ndarray
        2-D grey image (float in [0, 1] or uint8; RGB is averaged).
    size : int
        The longer side is resized to ``size`` pixels first, so that images of any
        resolution are compared at one scale (DPhi images are 224 px).
    n_features : int
        Maximum number of SIFT keypoints (per orientation).
    clahe_clip : float
        CLAHE clip limit applied before detection.
    erode : int
        Keypoints are kept only this many pixels inside the tissue mask.

    Notes
    -----
    Keypoints are kept inside the Otsu tissue mask (eroded) when the image shows a dark
    background, else inside the non-black area. An inverted image (white background) is
    not flipped back: all its copies are inverted alike, which is all matching needs.
    SIFT runs once; the mirror image's keypoints are the same keypoints at mirrored
    positions with permuted descriptors. Most of them (about 90 %) are exactly what SIFT
    finds on the mirrored image; the others sit differently on its pixel grid.

    Returns
    -------
    ndarray of float32, shape (n_keypoints, 131)
        Columns: x, y, mirrored (0 for the image, 1 for its left-right mirror, whose
        x is in mirrored coordinates), then the 128 SIFT descriptor values. Empty
        (0 rows) for a blank image.
    """
    return _sig_rows(_signature_parts(image, size, n_features, clahe_clip, erode))


def _match_inliers(a: _Sig, b: _Sig, ratio: float = 0.8, reproj: float = 4.0) -> int:
    """RANSAC-similarity inliers between ``a`` or its mirror image and ``b``.

    Nearest neighbours by one float32 matrix product (BLAS), four times faster than
    ``cv2.BFMatcher.knnMatch`` here, which builds a Python object per match.
    """
    import cv2

    na = len(a.desc)
    if na < 2 or len(b.desc) < 2:
        return 0
    qa = a.desc.astype(np.float32)
    q = np.vstack([qa, qa[:, _MIRROR]])  # a, then its mirror image
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
    for half, src in enumerate((a.xy, _mirror_x(a))):
        g = good[half * na:(half + 1) * na]
        if g.sum() < 3:
            continue
        dst = b.xy[j[half * na:(half + 1) * na][g]]
        _, inl = cv2.estimateAffinePartial2D(np.ascontiguousarray(src[g], np.float32), dst, method=cv2.RANSAC,
                                             ransacReprojThreshold=reproj)
        if inl is not None:
            best = max(best, int(inl.sum()))
    return best


def _read_grey(path: str | os.PathLike) -> np.ndarray:
    from mammo.features.io import read_image

    return read_image(path)


def _content_key(item: Any, params: dict) -> str:
    """Hash of an image's bytes (file content or array), the signature parameters and version."""
    if isinstance(item, (str, os.PathLike)):
        data = Path(item).read_bytes()
    else:
        arr = np.ascontiguousarray(np.asarray(item))
        data = arr.tobytes() + str((arr.shape, arr.dtype)).encode()
    return hashlib.sha1(data + json.dumps(params, sort_keys=True).encode() + SIGNATURE_VERSION.encode()).hexdigest()


def _signature_cached(item: Any, key: str, cache: Path | None, params: dict) -> _Sig:
    fn = cache / SIGNATURE_VERSION / key[:2] / f"{key}.npz" if cache is not None else None
    if fn is not None and fn.exists():
        try:
            with np.load(fn) as z:
                return _Sig(z["xy"], z["desc"], int(z["width"]))
        except (OSError, ValueError, KeyError):
            pass  # a truncated cache file from an interrupted run: recompute
    image = _read_grey(item) if isinstance(item, (str, os.PathLike)) else np.asarray(item)
    sig = _signature_parts(image, **params)
    if fn is not None:
        fn.parent.mkdir(parents=True, exist_ok=True)
        tmp = fn.with_name(f"{key}.{os.getpid()}.tmp.npz")
        np.savez(tmp, xy=sig.xy, desc=sig.desc, width=sig.width)
        os.replace(tmp, fn)
    return sig


def _signatures(items: Sequence[Any], keys: Sequence[str], cache: Path | None, params: dict, n_jobs: int,
                progress: bool) -> list[_Sig]:
    from joblib import Parallel, delayed

    it: Iterable = zip(items, keys)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(items), desc="signatures", unit="img")
    if n_jobs == 1:
        return [_signature_cached(x, k, cache, params) for x, k in it]
    return Parallel(n_jobs=n_jobs, batch_size=32)(delayed(_signature_cached)(x, k, cache, params) for x, k in it)


def _bag_of_words(sigs: list[_Sig], n_words: int, seed: int) -> np.ndarray:
    """Flip-symmetric tf-idf bag of visual words, L2-normalised rows."""
    from scipy.cluster.vq import kmeans2
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.preprocessing import normalize
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(seed)
    n = len(sigs)
    lengths = np.array([len(s.desc) for s in sigs])
    if lengths.sum() == 0:
        return np.zeros((n, 1))
    # a sample of descriptors of both orientations for the vocabulary, drawn image by
    # image (no giant stack)
    per_image = max(1, 30_000 // max(1, int((lengths > 0).sum())))
    sample = []
    for s in sigs:
        if len(s.desc):
            both = np.vstack([s.desc, s.desc[:, _MIRROR]])
            sample.append(both[rng.choice(len(both), size=min(len(both), per_image), replace=False)])
    sample = np.vstack(sample).astype(np.float32)
    k = int(min(n_words, max(2, len(sample) // 20)))
    # a few Lloyd iterations from random points: the vocabulary only ranks candidates,
    # and k-means++ or many iterations would cost more than the whole verification
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an empty word is harmless here
        centres, _ = kmeans2(sample, k, iter=10, minit="points", seed=seed)
    centres = centres.astype(np.float32)
    c2 = (centres**2).sum(1)
    counts = np.zeros(n * k)
    owner = np.repeat(np.arange(n), lengths)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    start = 0
    # one matrix product per ~50k descriptors instead of one per image
    while start < n:
        stop = int(np.searchsorted(bounds, bounds[start] + 50_000, side="right"))
        stop = min(n, max(stop - 1, start + 1))
        d = np.vstack([sigs[i].desc for i in range(start, stop)]).astype(np.float32)
        if len(d):
            o = owner[bounds[start]:bounds[stop]] * k
            for dd in (d, d[:, _MIRROR]):  # the words of the image and of its mirror image
                w = np.argmin(c2 - 2 * dd @ centres.T, axis=1)
                counts += np.bincount(o + w, minlength=n * k)
        start = stop
    tfidf = TfidfTransformer(sublinear_tf=True).fit_transform(csr_matrix(counts.reshape(n, k)))
    return normalize(tfidf).toarray()


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0, 1, ... by first appearance, so that they are stable and readable."""
    first: dict[Any, int] = {}
    return np.array([first.setdefault(g, len(first)) for g in labels.tolist()], dtype=int)


class _UnionFind:
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
        RANSAC inliers that make a pair a copy (default 15; unrelated DPhi and
        mini-MIAS pairs reach at most about 10, copies typically 30-200).
    orphan_threshold : int, optional
        An image left in a group of its own joins its best candidate if that pair has
        at least this many inliers (default ``threshold // 2``); 0 attaches every orphan.
    n_neighbors : int
        Candidate pairs per image from the bag-of-words retrieval.
    n_words : int
        Visual vocabulary size.
    n_component_neighbors, pairs_per_component, max_passes : int
        Second pass between components: each component's nearest other components,
        the best image pairs per component, and at most this many passes. (With 5
        components, one DPhi original stayed split in a plain and an enhanced half for
        one of three vocabulary seeds; 10 joined it for every seed tried.)
    n_jobs : int
        Processes for the signatures and threads for the pair verification. The
        result does not depend on it.
    progress : bool
        Show tqdm progress bars.
    cache_dir : path, None or False
        Cache folder. Signatures are cached per image under ``<cache>/<signature
        version>/``, keyed by a hash of the file bytes (or array) and the signature
        parameters; the final result (groups and details) under ``<cache>/groups/``,
        keyed by the ordered list of those image hashes, every parameter that affects
        the grouping and :data:`GROUPS_VERSION`. None: ``$MAMMO_CACHE_DIR`` or
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
    n = len(items)
    if n == 0:
        return (np.zeros(0, int), {}) if return_details else np.zeros(0, int)
    threshold = 15 if threshold is None else int(threshold)
    orphan_threshold = threshold // 2 if orphan_threshold is None else int(orphan_threshold)
    cache = None if cache_dir is False else _cache_dir(cache_dir)
    # hashing the bytes costs about 1 s for DPhi's 5,724 files; decoding is left for a miss
    keys = [_content_key(x, signature_params) for x in items]
    params = {
        "threshold": threshold, "orphan_threshold": orphan_threshold, "n_neighbors": int(n_neighbors),
        "n_words": int(n_words), "n_component_neighbors": int(n_component_neighbors),
        "pairs_per_component": int(pairs_per_component), "max_passes": int(max_passes),
        "signature_params": signature_params,
    }
    result_file = None
    if cache is not None:
        blob = json.dumps({"keys": keys, "params": params, "version": GROUPS_VERSION}, sort_keys=True, default=str)
        result_file = cache / "groups" / f"{hashlib.sha1(blob.encode()).hexdigest()}.json"
        hit = _load_result(result_file, n)
        if hit is not None:
            return hit if return_details else hit[0]
    # byte-identical images (1,438 of DPhi's 5,724 files) are one image: signed and
    # verified once, and in the same group by definition
    unique: dict[str, int] = {}
    inverse = np.array([unique.setdefault(k, len(unique)) for k in keys])
    first = np.unique(inverse, return_index=True)[1]
    sigs = _signatures([items[i] for i in first], [keys[i] for i in first], cache, signature_params, n_jobs,
                       progress)
    ugroups, details = _group_signatures(sigs, threshold=threshold, orphan_threshold=orphan_threshold,
                                         n_neighbors=n_neighbors, n_words=n_words,
                                         n_component_neighbors=n_component_neighbors,
                                         pairs_per_component=pairs_per_component, max_passes=max_passes,
                                         n_jobs=n_jobs, progress=progress)
    groups = _first_appearance(ugroups[inverse])
    # details in terms of the input's indices (a unique image by its first occurrence)
    for name in _TUPLE_LISTS:
        details[name] = [(int(first[i]), int(first[j]), sc) for i, j, sc in details[name]]
    details["best_inliers"] = details["best_inliers"][inverse]
    details["n_unique_images"] = len(first)
    if result_file is not None:
        _save_result(result_file, groups, details)
    return (groups, details) if return_details else groups


def _save_result(fn: Path, groups: np.ndarray, details: dict) -> None:
    """Write groups and details as JSON, atomically (concurrent runs may share the cache)."""
    def plain(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    fn.parent.mkdir(parents=True, exist_ok=True)
    tmp = fn.with_name(f"{fn.stem}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": GROUPS_VERSION, "groups": groups.tolist(),
                               "details": {k: plain(v) for k, v in details.items()}}))
    os.replace(tmp, fn)


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


_TUPLE_LISTS = ("edges", "verified")


def _group_signatures(sigs: list[_Sig], *, n_neighbors: int, n_words: int, **verify) -> tuple[np.ndarray, dict]:
    """Candidates from bag-of-words neighbours, then :func:`_verify` (its keyword arguments)."""
    n = len(sigs)
    from sklearn.neighbors import NearestNeighbors

    bow = _bag_of_words(sigs, n_words, seed=0)
    k = min(n_neighbors, n - 1)
    pairs: dict[tuple[int, int], float] = {}
    if k > 0:
        dist, idx = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(bow).kneighbors(bow)
        for i in range(n):
            for d, j in zip(dist[i], idx[i]):
                if j != i:
                    key = (min(i, j), max(i, j))
                    pairs[key] = min(pairs.get(key, 2.0), float(d))
    order = sorted(pairs, key=pairs.get)
    from threadpoolctl import threadpool_limits

    # one BLAS thread per product: the matrices are small and the verification threads
    # are the parallelism (OpenBLAS's own threads made each match 4x more expensive)
    with threadpool_limits(limits=1, user_api="blas"):
        return _verify(sigs, bow, order, **verify)


def _verify(
    sigs: list[_Sig],
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
    """Verify candidate pairs most similar first, then between components, then orphans."""
    from joblib import effective_n_jobs

    n = len(sigs)
    uf = _UnionFind(n)
    best = np.zeros(n, int)
    best_j = np.full(n, -1)
    n_verified = 0
    edges = []
    verified: list[tuple[int, int, int]] = []
    # BLAS and cv2 release the GIL while matching, so threads verify a chunk of pairs in
    # parallel; pairs already connected when their chunk starts are skipped. The chunk
    # size is fixed, not tied to n_jobs, so that the result does not depend on n_jobs.
    from concurrent.futures import ThreadPoolExecutor

    workers = effective_n_jobs(n_jobs)
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None

    def verify(batch: list[tuple[int, int]]) -> None:
        nonlocal n_verified
        batch = [(i, j) for i, j in batch if uf.find(i) != uf.find(j)]
        scores = (pool.map(lambda ij: _match_inliers(sigs[ij[0]], sigs[ij[1]]), batch) if pool
                  else (_match_inliers(sigs[i], sigs[j]) for i, j in batch))
        for (i, j), sc in zip(batch, scores):
            i, j, sc = int(i), int(j), int(sc)
            n_verified += 1
            verified.append((i, j, sc))
            for x, z in ((i, j), (j, i)):
                if sc > best[x]:
                    best[x], best_j[x] = sc, z
            if sc >= threshold and uf.find(i) != uf.find(j):
                uf.union(i, j)
                edges.append((i, j, sc))

    chunk = _VERIFY_CHUNK
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc="verify", unit="pair", mininterval=1.0)
    for start in range(0, len(order), chunk):
        verify(order[start:start + chunk])
        if bar is not None:
            bar.update(len(order[start:start + chunk]))
    if bar is not None:
        bar.close()
    # Pass 2: a plain rendering's nearest neighbours are often all its own rotations
    # and flips, so its enhanced twin never became a candidate. Retrieve again between
    # components: each component's nearest other components, best image pairs first.
    n_passes = 0
    for _ in range(max_passes):
        roots = np.array([uf.find(i) for i in range(n)])
        merged = 0
        for c in np.unique(roots):
            members = np.flatnonzero(roots == c)
            sim = bow[members] @ bow.T
            sim[:, members] = -np.inf
            cand = pd.DataFrame({"comp": roots, "score": sim.max(0), "i": members[sim.argmax(0)], "j": np.arange(n)})
            cand = cand[np.isfinite(cand.score)].sort_values("score", ascending=False, kind="stable")
            cand = cand.groupby("comp", sort=False).head(pairs_per_component)
            top = cand.drop_duplicates("comp").comp.head(n_component_neighbors)
            before = len(edges)
            pairs_c = [(int(i), int(j)) for i, j in cand.loc[cand.comp.isin(top), ["i", "j"]].itertuples(index=False)]
            for start in range(0, len(pairs_c), chunk):
                verify(pairs_c[start:start + chunk])
            merged += len(edges) - before
        n_passes += 1
        if not merged:
            break
    roots = np.array([uf.find(i) for i in range(n)])
    sizes = np.bincount(roots, minlength=n)
    n_orphans_attached = 0
    for i in np.flatnonzero(sizes[roots] == 1):
        if best_j[i] >= 0 and best[i] >= orphan_threshold:
            uf.union(i, int(best_j[i]))
            edges.append((int(i), int(best_j[i]), int(best[i])))
            n_orphans_attached += 1
    if pool is not None:
        pool.shutdown()
    groups = _first_appearance(np.array([uf.find(i) for i in range(n)]))
    details = {
        "n_candidate_pairs": len(order),
        "n_verified_pairs": n_verified,
        "n_orphans_attached": n_orphans_attached,
        "n_keypoints_median": float(np.median([2 * len(s.desc) for s in sigs])),  # both orientations
        "threshold": threshold,
        "orphan_threshold": orphan_threshold,
        "n_passes": n_passes,
        "edges": edges,
        "verified": verified,
        "best_inliers": best,
    }
    return groups, details


def group_report(groups: Sequence[Any], labels: Sequence[Any] | None = None) -> dict[str, Any]:
    """Summarise a grouping: number of groups, size distribution and label purity.

    Parameters
    ----------
    groups : sequence
        One group id per image.
    labels : sequence, optional
        One label per image. Copies of one original share its label, so a group holding
        several labels is a merge of two originals (or, with per-patient labels, true
        multi-view images of one patient).

    Returns
    -------
    dict (JSON-serialisable)
        ``n_images``, ``n_groups``, ``size`` (min, median, mean, max), ``size_counts``
        ({size: number of groups}), ``n_singletons``; with labels also ``n_impure``,
        ``images_in_impure``, ``minority_images`` (images not carrying their group's
        majority label) and ``impure_groups`` (id, size, label counts).
    """
    g = np.asarray([str(x) for x in groups], dtype=object)
    ids, inv, sizes = np.unique(g, return_inverse=True, return_counts=True)
    sc = pd.Series(sizes).value_counts().sort_index()
    out: dict[str, Any] = {
        "n_images": int(len(g)),
        "n_groups": int(len(ids)),
        "size": {
            "min": int(sizes.min()) if len(sizes) else 0,
            "median": float(np.median(sizes)) if len(sizes) else 0.0,
            "mean": float(sizes.mean()) if len(sizes) else 0.0,
            "max": int(sizes.max()) if len(sizes) else 0,
        },
        "size_counts": {str(int(k)): int(v) for k, v in sc.items()},
        "n_singletons": int((sizes == 1).sum()),
    }
    if labels is not None:
        lab = np.asarray([str(x) for x in labels], dtype=object)
        if len(lab) != len(g):
            raise ValueError(f"{len(lab)} labels for {len(g)} images")
        df = pd.DataFrame({"g": g, "label": lab})
        impure = []
        minority = 0
        for gid, sub in df.groupby("g", sort=True):
            counts = sub["label"].value_counts()
            if len(counts) > 1:
                impure.append({"group": str(gid), "size": int(len(sub)),
                               "labels": {str(k): int(v) for k, v in counts.items()}})
                minority += int(len(sub) - counts.iloc[0])
        out.update({
            "n_impure": len(impure),
            "images_in_impure": int(sum(d["size"] for d in impure)),
            "minority_images": minority,
            "impure_groups": impure,
        })
    return out


def contact_sheet(
    paths: Sequence[Any],
    groups: Sequence[Any],
    out_png: str | os.PathLike,
    max_groups: int = 12,
    per_group: int = 10,
    thumb: int = 96,
    which: Sequence[Any] | None = None,
    seed: int = 0,
) -> None:
    """Write a PNG grid with one row per group (up to ``per_group`` random members).

    Parameters
    ----------
    paths : sequence of paths or 2-D arrays
    groups : sequence
        Group id per image.
    out_png : path
    max_groups : int
        Rows; the groups are drawn at random unless ``which`` lists them.
    per_group : int
        Thumbnails per row; the row title gives the group id and its size.
    thumb : int
        Thumbnail side in pixels.
    which : sequence, optional
        Group ids to show, in this order.
    seed : int
        Seed of the random choice of groups and members.
    """
    from PIL import Image, ImageDraw

    g = np.asarray([str(x) for x in groups], dtype=object)
    rng = np.random.default_rng(seed)
    ids = list(dict.fromkeys(g))
    if which is not None:
        chosen = [str(w) for w in which][:max_groups]
    else:
        chosen = [ids[i] for i in sorted(rng.choice(len(ids), size=min(max_groups, len(ids)), replace=False))]
    label_w = 110
    sheet = Image.new("L", (label_w + per_group * (thumb + 2), max(1, len(chosen)) * (thumb + 2)), 40)
    draw = ImageDraw.Draw(sheet)
    for r, gid in enumerate(chosen):
        members = np.flatnonzero(g == gid)
        draw.text((4, r * (thumb + 2) + 4), f"group {gid}\n{len(members)} images", fill=255)
        if len(members) > per_group:
            members = np.sort(rng.choice(members, size=per_group, replace=False))
        for c, i in enumerate(members):
            item = paths[i]
            im = _read_grey(item) if isinstance(item, (str, os.PathLike)) else np.asarray(item)
            t = Image.fromarray(_to_uint8(im))
            t.thumbnail((thumb, thumb))
            sheet.paste(t, (label_w + c * (thumb + 2), r * (thumb + 2)))
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)


def audit_split(groups: Sequence[Any], split: Sequence[Any], names: Sequence[str] | None = None) -> pd.DataFrame:
    """Groups whose images sit on more than one side of a split (leakage).

    Parameters
    ----------
    groups : sequence
        Group id per image.
    split : sequence
        Side per image (e.g. "train"/"test", or a fold number).
    names : sequence of str, optional
        Image names to list per leaking group.

    Returns
    -------
    DataFrame
        One row per leaking group: ``group``, ``size``, ``sides`` (side -> count, as
        text) and ``images`` (up to 10 names); empty when the split is clean.
    """
    g = np.asarray([str(x) for x in groups], dtype=object)
    s = np.asarray([str(x) for x in split], dtype=object)
    if len(g) != len(s):
        raise ValueError(f"{len(s)} split values for {len(g)} images")
    nm = np.asarray(names if names is not None else np.arange(len(g)).astype(str), dtype=object)
    rows = []
    for gid in dict.fromkeys(g):
        idx = np.flatnonzero(g == gid)
        sides = pd.Series(s[idx]).value_counts()
        if len(sides) > 1:
            rows.append({
                "group": gid,
                "size": len(idx),
                "sides": ", ".join(f"{k}: {v}" for k, v in sides.items()),
                "images": " ".join(map(str, nm[idx][:10])) + (" ..." if len(idx) > 10 else ""),
            })
    return pd.DataFrame(rows, columns=["group", "size", "sides", "images"])


def list_images(folder: str | os.PathLike) -> list[str]:
    """All image files under ``folder`` (recursive, sorted), by suffix."""
    folder = Path(folder)
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _key_table(csv: str | os.PathLike, value_cols: Sequence[str], what: str) -> pd.DataFrame:
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    cols = {c.lower(): c for c in df.columns}
    key = next((cols[c] for c in ("path", "filename", "file", "image") if c in cols), None)
    if key is None:
        raise ValueError(f"{csv}: the {what} CSV needs a path or filename column; found {list(df.columns)}")
    val = next((cols[c] for c in value_cols if c in cols), None)
    if val is None:
        others = [c for c in df.columns if c != key]
        if len(others) != 1:
            raise ValueError(f"{csv}: cannot tell which column is the {what}; name it one of {list(value_cols)}")
        val = others[0]
    return pd.DataFrame({"key": df[key].astype(str), "value": df[val].astype(str)})


def _lookup(paths: Sequence[str], table: pd.DataFrame, base: Path, what: str) -> np.ndarray:
    """Match table rows to image paths by absolute path, path relative to base, or file name."""
    by_key = dict(zip(table["key"], table["value"]))
    out, missing = [], []
    for p in paths:
        pp = Path(p)
        cands = [str(pp), str(pp.relative_to(base)) if pp.is_relative_to(base) else None, pp.name]
        v = next((by_key[c] for c in cands if c is not None and c in by_key), None)
        if v is None:
            missing.append(pp.name)
        out.append(v)
    if missing:
        raise ValueError(f"the {what} CSV has no row for {len(missing)} images, e.g. {', '.join(missing[:3])}")
    return np.asarray(out, dtype=object)


def audit(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    labels_csv: str | os.PathLike | None = None,
    split_csv: str | os.PathLike | None = None,
    n_jobs: int = 1,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    n_sheets: int = 3,
    **kwargs: Any,
) -> dict[str, Any]:
    """Group a user's images by original and check a split for leakage.

    Parameters
    ----------
    source : path
        A folder of images (searched recursively) or a CSV with a ``path`` or
        ``filename`` column (relative to the CSV's folder).
    out_dir : path
        Receives ``groups.csv``, ``group_sizes.png``, ``contact_sheet_N.png``,
        ``report.json`` and, with a split, ``leaks.csv``.
    labels_csv : path, optional
        path/filename + label columns: reports groups that mix labels.
    split_csv : path, optional
        path/filename + a split column (``split``, ``set``, ``subset``, ``fold``, or the
        only other column): reports every group with images on more than one side.
    n_jobs, progress, cache_dir, **kwargs
        Passed to :func:`find_duplicate_groups`.

    Returns
    -------
    dict
        The report, as written to ``report.json``; ``n_leaking_groups`` is set when a
        split is given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    if source.is_dir():
        base = source.resolve()
        paths = list_images(base)
    else:
        base = source.resolve().parent
        t = _key_table(source, ["label"], "image list")
        paths = [str(Path(k) if os.path.isabs(k) else (base / k).resolve()) for k in t["key"]]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"{source}: {len(missing)} listed images do not exist, e.g. {', '.join(missing[:3])}")
    if not paths:
        raise ValueError(f"{source}: no images found (suffixes {', '.join(IMAGE_SUFFIXES)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups, details = find_duplicate_groups(paths, n_jobs=n_jobs, progress=progress, cache_dir=cache_dir,
                                            return_details=True, **kwargs)
    rel = [str(Path(p).relative_to(base)) if Path(p).is_relative_to(base) else p for p in paths]
    table = pd.DataFrame({"path": rel, "group": groups})
    labels = None
    if labels_csv is not None:
        labels = _lookup(paths, _key_table(labels_csv, ["label", "labels", "class"], "label"), base, "label")
        table["label"] = labels
    split = None
    if split_csv is not None:
        split = _lookup(paths, _key_table(split_csv, ["split", "set", "subset", "fold", "partition"], "split"), base, "split")
        table["split"] = split
    table.to_csv(out / "groups.csv", index=False)
    report = group_report(groups, labels)
    report["source"] = str(source)
    report["grouping"] = {k: v for k, v in details.items() if k not in ("edges", "verified", "best_inliers")}

    sizes = np.bincount(groups)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(sizes, bins=np.arange(0.5, sizes.max() + 1.5, max(1, sizes.max() // 60)))
    ax.set_xlabel("images per group")
    ax.set_ylabel("groups")
    ax.set_title(f"{len(paths)} images in {len(sizes)} groups")
    fig.tight_layout()
    fig.savefig(out / "group_sizes.png", dpi=100)
    plt.close(fig)
    for k in range(n_sheets):
        contact_sheet(paths, groups, out / f"contact_sheet_{k + 1}.png", seed=k)
    if split is not None:
        leaks = audit_split(groups, split, rel)
        leaks.to_csv(out / "leaks.csv", index=False)
        report["n_leaking_groups"] = int(len(leaks))
        report["n_leaking_images"] = int(leaks["size"].sum()) if len(leaks) else 0
    with open(out / "report.json", "w") as f:
        json.dump(report, f, indent=2)
    return report


def __getattr__(name: str) -> Any:
    # the DPhi augmentation simulator moved to mammo.testing (it is for tests)
    if name in ("augment_like_dphi", "simulate_copies"):
        from . import testing

        return getattr(testing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
