"""Input-quality gate: false rejections on every shared mammogram, catches on non-mammograms.

    python benchmarks/bench_gate.py [--sets dphi mias rsna] [--jobs 2] [--json gate.json]

No model is needed: every image goes through the reader, the breast crop and the gate
(:func:`mammo.features.quality.assess`), as ``mammo predict`` would. Prints per shared set
the images refused (goal: at most 0.5% of all), with each refused file and its reason,
then the share of the two non-mammogram corpora of :mod:`mammo.testing` that the gate
refuses on its own (the out-of-distribution score, measured by ``bench_ood.py``, catches
the rest). ``rsna-screening/holdout`` is never read.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from joblib import Parallel, delayed

from _shared import SETS, SHARED, write_json


def verdict(source) -> str | None:
    """None when the gate accepts ``source`` (a path or an array), else the reason."""
    from mammo.features.io import ImageReadError, read_scan
    from mammo.features.quality import assess
    from mammo.features.region import crop_breast

    try:
        scan = read_scan(source)
    except ImageReadError as exc:
        return f"unreadable ({exc})"
    report = assess(crop_breast(scan))
    return None if report.ok else report.reason


def _verdicts(sources: list, jobs: int) -> list:
    return Parallel(n_jobs=jobs, batch_size=32)(delayed(verdict)(s) for s in sources)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=sorted(SETS))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    from mammo.testing import more_non_mammograms, non_mammograms

    out: dict = {"sets": {}, "corpora": {}}
    total = refused_total = 0
    for name in args.sets:
        paths = SETS[name]()
        if not paths:
            print(f"{name}: no images under {SHARED}", file=sys.stderr)
            continue
        refused = {p.name: r for p, r in zip(paths, _verdicts([str(p) for p in paths], args.jobs)) if r}
        out["sets"][name] = {"n": len(paths), "refused": refused}
        total, refused_total = total + len(paths), refused_total + len(refused)
        print(f"{name}: {len(refused)} of {len(paths)} refused ({100 * len(refused) / len(paths):.2f}%)")
        for file, reason in refused.items():
            print(f"    {file}: {reason}")
    if total:
        print(f"all shared sets: {refused_total} of {total} refused ({100 * refused_total / total:.3f}%; goal <= 0.5%)")
    for cname, corpus in (("non-mammograms", non_mammograms()), ("held-out non-mammograms", more_non_mammograms())):
        reasons = _verdicts(list(corpus.values()), args.jobs)
        missed = [k for k, r in zip(corpus, reasons) if r is None]
        out["corpora"][cname] = {
            "n": len(corpus),
            "caught": len(corpus) - len(missed),
            "missed": missed,
            "reasons": dict(Counter(r for r in reasons if r)),
        }
        print(
            f"{cname}: gate refuses {len(corpus) - len(missed)} of {len(corpus)}; accepted: {', '.join(missed) or '-'}"
        )
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
