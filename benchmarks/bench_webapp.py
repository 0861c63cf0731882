"""Latency and load of the web app's JSON API, from a client on loopback against waitress.

    python benchmarks/bench_webapp.py [--model models/dphi.joblib] [--image path.jpg] [--only exam]

Without --model, a small texture+SVM model is fitted on synthetic images first.
Measures, for one 224x224 image (warm): p50/p95 of POST /api/predict, of the same with
heatmap=1, and 8 concurrent clients x 25 requests (errors, throughput, server RSS growth).
For a four-view exam (the image and three variants as L/R CC/MLO files in one request):
p50/p95 of POST /api/predict against 4 x the single-image p50, and 8 concurrent clients x 25
exam requests (errors, throughput, server RSS growth).
The server runs in this process (a waitress thread), so RSS is this process's.
All traffic goes to 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import requests
from PIL import Image

from mammo.testing import synthetic_mammogram
from mammo.webapp import create_app, make_server
from mammo.webapp.demo import fit_demo_model

DEFAULT_IMAGE = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dphi-sprint31" / "train" / "Image_1.jpg"
)
EXAM_NAMES = ("BENCH_L_CC.png", "BENCH_L_MLO.png", "BENCH_R_CC.png", "BENCH_R_MLO.png")


def run_until_closed(server) -> None:
    """``server.run()`` for a thread; closing the server from another thread can race waitress' select loop."""
    try:
        server.run()
    except (OSError, ValueError):  # "bad file descriptor" after close(): the server is shutting down
        pass


