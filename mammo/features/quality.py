"""Input-quality gate: refuse images that show no breast this tool can judge.

A prediction on an image whose breast was not found (a blank frame, noise, a photo, a
scanned page) is not an answer. After the breast region is found
(:mod:`mammo.features.segmentation`), :func:`check_mammogram` reads a few measurements of
the image and its breast mask and raises :class:`ImplausibleImageError` when they cannot
come from a mammogram:

* ``blank``: the image has (almost) one grey level;
* ``colour``: clearly coloured pixels (a mammogram is monochrome);
* ``no_breast``: no region stands out from a flat background (noise, gradients);
* ``breast_too_small`` / ``breast_too_large``: the region is a speck, or the whole frame;
* ``not_breast_shaped``: the region is ragged or hollow (a photo's objects, text); a
  missing straight chest-wall edge counts only towards ``atypical``;
* ``texture``: the region's grey-level texture is far coarser than breast tissue's
  (binary drawings, text, checkerboards);
* ``atypical``: several measurements lie outside the range seen on real mammograms at
  once, although none is impossible alone.

The limits sit outside everything measured on the 8,596 mammograms of the three shared
data sets (docs/results.md gives the distributions and the false-rejection rate), so
they refuse what cannot be a mammogram; what merely looks unlike the training images is
the out-of-distribution score's job (:mod:`mammo.classifiers.ood`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._base import StatelessImageTransformer
from .io import ImageReadError
from .region import Mammogram

__all__ = [
    "HARD_LIMITS",
    "INPUT_ERRORS",
    "TYPICAL_RANGES",
    "ImplausibleImageError",
    "QualityReport",
    "assess",
    "check_mammogram",
    "InputQualityGate",
]

#: ``statistic: (low, high)``: a value outside is impossible for a mammogram (None: no limit).
HARD_LIMITS: dict[str, tuple[float | None, float | None]] = {
    "chroma": (None, 0.02),
    "grey_range": (0.05, None),
    "mask_fraction": (0.03, 0.98),
    "local_mask_fraction": (0.30, None),
    "local_solidity": (0.70, None),
    "local_convexity": (0.70, None),
    "local_tissue_texture": (0.004, 0.15),
}
#: ``statistic: (low, high)``: the range of (nearly) all real mammograms; three or more
#: statistics outside it at once make an image ``atypical``. Only the breast region's
#: shape and texture: how flat a background is depends on the scanner (film is grainy).
TYPICAL_RANGES: dict[str, tuple[float, float]] = {
    "mask_fraction": (0.09, 0.83),
    "local_solidity": (0.79, 1.0),
    "local_convexity": (0.79, 0.98),
    "local_straight_edge": (0.08, 0.42),
    "local_tissue_texture": (0.01, 0.105),
    "local_mask_fraction": (0.46, 0.89),
}
ATYPICAL_COUNT = 3

_REASONS = {
    "chroma": "colour",
    "grey_range": "blank",
    "mask_fraction": "breast_too_{side}",
    "local_mask_fraction": "not_breast_shaped",
    "local_solidity": "not_breast_shaped",
    "local_convexity": "not_breast_shaped",
    "local_straight_edge": "not_breast_shaped",
    "local_tissue_texture": "texture",
}
_MESSAGES = {
    "blank": "the image is blank: it has almost a single grey level",
    "colour": "the image is in colour; mammograms are grey",
    "no_breast": "no breast was found: nothing stands out from a flat background",
    "breast_too_small": "the region found is far too small to be a breast",
    "breast_too_large": "the region found fills the whole frame, with no background around a breast",
    "not_breast_shaped": "the region found is not shaped like a breast (ragged or hollow)",
    "texture": "the region found has a texture unlike breast tissue",
    "atypical": "several measurements of the image lie outside the range of real mammograms",
}


class ImplausibleImageError(ValueError):
    """The image was read but shows no breast that can be judged.

    Attributes
    ----------
    reason : str
        One of ``blank``, ``colour``, ``no_breast``, ``breast_too_small``,
        ``breast_too_large``, ``not_breast_shaped``, ``texture``, ``atypical``.
    details : dict
        The measurements that failed, ``{statistic: value}``.
    """

    def __init__(self, reason: str, details: dict | None = None, name: str | None = None):
        self.reason = reason
        self.details = dict(details or {})
        prefix = f"{name}: " if name else ""
        super().__init__(f"{prefix}not a mammogram this tool can judge: {_MESSAGES.get(reason, reason)}")


#: What a bad input raises before any feature is computed: unreadable (or missing) files
#: and images that are not mammograms. Batch callers record these per image and go on.
INPUT_ERRORS = (ImageReadError, ImplausibleImageError, OSError)


@dataclass(frozen=True)
class QualityReport:
    """What :func:`assess` found: ``ok``, the first ``reason`` (or None), every failed statistic."""

    ok: bool
    reason: str | None
    failed: dict
    stats: dict


def _stats(m: Mammogram) -> dict:
    seg = m.segmentation
    stats = dict(seg.stats) if seg is not None else {}
    stats["chroma"] = float(m.chroma)
    return stats


def assess(m: Mammogram) -> QualityReport:
    """Judge one breast crop from :func:`~mammo.features.region.crop_breast` (never raises)."""
    stats = _stats(m)
    if stats.get("chroma", 0.0) > HARD_LIMITS["chroma"][1]:
        return QualityReport(False, "colour", {"chroma": stats["chroma"]}, stats)
    if stats.get("grey_range", 1.0) < HARD_LIMITS["grey_range"][0]:
        return QualityReport(False, "blank", {"grey_range": stats["grey_range"]}, stats)
    if m.segmentation is None or not m.segmentation.found:
        return QualityReport(False, "no_breast", {}, stats)
    failed, reason = {}, None
    for key, (lo, hi) in HARD_LIMITS.items():
        value = stats.get(key)
        if value is None:
            continue
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            failed[key] = value
            side = "small" if lo is not None and value < lo else "large"
            reason = reason or _REASONS[key].format(side=side)
    if reason:
        return QualityReport(False, reason, failed, stats)
    unusual = {k: stats[k] for k, (lo, hi) in TYPICAL_RANGES.items() if k in stats and not lo <= stats[k] <= hi}
    if len(unusual) >= ATYPICAL_COUNT:
        return QualityReport(False, "atypical", unusual, stats)
    return QualityReport(True, None, {}, stats)


def check_mammogram(m: Mammogram, name: str | None = None) -> Mammogram:
    """Return ``m`` if it is a plausible mammogram, else raise :class:`ImplausibleImageError`."""
    report = assess(m)
    if not report.ok:
        raise ImplausibleImageError(report.reason, report.failed, name)
    return m


class InputQualityGate(StatelessImageTransformer):
    """Transformer: pass :class:`~mammo.features.region.Mammogram` crops through, refuse implausible ones.

    Stateless. ``transform`` raises :class:`ImplausibleImageError` for the first image
    that fails :func:`check_mammogram`.

    Parameters
    ----------
    enabled : bool, default=True
        False passes everything (e.g. to look at what the gate would refuse).
    """

    _parameter_constraints: dict = {"enabled": ["boolean"]}

    def __init__(self, enabled=True):
        self.enabled = enabled

    def transform(self, X) -> list:
        if not self.enabled:
            return list(X)
        out = []
        for i, m in enumerate(X):
            if not isinstance(m, Mammogram):
                raise TypeError(f"X[{i}]: expected a Mammogram from BreastCropper, got {type(m).__name__}")
            out.append(check_mammogram(m))
        return out
