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


def add_sample_arguments(parser, default: list[str]) -> None:
    """``--images SET:N ...`` (default ``default``), ``--seed`` and ``--out`` (JSON), as the sampling benchmarks take them."""
    parser.add_argument(
        "--images",
        nargs="+",
        default=default,
        metavar="SET:N",
        help=f"random images per shared set ({', '.join(SETS)}); default: {' '.join(default)}",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON")


def sample_sets(spec: list[str], seed: int, prog: str) -> list[Path]:
    """Random images of several sets from ``SET:N`` items (N defaults to 50), one random stream for all."""
    rng = np.random.default_rng(seed)
    out: list[Path] = []
    for item in spec:
        name, _, n = item.partition(":")
        out += sample(name, int(n or 50), rng, prog)
    return out


def markdown_table(columns: list[str], rows: list[list]) -> str:
    """A Markdown table of ``rows`` (lists of cells, turned to text) under ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return "\n".join([*lines, *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)])


def print_results(images: list[Path], spec: list[str], seed: int, table: str, results: Any, out=None) -> None:
    """Print which images were drawn and the Markdown ``table``; write ``results`` as JSON to ``out`` if given."""
    print(f"images: {' '.join(spec)} (seed {seed})\n")
    print(table)
    write_json(out, {"images": [str(p) for p in images], "results": results})


def write_json(path: str | Path | None, figures: Any, indent: int = 1) -> None:
    """Write ``figures`` as JSON to ``path`` when one was asked for (``--json``, ``--out``)."""
    if path:
        Path(path).write_text(json.dumps(figures, indent=indent))
