"""``mammo train``: the command line of a training run (:func:`build_parser`, :func:`main`).

It turns the arguments into a :class:`~mammo.training.config.TrainConfig` and calls
:func:`mammo.training.run`; nothing below this module sees an argparse namespace.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from ..classifiers.estimators import DECISIONS
from ..classifiers.pipelines import MODELS, TASKS
from ..datasets import DATASET_KINDS
from ..features.blocks import EXTRA_BLOCKS, FEATURE_SETS
from ..features.cnn import LAYER_SETS
from ..storage import check_output_dir
from .config import TrainConfig
from .run import run

__all__ = ["build_parser", "config_from_args", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``mammo train`` argument parser."""
    p = argparse.ArgumentParser(
        prog="mammo train",
        description="Compare texture / CNN / combined features with XGBoost and SVM under grouped, stratified "
        "cross-validation (no patient or original mammogram in two folds), report the results and "
        "save the best pipeline per task refitted on all labelled images.",
        epilog="Examples:\n"
        "  mammo train data/dphi-sprint31 --out runs/dphi\n"
        "  mammo train data/mini-mias --tasks density --feature-sets texture cnn\n"
        "  mammo train labels.csv --kind manifest --models svm --limit 500 --no-deep\n"
        "  mammo train data/dphi-sprint31 --fine-tune   # + fine-tuned MobileNetV2\n"
        "Where DPhi, mini-MIAS and RSNA come from and the layout each --kind reads: 'Getting data' in the README.\n"
        "The same runs as 'python -m mammo.train_pipeline' or 'python train_pipeline.py' in a checkout.\n"
        "Features are cached under $MAMMO_CACHE_DIR/features (default: the checkout's .cache/mammo, else ~/.cache/mammo).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _data_arguments(p.add_argument_group("data and run"))
    _protocol_arguments(p.add_argument_group("protocol"))
    _feature_arguments(p.add_argument_group("features"))
    return p


def _data_arguments(p) -> None:
    p.add_argument(
        "data",
        help="data set folder (DPhi, mini-MIAS, rsna-screening) or a CSV manifest "
        "(path, group/patient_id, density, tumour/cancer)",
    )
    p.add_argument("--kind", default="auto", choices=DATASET_KINDS, help="data set layout (default: detected)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, help="tasks to evaluate (default: both)")
    p.add_argument(
        "--feature-sets",
        nargs="+",
        default=list(FEATURE_SETS),
        choices=FEATURE_SETS,
        help="texture = GLCM+LBP, cnn = MobileNetV2 embedding, combined = both (default: all)",
    )
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="classifiers (default: all)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use about N images (whole groups, stratified)")
    p.add_argument(
        "--views-from",
        default=None,
        metavar="REFERENCE",
        help="join the groups that are probably two views of one breast, learnt from REFERENCE, a data set with "
        "patient ids, laterality and view (e.g. rsna-screening); for data without patient ids (DPhi)",
    )
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<dataset>-<timestamp>)")
    p.add_argument(
        "--cache-dir", type=Path, default=None, help="feature cache folder (default $MAMMO_CACHE_DIR/features)"
    )
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel workers (default: CPU count)")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bars")


def _protocol_arguments(p) -> None:
    p.add_argument("--folds", type=int, default=5, help="outer grouped CV folds (default 5)")
    p.add_argument("--inner-folds", type=int, default=3, help="grouped inner folds for tuning (default 3)")
    p.add_argument(
        "--tune",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="search PARAM_GRIDS by grouped inner CV inside each training fold (default: off; the fixed "
        "defaults scored as well on DPhi, RSNA and mini-MIAS in less time, docs/results.md)",
    )
    p.add_argument(
        "--tune-max",
        type=int,
        default=1000,
        metavar="N",
        help="run the inner search on about N images (whole groups) of each training fold (default 1000; 0 = all)",
    )
    p.add_argument("--no-deep", dest="deep_head", action="store_false", help="skip the Keras head baseline")
    p.add_argument(
        "--fine-tune",
        action="store_true",
        help="also fine-tune MobileNetV2's last blocks (13-16, Conv_1) under the same folds; slow "
        "(minutes per task; scores and cost in docs/results.md). Reported, not selectable for the "
        "saved model",
    )
    p.add_argument("--fine-tune-epochs", type=int, default=6, metavar="N", help="fine-tuning epochs (default 6)")
    p.add_argument("--no-leaky", dest="leaky", action="store_false", help="skip the deliberately leaky random split")
    p.add_argument(
        "--shift-check",
        type=int,
        default=200,
        metavar="N",
        help="crop N random images again half a pixel off and report, per candidate, how far its test-fold "
        "answers move (default 200; 0 = skip)",
    )
    p.add_argument("--no-model", dest="save_model", action="store_false", help="do not refit and save the final model")
    p.add_argument(
        "--density-decision",
        default="qwk",
        choices=DECISIONS,
        help="density grade from the probabilities: qwk (default) = cut points on the expected grade "
        "that maximise quadratic-weighted kappa on the calibration folds' held-out predictions, "
        "inside each training fold; argmax = the most probable class (higher accuracy, lower "
        "kappa on DPhi and RSNA)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed for folds, subsets and models (default 0)")
    p.add_argument(
        "--bootstrap",
        dest="n_boot",
        type=int,
        default=1000,
        metavar="BOOTSTRAP",
        help="bootstrap resamples for the AUC CI (default 1000)",
    )


def _feature_arguments(p) -> None:
    p.add_argument("--texture-size", type=int, default=256, help="working resolution (longer side) of the breast crop")
    p.add_argument("--cnn-input-size", type=int, default=224, help="side of the square CNN input (default 224)")
    p.add_argument(
        "--cnn-layers",
        default="multi",
        choices=LAYER_SETS,
        help="CNN embedding: 'multi' (default) = mean and std of five intermediate MobileNetV2 layers plus "
        "the average-pooled last one (5792 features); 'last' = the last one only (1280)",
    )
    p.add_argument(
        "--flip-tta", action="store_true", help="average the CNN embedding of the image and its mirror image"
    )
    p.add_argument(
        "--no-enhance",
        dest="enhance",
        action="store_false",
        help="compute features on the unenhanced breast crop (no CLAHE / unsharp mask): keeps absolute grey "
        "levels, which scored better for film mammograms (mini-MIAS) in grouped CV",
    )
    p.add_argument(
        "--extra-blocks",
        nargs="*",
        default=[],
        choices=sorted(EXTRA_BLOCKS),
        help="experimental feature blocks (mammo.features.blocks) appended to every feature set",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``mammo train`` arguments.

    Every option's ``dest`` is the field it sets (``--no-deep`` sets ``deep_head``), so an
    option without a field fails here.
    """
    # argparse gives the nargs options as lists; the config holds tuples
    return TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items()})


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns 0. Bad arguments exit with status 2; the expected
    failures of a run (:data:`mammo.cli.EXPECTED_ERRORS`) are raised for ``mammo`` to report."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    if args.limit is not None and args.limit < 2:
        parser.error("--limit must be at least 2")
    if args.fine_tune_epochs < 1:
        parser.error("--fine-tune-epochs must be at least 1")
    if args.shift_check < 0:
        parser.error("--shift-check must be 0 or more")
    # before the run spends minutes on features; the default run folder goes under runs/
    check_output_dir(args.out if args.out is not None else Path("runs"))
    if args.cache_dir is not None:
        check_output_dir(args.cache_dir)
    run(config_from_args(args))
    return 0