def percentile(xs, q):
    return float(np.percentile(np.asarray(xs) * 1000, q))


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def exam_files(img: Image.Image) -> list[tuple[str, bytes]]:
    """Four views of one exam: the image, its mirror (the other breast) and a tighter crop of each."""
    w, h = img.size
    tight = img.crop((w // 16, h // 16, w - w // 16, h - h // 16)).resize((w, h))
    flip = Image.Transpose.FLIP_LEFT_RIGHT  # the other breast faces the other way
    views = (img, tight, img.transpose(flip), tight.transpose(flip))
    return [(name, png_bytes(v)) for name, v in zip(EXAM_NAMES, views)]


def answered(r: requests.Response, exam: bool) -> bool:
    """A 200 with the predictions: for an exam, every view scored and both breasts combined."""
    if r.status_code != 200:
        return False
    body = r.json()
    if not exam:
        return "tumour" in body
    return len(body.get("views", ())) == len(EXAM_NAMES) and not body["exam"]["refused"] and len(body["breasts"]) == 2


def timed_posts(url: str, files: list[tuple[str, bytes]], n: int, fields: dict | None = None) -> list[float]:
    times = []
    with requests.Session() as s:
        for _ in range(n):
            t0 = time.perf_counter()
            r = s.post(url, files=[("file", f) for f in files], data=fields or {}, timeout=300)
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
            if not answered(r, len(files) > 1):
                raise RuntimeError(f"unexpected answer: {r.text[:300]}")
    return times


def client_run(url: str, files: list[tuple[str, bytes]], n: int) -> tuple[int, list[float]]:
    errors, times = 0, []
    with requests.Session() as s:
        for _ in range(n):
            t0 = time.perf_counter()
            try:
                ok = answered(s.post(url, files=[("file", f) for f in files], timeout=600), len(files) > 1)
            except (requests.RequestException, ValueError):
                ok = False
            times.append(time.perf_counter() - t0)
            errors += not ok
    return errors, times


def concurrent_rounds(url: str, files: list[tuple[str, bytes]], args, label: str) -> int:
    """``args.rounds`` rounds of ``args.clients`` clients x ``args.per_client`` requests; prints each; returns errors."""
    proc = psutil.Process()
    rss = [proc.memory_info().rss]
    errors = 0
    for rnd in range(1, args.rounds + 1):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(lambda _: client_run(url, files, args.per_client), range(args.clients)))
        wall = time.perf_counter() - t0
        rss.append(proc.memory_info().rss)
        errors += sum(e for e, _ in results)
        times = [x for _, ts in results for x in ts]
        total = args.clients * args.per_client
        print(
            f"{label} round {rnd}: {args.clients} clients x {args.per_client} requests: {sum(e for e, _ in results)} errors "
            f"of {total}; {total / wall:.1f} req/s; latency p50 {percentile(times, 50):.0f} ms p95 {percentile(times, 95):.0f} ms; "
            f"server RSS {rss[-2] / 2**20:.0f} -> {rss[-1] / 2**20:.0f} MB ({(rss[-1] - rss[-2]) / 2**20:+.0f} MB)"
        )
    after_first = f"; after the first round: {(rss[-1] - rss[1]) / 2**20:+.0f} MB" if args.rounds > 1 else ""
    print(
        f"{label} RSS growth over all concurrent rounds: {(rss[-1] - rss[0]) / 2**20:+.0f} MB (target <= 100 MB){after_first}"
    )
    return errors


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="saved model; default: fit a small synthetic texture+SVM model")
    ap.add_argument(
        "--image",
        default=str(DEFAULT_IMAGE),
        help="image to send (resized to 224x224); default: a DPhi image, or a synthetic one",
    )
    ap.add_argument("--threads", type=int, default=4, help="waitress threads")
    ap.add_argument(
        "--only",
        choices=("all", "single", "exam"),
        default="all",
        help="what to measure: everything (default), the single image only, or the exam only "
        "(with the single-image p50 it is compared to)",
    )
    ap.add_argument("--n", type=int, default=40, help="sequential requests for p50/p95")
    ap.add_argument("--n-heatmap", type=int, default=5, help="sequential heatmap requests")
    ap.add_argument("--n-exam", type=int, default=20, help="sequential four-view exam requests for p50/p95")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--per-client", type=int, default=25, help="requests per client (single images, and exams)")
    ap.add_argument("--rounds", type=int, default=2, help="concurrent rounds (a leak keeps growing after the first)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    if args.model:
        model = args.model
    else:
        t0 = time.perf_counter()
        model = str(fit_demo_model(Path(tmp.name) / "demo.joblib"))
        print(f"fitted synthetic texture+svm model in {time.perf_counter() - t0:.1f} s")
    if Path(args.image).is_file():
        img = Image.open(args.image).convert("L").resize((224, 224))
        source = args.image
    else:
        img = Image.fromarray(synthetic_mammogram(np.random.default_rng(0), 3, shape=(224, 224), uint8=True))
        source = "synthetic"
    single = [("image.png", png_bytes(img))]

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # 8 clients > threads queue by design
    app = create_app({"MAMMO_MODEL": model})
    server = make_server(app, "127.0.0.1", 0, threads=args.threads)
    thread = threading.Thread(target=run_until_closed, args=(server,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.effective_port}/api/predict"
    try:
        print(
            f"model {Path(model).name}; image {source} as 224x224 PNG ({len(single[0][1])} bytes); waitress {args.threads} threads"
        )
        timed_posts(url, single, 3)  # warm-up
        t = timed_posts(url, single, args.n)
        single_p50 = percentile(t, 50)
        print(
            f"/api/predict             n={args.n:3d}  p50 {single_p50:7.1f} ms  p95 {percentile(t, 95):7.1f} ms  (target p50 <= 300 ms)"
        )
        errors = 0
        if args.only in ("all", "single"):
            t = timed_posts(url, single, args.n_heatmap, {"heatmap": "1"})
            print(
                f"/api/predict?heatmap=1   n={args.n_heatmap:3d}  p50 {percentile(t, 50):7.1f} ms  p95 {percentile(t, 95):7.1f} ms  (target <= 5000 ms)"
            )
            errors += concurrent_rounds(url, single, args, "single image")
        if args.only in ("all", "exam"):
            errors += measure_exam(url, exam_files(img), args, single_p50)
        return 1 if errors else 0
    finally:
        server.close()
        thread.join(5)
        tmp.cleanup()


def measure_exam(url: str, files: list[tuple[str, bytes]], args, single_p50: float) -> int:
    """p50/p95 of a four-view exam request against 4 x the single-image p50, then the concurrent rounds."""
    timed_posts(url, files, 2)  # warm-up
    t = timed_posts(url, files, args.n_exam)
    p50 = percentile(t, 50)
    print(
        f"/api/predict 4-view exam n={args.n_exam:3d}  p50 {p50:7.1f} ms  p95 {percentile(t, 95):7.1f} ms  "
        f"= {p50 / single_p50:.2f} x the single-image p50 (goal <= 4 x)"
    )
    return concurrent_rounds(url, files, args, "4-view exam")


if __name__ == "__main__":
    sys.exit(main())
