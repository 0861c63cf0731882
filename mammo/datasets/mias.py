"""mini-MIAS: ``Info.txt`` + ``mdbNNN.pgm`` / ``.png`` film mammograms."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._base import MIAS_DENSITY_CLASSES, Dataset, DatasetError

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
    rows = _read_info(info)
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
        meta.append(
            {
                "refnum": ref,
                "bg": r["bg"],
                "classes": ";".join(r["classes"]),
                "severity": "M" if "M" in sev else "B" if "B" in sev else "",
                "n_lesions": len(r["lesions"]),
                "x": first[0],
                "y": first[1],
                "radius": first[2],
                "laterality": "L" if num % 2 == 0 else "R",
            }
        )
    if missing:
        raise DatasetError(
            f"{root}: {len(missing)} of {len(rows)} images listed in Info.txt do not exist, e.g. {', '.join(missing[:3])}"
        )
    return Dataset(
        "mias",
        paths,
        np.array(density),
        np.array(tumour),
        np.array(groups, dtype=object),
        pd.DataFrame(meta),
        density_meanings=MIAS_DENSITY_CLASSES,
    )


def _read_info(info: Path) -> dict[str, dict[str, Any]]:
    """Info.txt's rows merged per image: background tissue, classes, severities, lesions."""
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
    return rows
