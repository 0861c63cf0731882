"""Evaluation of predictions: metrics (:mod:`.metrics`), plots (:mod:`.plots`), the training run's
Markdown report (:mod:`.report`), the scoring and report of a saved model on other labelled
data (:mod:`.external`, :mod:`.external_report`, used by ``mammo evaluate``) and the saved
model's card (:mod:`.card`, imported on its own).

It depends on numpy, scikit-learn and matplotlib only, never on the training code, so
any predictions (or a saved ``metrics.json``) can be scored, plotted and reported.
``from mammo import evaluation as ev`` gives every public name below.
"""

from . import external, external_report, metrics, plots, report
from .external import *  # noqa: F401,F403 - the public names are each module's __all__
from .external_report import *  # noqa: F401,F403
from .metrics import *  # noqa: F401,F403
from .plots import *  # noqa: F401,F403
from .report import *  # noqa: F401,F403

__all__ = [*metrics.__all__, *plots.__all__, *report.__all__, *external.__all__, *external_report.__all__]
