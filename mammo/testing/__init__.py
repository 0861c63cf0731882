"""Synthetic data for tests, the demo model and the web app's warm-up.

* :func:`synthetic_mammogram`: a grey image that looks enough like a mammogram to
  exercise every step (breast, density texture, a mass, a film label).
* :func:`augment_like_dphi` / :func:`simulate_copies`: DPhi-style augmented copies of
  images with their true groups, the ground truth of the duplicate-grouping tests
  and of docs/grouping.md.
* :func:`non_mammograms`: images that are not mammograms (photos, text, noise,
  gradients, blank frames): what the input-quality gate and the out-of-distribution
  score must refuse.
* :func:`film_scan` / :func:`larger_detector`: a mammogram as a film archive or another
  scanner would deliver it (bright unexposed film edges, a burnt-in label, a marker;
  a detector much larger than the breast), with where the original now sits: the
  hard cases of the breast-region tests and the invariance benchmark.

* :func:`write_png` / :func:`write_dicom` / :func:`run_until_closed`: PNG and DICOM files and a
  waitress server for tests.

Nothing here is used by training or prediction.
"""

from __future__ import annotations

from .copies import film_scan, larger_detector
from .corpora import SKIMAGE_PICTURES, more_non_mammograms, non_mammograms
from .files import run_until_closed, write_dicom, write_png
from .synthetic import augment_like_dphi, simulate_copies, synthetic_mammogram

__all__ = [
    "SKIMAGE_PICTURES",
    "augment_like_dphi",
    "film_scan",
    "larger_detector",
    "more_non_mammograms",
    "non_mammograms",
    "simulate_copies",
    "synthetic_mammogram",
    "run_until_closed",
    "write_dicom",
    "write_png",
]
