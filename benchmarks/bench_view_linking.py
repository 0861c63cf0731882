"""How well pixel-only view linking finds the other view of a breast, where the truth is known.

rsna-screening's training images (never its hold-out) are split by patient in two halves.
A :class:`~mammo.grouping.views.SameBreastLinker` fitted on one half (with its ids) groups
the other half with the ids hidden, and the other way round. Printed per half: the
same-breast CC/MLO pairs the groups keep together (recall), how many patients share a
group, and whether every class of both tasks still reaches every one of 5 grouped folds;
where the same-breast pairs the groups split were lost (labels disagree, P below
``--min-proba``, or refused by the linking: class limits and join order) and how well the
pair probabilities separate same-breast pairs from all other label-compatible pairs
(ROC AUC, average precision).

With ``--fit-patients N`` the linker is fitted on N random patients of the fitting half
only (the same half is grouped): a point of the linker's learning curve.

Usage: python benchmarks/bench_view_linking.py [--data ../shared/data/rsna-screening] [--min-groups 5]
    [--min-proba 0.01] [--linkage average] [--fit-patients N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from mammo.datasets import load_dataset
from mammo.datasets.views import view_descriptors
from mammo.grouping.views import LINKAGES, SameBreastLinker, link_views, same_breast_pairs
from mammo.training.folds import make_folds

HERE = Path(__file__).resolve().parent


def subset(desc: dict, rows: np.ndarray) -> dict:
    return {k: v[rows] for k, v in desc.items()}


def folds_cover(y: np.ndarray, groups: np.ndarray, n_splits: int = 5) -> bool:
    """Every class in every test fold of StratifiedGroupKFold."""
    keep = ~np.isnan(y)
    y, groups = y[keep].astype(int), groups[keep]
    classes = set(y.tolist())
    return all(set(y[test].tolist()) == classes for _, test in make_folds(y, groups, n_splits, 0))


def fitting_rows(groups: np.ndarray, rows: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """``rows`` (of one half), or only those of ``n`` of its patients drawn at random."""
    if n is None:
        return rows
    patients = np.unique(groups[rows])
    if not 0 < n <= len(patients):
        raise SystemExit(f"--fit-patients must be between 1 and {len(patients)}, got {n}")
    return rows[np.isin(groups[rows], rng.choice(patients, n, replace=False))]


def losses(truth: np.ndarray, kept: np.ndarray, details: dict, min_proba: float) -> dict:
    """Why the split same-breast pairs were split, and the pair probabilities' separation."""
    index = {(int(a), int(b)): k for k, (a, b) in enumerate(details["pairs"])}
    at = np.array([index.get((int(a), int(b)), -1) for a, b in truth])
    proba = details["proba"]
    low = (at >= 0) & (proba[np.maximum(at, 0)] < min_proba)
    y = np.zeros(len(proba), dtype=bool)
    y[at[at >= 0]] = True
    return {
        "lost_labels_disagree": int(np.sum(~kept & (at < 0))),
        "lost_below_min_proba": int(np.sum(~kept & low)),
        "lost_refused_by_linking": int(np.sum(~kept & (at >= 0) & ~low)),
        "pair_auc": float(roc_auc_score(y, proba)),
        "pair_average_precision": float(average_precision_score(y, proba)),
    }


def score_half(ds, desc, fit_rows, test_rows, *, min_groups: int, min_proba: float, linkage: str) -> dict:
    meta = ds.meta
    linker = SameBreastLinker().fit(
        subset(desc, fit_rows),
        ds.groups[fit_rows],
        meta["laterality"].to_numpy()[fit_rows],
        meta["view"].to_numpy()[fit_rows],
    )
    groups, details = link_views(
        subset(desc, test_rows),
        linker,
        density=ds.density[test_rows],
        tumour=ds.tumour[test_rows],
        min_groups=min_groups,
        min_proba=min_proba,
        linkage=linkage,
        return_details=True,
    )
    patients = ds.groups[test_rows]
    truth = same_breast_pairs(patients, meta["laterality"].to_numpy()[test_rows], meta["view"].to_numpy()[test_rows])
    kept = groups[truth[:, 0]] == groups[truth[:, 1]]
    per_group = [len(set(patients[groups == g])) for g in np.unique(groups)]
    n_patients = len(set(patients))
    return {
        "images": len(test_rows),
        "patients": n_patients,
        "same_breast_pairs": len(truth),
        "recall": float(kept.mean()),
        "groups": len(per_group),
        "patients_per_group_mean": float(np.mean(per_group)),
        "patients_per_group_max": int(np.max(per_group)),
        "patients_sharing_a_group": float(
            np.mean([len(set(patients[groups == groups[i]])) > 1 for i in range(len(groups))])
        ),
        "folds_cover_density": folds_cover(ds.density[test_rows], groups),
        "folds_cover_tumour": folds_cover(ds.tumour[test_rows], groups),
        **losses(truth, kept, details, min_proba),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "rsna-screening"))
    ap.add_argument("--min-groups", type=int, default=5)
    ap.add_argument("--min-proba", type=float, default=0.01)
    ap.add_argument("--linkage", choices=LINKAGES, default="average")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument(
        "--fit-patients", type=int, default=None, help="fit the linker on this many random patients of each half"
    )
    args = ap.parse_args()
    ds = load_dataset(args.data)
    desc = view_descriptors(ds.paths, n_jobs=args.jobs)
    ok = np.all(np.column_stack([np.isfinite(v).all(axis=1) for v in desc.values()]), axis=1)
    rng = np.random.default_rng(args.seed)
    patients = np.unique(ds.groups[ok])
    rng.shuffle(patients)
    half = np.isin(ds.groups, patients[: len(patients) // 2])
    a, b = np.flatnonzero(ok & half), np.flatnonzero(ok & ~half)
    options = {"min_groups": args.min_groups, "min_proba": args.min_proba, "linkage": args.linkage}
    results = {
        "A -> B": score_half(ds, desc, fitting_rows(ds.groups, a, args.fit_patients, rng), b, **options),
        "B -> A": score_half(ds, desc, fitting_rows(ds.groups, b, args.fit_patients, rng), a, **options),
    }
    print(
        json.dumps(
            {
                "min_groups": args.min_groups,
                "min_proba": args.min_proba,
                "linkage": args.linkage,
                "fit_patients": args.fit_patients,
                "refused": int((~ok).sum()),
                **results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
