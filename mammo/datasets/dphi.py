"""DPhi Data Sprint 31: ``Training_set.csv`` of ``Density N Benign|Malignant`` labels + ``train/`` images."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ._base import Dataset, DatasetError, _check_files, _read_csv

_DPHI_LABEL = re.compile(r"^\s*Density\s*([1-4])\s*(Benign|Malignant)\s*$", re.IGNORECASE)


def load_dphi(
    root: str | os.PathLike,
    *,
    groups: str | np.ndarray | list = "auto",
    n_jobs: int = 1,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """DPhi Data Sprint 31 layout: ``Training_set.csv`` (filename,label) + ``train/``.

    Labels like ``Density3Benign`` give density 3 and tumour 0.

    Parameters
    ----------
    root : path
        Folder holding ``Training_set.csv`` and ``train/``.
    groups : "auto", "filename" or array
        "auto": near-duplicate groups found from the pixels with
        :func:`mammo.grouping.find_duplicate_groups`; the result is cached under
        ``cache_dir``, so a second call only hashes the files (timings in
        docs/grouping.md);
        "filename": one group per image (leaky, for the deliberate leaky baseline only);
        an array: one group id per CSV row.
    n_jobs, progress, cache_dir
        Passed to :func:`mammo.grouping.find_duplicate_groups`.
    """
    root = Path(root).expanduser().resolve()
    csv = root / "Training_set.csv"
    if not csv.is_file():
        raise DatasetError(f"{root}: no Training_set.csv (not a DPhi layout)")
    df = _read_csv(csv)
    missing_cols = {"filename", "label"} - set(df.columns)
    if missing_cols:
        raise DatasetError(f"{csv}: missing column(s) {sorted(missing_cols)}; found {list(df.columns)}")
    img_dir = root / "train"
    paths = [str(img_dir / f) for f in df["filename"]]
    _check_files(paths, str(root))
    density, tumour = [], []
    for row, lab in enumerate(df["label"]):
        m = _DPHI_LABEL.match(lab)
        if not m:
            raise DatasetError(f"{csv}: row {row + 2}: label {lab!r} is not like 'Density3Benign'")
        density.append(float(m.group(1)))
        tumour.append(1.0 if m.group(2).lower() == "malignant" else 0.0)
    if isinstance(groups, str):
        if groups == "auto":
            from mammo.grouping import find_duplicate_groups

            g = find_duplicate_groups(paths, n_jobs=n_jobs, progress=progress, cache_dir=cache_dir)
            g = np.array([f"dup{int(x):04d}" for x in g], dtype=object)
        elif groups == "filename":
            g = np.asarray(df["filename"], dtype=object)
        else:
            raise ValueError(f"groups must be 'auto', 'filename' or an array, got {groups!r}")
    else:
        g = np.asarray(groups, dtype=object)
        if len(g) != len(paths):
            raise DatasetError(f"{root}: {len(g)} groups given for {len(paths)} images")
    meta = pd.DataFrame({"filename": df["filename"], "label": df["label"]})
    return Dataset("dphi", paths, np.array(density), np.array(tumour), g, meta)
