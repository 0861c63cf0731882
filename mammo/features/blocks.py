"""The registry of feature blocks: each block's name, how to make it, and which feature sets use it.

Everything that needs to know the blocks derives it from :data:`REGISTRY`: the task
pipelines' FeatureUnion (:func:`mammo.classifiers.make_features`), the training run's
cached blocks and their column order, the ``--extra-blocks`` choices, and the
feature-set name recorded in a saved model's metadata. Adding a block is one
:class:`Block` entry below (plus the transformer itself).

A block is a stateless transformer from :class:`~mammo.features.region.Mammogram`
crops to a fixed number of columns, with ``get_feature_names_out``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .cnn import CNNEmbedding
from .extra import IntensityFeatures
from .texture import GLCMFeatures, LBPFeatures

__all__ = [
    "FEATURE_SETS",
    "Block",
    "REGISTRY",
    "EXTRA_BLOCKS",
    "get_block",
    "blocks_of",
    "block_order",
    "make_block",
    "make_extra_block",
    "feature_set_name",
]

#: The feature sets, in the order the comparison runs and reports them.
FEATURE_SETS = ("texture", "cnn", "combined")


@dataclass(frozen=True)
class Block:
    """One feature block.

    Parameters
    ----------
    name : str
        Its name in a pipeline's FeatureUnion, in the feature cache and on the command line.
    factory : callable
        ``factory(**options)`` returns a fresh, unfitted transformer. ``options`` are
        :func:`~mammo.classifiers.make_features`' keywords (weights, cnn_input_size,
        flip_tta, glcm_levels, cnn_layers); a factory takes the ones it needs.
    feature_sets : tuple of str
        The feature sets that include it. Empty: an experimental block, added to
        every feature set only on request (``mammo train --extra-blocks``).
    """

    name: str
    factory: Callable[..., Any]
    feature_sets: tuple[str, ...] = ()

    @property
    def experimental(self) -> bool:
        return not self.feature_sets


def _glcm(*, glcm_levels: int, **_) -> GLCMFeatures:
    return GLCMFeatures(levels=glcm_levels)


def _cnn(*, weights: str, cnn_input_size: int, flip_tta: bool, cnn_layers: str, **_) -> CNNEmbedding:
    return CNNEmbedding(weights=weights, input_size=cnn_input_size, flip_tta=flip_tta, layers=cnn_layers)


#: Every block, in column order (a feature set's columns follow this order).
REGISTRY: tuple[Block, ...] = (
    Block("glcm", _glcm, ("texture", "combined")),
    Block("lbp", lambda **_: LBPFeatures(), ("texture", "combined")),
    Block("cnn", _cnn, ("cnn", "combined")),
    Block("intensity", lambda **_: IntensityFeatures()),
)

_BY_NAME = {b.name: b for b in REGISTRY}
assert len(_BY_NAME) == len(REGISTRY), "block names must be unique"
assert all(set(b.feature_sets) <= set(FEATURE_SETS) for b in REGISTRY), "a block names an unknown feature set"

#: name -> factory of the experimental blocks (``--extra-blocks`` choices).
EXTRA_BLOCKS = {b.name: b.factory for b in REGISTRY if b.experimental}


def get_block(name: str) -> Block:
    """The registry entry ``name`` (ValueError for an unknown name)."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown feature block {name!r}; expected one of {sorted(_BY_NAME)}")
    return _BY_NAME[name]


def blocks_of(feature_set: str) -> tuple[str, ...]:
    """The blocks of ``feature_set``, in column order."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set must be one of {FEATURE_SETS}, got {feature_set!r}")
    return tuple(b.name for b in REGISTRY if feature_set in b.feature_sets)


def block_order(names: Sequence[str]) -> list[str]:
    """``names`` (each once) in registry order."""
    wanted = set(names)
    return [b.name for b in REGISTRY if b.name in wanted]


def make_block(name: str, **options: Any) -> Any:
    """A fresh transformer for block ``name``, made with the feature ``options`` it uses."""
    return get_block(name).factory(**options)


def make_extra_block(name: str) -> Any:
    """A fresh instance of the experimental block ``name`` with its default parameters."""
    if name not in EXTRA_BLOCKS:
        raise ValueError(f"unknown extra block {name!r}; expected one of {sorted(EXTRA_BLOCKS)}")
    return EXTRA_BLOCKS[name]()


def feature_set_name(blocks: Sequence[str]) -> str:
    """A readable name for a FeatureUnion's blocks: the largest feature set whose blocks are all
    there, then any other blocks joined by "+" (e.g. "combined", "texture+intensity")."""
    present = set(blocks)
    whole = [fs for fs in FEATURE_SETS if set(blocks_of(fs)) <= present]
    name = max(whole, key=lambda fs: len(blocks_of(fs)), default="")
    core = {b.name for b in REGISTRY if not b.experimental}
    return "+".join(filter(None, [name, *sorted(present - core)]))
