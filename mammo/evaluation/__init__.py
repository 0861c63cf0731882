"""Evaluation of out-of-fold predictions: metrics (:mod:`.metrics`), plots (:mod:`.plots`) and the
Markdown report (:mod:`.report`).

It depends on numpy, scikit-learn and matplotlib only, never on the training code, so
any predictions (or a saved ``metrics.json``) can be scored, plotted and reported.
``from mammo import evaluation as ev`` gives every public name below.
"""

from .metrics import (
    PRIMARY_METRIC,
    bootstrap_ci,
    density_metrics,
    fast_auc,
    fold_summary,
    per_breast_tumour,
    sensitivity_at_specificity,
    tumour_metrics,
)
from .plots import plot_calibration, plot_confusion, plot_group_sizes, plot_roc
from .report import comparison_table, write_report

__all__ = [
    "density_metrics",
    "tumour_metrics",
    "sensitivity_at_specificity",
    "bootstrap_ci",
    "fast_auc",
    "per_breast_tumour",
    "fold_summary",
    "plot_roc",
    "plot_confusion",
    "plot_calibration",
    "plot_group_sizes",
    "comparison_table",
    "write_report",
    "PRIMARY_METRIC",
]
