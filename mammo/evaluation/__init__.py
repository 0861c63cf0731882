"""Evaluation of out-of-fold predictions: metrics (:mod:`.metrics`), plots (:mod:`.plots`), the
Markdown report (:mod:`.report`) and the saved model's card (:mod:`.card`, imported on its own).

It depends on numpy, scikit-learn and matplotlib only, never on the training code, so
any predictions (or a saved ``metrics.json``) can be scored, plotted and reported.
``from mammo import evaluation as ev`` gives every public name below.
"""

from . import metrics, plots, report
from .metrics import *  # noqa: F401,F403 - the public names are each module's __all__
from .plots import *  # noqa: F401,F403
from .report import *  # noqa: F401,F403

__all__ = [*metrics.__all__, *plots.__all__, *report.__all__]
