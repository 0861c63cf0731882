"""``python -m mammo.train_pipeline DATA ...``, the same as ``mammo train DATA ...``.

The training code lives in :mod:`mammo.training`; this module keeps the old entry
point and the names that code written against it imports.
"""

from __future__ import annotations

import sys

from .features.blocks import FEATURE_SETS, blocks_of
from .training import (
    PARAM_GRIDS,
    TrainingDataError,
    best_candidate,
    check_task_data,
    cross_validate,
    deep_head_cv,
    finetune_cv,
    fit_final_model,
    limit_dataset,
    make_folds,
    selection_estimate,
)
from .training.cli import build_parser, main

__all__ = [
    "main",
    "build_parser",
    "TrainingDataError",
    "make_folds",
    "check_task_data",
    "limit_dataset",
    "cross_validate",
    "deep_head_cv",
    "finetune_cv",
    "fit_final_model",
    "best_candidate",
    "selection_estimate",
    "PARAM_GRIDS",
    "BLOCKS",
]

#: Feature blocks of each feature set, in column order (from the registry, mammo.features.blocks).
BLOCKS = {fs: blocks_of(fs) for fs in FEATURE_SETS}

if __name__ == "__main__":
    from .cli import run

    sys.exit(run("train", sys.argv[1:]))
