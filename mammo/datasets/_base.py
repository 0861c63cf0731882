"""The :class:`Dataset` every reader returns, its error, and the label parsing the readers share."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..conventions import TASKS
from .subgroups import subgroup_levels

#: What ``load_dataset(kind=...)`` and ``mammo train --kind`` accept ("auto": detect the layout).
DATASET_KINDS = ("auto", "dphi", "mias", "rsna", "manifest")


class DatasetError(ValueError):
    """A data set cannot be read: missing path, unknown layout, bad CSV or missing files."""


@dataclass
class Dataset:
    """Image paths with per-image labels and groups.

    Attributes
    ----------
    name : str
    paths : list of str
        Absolute image paths.
    density : ndarray of float
        1-4 (1-3 on mini-MIAS), NaN where unknown.
    tumour : ndarray of float
        1 malignant, 0 benign/negative, NaN where unknown.
    groups : ndarray of object (str)
        One group id per image; keep a group on one side of any split.
    meta : DataFrame
        Extra columns, one row per image.
    density_meanings : dict or None
        What each density class means when it is not BI-RADS A-D (mini-MIAS: F/G/D).
    """

    name: str
    paths: list[str]
    density: np.ndarray
    tumour: np.ndarray
    groups: np.ndarray
    meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    density_meanings: dict | None = None

    def __post_init__(self) -> None:
        n = len(self.paths)
        self.paths = [str(p) for p in self.paths]
        self.density = np.asarray(self.density, dtype=float)
        self.tumour = np.asarray(self.tumour, dtype=float)
        self.groups = np.asarray([str(g) for g in self.groups], dtype=object)
        if self.meta is None or len(self.meta.columns) == 0:
            self.meta = pd.DataFrame(index=range(n))
        self.meta = self.meta.reset_index(drop=True)
        for what, arr in (
            ("density", self.density),
            ("tumour", self.tumour),
            ("groups", self.groups),
            ("meta", self.meta),
        ):
            if len(arr) != n:
                raise DatasetError(f"{self.name}: {what} has {len(arr)} rows for {n} images")

    def __len__(self) -> int:
        return len(self.paths)

    def task(self, name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Paths, integer labels and groups of the images labelled for one task.

        Parameters
        ----------
        name : {"density", "tumour"}

        Returns
        -------
        paths : list of str
        y : ndarray of int
            Density 1-4 (1-3 on mini-MIAS) or tumour 0/1.
        groups : ndarray of object
        """
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; expected one of {TASKS}")
        values = self.density if name == "density" else self.tumour
        keep = np.flatnonzero(~np.isnan(values))
        return [self.paths[i] for i in keep], values[keep].astype(int), self.groups[keep]

    def breasts(self) -> np.ndarray | None:
        """One breast id per image (group + laterality), or None without a ``laterality`` column.

        RSNA's labels are per breast and a breast has several views; per-breast
        metrics average its images' predictions (:func:`mammo.evaluation.per_breast_tumour`).
        """
        col = next((c for c in self.meta.columns if str(c).strip().lower() == "laterality"), None)
        if col is None:
            return None
        side = self.meta[col].fillna("").astype(str).str.strip().str.upper().to_numpy()
        if (side == "").any():
            return None
        return np.asarray([f"{g}|{s}" for g, s in zip(self.groups, side)], dtype=object)

    def subgroups(self, index: Any = None) -> dict[str, np.ndarray]:
        """``{subgroup: one level per image}`` of the images ``index`` (default all), for the subgroup
        columns the meta has (site, machine, view, laterality, age band: :mod:`.subgroups`)."""
        levels = subgroup_levels(self.meta)
        return levels if index is None else {name: v[index] for name, v in levels.items()}

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable counts: images, groups, and images per class for each task."""
        out: dict[str, Any] = {
            "name": self.name,
            "n_images": len(self.paths),
            "n_groups": int(len(set(self.groups))),
        }
        for t in TASKS:
            _, y, g = self.task(t)
            classes, counts = np.unique(y, return_counts=True)
            out[t] = {
                "n_images": int(len(y)),
                "n_groups": int(len(set(g))),
                "counts": {str(int(c)): int(k) for c, k in zip(classes, counts)},
            }
        return out

    def subset(self, index: Any) -> Dataset:
        """A new Dataset with the images selected by an integer or boolean index."""
        idx = np.arange(len(self.paths))[index]
        return Dataset(
            self.name,
            [self.paths[i] for i in idx],
            self.density[idx],
            self.tumour[idx],
            self.groups[idx],
            self.meta.iloc[idx].reset_index(drop=True),
            self.density_meanings,
        )


# --------------------------------------------------------------------------- helpers

_DENSITY_LETTERS = {"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0}

#: mini-MIAS background tissue, the density task's classes on that data set.
MIAS_DENSITY_CLASSES = {
    1: "F - fatty",
    2: "G - fatty-glandular",
    3: "D - dense-glandular",
}
_TUMOUR_WORDS = {
    "1": 1.0,
    "0": 0.0,
    "1.0": 1.0,
    "0.0": 0.0,
    "M": 1.0,
    "B": 0.0,
    "MALIGNANT": 1.0,
    "BENIGN": 0.0,
    "TRUE": 1.0,
    "FALSE": 0.0,
    "CANCER": 1.0,
    "NORMAL": 0.0,
    "NEGATIVE": 0.0,
}


def _label_text(v: Any) -> str | None:
    """A label cell as upper-case text, or None when it is empty (unlabelled)."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    s = str(v).strip().upper()
    return None if s in ("", "NAN", "NONE", "NA") else s


def _density_value(s: str) -> float | None:
    """Density 1-4 from a grade or a BI-RADS letter, or None."""
    if s in _DENSITY_LETTERS:
        return _DENSITY_LETTERS[s]
    try:
        f = float(s)
    except ValueError:
        return None
    return f if f in (1.0, 2.0, 3.0, 4.0) else None


def _parse_label(v: Any, where: str, what: str, value: Callable[[str], float | None], expected: str) -> float:
    """One label cell: NaN when empty, else ``value`` of its text; a :class:`DatasetError` when that is None."""
    s = _label_text(v)
    if s is None:
        return np.nan
    out = value(s)
    if out is None:
        raise DatasetError(f"{where}: {what} {v!r} is {expected}")
    return out


def _parse_density(v: Any, where: str) -> float:
    return _parse_label(v, where, "density", _density_value, "neither 1-4 nor A-D")


def _parse_tumour(v: Any, where: str) -> float:
    return _parse_label(v, where, "tumour", _TUMOUR_WORDS.get, "not one of 0/1, B/M, Benign/Malignant")


def _check_files(paths: list[str], name: str) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        few = ", ".join(missing[:3])
        raise DatasetError(f"{name}: {len(missing)} of {len(paths)} listed image files do not exist, e.g. {few}")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read CSV ({e})") from None
