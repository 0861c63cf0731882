"""Training: an honest comparison of feature sets x models, and the final model.

``mammo train DATA`` (:mod:`.cli`) builds a :class:`TrainConfig` and calls :func:`run`,
which for every task (density, tumour) reads the modules in this order:

1. :mod:`.data`: the data set, and each feature block (:mod:`mammo.features.blocks`)
   once per image from the on-disk cache (:class:`mammo.featcache.FeatureCache`);
2. :mod:`.folds`: ONE set of stratified, grouped outer folds (StratifiedGroupKFold:
   no patient / no original mammogram in two folds, checked);
3. :mod:`.cv` and :mod:`.tuning`: every :class:`Candidate` ({texture, cnn, combined} x
   {xgboost, svm}) on exactly those folds, calibrated on grouped splits of each training
   fold (``--tune``: a small grid searched by grouped inner CV, only inside each training
   fold); the best by pooled out-of-fold QWK / AUC, and the score of that choice made
   inside the evaluation (:func:`selection_estimate`);
4. a deliberately leaky random split (groups ignored) of the selected candidate, to show
   how much a split that leaks copies overstates performance;
5. :mod:`.deep`: the deep baselines under the same folds, a Keras head on the frozen
   CNN embedding and (``--fine-tune``) MobileNetV2 with its last blocks retrained;
6. :mod:`.final`: the selected candidate per task refitted on all labelled images as a
   :class:`~mammo.classifiers.MammogramModel` (``model.joblib`` + manifest);
7. :mod:`.results`: what it all produced (:class:`RunResult`), written as
   ``metrics.json``, from which ``report.md`` (:mod:`mammo.evaluation`) and the
   model's metadata are made.
"""

from .candidates import DEEP_HEAD, FINE_TUNED, Candidate, candidates
from .config import FitOptions, TrainConfig
from .cv import best_candidate, cross_validate, selection_estimate
from .deep import deep_head_cv, finetune_cv
from .final import fit_final_model
from .folds import TrainingDataError, check_task_data, limit_dataset, make_folds
from .results import CVResult, FinalModel, LeakyContrast, RunResult, SelectionEstimate, TaskResult
from .run import run
from .tuning import PARAM_GRIDS

__all__ = [
    "Candidate",
    "CVResult",
    "DEEP_HEAD",
    "FINE_TUNED",
    "FinalModel",
    "FitOptions",
    "LeakyContrast",
    "PARAM_GRIDS",
    "RunResult",
    "SelectionEstimate",
    "TaskResult",
    "TrainConfig",
    "TrainingDataError",
    "best_candidate",
    "candidates",
    "check_task_data",
    "cross_validate",
    "deep_head_cv",
    "finetune_cv",
    "fit_final_model",
    "limit_dataset",
    "make_folds",
    "run",
    "selection_estimate",
]
