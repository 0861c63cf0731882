"""What the benchmarks share: the images of the shared data sets, random samples of them, JSON output.

The benchmarks run as scripts (``python benchmarks/bench_gate.py``), so this folder is on
``sys.path`` and they import this module as ``_shared``. ``rsna-screening/holdout`` is
never listed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: Every image of each shared set (sorted), by the name the benchmarks' options use.
SETS: dict[str, Callable[[], list[Path]]] = {
    "dphi": lambda: sorted((SHARED / "dphi-sprint31" / "train").glob("*.jpg")),
    "mias": lambda: sorted((SHARED / "mini-mias").glob("*.png")),
    "rsna": lambda: sorted((SHARED / "rsna-screening" / "images").glob("*.jpg")),
}


def set_images(name: str, prog: str) -> list[Path]:
    """The images of the shared set ``name``; exits with a ``prog:`` message when there are none."""
    paths = SETS[name]()
    if not paths:
        sys.exit(f"{prog}: no images for {name!r} under {SHARED}")
    return paths


def sample(name: str, n: int, rng: np.random.Generator, prog: str) -> list[Path]:
    """``n`` distinct random images of the shared set ``name`` (all of them when it has fewer), in file order."""
    paths = set_images(name, prog)
    return [paths[i] for i in sorted(rng.choice(len(paths), size=min(n, len(paths)), replace=False))]


def write_json(path: str | Path | None, figures: Any, indent: int = 1) -> None:
    """Write ``figures`` as JSON to ``path`` when one was asked for (``--json``, ``--out``)."""
    if path:
        Path(path).write_text(json.dumps(figures, indent=indent))
