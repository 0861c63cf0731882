"""Task pipelines: image sources -> features -> calibrated probabilities."""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_selection import SelectKBest
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ..conventions import TASKS
from ..features.blocks import FEATURE_SETS, blocks_of, make_block
from ..features.enhance import Enhancer
from ..features.io import ImageReader
from ..features.quality import InputQualityGate
from ..features.region import BreastCropper
from .estimators import CappedPCA, ClassWeighted, OrdinalClassifier, f_classif_constant_safe

__all__ = [
    "TASKS",
    "FEATURE_SETS",
    "MODELS",
    "DENSITY_CLASSES",
    "TUMOUR_CLASSES",
    "PREPROCESS_STEPS",
    "SCREEN_STEPS",
    "make_features",
    "make_classifier",
    "make_task_pipeline",
    "make_pipeline",
    "split_pipeline",
]

MODELS = ("xgboost", "svm")
#: The image steps before the features, in order.
PREPROCESS_STEPS = ("read", "crop", "check", "enhance")
#: The steps that may refuse an input (unreadable, not a mammogram): run one image at a
#: time by batch callers, so that one bad file does not stop the others.
SCREEN_STEPS = ("read", "crop", "check")

#: BI-RADS breast density (ACR 5th edition) and what each means for a reader.
DENSITY_CLASSES = {
    1: "A - almost entirely fatty",
    2: "B - scattered areas of fibroglandular density",
    3: "C - heterogeneously dense, which may obscure small masses",
    4: "D - extremely dense, which lowers the sensitivity of mammography",
}
#: Tumour label encoding (0/1) and meaning.
TUMOUR_CLASSES = {
    0: "Benign - no malignancy (a benign finding or a normal screening image)",
    1: "Malignant - cancer",
}


def make_features(
    feature_set: str = "combined",
    *,
    weights: str = "imagenet",
    cnn_input_size: int = 224,
    flip_tta: bool = False,
    glcm_levels: int = 32,
    cnn_layers: str = "multi",
    extra_blocks: Sequence[str] = (),
) -> FeatureUnion:
    """The FeatureUnion of ``feature_set``'s blocks (:mod:`mammo.features.blocks`), then ``extra_blocks``.

    ``cnn_layers`` is :class:`~mammo.features.cnn.CNNEmbedding`'s ``layers``: "multi"
    (default) pools five intermediate layers as well as the last one; it scored
    higher in grouped CV than "last" on DPhi, mini-MIAS and RSNA (docs/results.md).
    """
    options = dict(
        weights=weights,
        cnn_input_size=cnn_input_size,
        flip_tta=flip_tta,
        glcm_levels=glcm_levels,
        cnn_layers=cnn_layers,
    )
    names = [*blocks_of(feature_set), *extra_blocks]
    return FeatureUnion([(n, make_block(n, **options)) for n in names], verbose_feature_names_out=False)


