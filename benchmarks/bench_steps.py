"""Throughput of the read and breast-crop steps alone, per data set, single-threaded.

    python benchmarks/bench_steps.py --data dphi rsna mias --n 100 --repeats 3

For each data set: the same seeded sample of ``--n`` files, read ``--repeats`` times
(:func:`mammo.features.io.read_scan`), then every scan cropped ``--repeats`` times
(:func:`mammo.features.region.crop_breast`); the best repeat counts. Prints images/s
(wall clock) and CPU ms per image (process time: on a loaded machine the fairer figure).
Runs on older checkouts too (``PYTHONPATH=/path/to/checkout``: before ``read_scan``
existed it times ``read_image``), so two versions can be measured back to back.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {
    "dphi": ("dphi-sprint31/train", "*.jpg"),
    "rsna": ("rsna-screening/images", "*.jpg"),
    "mias": ("mini-mias", "*.png"),
}


def sample(kind: str, n: int, seed: int = 0) -> list[str]:
    folder, pattern = SETS[kind]
    paths = sorted(str(p) for p in (SHARED / folder).glob(pattern))
    if not paths:
        sys.exit(f"no images under {SHARED / folder}: this benchmark needs ../shared/data")
    rng = np.random.default_rng(seed)
    return [paths[i] for i in sorted(rng.choice(len(paths), size=min(n, len(paths)), replace=False))]


def best_of(fn, items: list, repeats: int) -> tuple[float, float, list]:
    """``(wall s, cpu s, outputs)`` of the fastest of ``repeats`` passes of ``fn`` over ``items``."""
    wall = cpu = float("inf")
    out: list = []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = [fn(x) for x in items]
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return wall, cpu, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", choices=sorted(SETS), default=["dphi", "rsna", "mias"])
    ap.add_argument("--n", type=int, default=100, help="files per data set (default: 100)")
    ap.add_argument("--repeats", type=int, default=3, help="passes per step; the best counts (default: 3)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    from mammo.features import io
    from mammo.features.region import crop_breast

    read = getattr(io, "read_scan", None) or io.read_image
    figures: dict = {}
    for kind in args.data:
        paths = sample(kind, args.n)
        scans = [read(p) for p in paths[:3]]  # warm-up: imports, caches
        for s in scans:
            crop_breast(s)
        wall, cpu, scans = best_of(read, paths, args.repeats)
        figures[f"{kind}_read_img_s"], figures[f"{kind}_read_cpu_ms"] = len(paths) / wall, 1000 * cpu / len(paths)
        wall, cpu, _ = best_of(crop_breast, scans, args.repeats)
        figures[f"{kind}_crop_img_s"], figures[f"{kind}_crop_cpu_ms"] = len(paths) / wall, 1000 * cpu / len(paths)
        print(
            f"{kind}: {len(paths)} files; read {figures[f'{kind}_read_img_s']:.0f} img/s "
            f"({figures[f'{kind}_read_cpu_ms']:.2f} ms CPU); crop {figures[f'{kind}_crop_img_s']:.1f} img/s "
            f"({figures[f'{kind}_crop_cpu_ms']:.2f} ms CPU)",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
