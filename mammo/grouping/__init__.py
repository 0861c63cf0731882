"""Near-duplicate discovery: give augmented copies of one original mammogram one group.

Data sets such as DPhi Sprint 31 hold many augmented copies (rotation by any angle with
black fill, flips, zoom, shift, a plain and a contrast-enhanced rendering) of a few
originals and no ids. Splitting such copies across train and test leaks, so the groups
are recovered from the pixels, one module per stage:

1. :mod:`~mammo.grouping.signature`: CLAHE + SIFT keypoints inside the tissue mask,
   for the image and its mirror image; cached per image.
2. :mod:`~mammo.grouping.retrieval`: a flip-symmetric bag of visual words gives each
   image its nearest images as candidates.
3. :mod:`~mammo.grouping.verification`: RANSAC inliers decide which candidates are
   copies; union-find joins them, passes between components and orphan attachment
   catch what the first candidates missed.
4. :mod:`~mammo.grouping.report`: counts and label purity, contact sheets, split leaks.

:mod:`~mammo.grouping.find` chains stages 1-3 (:func:`find_duplicate_groups`) and
caches the final groups; ``mammo audit`` (:mod:`mammo.audit`) adds stage 4 for a
user's folder. The validation (ground truth built from mini-MIAS, DPhi label purity)
is in ``docs/grouping.md``.
"""

from __future__ import annotations

from typing import Any

from ..conventions import IMAGE_SUFFIXES, list_images
from ..storage import GROUPS_VERSION, SIGNATURE_VERSION
from .find import find_duplicate_groups
from .report import audit_split, contact_sheet, group_report
from .signature import image_signature

__all__ = [
    "image_signature",
    "find_duplicate_groups",
    "group_report",
    "contact_sheet",
    "audit_split",
    "audit",
    "list_images",
    "IMAGE_SUFFIXES",
    "GROUPS_VERSION",
    "SIGNATURE_VERSION",
]

# Names that moved out of the package, still importable from here: the audit driver
# is a command (it writes plots with mammo.evaluation), the simulator is for tests.
_MOVED = {"audit": "mammo.audit", "augment_like_dphi": "mammo.testing", "simulate_copies": "mammo.testing"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