def make_classifier(
    task: str,
    model: str = "xgboost",
    *,
    calibration: str = "sigmoid",
    cv: int = 3,
    random_state: int = 0,
    density_decision: str = "qwk",
):
    """A class-balanced, calibrated classifier for ``task`` ("density" ordinal, "tumour" binary).

    ``density_decision`` is :class:`~mammo.classifiers.estimators.OrdinalClassifier`'s
    ``decision``: "qwk" (cut points on the expected grade fitted on the calibration
    folds' held-out predictions; raised grouped-CV kappa on every DPhi and RSNA
    candidate, docs/results.md) or "argmax" (the most probable class).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if model == "xgboost":
        from xgboost import XGBClassifier

        base = ClassWeighted(
            XGBClassifier(
                n_estimators=200,
                max_depth=3,
                learning_rate=0.05,
                subsample=0.8,
                # 0.2 of the columns and 32 bins: several times faster fits on the wide
                # combined features than 0.5 / 64, at equal grouped-CV QWK (docs/results.md).
                colsample_bytree=0.2,
                tree_method="hist",
                n_jobs=1,  # 2 threads oversubscribe a 2-core box already busy with features
                max_bin=32,
                random_state=random_state,
            )
        )
    elif model == "svm":
        base = SVC(kernel="rbf", C=1.0, gamma="scale", class_weight="balanced", random_state=random_state)
    else:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    calibrated = CalibratedClassifierCV(base, method=calibration, cv=cv)
    return OrdinalClassifier(calibrated, decision=density_decision) if task == "density" else calibrated


def make_task_pipeline(
    task: str,
    feature_set: str = "combined",
    model: str = "xgboost",
    *,
    texture_size: int = 256,
    weights: str = "imagenet",
    cnn_input_size: int = 224,
    cnn_layers: str = "multi",
    flip_tta: bool = False,
    max_pixels: int | None = None,
    enhance: bool = True,
    svm_components: int = 128,
    xgb_features: int = 128,
    density_decision: str = "qwk",
    extra_blocks: Sequence[str] = (),
    random_state: int = 0,
) -> Pipeline:
    """One task's full pipeline from image sources (paths, bytes, arrays) to calibrated probabilities.

    Steps: ``read`` (:class:`~mammo.features.io.ImageReader`), ``crop``
    (:class:`~mammo.features.region.BreastCropper`), ``check``
    (:class:`~mammo.features.quality.InputQualityGate`: refuses images that are not
    mammograms with :class:`~mammo.features.quality.ImplausibleImageError`), ``enhance``
    (:class:`~mammo.features.enhance.Enhancer`; with ``enhance=False`` it only
    blanks the background, so features see the breast's original grey levels),
    ``features`` (:func:`make_features`: the feature set's blocks, then any
    ``extra_blocks``), ``scale`` (StandardScaler) and ``reduce``
    (:class:`~mammo.classifiers.estimators.CappedPCA`, at most ``svm_components``
    dimensions), both SVM only, ``select`` (the ``xgb_features`` columns with the
    highest ANOVA F, XGBoost on CNN features only) and ``clf`` (see
    :func:`make_classifier`, which also takes ``density_decision``). Its older name
    ``make_pipeline`` still works; it is not :func:`sklearn.pipeline.make_pipeline`.

    Examples
    --------
    >>> pipe = make_task_pipeline("tumour", "texture", "svm")
    >>> [name for name, _ in pipe.steps]
    ['read', 'crop', 'check', 'enhance', 'features', 'scale', 'reduce', 'clf']
    """
    reader = ImageReader() if max_pixels is None else ImageReader(max_pixels=max_pixels)
    steps = [
        ("read", reader),
        ("crop", BreastCropper(size=texture_size)),
        ("check", InputQualityGate()),
        # Without CLAHE the absolute grey level, which is what density is, survives:
        # on mini-MIAS (film) that scored better in grouped CV, on DPhi and RSNA worse.
        ("enhance", Enhancer() if enhance else Enhancer(clip_limit=0.0, unsharp_amount=0.0)),
        (
            "features",
            make_features(
                feature_set,
                weights=weights,
                cnn_input_size=cnn_input_size,
                flip_tta=flip_tta,
                cnn_layers=cnn_layers,
                extra_blocks=extra_blocks,
            ),
        ),
    ]
    if model == "svm":
        # An RBF-SVM's cost grows with the dimension: PCA to 128 made the fits on the
        # combined features several times faster at equal grouped-CV scores (docs/results.md).
        steps += [
            ("scale", StandardScaler()),
            ("reduce", CappedPCA(max_components=svm_components, random_state=random_state)),
        ]
    elif feature_set != "texture":
        # XGBoost's time per tree grows with ALL input columns, sampled or not; the 128
        # best by ANOVA F (fitted in the training fold) made fits several times faster at
        # equal grouped-CV scores on DPhi and RSNA, but cost the small mini-MIAS some
        # accuracy (docs/results.md).
        steps.append(("select", SelectKBest(f_classif_constant_safe, k=xgb_features)))
    steps.append(("clf", make_classifier(task, model, random_state=random_state, density_decision=density_decision)))
    return Pipeline(steps)


def split_pipeline(pipe: Pipeline) -> tuple[list, list]:
    """(stateless image/feature steps, fitted per-task tail) of a task pipeline, as step lists.

    The tail's step objects are the pipeline's own: ``Pipeline(tail).fit(features, y)``
    fits them in place.
    """
    names = [name for name, _ in pipe.steps]
    cut = names.index("features") + 1 if "features" in names else len(PREPROCESS_STEPS)
    return pipe.steps[:cut], pipe.steps[cut:]


#: The older name of :func:`make_task_pipeline`, kept so that existing code keeps working.
make_pipeline = make_task_pipeline
