"""Dataset readers: images + density / tumour labels + one group id per image.

Every reader returns a :class:`Dataset`. Labels use one convention everywhere:

* ``density``: BI-RADS 1-4 as float, NaN where unknown. mini-MIAS only has a 3-level
  background tissue (F fatty, G fatty-glandular, D dense-glandular), mapped to 1, 2, 3:
  on mini-MIAS the density task is a 3-class ordinal task, not BI-RADS.
* ``tumour``: 1 malignant, 0 benign or screening-negative, NaN where unknown.
* ``groups``: the unit that must never be split between train and test (a patient, or
  the original mammogram of a set of augmented copies).

Missing labels exclude an image from that task only (:meth:`Dataset.task`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .conventions import TASKS

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
]

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
        for what, arr in (("density", self.density), ("tumour", self.tumour), ("groups", self.groups), ("meta", self.meta)):
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

    def subset(self, index: Any) -> "Dataset":
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
    "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0,
    "M": 1.0, "B": 0.0, "MALIGNANT": 1.0, "BENIGN": 0.0,
    "TRUE": 1.0, "FALSE": 0.0, "CANCER": 1.0, "NORMAL": 0.0, "NEGATIVE": 0.0,
}


def _parse_density(v: Any, where: str) -> float:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return np.nan
    s = str(v).strip().upper()
    if s in ("", "NAN", "NONE", "NA"):
        return np.nan
    if s in _DENSITY_LETTERS:
        return _DENSITY_LETTERS[s]
    try:
        f = float(s)
    except ValueError:
        raise DatasetError(f"{where}: density {v!r} is neither 1-4 nor A-D") from None
    if f not in (1.0, 2.0, 3.0, 4.0):
        raise DatasetError(f"{where}: density {v!r} is neither 1-4 nor A-D")
    return f


def _parse_tumour(v: Any, where: str) -> float:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return np.nan
    s = str(v).strip().upper()
    if s in ("", "NAN", "NONE", "NA"):
        return np.nan
    if s in _TUMOUR_WORDS:
        return _TUMOUR_WORDS[s]
    raise DatasetError(f"{where}: tumour {v!r} is not one of 0/1, B/M, Benign/Malignant")


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


# --------------------------------------------------------------------------- DPhi

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


# --------------------------------------------------------------------------- mini-MIAS

_MIAS_ROW = re.compile(r"^(mdb\d{3})\s+([FGD])\s+(CALC|CIRC|SPIC|MISC|ARCH|ASYM|NORM)\b(.*)$")
_MIAS_BG = {"F": 1.0, "G": 2.0, "D": 3.0}


def load_mias(root: str | os.PathLike) -> Dataset:
    """mini-MIAS: ``Info.txt`` + ``mdbNNN.pgm`` or ``mdbNNN.png``.

    * density: background tissue F -> 1, G -> 2, D -> 3 (a 3-class ordinal task, not
      BI-RADS).
    * tumour: severity M -> 1, B -> 0 on abnormal images; NaN on normal images.
      An image with both a benign and a malignant lesion (mdb144) is malignant (1).
    * group: the patient, i.e. the left/right pair mdb001+mdb002, mdb003+mdb004, ...
      (``(n + 1) // 2``).
    * meta: refnum, bg, classes ("CIRC" or "CALC;MISC"), severity, number of lesions,
      and the first lesion's centre (x, y with origin at the bottom-left) and radius
      (NaN where not given).
    """
    root = Path(root).expanduser().resolve()
    info = root / "Info.txt"
    if not info.is_file():
        raise DatasetError(f"{root}: no Info.txt (not a mini-MIAS layout)")
    rows: dict[str, dict[str, Any]] = {}
    for line in info.read_text(errors="replace").splitlines():
        m = _MIAS_ROW.match(line.strip())
        if not m:
            continue
        ref, bg, cls, rest = m.groups()
        parts = rest.split()
        sev = parts[0] if parts and parts[0] in ("B", "M") else None
        nums = []
        for p in parts[1:4] if sev else []:
            try:
                nums.append(float(p))
            except ValueError:
                break  # "*NOTE 3*": calcifications without a centre
        r = rows.setdefault(ref, {"refnum": ref, "bg": bg, "classes": [], "severities": [], "lesions": []})
        if r["bg"] != bg:
            raise DatasetError(f"{info}: {ref} has two background tissues ({r['bg']}, {bg})")
        if cls not in r["classes"]:
            r["classes"].append(cls)
        if sev:
            r["severities"].append(sev)
        if cls != "NORM":
            r["lesions"].append(nums + [np.nan] * (3 - len(nums)) if len(nums) == 3 else [np.nan] * 3)
    if not rows:
        raise DatasetError(f"{info}: no rows like 'mdb001 G CIRC B 535 425 197'")
    paths, density, tumour, groups, meta = [], [], [], [], []
    missing = []
    for ref in sorted(rows):
        r = rows[ref]
        for ext in (".pgm", ".png", ".PGM", ".PNG"):
            p = root / f"{ref}{ext}"
            if p.is_file():
                break
        else:
            missing.append(f"{ref}.pgm/.png")
            continue
        paths.append(str(p))
        density.append(_MIAS_BG[r["bg"]])
        sev = r["severities"]
        tumour.append(1.0 if "M" in sev else 0.0 if "B" in sev else np.nan)
        num = int(ref[3:])
        groups.append(f"mias_patient{(num + 1) // 2:03d}")
        first = r["lesions"][0] if r["lesions"] else [np.nan] * 3
        meta.append({
            "refnum": ref,
            "bg": r["bg"],
            "classes": ";".join(r["classes"]),
            "severity": "M" if "M" in sev else "B" if "B" in sev else "",
            "n_lesions": len(r["lesions"]),
            "x": first[0],
            "y": first[1],
            "radius": first[2],
            "laterality": "L" if num % 2 == 0 else "R",
        })
    if missing:
        raise DatasetError(
            f"{root}: {len(missing)} of {len(rows)} images listed in Info.txt do not exist, e.g. {', '.join(missing[:3])}"
        )
    return Dataset("mias", paths, np.array(density), np.array(tumour), np.array(groups, dtype=object), pd.DataFrame(meta),
                   density_meanings=MIAS_DENSITY_CLASSES)


# --------------------------------------------------------------------------- manifest CSV

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
    density = np.array([_parse_density(v, f"{csv_path} row {i + 2}") for i, v in enumerate(df[dens_col])]) \
        if dens_col else np.full(len(df), np.nan)
    tumour = np.array([_parse_tumour(v, f"{csv_path} row {i + 2}") for i, v in enumerate(df[tum_col])]) \
        if tum_col else np.full(len(df), np.nan)
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
        raise DatasetError(f"{csv}: lists {len(leaked)} files under holdout/ (e.g. {leaked[0]}); the holdout is never read")
    return ds


# --------------------------------------------------------------------------- auto

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
