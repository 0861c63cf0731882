"""What the comparison evaluates: a :class:`Candidate` is a feature set (plus any extra blocks) and a model."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from ..classifiers.pipelines import MODELS
from ..features.blocks import blocks_of

__all__ = ["Candidate", "candidates", "DEEP_HEAD", "FINE_TUNED"]


@dataclass(frozen=True)
class Candidate:
    """A feature set and a model, e.g. ``Candidate("texture", "svm")``.

    ``extra_blocks`` (experimental blocks, :mod:`mammo.features.blocks`) are appended
    to the feature set's columns. The deep baselines are candidates too
    (:data:`DEEP_HEAD`, :data:`FINE_TUNED`), though not selectable for the saved model.
    """

    feature_set: str
    model: str
    extra_blocks: tuple[str, ...] = ()

    # Cached: one string object per candidate, so a saved model's pickle stores a name
    # used twice in its metadata once (byte-identical model files for identical runs).
    @cached_property
    def name(self) -> str:
        """Its name in the report, ``metrics.json`` and the model's metadata: "texture+svm"."""
        return f"{self.feature_set}+{self.model}"

    @property
    def pipeline_name(self) -> str:
        """Its part of a pipeline id, naming the extra blocks too: "texture&intensity+svm"."""
        return "".join([self.feature_set, *(f"&{e}" for e in self.extra_blocks)]) + f"+{self.model}"

    @property
    def blocks(self) -> tuple[str, ...]:
        """Its feature blocks in column order."""
        return (*blocks_of(self.feature_set), *self.extra_blocks)

    @property
    def selectable(self) -> bool:
        """Whether it is a scikit-learn task pipeline, which the run can refit and save."""
        return self.model in MODELS


def candidates(feature_sets: Sequence[str], models: Sequence[str], extra_blocks: Sequence[str] = ()) -> list[Candidate]:
    """Every feature set with every model, feature set first (the report's order)."""
    return [Candidate(fs, m, tuple(extra_blocks)) for fs, m in itertools.product(feature_sets, models)]


#: A small Keras head on the frozen CNN embedding (:func:`mammo.training.deep.deep_head_cv`).
DEEP_HEAD = Candidate("cnn", "keras-head")
#: MobileNetV2 with its last blocks retrained (:func:`mammo.training.deep.finetune_cv`).
FINE_TUNED = Candidate("cnn", "fine-tuned")
