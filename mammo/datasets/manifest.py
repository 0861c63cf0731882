"""CSV manifests (one row per image: path, labels, group), and the rsna-screening layout built on one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._base import (
    Dataset,
    DatasetError,
    _check_files,
    _parse_density,
    _parse_tumour,
    _read_csv,
)

_PATH_COLS = ("path", "filename")
_GROUP_COLS = ("group", "patient_id")
_TUMOUR_COLS = ("tumour", "tumor", "cancer")


def load_manifest(
    csv_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    name: str | None = None,
    image_dir: str | None = None,
) -> Dataset:
    """Generic CSV manifest, one row per image.

    Columns (first match wins): ``path`` or ``filename``; ``group`` or ``patient_id``;
    ``density`` (1-4 or A-D, empty = unknown); ``tumour``/``tumor``/``cancer`` (0/1, B/M,
    Benign/Malignant, empty = unknown). At least one of density or tumour is required;
    all other columns go to ``meta``. Without a group column each image is its own group.

    Parameters
    ----------
    csv_path : path
    root : path, optional
        Folder that relative paths are resolved against (default: the CSV's folder).
    name : str, optional
        Dataset name (default: the CSV's stem).
    image_dir : str, optional
        Subfolder of ``root`` holding the images (used by :func:`load_rsna`).
    """
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: no such CSV file")
    csv_path = csv_path.resolve()
    base = Path(root).expanduser().resolve() if root is not None else csv_path.parent
    if image_dir:
        base = base / image_dir
    df = _read_csv(csv_path)
    cols = {c.strip().lower(): c for c in df.columns}
    path_col = next((cols[c] for c in _PATH_COLS if c in cols), None)
    if path_col is None:
        raise DatasetError(f"{csv_path}: needs a 'path' or 'filename' column; found {list(df.columns)}")
    group_col = next((cols[c] for c in _GROUP_COLS if c in cols), None)
    dens_col = cols.get("density")
    tum_col = next((cols[c] for c in _TUMOUR_COLS if c in cols), None)
    if dens_col is None and tum_col is None:
        raise DatasetError(
            f"{csv_path}: needs a 'density' and/or a 'tumour' (or 'cancer') column; found {list(df.columns)}"
        )
    if len(df) == 0:
        raise DatasetError(f"{csv_path}: no rows")
    paths = [str(p if os.path.isabs(p) else (base / p)) for p in (str(x).strip() for x in df[path_col])]
    paths = [str(Path(p).resolve()) for p in paths]
    _check_files(paths, str(csv_path))
    density = (
        np.array([_parse_density(v, f"{csv_path} row {i + 2}") for i, v in enumerate(df[dens_col])])
        if dens_col
        else np.full(len(df), np.nan)
    )
    tumour = (
        np.array([_parse_tumour(v, f"{csv_path} row {i + 2}") for i, v in enumerate(df[tum_col])])
        if tum_col
        else np.full(len(df), np.nan)
    )
    if group_col is not None:
        groups = np.asarray(df[group_col].astype(str).str.strip(), dtype=object)
        empty = np.flatnonzero(groups == "")
        if len(empty):
            raise DatasetError(f"{csv_path}: {len(empty)} rows have an empty {group_col!r}, e.g. row {empty[0] + 2}")
    else:
        groups = np.asarray(paths, dtype=object)
    used = {path_col, group_col, dens_col, tum_col} - {None}
    meta = df[[c for c in df.columns if c not in used]].copy()
    meta.insert(0, "source", df[path_col].values)
    return Dataset(name or csv_path.stem, paths, density, tumour, groups, meta)


def load_rsna(root: str | os.PathLike) -> Dataset:
    """The rsna-screening folder: ``labels.csv`` + ``images/``; ``holdout/`` is never read.

    ``cancer`` is the tumour label (0 is mostly a screening negative, not a proven
    benign), ``density`` A-D -> 1-4 (empty for site 2), group = ``patient_id``.
    """
    root = Path(root).expanduser().resolve()
    csv = root / "labels.csv"
    if not csv.is_file():
        raise DatasetError(f"{root}: no labels.csv (not an rsna-screening layout)")
    head = _read_csv(csv).columns
    for c in ("filename", "patient_id", "cancer"):
        if c not in head:
            raise DatasetError(f"{csv}: missing column {c!r}; found {list(head)}")
    image_dir = "images" if (root / "images").is_dir() else None
    ds = load_manifest(csv, root=root, name="rsna", image_dir=image_dir)
    holdout = root / "holdout"
    leaked = [p for p in ds.paths if Path(p).is_relative_to(holdout)]
    if leaked:
        raise DatasetError(
            f"{csv}: lists {len(leaked)} files under holdout/ (e.g. {leaked[0]}); the holdout is never read"
        )
    return ds
