"""Wall time and peak RSS of the full DPhi comparison, cold (empty caches) and warm.

Runs ``mammo train`` (``python -m mammo.cli train``) in a child process twice with the same
``MAMMO_CACHE_DIR``: first on an empty folder (cold: duplicate-group signatures, the
ONNX conversion of MobileNetV2 and every feature block are computed), then again
(warm: all of them are read from the cache; only the classifiers are fitted).
Peak RSS is sampled every 0.5 s over the whole process tree (main process plus
joblib workers) and also reported for the largest single process.

Targets (issue 3, 2-core machine): cold <= 20 min, warm <= 3 min.

    KERAS_HOME=/tmp/kh python benchmarks/bench_train.py                 # full DPhi, all candidates
    python benchmarks/bench_train.py --only warm --cache-dir ~/.cache/mammo -- --tune    # with the inner search
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from _shared import SHARED


def run_measured(cmd: list[str], env: dict) -> dict:
    """Run ``cmd``; return wall seconds, peak tree RSS and peak single-process RSS (bytes)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = {"tree": 0, "single": 0}
    root = psutil.Process(proc.pid)

    def sample():
        while proc.poll() is None:
            try:
                procs = [root] + root.children(recursive=True)
                rss = []
                for p in procs:
                    try:
                        rss.append(p.memory_info().rss)
                    except psutil.Error:
                        pass
                peak["tree"] = max(peak["tree"], sum(rss))
                peak["single"] = max(peak["single"], max(rss, default=0))
            except psutil.Error:
                pass
            time.sleep(0.5)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, _ = proc.communicate()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return {
        "wall_s": time.perf_counter() - t0,
        "peak_tree_rss": peak["tree"],
        "peak_single_rss": peak["single"],
        "run_dir": out.strip().splitlines()[-1] if out.strip() else "",
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data", default=str(SHARED / "dphi-sprint31"), help="data set (default ../shared/data/dphi-sprint31)"
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="MAMMO_CACHE_DIR to use (default: a new empty temporary folder, removed at the end)",
    )
    p.add_argument("--only", choices=("cold", "warm", "both"), default="both")
    p.add_argument("--out", default=None, help="folder for the two run folders (default: a temporary folder)")
    p.add_argument("extra", nargs="*", help="extra mammo train arguments (after --)")
    args = p.parse_args(argv)
    if not Path(args.data).exists():
        print(f"data not found: {args.data}", file=sys.stderr)
        return 2
    if args.only == "warm" and not args.cache_dir:
        p.error("--only warm needs --cache-dir: a warm run reads the features a cold run left there")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="mammo-bench-runs-"))
    if args.cache_dir:
        return _bench(args, Path(args.cache_dir), out)
    with tempfile.TemporaryDirectory(prefix="mammo-bench-cache-") as cache:  # ~300 MB of features: not left behind
        return _bench(args, Path(cache), out)


def _bench(args, cache: Path, out: Path) -> int:
    env = {**os.environ, "MAMMO_CACHE_DIR": str(cache)}
    env.setdefault("KERAS_HOME", str(Path.home() / ".keras"))
    results = {}
    for phase in ("cold", "warm"):
        if args.only not in (phase, "both"):
            continue
        if phase == "cold" and any(cache.iterdir()):
            print(f"warning: {cache} is not empty; the 'cold' run is not cold", file=sys.stderr)
        cmd = [sys.executable, "-m", "mammo.cli", "train", args.data, "--quiet", "--out", str(out / phase), *args.extra]
        print(f"{phase}: {' '.join(cmd)}  (MAMMO_CACHE_DIR={cache})", file=sys.stderr, flush=True)
        results[phase] = run_measured(cmd, env)
    target = {"cold": 20 * 60, "warm": 3 * 60}
    print(
        f"{'phase':6} {'wall':>10} {'target':>8} {'wall/target':>11} {'peak RSS (tree)':>16} {'peak RSS (1 proc)':>18}"
    )
    for phase, r in results.items():
        ok = "ok" if r["wall_s"] <= target[phase] else "MISSED"
        print(
            f"{phase:6} {r['wall_s'] / 60:8.1f} min {target[phase] / 60:5.0f} min {r['wall_s'] / target[phase]:11.2f} "
            f"{r['peak_tree_rss'] / 2**30:13.2f} GB {r['peak_single_rss'] / 2**30:15.2f} GB  {ok}"
        )
    if "cold" in results and "warm" in results:
        print(f"warm / cold wall time: {results['warm']['wall_s'] / results['cold']['wall_s']:.2f}")
    for phase in results:  # where the time went (the run's own phase timing, metrics.json)
        metrics = out / phase / "metrics.json"
        if metrics.is_file():
            timing = json.loads(metrics.read_text()).get("timing", {})
            print(f"{phase} phases: " + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in timing.items()))
    print(f"run folders (reports, metrics.json): {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
