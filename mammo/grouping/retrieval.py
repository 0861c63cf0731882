"""Stage 2: candidate pairs, so that only a few pairs per image need verifying.

A flip-symmetric bag of visual words (tf-idf, cosine) ranks images by similarity:
each image's ``n_neighbors`` nearest images are its candidates
(:func:`candidate_pairs`), and between components of the first pass, each
component's nearest other components (:func:`component_pairs`).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .signature import MIRROR, Signature

__all__ = ["bag_of_words", "candidate_pairs", "component_pairs"]

_VOCABULARY_SAMPLE = 30_000  # descriptors the vocabulary is fitted on
_WORDS_BATCH = 50_000  # descriptors assigned to words per matrix product


def _vocabulary_sample(sigs: list[Signature], lengths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Descriptors of both orientations, drawn image by image (no giant stack)."""
    per_image = max(1, _VOCABULARY_SAMPLE // max(1, int((lengths > 0).sum())))
    sample = []
    for s in sigs:
        if len(s.desc):
            both = np.vstack([s.desc, s.desc[:, MIRROR]])
            sample.append(both[rng.choice(len(both), size=min(len(both), per_image), replace=False)])
    return np.vstack(sample).astype(np.float32)


def _word_counts(sigs: list[Signature], lengths: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(n_images, n_words) counts of each image's words and its mirror image's."""
    n, k = len(sigs), len(centres)
    c2 = (centres**2).sum(1)
    counts = np.zeros(n * k)
    owner = np.repeat(np.arange(n), lengths)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    start = 0
    # one matrix product per batch of descriptors instead of one per image
    while start < n:
        stop = int(np.searchsorted(bounds, bounds[start] + _WORDS_BATCH, side="right"))
        stop = min(n, max(stop - 1, start + 1))
        d = np.vstack([sigs[i].desc for i in range(start, stop)]).astype(np.float32)
        if len(d):
            o = owner[bounds[start] : bounds[stop]] * k
            for dd in (d, d[:, MIRROR]):
                w = np.argmin(c2 - 2 * dd @ centres.T, axis=1)
                counts += np.bincount(o + w, minlength=n * k)
        start = stop
    return counts.reshape(n, k)


def bag_of_words(sigs: list[Signature], n_words: int, seed: int) -> np.ndarray:
    """Flip-symmetric tf-idf bag of visual words, L2-normalised rows."""
    from scipy.cluster.vq import kmeans2
    from scipy.sparse import csr_matrix
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.preprocessing import normalize

    rng = np.random.default_rng(seed)
    lengths = np.array([len(s.desc) for s in sigs])
    if lengths.sum() == 0:
        return np.zeros((len(sigs), 1))
    sample = _vocabulary_sample(sigs, lengths, rng)
    k = int(min(n_words, max(2, len(sample) // 20)))
    # a few Lloyd iterations from random points: the vocabulary only ranks candidates,
    # and k-means++ or many iterations would cost more than the whole verification
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an empty word is harmless here
        centres, _ = kmeans2(sample, k, iter=10, minit="points", seed=seed)
    counts = _word_counts(sigs, lengths, centres.astype(np.float32))
    tfidf = TfidfTransformer(sublinear_tf=True).fit_transform(csr_matrix(counts))
    return normalize(tfidf).toarray()


def candidate_pairs(bow: np.ndarray, n_neighbors: int) -> list[tuple[int, int]]:
    """Pairs (i < j) of each image and its ``n_neighbors`` nearest images, most similar first."""
    from sklearn.neighbors import NearestNeighbors

    n = len(bow)
    k = min(n_neighbors, n - 1)
    pairs: dict[tuple[int, int], float] = {}
    if k > 0:
        dist, idx = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(bow).kneighbors(bow)
        for i in range(n):
            for d, j in zip(dist[i], idx[i]):
                if j != i:
                    key = (min(i, j), max(i, j))
                    pairs[key] = min(pairs.get(key, 2.0), float(d))
    return sorted(pairs, key=pairs.get)


def component_pairs(
    bow: np.ndarray, roots: np.ndarray, root: int, n_component_neighbors: int, pairs_per_component: int
) -> list[tuple[int, int]]:
    """Image pairs between component ``root`` and its nearest other components, best first.

    Each other image's similarity is its best to any member; the components are
    ranked by their best image, and each contributes its ``pairs_per_component``
    best images, paired with the member they are most similar to.
    """
    members = np.flatnonzero(roots == root)
    sim = bow[members] @ bow.T
    sim[:, members] = -np.inf
    cand = pd.DataFrame({"comp": roots, "score": sim.max(0), "i": members[sim.argmax(0)], "j": np.arange(len(roots))})
    cand = cand[np.isfinite(cand.score)].sort_values("score", ascending=False, kind="stable")
    cand = cand.groupby("comp", sort=False).head(pairs_per_component)
    top = cand.drop_duplicates("comp").comp.head(n_component_neighbors)
    return [(int(i), int(j)) for i, j in cand.loc[cand.comp.isin(top), ["i", "j"]].itertuples(index=False)]
