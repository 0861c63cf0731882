"""Views of one breast: link images that are probably the other view (CC / MLO) of one breast.

Copy groups (:mod:`~mammo.grouping.find`) join copies of one image. The two views of one
breast are two different images of the same tissue, taken minutes apart on the same
machine: their grey-level distribution, texture and size agree more than two women's do,
but no single distance says so reliably. So a classifier learns it:

1. :func:`mammo.datasets.views.view_descriptors`: per image, the grey-level distribution inside the breast, the
   breast's size and place in the frame, GLCM / LBP texture and the CNN embedding (all from
   the feature cache, so a data set already trained on costs only the reading).
2. :class:`SameBreastLinker`: P(same breast, other view) of a pair of images, fitted on a
   data set with patient ids, laterality and view (rsna-screening), from the absolute
   differences of per-data-set standardised descriptors, so that it carries over to a data
   set with other grey levels.
3. :func:`link_views`: joins the units (copy groups) of a data set without ids, most
   probable first (average linkage), erring towards merging while every class keeps enough groups for
   honest folds. Labels constrain the joins: two views of one breast share its labels.

The validation (recall on rsna-screening with the ids hidden, the DPhi figures) is in
``docs/grouping.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from ..features._base import ImageFeatures, StatelessImageTransformer
from ..features.region import as_mammogram
from .verification import first_appearance

__all__ = ["RegionShape", "SameBreastLinker", "link_views", "probable_pairs", "same_breast_pairs"]

#: Descriptor blocks compared column by column; the CNN embedding is compared as a whole.
SMALL_BLOCKS = ("intensity", "shape", "glcm", "lbp")


class RegionShape(StatelessImageTransformer, ImageFeatures):
    """Transformer: where the breast sits in its source image and how much of it it fills.

    Per :class:`~mammo.features.region.Mammogram`: the mask's share of the crop, the crop's
    height / width, its share of the source, its top and bottom as fractions of the source
    height, and whether it was mirrored (which side the chest wall was on).
    """

    def fit(self, X=None, y=None):
        self.feature_names_ = np.array(["area", "aspect", "box_share", "top", "bottom", "flipped"], dtype=object)
        return super().fit(X, y)

    def transform(self, X) -> np.ndarray:
        rows = []
        for item in X:
            m = as_mammogram(item)
            h, w = m.pixels.shape
            r0, r1, c0, c1 = m.bbox if m.bbox is not None else (0, h, 0, w)
            sh, sw = m.source_shape if m.source_shape is not None else (h, w)
            rows.append(
                [
                    float(m.mask.mean()),
                    (r1 - r0) / max(c1 - c0, 1),
                    (r1 - r0) * (c1 - c0) / max(sh * sw, 1),
                    r0 / max(sh, 1),
                    r1 / max(sh, 1),
                    float(m.flipped),
                ]
            )
        return np.array(rows, dtype=float).reshape(len(rows), 6)


def _standardise(descriptors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each column to zero median and unit spread over this data set (robust to outliers)."""
    out = {}
    for name, X in descriptors.items():
        X = np.asarray(X, dtype=float)
        # np.nanpercentile goes column by column in Python; most blocks have no NaN
        q25, med, q75 = (np.percentile if np.isfinite(X).all() else np.nanpercentile)(X, [25, 50, 75], axis=0)
        spread = q75 - q25
        spread = np.where(spread > 1e-9, spread, np.nanstd(X, axis=0))
        out[name] = np.nan_to_num((X - med) / np.where(spread > 1e-9, spread, 1.0))
    return out


