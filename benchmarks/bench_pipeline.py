"""Throughput of the image -> probability pipeline against a bare Keras MobileNetV2.

Prints, in one run on the same images: images/s of bare Keras ``predict``
(batch 32, 224x224), of each pipeline step and feature block, and of the full
two-task ``predict_proba`` from files; the ratio full time / bare time for the
same number of CNN inputs (target <= 1.25); and the peak RSS of a fresh
process that loads the saved model and streams each ``--rss-images`` count of
files (with its feature worker processes: the sum of each one's peak) (target <= 2.5 GB, and flat: <= 10% growth from the smallest to the
largest count).

    python benchmarks/bench_pipeline.py --data dphi --n 320
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _shared import set_images, write_json


def image_paths(kind: str, n: int) -> list[str]:
    """``n`` random images of the shared set ``kind`` (with repeats when it has fewer)."""
    paths = [str(p) for p in set_images(kind, "bench_pipeline")]
    rng = np.random.default_rng(0)
    return [paths[i] for i in rng.choice(len(paths), size=n, replace=n > len(paths))]


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def timed(fn, *args, repeats: int = 1):
    best, out = float("inf"), None
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, out


def peak_rss_gb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork + exec, so a
    # child would report its parent's peak.
    with open("/proc/self/status") as fh:
        return int(next(line for line in fh if line.startswith("VmHWM")).split()[1]) / 2**20


RSS_SCRIPT = """
import json, sys, time
from mammo.classifiers import load_model
model = load_model(sys.argv[1])
paths = json.loads(open(sys.argv[2]).read())
t = time.perf_counter()
for _ in model.iter_predict_proba(paths):
    pass
dt = time.perf_counter() - t
import psutil
def hwm(pid):
    return int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM")][0].split()[1])
# This process plus its feature workers, each at its own peak: an upper bound.
total = hwm("self") + sum(hwm(c.pid) for c in psutil.Process().children(recursive=True))
print(json.dumps({"peak_rss_gb": total / 2**20, "img_s": len(paths) / dt}))
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=["dphi", "rsna", "mias"], default="dphi", help="image source (default: dphi)")
    parser.add_argument("--n", type=int, default=320, help="images per timing (default: 320)")
    parser.add_argument(
        "--feature-set", default="combined", help="feature set of the full pipeline (default: combined)"
    )
    parser.add_argument("--model", default="xgboost", help="classifier of the full pipeline (default: xgboost)")
    parser.add_argument("--texture-size", type=int, default=None, help="working resolution (default: the pipeline's)")
    parser.add_argument(
        "--rss-images",
        type=int,
        nargs="*",
        default=[500, 1000],
        metavar="N",
        help="image counts for the peak-RSS runs, one fresh process each (default: 500 1000; none skips them)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="timings per measurement; the best counts")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    paths = image_paths(args.data, args.n)
    rng = np.random.default_rng(0)
    model = _fitted_model(args, rng)
    figures: dict = {"data": args.data, "n_images": len(paths)}
    figures.update(_full_versus_bare(model, paths, args, rng))
    figures.update(_step_rates(model, paths, args.repeats))
    if args.rss_images:
        figures.update(_rss_runs(model, args.data, args.rss_images))
    figures["peak_rss_gb_this_process"] = peak_rss_gb()
    _print_figures(figures, args.rss_images)
    write_json(args.json, figures, indent=2)
    return 0


def _fitted_model(args, rng: np.random.Generator):
    """The two-task pipeline measured, fitted on 48 images with random labels (speed does not need good ones)."""
    from mammo.classifiers import MammogramModel, make_task_pipeline

    kw = {} if args.texture_size is None else {"texture_size": args.texture_size}
    model = MammogramModel(
        {t: make_task_pipeline(t, args.feature_set, args.model, **kw) for t in ("density", "tumour")}
    )
    return model.fit(image_paths(args.data, 48), density=rng.integers(1, 5, 48), tumour=np.arange(48) % 2)


def _full_versus_bare(model, paths: list[str], args, rng: np.random.Generator) -> dict:
    """Images/s of the full ``predict_proba`` and of bare Keras on as many CNN inputs, and their ratio."""
    import keras

    from mammo.features import CNNEmbedding

    n = len(paths)
    cnn_blocks = [
        b for _, b in model.pipelines["density"].named_steps["features"].transformer_list if isinstance(b, CNNEmbedding)
    ]
    cnn_inputs = n * (2 if cnn_blocks and cnn_blocks[0].flip_tta else 1) if cnn_blocks else n
    bare = keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), include_top=False, pooling="avg", weights="imagenet"
    )
    x = rng.uniform(-1, 1, size=(cnn_inputs, 224, 224, 3)).astype(np.float32)
    bare.predict(x[:32], batch_size=32, verbose=0)
    model.predict_proba(paths[:32])  # warm-up
    t_bare, t_full = float("inf"), float("inf")
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        t_bare = min(t_bare, timed(lambda: bare.predict(x, batch_size=32, verbose=0))[0])
        t_full = min(t_full, timed(model.predict_proba, list(paths))[0])
    return {
        "cnn_inputs": cnn_inputs,
        "pipeline": f"{args.feature_set}+{args.model}",
        "bare_keras_predict_img_s": rate(cnn_inputs, t_bare),
        "full_predict_proba_img_s": rate(n, t_full),
        "ratio_full_over_bare": t_full / t_bare,
    }


