"""``mammo evaluate``: score a saved model on labelled data, beside the figures its cross-validation expected.

The command line of :func:`mammo.evaluate.evaluate`; exit status 0 when the evaluation
was written, 2 for a usage error or data that cannot be scored as asked (one line on
stderr), 1 for anything else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .datasets import DATASET_KINDS

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``mammo evaluate`` argument parser."""
    p = argparse.ArgumentParser(
        prog="mammo evaluate",
        description="Score a model saved by 'mammo train' on any labelled data set the loaders read (DPhi, "
        "mini-MIAS, the RSNA layout or a CSV manifest): density QWK, accuracy and confusion matrix; "
        "tumour AUC with a 95%% CI that resamples whole patients, sensitivity at 90%% specificity, "
        "Brier score, ROC and calibration curves. Per image and, where the data name patients and "
        "laterality, per breast (its views averaged) and per patient; per subgroup where the data "
        "have site, machine, view, laterality or age. Each measured figure is shown beside the "
        "one the model's own cross-validation expected. Images the input-quality gate refuses or "
        "that cannot be read are listed and left out.",
        epilog="Label sets must mean the same: mini-MIAS density is background tissue F/G/D (3 classes), not "
        "BI-RADS A-D, so a BI-RADS density model on mini-MIAS density is refused unless the classes are "
        "mapped explicitly with --map-density (DATA=MODEL pairs, by class number or short name).\n\n"
        "Examples:\n"
        "  mammo evaluate runs/dphi/model.joblib ../shared/data/mini-mias --task tumour\n"
        "  mammo evaluate model.joblib ../shared/data/mini-mias --map-density F=1,G=2,D=3 --out eval-mias\n"
        "  mammo evaluate model.joblib local_cases.csv --kind manifest\n"
        "Writes report.md (with its PNG plots), metrics.json and predictions.csv into --out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model file saved by 'mammo train' (model.joblib)")
    p.add_argument(
        "data",
        help="data set folder (DPhi, mini-MIAS, rsna-screening) or a CSV manifest "
        "(path, group/patient_id, density, tumour/cancer; other columns such as site are kept)",
    )
    p.add_argument("--kind", default="auto", choices=DATASET_KINDS, help="data set layout (default: detected)")
    p.add_argument(
        "--task",
        choices=("tumour", "density", "both"),
        default=None,
        help="what to score (default: every task both the model and the data have)",
    )
    p.add_argument(
        "--map-density",
        dest="density_map",
        metavar="DATA=MODEL,...",
        default=None,
        help="map the data's density classes onto the model's, e.g. F=1,G=2,D=3 (mini-MIAS background "
        "tissue onto BI-RADS 1-3); every class present must be mapped",
    )
    p.add_argument("--out", type=Path, default=None, help="folder to write (default runs/evaluate-<data set>-<time>)")
    p.add_argument("--manifest", help="verify the model file's sha256 against this manifest before loading")
    _run_arguments(p)
    return p


def _run_arguments(p: argparse.ArgumentParser) -> None:
    """How the evaluation runs: bootstrap, seed, the crop-shift check, batching, progress."""
    p.add_argument(
        "--bootstrap",
        dest="n_boot",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap resamples for the CIs (default 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the shift check's sample (default 0)")
    p.add_argument(
        "--shift-check",
        type=int,
        default=200,
        metavar="N",
        help="crop N random scored images again half a pixel off and report how far the answers move, beside "
        "the model's own cross-validated figure (default 200; 0 = skip)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per streamed chunk (default 32)")
    p.add_argument("--jobs", type=int, default=None, help="chunks processed at once (default: one per core)")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; see the module docstring for the exit status."""
    from .classifiers import load_model
    from .evaluate import evaluate

    parser = build_parser()
    args = parser.parse_args(argv)
    for name, value in (("--bootstrap", args.n_boot), ("--batch-size", args.batch_size)):
        if value < 1:
            parser.error(f"{name} must be at least 1")
    if args.shift_check < 0:
        parser.error("--shift-check must be 0 or more")
    # a bad model file, data set or label set is an expected failure: mammo.cli reports it in one line
    model = load_model(args.model, manifest=args.manifest)
    model.batch_size, model.n_jobs = args.batch_size, args.jobs
    metrics = evaluate(
        model,
        args.data,
        kind=args.kind,
        task=args.task,
        density_map=args.density_map,
        out=args.out,
        model_path=args.model,
        n_boot=args.n_boot,
        seed=args.seed,
        jobs=args.jobs,
        progress=args.progress,
        shift_check=args.shift_check,
    )
    images = metrics["images"]
    left_out = len(images["refused"]) + len(images["unreadable"])
    print(
        f"{parser.prog}: {images['n_scored']} images scored, {left_out} left out; wrote {metrics['out']}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    from .cli import run

    raise SystemExit(run("evaluate", sys.argv[1:]))
