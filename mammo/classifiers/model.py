"""The saved artifact: both tasks' fitted pipelines plus what a reader needs to trust them.

What :meth:`MammogramModel.fit` records about the training and the libraries lives in
:mod:`mammo.classifiers.provenance`; loading a saved file in :mod:`mammo.classifiers.artifact`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
from joblib import Parallel, delayed
from sklearn.pipeline import Pipeline
from tqdm.auto import tqdm

from ..features.cnn import CNNEmbedding
from ..storage import atomic_open, atomic_write, file_sha256, step_key
from .batches import featurise_chunk, run_stateless
from .estimators import expected_grade
from .ood import DistributionModel
from .pipelines import PREPROCESS_STEPS, split_pipeline
from .provenance import FORMAT_VERSION, describe_fit, feature_blocks, library_versions

__all__ = ["MammogramModel", "FORMAT_VERSION", "file_sha256", "library_versions", "split_pipeline", "step_key"]


@dataclass
class MammogramModel:
    """Both tasks' fitted pipelines and their metadata, as one object to save and load.

    The image and feature steps (read, crop, enhance, GLCM, LBP, CNN) are
    stateless, so an image is read, cropped and enhanced once, and each
    feature block computed once, however many tasks use them.

    Parameters
    ----------
    pipelines : dict
        ``{"density": Pipeline, "tumour": Pipeline}`` (either may be missing),
        as made by :func:`mammo.classifiers.make_task_pipeline`.
    metadata : dict
        Free-form provenance; :meth:`fit` fills class names, meanings,
        training-data summary, library versions and the CNN weights' sha256.
    batch_size : int
        Images per streamed chunk in :meth:`predict_proba`.
    n_jobs : int or None
        Chunks processed at once (None: one per CPU core); see
        :meth:`iter_features`.

    Examples
    --------
    >>> from mammo.classifiers import MammogramModel, make_task_pipeline  # doctest: +SKIP
    >>> model = MammogramModel({t: make_task_pipeline(t, "texture", "svm") for t in ("density", "tumour")})  # doctest: +SKIP
    >>> model.fit(paths, density=d, tumour=t).save("models/dphi.joblib")  # doctest: +SKIP
    >>> load_model("models/dphi.joblib").predict_proba(["a.png"])["tumour"][:, 1]  # doctest: +SKIP
    """

    pipelines: dict
    metadata: dict = field(default_factory=dict)
    batch_size: int = 32
    n_jobs: int | None = None
    #: ``{"task": name, "model": DistributionModel}``: what the out-of-distribution score
    #: compares an image's features (those of that task's pipeline) against; see :meth:`fit_ood`.
    ood: dict | None = None

    # ---------------------------------------------------------------- fitting
    def fit(
        self,
        images,
        *,
        features: dict | None = None,
        class_meanings: dict | None = None,
        progress: bool = False,
        groups=None,
        **labels,
    ) -> MammogramModel:
        """Fit every task pipeline, then the out-of-distribution model (:meth:`fit_ood`).

        ``labels`` maps task -> labels (NaN / None = unlabelled); ``groups`` (one per
        image: patient or original) keeps the out-of-distribution threshold honest.

        ``class_meanings`` optionally maps task -> {class: meaning} for labels that
        are not the default ones (e.g. mini-MIAS F/G/D density instead of BI-RADS A-D).

        ``features`` optionally maps task -> precomputed features of that
        task's labelled images, in order (e.g. from an on-disk cache): they
        must be what the pipeline's image and feature steps compute.
        """
        unknown = set(labels) - set(self.pipelines)
        if unknown:
            raise ValueError(f"labels given for tasks without a pipeline: {sorted(unknown)}")
        images = list(images)
        masks = {}
        for task in self.pipelines:
            if task not in labels:
                raise ValueError(f"no labels given for task {task!r}")
            y = np.asarray(labels[task], dtype=float)
            if len(y) != len(images):
                raise ValueError(f"{task}: {len(y)} labels for {len(images)} images")
            masks[task] = ~np.isnan(y)
        # Fit (= validate; the CNN also loads) the stateless steps on a couple of images.
        for pipe in self.pipelines.values():
            X = images[:2]
            for _, step in split_pipeline(pipe)[0]:
                X = step.fit(X).transform(X)
        if features is None:
            needed = np.any(np.column_stack(list(masks.values())), axis=1)
            computed = self.transform([im for im, keep in zip(images, needed) if keep], progress=progress)
            features = {task: computed[task][masks[task][needed]] for task in self.pipelines}
        for task, pipe in self.pipelines.items():
            if len(features[task]) != masks[task].sum():
                raise ValueError(f"{task}: {len(features[task])} feature rows for {masks[task].sum()} labelled images")
            y = np.asarray(labels[task], dtype=float)[masks[task]].astype(int)
            Pipeline(split_pipeline(pipe)[1]).fit(features[task], y)
        self.metadata = {**self.metadata, **describe_fit(self.pipelines, labels, masks, class_meanings or {})}
        groups = None if groups is None else np.asarray(groups)
        return self.fit_ood(features, None if groups is None else {t: groups[m] for t, m in masks.items()})

    def with_gate(self, enabled: bool) -> MammogramModel:
        """This model with the input-quality gate on or off (the fitted steps are shared).

        Off, e.g., for the occlusion map's altered copies of an image the gate accepted.
        """
        from dataclasses import replace

        from ..features.quality import InputQualityGate

        pipes = {
            t: Pipeline([(n, InputQualityGate(enabled=enabled) if n == "check" else s) for n, s in p.steps])
            for t, p in self.pipelines.items()
        }
        return replace(self, pipelines=pipes)

    def ood_task(self) -> str:
        """The task whose features the out-of-distribution score reads: one whose pipeline
        has the CNN embedding (it describes what an image shows), else the one with most blocks."""

        def rank(task):
            blocks = [s for s in feature_blocks(self.pipelines[task]) if hasattr(s, "transform")]
            return (any(isinstance(b, CNNEmbedding) for b in blocks), len(blocks))

        return max(self.pipelines, key=rank)

    def fit_ood(self, features: dict, groups: dict | None = None, **params) -> MammogramModel:
        """Fit the out-of-distribution model on ``features[task]`` of the training images.

        ``features`` maps task -> training feature rows (as in :meth:`fit`), ``groups``
        task -> their groups; ``params`` go to :class:`~mammo.classifiers.ood.DistributionModel`.
        """
        task = self.ood_task()
        X = np.asarray(features[task], dtype=np.float64)
        model = DistributionModel(**params)
        if len(X) < 4:
            self.ood = None  # too few images to describe
            return self
        model.fit(X, groups=None if groups is None else groups[task])
        self.ood = {"task": task, "model": model}
        self.metadata["ood"] = {
            "task": task,
            "features": self.metadata.get("tasks", {}).get(task, {}).get("feature_set"),
            "threshold": model.threshold_,
            "quantile": model.quantile,
            "n_components": model.model_["pca"].n_components_,
            "n_train": int(len(X)),
            "method": "Mahalanobis distance in a PCA of the standardised features plus the PCA residual "
            "(T² + Q); threshold: the quantile of grouped cross-fitted training scores",
        }
        return self

    def ood_scores(self, features: dict) -> tuple[np.ndarray, np.ndarray] | None:
        """``(ood_score, in_distribution)`` for rows of per-task features, or None without an OOD model."""
        if self.ood is None or features.get(self.ood["task"]) is None:
            return None
        scores = self.ood["model"].score_samples(features[self.ood["task"]])
        return scores, scores <= self.ood["model"].threshold_

    # ------------------------------------------------------------- inference
    def preprocess(self, images) -> list:
        """Read, crop and enhance images the way the pipelines do (for display)."""
        pipe = next(iter(self.pipelines.values()))
        X = list(images)
        for name, step in pipe.steps:
            if name not in PREPROCESS_STEPS:
                break
            X = step.transform(X)
        return X

    def analyse(self, images) -> tuple[list[dict], list]:
        """:meth:`predict_records` and :meth:`preprocess` together, reading and enhancing each image once.

        For a handful of images (the web app shows the enhanced view next to
        the predictions); large batches should stream through :meth:`iter_predict_proba`.
        """
        images = list(images)
        cache: dict = {}
        feats, proba = {}, {}
        for task, pipe in self.pipelines.items():
            stateless, tail = split_pipeline(pipe)
            feats[task] = run_stateless(stateless, images, cache)
            proba[task] = Pipeline(tail).predict_proba(feats[task])
        # run_stateless keeps each step's output under the chain of step keys so far.
        first = next(iter(self.pipelines.values()))
        prepared = cache[tuple(step_key(step) for name, step in first.steps if name in PREPROCESS_STEPS)]
        return self._records(proba, self.ood_scores(feats)), prepared

    def iter_features(self, images, *, errors: str = "raise", progress: bool = False):
        """Stream features in chunks of ``batch_size``: yields ``(indices, {task: features}, failures)``.

        Each image is read, cropped and enhanced once and each feature block
        computed once, however many tasks use them. Chunks run through
        :class:`joblib.Parallel`: on ``n_jobs`` worker processes when there
        are many (each loads the CNN once and keeps it), on threads when there
        are few; inside ``joblib.parallel_config("dask")`` they run on a Dask
        cluster. At most ``2 * n_jobs`` chunks are in flight, so memory stays
        flat.
        With ``errors="record"`` an image that cannot be used (unreadable,
        :class:`~mammo.features.io.ImageReadError` or ``OSError``, or not a
        mammogram, :class:`~mammo.features.quality.ImplausibleImageError`) is left
        out of ``indices`` and reported in ``failures`` as ``{index: message}``
        instead of stopping the run.
        """
        if errors not in ("raise", "record"):
            raise ValueError(f"errors must be 'raise' or 'record', got {errors!r}")
        images = list(images)
        steps = {task: split_pipeline(pipe)[0] for task, pipe in self.pipelines.items()}
        starts = range(0, len(images), self.batch_size)
        n_jobs = min(self.n_jobs or os.cpu_count() or 1, len(starts)) or 1
        # Many chunks: worker processes, which overlap one chunk's CNN pass with
        # another's (GIL-bound) enhancement and texture; measured 1.3x the
        # throughput of threads on 2 cores. A few chunks (the web app's single
        # images): threads, so nothing is sent to another process.
        prefer = "processes" if len(starts) > 2 * n_jobs else "threads"
        chunks = (delayed(featurise_chunk)(steps, images[i : i + self.batch_size], i, errors) for i in starts)
        results = Parallel(n_jobs=n_jobs, prefer=prefer, return_as="generator", pre_dispatch="2*n_jobs")(chunks)
        with tqdm(total=len(images), desc="images", unit="img", disable=not progress) as bar:
            for indices, feats, failures, n in results:
                bar.update(n)
                yield indices, feats, failures

    def transform(self, images, *, progress: bool = False) -> dict:
        """``{task: (n, n_features) array}`` for the images (see :meth:`iter_features`)."""
        chunks: dict = {task: [] for task in self.pipelines}
        for _, feats, _ in self.iter_features(images, progress=progress):
            for task, f in feats.items():
                if f is not None:
                    chunks[task].append(f)
        return {
            task: np.concatenate(parts) if parts else np.empty((0, 0), np.float32) for task, parts in chunks.items()
        }

    def iter_predict(self, images, *, errors: str = "raise", progress: bool = False):
        """Stream predictions: yields ``(indices, {task: probabilities}, ood, failures)`` per chunk.

        ``ood`` is ``(ood_score, in_distribution)`` arrays for the chunk's images (see
        :meth:`ood_scores`), or None when the model has no out-of-distribution model.
        """
        tails = {task: Pipeline(split_pipeline(pipe)[1]) for task, pipe in self.pipelines.items()}
        for indices, feats, failures in self.iter_features(images, errors=errors, progress=progress):
            proba = {task: tails[task].predict_proba(f) if indices else None for task, f in feats.items()}
            yield indices, proba, (self.ood_scores(feats) if indices else None), failures

    def iter_predict_proba(self, images, *, errors: str = "raise", progress: bool = False):
        """Stream predictions: yields ``(indices, {task: probabilities}, failures)`` per chunk."""
        for indices, proba, _, failures in self.iter_predict(images, errors=errors, progress=progress):
            yield indices, proba, failures

    def predict_proba(self, images, *, progress: bool = False) -> dict:
        """``{task: (n, n_classes) probabilities}``; density columns are classes 1-4, tumour 0/1."""
        features = self.transform(images, progress=progress)
        return {
            task: Pipeline(split_pipeline(pipe)[1]).predict_proba(features[task])
            for task, pipe in self.pipelines.items()
        }

    def predict(self, images, *, progress: bool = False) -> dict:
        """``{task: labels}``: density by the classifier's decision rule (the most probable class,
        or cut points on the expected grade); tumour by the stored threshold."""
        proba = self.predict_proba(images, progress=progress)
        return {task: self.labels(task, p) for task, p in proba.items()}

    def labels(self, task: str, proba: np.ndarray) -> np.ndarray:
        """The labels of ``task`` for rows of its class probabilities (see :meth:`predict`)."""
        classes = np.asarray(self.classes(task))
        if task == "tumour":
            return classes[(proba[:, 1] >= self.threshold).astype(int)]
        clf = self.pipelines[task].steps[-1][1]
        return clf.decide(proba) if hasattr(clf, "decide") else classes[np.argmax(proba, axis=1)]

    def classes(self, task: str) -> list:
        return self.pipelines[task].steps[-1][1].classes_.tolist()

    @property
    def threshold(self) -> float:
        """Decision threshold on P(malignant)."""
        return float(self.metadata.get("tasks", {}).get("tumour", {}).get("threshold", 0.5))

    def predict_records(self, images, *, progress: bool = False) -> list[dict]:
        """One JSON-ready dict per image: per task, the label, its meaning and class probabilities;
        and ``ood_score`` / ``in_distribution`` (see :meth:`record`)."""
        records = []
        for _, proba, ood, _ in self.iter_predict(images, progress=progress):
            records += self._records(proba, ood)
        return records

    def _records(self, proba: dict, ood) -> list[dict]:
        n = len(next(iter(proba.values())))
        return [
            self.record({t: p[i] for t, p in proba.items()}, None if ood is None else (ood[0][i], ood[1][i]))
            for i in range(n)
        ]

    def record(self, proba_row: dict, ood: tuple | None = None) -> dict:
        """The JSON-ready result of one image from its ``{task: class probabilities}``.

        With ``ood`` (``(score, in_distribution)``) it also holds ``ood_score``,
        ``in_distribution`` and ``ood_threshold``: an image unlike every training image
        gets ``in_distribution`` False, and its predictions deserve no trust.
        """
        rec = {}
        for task, p in proba_row.items():
            meanings = self.metadata.get("tasks", {}).get(task, {}).get("class_meanings", {})
            label = self.labels(task, np.asarray(p)[None])[0].item()
            rec[task] = {
                "label": label,
                "meaning": meanings.get(str(label), str(label)),
                "probabilities": {str(c): float(v) for c, v in zip(self.classes(task), p)},
            }
            if task == "tumour":
                rec[task]["p_malignant"] = float(p[1])
                rec[task]["threshold"] = self.threshold
            cuts = getattr(self.pipelines[task].steps[-1][1], "cut_points_", None)
            if cuts is not None:
                # on the grade scale (1 = the first class), as the page and API show them
                rec[task]["expected_grade"] = float(expected_grade(np.asarray(p)[None])[0] + 1)
                rec[task]["cut_points"] = [float(c + 1) for c in cuts]
        if ood is not None:
            rec["ood_score"] = float(ood[0]) if np.isfinite(ood[0]) else None
            rec["in_distribution"] = bool(ood[1])
            rec["ood_threshold"] = float(self.ood["model"].threshold_)
        return rec

    # ------------------------------------------------------------ persistence
    def save(self, path) -> Path:
        """Write the model with joblib and a manifest ``<path>.manifest.json`` holding its sha256."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as fh:  # a server reloading the file never sees half of it
            joblib.dump(self, fh)
        manifest = {"file": path.name, "sha256": file_sha256(path), "metadata": self.metadata}
        atomic_write(str(path) + ".manifest.json", json.dumps(manifest, indent=2, default=str))
        return path