def _pair_features(Z: dict[str, np.ndarray], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Absolute differences of the small blocks' columns, the embedding's cosine distance and mean difference."""
    parts = [np.abs(Z[b][i] - Z[b][j]) for b in SMALL_BLOCKS]
    a, c = Z["cnn"][i], Z["cnn"][j]
    cos = 1.0 - np.sum(a * c, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(c, axis=1), 1e-12)
    parts += [cos[:, None], np.mean(np.abs(a - c), axis=1)[:, None]]
    return np.hstack(parts).astype(np.float32)


def same_breast_pairs(patients: Sequence, laterality: Sequence, views: Sequence) -> np.ndarray:
    """``(n_pairs, 2)`` index pairs of the other view of the same breast (same patient and side)."""
    breast = np.array([f"{p}\x00{s}" for p, s in zip(patients, laterality)], dtype=object)
    views = np.asarray(views, dtype=object)
    order = np.argsort(breast, kind="stable")
    pairs = []
    start = 0
    for k in range(1, len(order) + 1):
        if k == len(order) or breast[order[k]] != breast[order[start]]:
            ix = order[start:k]
            pairs += [(a, b) for n, a in enumerate(ix) for b in ix[n + 1 :] if views[a] != views[b]]
            start = k
    return np.array(sorted((min(a, b), max(a, b)) for a, b in pairs), dtype=int).reshape(-1, 2)


class SameBreastLinker(BaseEstimator):
    """P(two images are the other view of the same breast), learned where patient ids are known.

    Parameters
    ----------
    negatives : int, default=8
        Random pairs of different patients drawn per image as counter-examples.
    max_iter, learning_rate : gradient boosting's
        (:class:`~sklearn.ensemble.HistGradientBoostingClassifier`).
    random_state : int, default=0

    Attributes
    ----------
    model_ : HistGradientBoostingClassifier
    n_pairs_ : int
        Same-breast pairs it was fitted on.
    """

    def __init__(self, negatives=8, max_iter=300, learning_rate=0.05, random_state=0):
        self.negatives = negatives
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.random_state = random_state

    def fit(self, descriptors: dict[str, np.ndarray], patients, laterality, views):
        """Fit on one data set's descriptors (:func:`view_descriptors`) and its ids."""
        patients = np.asarray(patients, dtype=object)
        pos = same_breast_pairs(patients, laterality, views)
        if len(pos) == 0:
            raise ValueError("no two views of one breast (same patient and laterality, other view) to learn from")
        rng = np.random.default_rng(self.random_state)
        n = len(patients)
        i = np.repeat(np.arange(n), int(self.negatives))
        j = rng.integers(0, n, size=len(i))
        keep = patients[i] != patients[j]
        pairs = np.column_stack([np.concatenate([pos[:, 0], i[keep]]), np.concatenate([pos[:, 1], j[keep]])])
        y = np.concatenate([np.ones(len(pos)), np.zeros(int(keep.sum()))])
        Z = _standardise(descriptors)
        X = np.vstack([_pair_features(Z, p[:, 0], p[:, 1]) for p in np.array_split(pairs, max(1, len(pairs) // 2000))])
        model = HistGradientBoostingClassifier(
            max_iter=int(self.max_iter), learning_rate=float(self.learning_rate), random_state=self.random_state
        )
        # one OpenMP thread: the fit is small, and on a machine shared with other jobs OpenMP's
        # waiting threads cost more than they save (the result does not depend on the threads)
        with threadpool_limits(1, user_api="openmp"):
            self.model_ = model.fit(X, y)
        self.n_pairs_ = len(pos)
        return self

    def pair_proba(
        self, descriptors: dict[str, np.ndarray], pairs: np.ndarray, *, chunk: int | None = None
    ) -> np.ndarray:
        """P(same breast) of each ``(i, j)`` row of ``pairs``, standardised within ``descriptors``' data set."""
        return self._proba(_standardise(descriptors), pairs, chunk=chunk)

    def _proba(self, Z: dict[str, np.ndarray], pairs: np.ndarray, *, chunk: int | None = None) -> np.ndarray:
        check_is_fitted(self, "model_")
        # about 64 MB of embedding rows per side at a time
        chunk = chunk or max(256, int(8e6 // max(Z["cnn"].shape[1], 1)))
        pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
        with threadpool_limits(1, user_api="openmp"):  # small chunks: as in fit
            out = [
                self.model_.predict_proba(_pair_features(Z, pairs[s : s + chunk, 0], pairs[s : s + chunk, 1]))[:, 1]
                for s in range(0, len(pairs), chunk)
            ]
        return np.concatenate(out) if out else np.zeros(0)


def _units(descriptors: dict[str, np.ndarray], units: Sequence | None) -> tuple[np.ndarray, dict]:
    """Unit index per image (0, 1, ... by first appearance) and each unit's median standardised descriptors."""
    n = len(next(iter(descriptors.values())))
    units = first_appearance(np.asarray(units if units is not None else np.arange(n), dtype=object))
    Z = _standardise(descriptors)
    return units, {
        k: np.array([np.median(v[units == u], axis=0) for u in range(units.max() + 1)]) for k, v in Z.items()
    }


def probable_pairs(
    descriptors: dict[str, np.ndarray],
    linker: SameBreastLinker,
    *,
    units: Sequence | None = None,
    min_proba: float = 0.5,
) -> list[tuple[int, int, float]]:
    """``(image i, image j, P)`` for unit pairs probably showing one breast, most probable first.

    Each unit (e.g. a copy group) is represented by its first image.
    """
    units, Zu = _units(descriptors, units)
    first = np.array([np.flatnonzero(units == u)[0] for u in range(units.max() + 1)])
    a, b = np.triu_indices(len(first), 1)
    proba = linker._proba(Zu, np.column_stack([a, b]))
    keep = np.flatnonzero(proba >= min_proba)
    keep = keep[np.argsort(-proba[keep], kind="stable")]
    return [(int(first[a[k]]), int(first[b[k]]), float(proba[k])) for k in keep]


def _unit_labels(units: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each unit's label: its members' most common known value, NaN if none is known."""
    out = np.full(units.max() + 1, np.nan)
    for u in range(len(out)):
        v = values[(units == u) & ~np.isnan(values)]
        if len(v):
            vals, counts = np.unique(v, return_counts=True)
            out[u] = vals[np.argmax(counts)]
    return out


def _compatible_pairs(labels: list[np.ndarray]) -> np.ndarray:
    """Unit pairs whose labels agree wherever both are known."""
    n = len(labels[0])
    a, b = np.triu_indices(n, 1)
    ok = np.ones(len(a), dtype=bool)
    for lab in labels:
        ok &= np.isnan(lab[a]) | np.isnan(lab[b]) | (lab[a] == lab[b])
    return np.column_stack([a[ok], b[ok]])


class _Budget:
    """Which joins keep every class spread over at least ``min_groups`` groups, none too large."""

    def __init__(self, labels: list[np.ndarray], sizes: np.ndarray, min_groups: int):
        self.labels = [lab.copy() for lab in labels]  # per task, indexed by union-find root
        self.sizes = sizes.astype(float).copy()
        self.min_groups = min_groups
        self.groups, self.limit = [], []
        for lab in labels:
            classes = np.unique(lab[~np.isnan(lab)])
            self.groups.append({c: int(np.sum(lab == c)) for c in classes})
            self.limit.append({c: sizes[lab == c].sum() / min_groups for c in classes})

    def allows(self, ri: int, rj: int) -> bool:
        size = self.sizes[ri] + self.sizes[rj]
        for t, lab in enumerate(self.labels):
            a, b = lab[ri], lab[rj]
            if not (np.isnan(a) or np.isnan(b) or a == b):
                return False
            c = a if not np.isnan(a) else b
            if np.isnan(c):
                continue
            if size > self.limit[t][c]:
                return False
            if not np.isnan(a) and not np.isnan(b) and self.groups[t][c] - 1 < self.min_groups:
                return False
        return True

    def join(self, root: int, other: int) -> None:
        self.sizes[root] += self.sizes[other]
        for t, lab in enumerate(self.labels):
            a, b = lab[root], lab[other]
            if not np.isnan(a) and not np.isnan(b):
                self.groups[t][a] -= 1
            lab[root] = a if not np.isnan(a) else b


def link_views(
    descriptors: dict[str, np.ndarray],
    linker: SameBreastLinker,
    *,
    units: Sequence | None = None,
    density: Sequence | None = None,
    tumour: Sequence | None = None,
    min_groups: int = 5,
    min_proba: float = 0.01,
    linkage: str = "average",
    return_details: bool = False,
):
    """One group id per image: units joined where they are probably views of one breast.

    Parameters
    ----------
    descriptors : dict
        :func:`view_descriptors` of the images.
    linker : SameBreastLinker
        Fitted on another data set with patient ids.
    units : sequence, optional
        Images that must stay together (copy groups, or known patients); default: each image alone.
    density, tumour : sequence of float, optional
        Labels, NaN where unknown. Two units with different known labels are never joined.
    min_groups : int, default=5
        Every class keeps at least this many groups, and no group holds more than
        1/min_groups of a class's images: the number of folds is the most merging that
        still puts every class in every fold.
    min_proba : float, default=0.01
        Groups whose linkage is below this are never joined. Joins are tried highest
        linkage first, down to this low value: the rule errs towards merging, since a
        merge costs a little power and a split leaks.
    linkage : {"average", "single"}, default="average"
        Between two groups: the mean P of their unit pairs, or the highest. Single linkage
        chains through one chance pair into large groups that reach the class limits early
        and block later, truer joins (``docs/grouping.md`` has both measured).
    return_details : bool
        Also return ``{"pairs", "proba", "joined"}``: the label-compatible unit pairs, their
        probabilities, and the pairs each join was made on (the two groups' first units).
    """
    units, Zu = _units(descriptors, units)
    n = len(units)
    nan = np.full(n, np.nan)
    labels = [_unit_labels(units, np.asarray(v if v is not None else nan, dtype=float)) for v in (density, tumour)]
    pairs = _compatible_pairs(labels)
    proba = linker._proba(Zu, pairs)
    budget = _Budget(labels, np.bincount(units), int(min_groups))
    root, merges = _agglomerate(len(labels[0]), pairs, proba, budget, min_proba=min_proba, linkage=linkage)
    groups = first_appearance(root[units])
    if return_details:
        index = {(int(a), int(b)): k for k, (a, b) in enumerate(pairs)}
        joined = np.zeros(len(pairs), dtype=bool)
        joined[[index[m] for m in merges if m in index]] = True
        return groups, {"pairs": pairs, "proba": proba, "joined": joined}
    return groups


LINKAGES = ("average", "single")


def _agglomerate(
    n: int, pairs: np.ndarray, proba: np.ndarray, budget: _Budget, *, min_proba: float, linkage: str
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Join the two groups of highest linkage while the budget allows: each unit's root, and the joins made.

    ``linkage="average"``: the mean P over the two groups' unit pairs (pairs never scored count 0);
    ``"single"``: their most probable pair. A join the budget refuses stays refused, since groups
    only grow and classes only lose groups. Dense ``(n, n)`` matrices: O(n^2) memory and O(n^2)
    time per join, fine for a few thousand units.
    """
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
    # Not scipy.cluster.hierarchy: its linkages cannot refuse a join (the class budget), and
    # a refused join must not block the rest of the two groups' pairs.
    total = np.zeros((n, n))  # sum of P between groups (rows and columns indexed by each group's root)
    total[pairs[:, 0], pairs[:, 1]] = total[pairs[:, 1], pairs[:, 0]] = proba
    score = np.full((n, n), -np.inf)  # -inf: label-incompatible, refused, or not a root
    score[pairs[:, 0], pairs[:, 1]] = score[pairs[:, 1], pairs[:, 0]] = proba
    size, root, merges = np.ones(n), np.arange(n), []
    while n > 1:
        i, j = divmod(int(np.argmax(score)), n)
        if score[i, j] < min_proba:
            break
        if not budget.allows(i, j):
            score[i, j] = score[j, i] = -np.inf
            continue
        merges.append((min(i, j), max(i, j)))
        budget.join(i, j)
        root[root == j] = i
        blocked = np.isneginf(score[i]) | np.isneginf(score[j])
        total[i] += total[j]
        total[:, i] = total[i]
        size[i] += size[j]
        row = total[i] / (size[i] * size) if linkage == "average" else np.maximum(score[i], score[j])
        score[i] = score[:, i] = np.where(blocked, -np.inf, row)
        score[j] = score[:, j] = score[i, i] = -np.inf
    return root, merges
