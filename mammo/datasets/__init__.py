"""Dataset readers: images + density / tumour labels + one group id per image.

Every reader returns a :class:`Dataset`. Labels use one convention everywhere:

* ``density``: BI-RADS 1-4 as float, NaN where unknown. mini-MIAS only has a 3-level
  background tissue (F fatty, G fatty-glandular, D dense-glandular), mapped to 1, 2, 3:
  on mini-MIAS the density task is a 3-class ordinal task, not BI-RADS.
* ``tumour``: 1 malignant, 0 benign or screening-negative, NaN where unknown.
* ``groups``: the unit that must never be split between train and test (a patient, or
  the original mammogram of a set of augmented copies).

Missing labels exclude an image from that task only (:meth:`Dataset.task`). The meta columns
that split the images into subgroups (site, machine, view, laterality, age band) and the rule
for a level with too few cases are :mod:`.subgroups` (:meth:`Dataset.subgroups`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..conventions import TASKS
from ._base import DATASET_KINDS, MIAS_DENSITY_CLASSES, Dataset, DatasetError, _read_csv
from .dphi import load_dphi
from .manifest import load_manifest, load_rsna
from .mias import load_mias
from .subgroups import MIN_PATIENTS, SUBGROUP_COLUMNS, too_few_cases

__all__ = [
    "DATASET_KINDS",
    "Dataset",
    "DatasetError",
    "MIAS_DENSITY_CLASSES",
    "load_dphi",
    "load_mias",
    "load_manifest",
    "load_rsna",
    "load_dataset",
    "TASKS",
    "MIN_PATIENTS",
    "SUBGROUP_COLUMNS",
    "too_few_cases",
]


def _detect(path: Path) -> str:
    if path.is_file():
        if path.suffix.lower() == ".csv":
            if path.name == "Training_set.csv":
                return "dphi"
            return "manifest"
        if path.name == "Info.txt":
            return "mias"
        raise DatasetError(f"{path}: a file that is neither a CSV manifest nor Info.txt")
    if (path / "Training_set.csv").is_file():
        return "dphi"
    if (path / "Info.txt").is_file():
        return "mias"
    if (path / "labels.csv").is_file():
        cols = set(_read_csv(path / "labels.csv").columns)
        if {"patient_id", "cancer"} <= cols:
            return "rsna"
        return "manifest"
    raise DatasetError(
        f"{path}: unknown layout; expected Training_set.csv (DPhi), Info.txt (mini-MIAS), "
        "labels.csv with patient_id and cancer (RSNA) or a CSV manifest file ('Getting data' in the README)"
    )


def load_dataset(path: str | os.PathLike, kind: str = "auto", **kwargs: Any) -> Dataset:
    """Load a data set, detecting its layout unless ``kind`` is given.

    Parameters
    ----------
    path : path
        A folder (DPhi, mini-MIAS, RSNA) or a CSV manifest file.
    kind : {"auto", "dphi", "mias", "rsna", "manifest"}
    **kwargs
        Passed to the reader (e.g. ``groups=`` or ``n_jobs=`` for DPhi).

    Raises
    ------
    DatasetError
        Missing path, unknown layout, CSV missing required columns, missing image files.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if kind not in DATASET_KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r}; expected one of {DATASET_KINDS}")
    if kind == "auto":
        kind = _detect(p)
    if kind == "dphi":
        return load_dphi(p.parent if p.is_file() else p, **kwargs)
    if kind == "mias":
        return load_mias(p.parent if p.is_file() else p, **kwargs)
    if kind == "rsna":
        return load_rsna(p.parent if p.is_file() else p, **kwargs)
    if p.is_dir():
        if (p / "labels.csv").is_file():
            return load_manifest(p / "labels.csv", **kwargs)
        raise DatasetError(f"{p}: a manifest must be a CSV file, or a folder with labels.csv")
    return load_manifest(p, **kwargs)