def _step_rates(model, paths: list[str], repeats: int) -> dict:
    """Per-step throughput, single-threaded, each step on the previous step's output."""
    from mammo.features import CNNEmbedding, GLCMFeatures, LBPFeatures

    n = len(paths)
    steps = model.pipelines["density"].named_steps
    figures = {}
    t, grey = timed(steps["read"].transform, paths)
    figures["step_read_img_s"] = rate(n, t)
    t, crops = timed(steps["crop"].transform, grey)
    figures["step_crop_img_s"] = rate(n, t)
    t, enhanced = timed(steps["enhance"].transform, crops)
    figures["step_enhance_img_s"] = rate(n, t)
    for name, block in [("glcm", GLCMFeatures()), ("lbp", LBPFeatures())]:
        block.fit(enhanced[:1])
        figures[f"block_{name}_img_s"] = rate(n, timed(block.transform, enhanced)[0])
    for backend in ("onnx", "keras"):
        block = CNNEmbedding(backend=backend).fit(enhanced[:1])
        block.transform(enhanced[:32])
        figures[f"block_cnn_{backend}_img_s"] = rate(n, timed(block.transform, enhanced, repeats=repeats)[0])
    return figures


def _rss_runs(model, data: str, counts: list[int]) -> dict:
    """A fresh process per count, as a user's script would run: load the saved model,
    stream predict_proba over the files, report its own peak RSS and speed."""
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = model.save(Path(tmp) / "bench.joblib")
        for count in sorted(set(counts)):
            listing = Path(tmp) / f"paths_{count}.json"
            listing.write_text(json.dumps(image_paths(data, count)))
            out = subprocess.run(
                [sys.executable, "-c", RSS_SCRIPT, str(path), str(listing)], capture_output=True, text=True, check=True
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            figures[f"peak_rss_gb_{count}_images"] = result["peak_rss_gb"]
            figures[f"predict_img_s_{count}_images"] = result["img_s"]
    return figures


def _print_figures(figures: dict, rss_counts: list[int]) -> None:
    """Every figure, then each target and whether it is met."""
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:.3f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    print(f"target: ratio_full_over_bare <= 1.25 -> {'MET' if figures['ratio_full_over_bare'] <= 1.25 else 'NOT MET'}")
    rss = [v for k, v in figures.items() if k.startswith("peak_rss_gb_") and k.endswith("_images")]
    if rss:
        print(f"target: peak RSS of a predicting process <= 2.5 GB -> {'MET' if max(rss) <= 2.5 else 'NOT MET'}")
        growth = rss[-1] / rss[0] - 1
        print(
            f"peak RSS growth from {min(rss_counts)} to {max(rss_counts)} images: {growth:+.1%}"
            f" (target <= 10%: {'MET' if growth <= 0.10 else 'NOT MET'})"
        )
    print(
        f"full pipeline / bare CNN images per second: {1 / figures['ratio_full_over_bare']:.2f} (issue 5 target >= 1.0)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
