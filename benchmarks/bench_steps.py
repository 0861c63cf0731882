"""Throughput of the image steps alone, per data set, single-threaded.

    python benchmarks/bench_steps.py --data dphi rsna mias --n 100 --repeats 3
    python benchmarks/bench_steps.py --checkouts ../wt-before . --rounds 6

For each data set: the same seeded sample of ``--n`` files, read
(:func:`mammo.features.io.read_scan`), then every scan cropped
(:func:`mammo.features.region.crop_breast`), every crop enhanced
(:class:`~mammo.features.enhance.Enhancer`) and the GLCM and LBP blocks computed on the
enhanced crops, one image at a time; the best of ``--repeats`` passes counts.
Prints images/s (wall clock) and CPU ms per image (process time: on a loaded machine the
fairer figure).

With ``--checkouts``, one worker process per checkout (``PYTHONPATH`` set to it) holds the
same scans, and the workers time their passes in turn, ``--rounds`` times, so that every
version sees the same machine load; the best round counts and the ratios to the first
checkout are printed. Older checkouts work too (before ``read_scan`` existed it times
``read_image``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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


class Steps:
    """The image steps of the checkout on ``sys.path``, on one sample per data set."""

    def __init__(self, kinds: list[str], n: int) -> None:
        from mammo.features import io
        from mammo.features.enhance import Enhancer
        from mammo.features.region import crop_breast
        from mammo.features.texture import GLCMFeatures, LBPFeatures

        self.read = getattr(io, "read_scan", None) or io.read_image
        self.crop = crop_breast
        enhancer, glcm, lbp = Enhancer(), GLCMFeatures(), LBPFeatures()
        self.later = {  # each on the previous one's outputs
            "enhance": lambda m: enhancer.transform([m])[0],
            "glcm": lambda m: glcm.transform([m]),
            "lbp": lambda m: lbp.transform([m]),
        }
        self.paths = {kind: sample(kind, n) for kind in kinds}
        self.scans = {kind: [self.read(p) for p in paths] for kind, paths in self.paths.items()}
        self.crops = {kind: [crop_breast(s) for s in scans] for kind, scans in self.scans.items()}
        self.enhanced = {kind: enhancer.transform(crops) for kind, crops in self.crops.items()}
        glcm.fit(self.enhanced[kinds[0]][:1])
        lbp.fit(self.enhanced[kinds[0]][:1])

    def time(self, repeats: int) -> dict:
        """``{kind_step: (wall s, cpu s) per image}``."""
        out = {}
        for kind, paths in self.paths.items():
            inputs = {
                "read": (self.read, paths),
                "crop": (self.crop, self.scans[kind]),
                "enhance": (self.later["enhance"], self.crops[kind]),
                "glcm": (self.later["glcm"], self.enhanced[kind]),
                "lbp": (self.later["lbp"], self.enhanced[kind]),
            }
            for step, (fn, items) in inputs.items():
                wall, cpu, _ = best_of(fn, items, repeats)
                out[f"{kind}_{step}"] = (wall / len(items), cpu / len(items))
        return out


def worker(kinds: list[str], n: int, repeats: int) -> None:
    """Time the steps each time a line arrives on stdin; answer with one JSON line."""
    steps = Steps(kinds, n)
    print("ready", flush=True)
    for _ in sys.stdin:
        print(json.dumps(steps.time(repeats)), flush=True)


def compare(checkouts: list[str], kinds: list[str], n: int, repeats: int, rounds: int) -> dict:
    """Best (wall, cpu) per image of every step in every checkout, timed in turn."""
    cmd = [sys.executable, __file__, "--worker", "--data", *kinds, "--n", str(n), "--repeats", str(repeats)]
    procs = []
    for path in checkouts:
        env = dict(os.environ, PYTHONPATH=str(Path(path).resolve()))
        procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env))
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a worker failed to start")
        best: list[dict] = [{} for _ in procs]
        for _ in range(rounds):
            for p, b in zip(procs, best):
                p.stdin.write("go\n")
                p.stdin.flush()
                for key, (wall, cpu) in json.loads(p.stdout.readline()).items():
                    w0, c0 = b.get(key, (float("inf"), float("inf")))
                    b[key] = (min(w0, wall), min(c0, cpu))
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=60)
    return dict(zip(checkouts, best))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", choices=sorted(SETS), default=["dphi", "rsna", "mias"])
    ap.add_argument("--n", type=int, default=100, help="files per data set (default: 100)")
    ap.add_argument("--repeats", type=int, default=3, help="passes per step; the best counts (default: 3)")
    ap.add_argument(
        "--checkouts", nargs="+", help="compare these checkouts, timed in turn (the first is the reference)"
    )
    ap.add_argument("--rounds", type=int, default=4, help="turns per checkout with --checkouts (default: 4)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.data, args.n, args.repeats)
        return 0
    if args.checkouts:
        results = compare(args.checkouts, args.data, args.n, args.repeats, args.rounds)
    else:
        results = {"this checkout": Steps(args.data, args.n).time(args.repeats)}
    ref = next(iter(results.values()))
    for name, figures in results.items():
        print(f"{name}:")
        for key, (wall, cpu) in figures.items():
            ratio = f"  CPU x{cpu / ref[key][1]:.2f} of {next(iter(results))}" if len(results) > 1 else ""
            print(f"  {key:<12} {1 / wall:7.1f} img/s  {1000 * cpu:7.2f} ms CPU per image{ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
