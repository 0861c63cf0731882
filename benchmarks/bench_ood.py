"""Out-of-distribution score and input-quality gate, measured on other data sets and on non-mammograms.

    python benchmarks/bench_ood.py --model rsna=runs/rsna/model.joblib --model dphi=runs/dphi/model.joblib \\
        [--per-set 400] [--out ood.json]

For every model, the share of images flagged ``in_distribution=False`` on each shared data
set (a model's own training set is in-domain: there the training report's held-out rate
is the honest number, this one is optimistic), and on the two non-mammogram corpora of
:mod:`mammo.testing` (the input-quality gate switched off, so the score is measured on its
own), with the gate's refusals and the share that gate or score together catch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from _shared import SETS, sample, write_json


def flagged(model, sources: list) -> dict:
    """Refused by the gate, and flagged out of distribution among the rest."""
    refused, flags = 0, []
    for _indices, _, ood, failures in model.iter_predict(sources, errors="record"):
        refused += len(failures)
        if ood is not None:
            flags += [not f for f in ood[1]]
    n = len(sources)
    return {
        "n": n,
        "refused": refused,
        "flagged_ood": float(np.mean(flags)) if flags else None,
        "caught": (refused + sum(flags)) / n if n else None,
    }


def corpus_rates(model, corpus: dict) -> dict:
    """On non-mammograms: the score alone (gate off), the gate alone, and either."""
    from mammo.features.io import read_scan
    from mammo.features.quality import assess
    from mammo.features.region import crop_breast

    scans = [read_scan(img) for img in corpus.values()]
    gate = [not assess(crop_breast(s)).ok for s in scans]
    scores = []
    for _, _, ood, _ in model.with_gate(False).iter_predict(scans, errors="record"):
        scores += [not f for f in ood[1]]
    return {
        "n": len(scans),
        "gate": float(np.mean(gate)),
        "ood": float(np.mean(scores)),
        "either": float(np.mean(np.logical_or(gate, scores))),
        "missed_by_both": [n for n, g, o in zip(corpus, gate, scores) if not g and not o],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--per-set", type=int, default=400, help="random images per shared set (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from mammo.classifiers import load_model
    from mammo.testing import more_non_mammograms, non_mammograms

    rng = np.random.default_rng(args.seed)
    samples = {name: [str(p) for p in sample(name, args.per_set, rng, "bench_ood")] for name in SETS}
    corpora = {"non-mammograms": non_mammograms(), "held-out non-mammograms": more_non_mammograms()}
    results = {}
    for spec in args.model:
        name, _, path = spec.partition("=")
        model = load_model(path)
        model.n_jobs = 2
        print(f"{name} ...", file=sys.stderr, flush=True)
        results[name] = {
            "sets": {s: flagged(model, p) for s, p in samples.items()},
            "corpora": {c: corpus_rates(model, imgs) for c, imgs in corpora.items()},
        }
    print("| model | images | n | refused by the gate | flagged out of distribution |\n| --- | --- | --- | --- | --- |")
    for name, r in results.items():
        for s, v in r["sets"].items():
            print(f"| {name} | {s} | {v['n']} | {v['refused']} | {100 * (v['flagged_ood'] or 0):.1f}% |")
    print(
        "\n| model | corpus | n | gate refuses | score flags (gate off) | either | missed by both |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    for name, r in results.items():
        for c, v in r["corpora"].items():
            print(
                f"| {name} | {c} | {v['n']} | {100 * v['gate']:.0f}% | {100 * v['ood']:.0f}% | {100 * v['either']:.0f}% | "
                f"{', '.join(v['missed_by_both']) or '-'} |"
            )
    write_json(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
