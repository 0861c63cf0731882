"""Subgroups of a data set: which meta columns split its images, age bands, and when a level has too few cases.

One definition for every report that scores subgroups (``mammo train``'s out-of-fold
predictions, ``mammo evaluate``'s predictions on other data); the metrics themselves are
:func:`mammo.evaluation.subgroup_metrics`'.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["SUBGROUP_COLUMNS", "AGE_BANDS", "MIN_PATIENTS", "subgroup_levels", "too_few_cases"]

#: Subgroup name -> the meta columns (lower case, first match wins) that hold it.
SUBGROUP_COLUMNS = {
    "site": ("site", "site_id"),
    "machine": ("machine", "machine_id", "manufacturer"),
    "view": ("view",),
    "laterality": ("laterality",),
    "age band": ("age",),
}
#: Age band edges (years, left-closed) and their labels, which sort in age order.
AGE_BANDS = ([-np.inf, 50, 60, 70, np.inf], ["0-49", "50-59", "60-69", "70+"])
#: A level is scored only with at least this many patients (groups) on each side the metric
#: compares: malignant and not (tumour AUC), or in all (density QWK). Below it the patient-grouped
#: bootstrap has too few units for its interval to mean anything.
MIN_PATIENTS = 10


def subgroup_levels(meta: pd.DataFrame) -> dict[str, np.ndarray]:
    """``{subgroup: one level per row}`` for the :data:`SUBGROUP_COLUMNS` that ``meta`` has; age as
    :data:`AGE_BANDS`, empty values "unknown"."""
    cols = {str(c).strip().lower(): c for c in meta.columns}
    out = {}
    for name, options in SUBGROUP_COLUMNS.items():
        col = next((cols[o] for o in options if o in cols), None)
        if col is None:
            continue
        raw = meta[col]
        if name == "age band":
            bands = pd.cut(pd.to_numeric(raw, errors="coerce"), AGE_BANDS[0], right=False, labels=AGE_BANDS[1])
            values = bands.astype(object).where(bands.notna(), "unknown")
        else:
            values = raw.fillna("").astype(str).str.strip().replace("", "unknown")
        out[name] = np.asarray(values, dtype=str)
    return out


def too_few_cases(task: str, y: Sequence[int], groups: Sequence, min_patients: int | None = None) -> str | None:
    """Why one level's images cannot be scored for ``task`` ("too few cases: ..."), or None when they can.

    Tumour needs ``min_patients`` (default :data:`MIN_PATIENTS`) patients with a malignant
    image and as many with a non-malignant one (a patient with one malignant breast counts
    on both sides); density needs ``min_patients`` patients.
    """
    min_patients = MIN_PATIENTS if min_patients is None else min_patients
    y, groups = np.asarray(y), np.asarray(groups).astype(str)
    if task == "tumour":
        pos, neg = len(set(groups[y == 1])), len(set(groups[y != 1]))
        if min(pos, neg) < min_patients:
            return (
                f"too few cases: {_patients(pos)} with a malignant image, {neg} with a non-malignant one "
                f"(at least {min_patients} of each needed)"
            )
        return None
    n = len(set(groups))
    return None if n >= min_patients else f"too few cases: {_patients(n)} (at least {min_patients} needed)"


def _patients(n: int) -> str:
    return f"{n} patient" + ("" if n == 1 else "s")
