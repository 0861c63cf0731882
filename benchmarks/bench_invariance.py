"""Invariance: do predictions survive what other scanners, film archives and encoders do to an image?

    python benchmarks/bench_invariance.py --model rsna=runs/rsna/model.joblib --model dphi=runs/dphi/model.joblib \\
        --images rsna:60 mias:40 dphi:40 [--out invariance.json]

From real images of ../shared/data it builds copies that should not change the answer,
predicts every copy with the full pipeline (from encoded files, as a user's would arrive),
and prints per kind of copy and model: images refused by the input-quality gate, the
share of density grades unchanged against the original's, the median and 90th
percentile of the change of P(malignant), and the share flagged out of distribution.

Kinds: film edges on one to four sides with a burnt-in label and a lead marker (16-bit
PNG, and as a 16-bit RLE DICOM), a 1.8x larger, slightly grey detector, a mirror image,
inverted grey levels, 16-bit TIFF, DICOM MONOCHROME2 and MONOCHROME1 at 12 bits, JPEG
quality 40, half the resolution, and mild pixel noise.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from _shared import add_sample_arguments, markdown_table, print_results, sample_sets


def _png(arr: np.ndarray, bits: int = 8) -> bytes:
    buf = io.BytesIO()
    data = np.round(np.clip(arr, 0, 1) * (2**bits - 1)).astype(np.uint8 if bits == 8 else np.uint16)
    Image.fromarray(data).save(buf, format="PNG")
    return buf.getvalue()


def _dicom(arr: np.ndarray, photometric: str, bits: int, rle: bool = False) -> bytes:
    from pydicom.uid import RLELossless

    from mammo.testing import write_dicom

    stored = arr if photometric == "MONOCHROME2" else 1.0 - arr
    data = np.round(np.clip(stored, 0, 1) * (2**bits - 1)).astype(np.uint16)
    buf = io.BytesIO()
    write_dicom(data, buf, photometric=photometric, bits_stored=bits, compress=RLELossless if rle else None)
    return buf.getvalue()


def _tiff16(arr: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.round(np.clip(arr, 0, 1) * 65535).astype(np.uint16))
    return buf.getvalue()


def _jpeg(arr: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def copies(img: np.ndarray, rng: np.random.Generator) -> dict[str, bytes]:
    """Every kind of copy of one image (grey, dark background, in [0, 1]) as encoded file bytes."""
    from mammo.testing import film_scan, larger_detector

    film, _ = film_scan(img, rng)
    half = np.asarray(Image.fromarray(img.astype(np.float32)).resize((img.shape[1] // 2, img.shape[0] // 2), Image.BOX))
    return {
        "film edges + label + marker": _png(film, 16),
        "film scan as 16-bit RLE DICOM": _dicom(film, "MONOCHROME2", 16, rle=True),
        "larger grey detector (1.8x)": _png(larger_detector(img, factor=1.8, level=0.06)[0], 16),
        "mirrored left-right": _png(img[:, ::-1]),
        "inverted grey levels": _png(1.0 - img),
        "16-bit TIFF": _tiff16(img),
        "DICOM MONOCHROME2, 12-bit": _dicom(img, "MONOCHROME2", 12),
        "DICOM MONOCHROME1, 12-bit": _dicom(img, "MONOCHROME1", 12),
        "JPEG quality 40": _jpeg(img, 40),
        "half resolution": _png(half, 16),
        "pixel noise (sd 1% of range)": _png(np.clip(img + rng.normal(0, 0.01, img.shape), 0, 1), 16),
    }


def _predict(model, sources: list) -> list[dict | None]:
    """Per source: {grade, p, ood} or None when refused or unreadable."""
    out: list[dict | None] = [None] * len(sources)
    for indices, proba, ood, _failures in model.iter_predict(sources, errors="record"):
        grades = model.labels("density", proba["density"]) if indices and "density" in proba else None
        for k, i in enumerate(indices):
            out[i] = {
                "grade": None if grades is None else int(grades[k]),
                "p": float(proba["tumour"][k, 1]) if "tumour" in proba else None,
                "ood": None if ood is None else bool(not ood[1][k]),
            }
    return out


def evaluate(model, images: list[Path], seed: int = 0) -> dict[str, dict]:
    """Per kind: n, refused, unchanged grades, |delta P(malignant)| median / p90, flagged out of distribution."""
    from mammo.features.io import read_scan
    from mammo.features.region import crop_breast

    rng = np.random.default_rng(seed)
    originals = _predict(model, [str(p) for p in images])
    rows: dict[str, list] = {}
    for path, ref in zip(images, originals):
        if ref is None:
            continue
        img = read_scan(path).pixels
        if crop_breast(img).inverted:  # the copies start from a dark background, as they would leave a scanner
            img = 1.0 - img
        kinds = copies(img, rng)
        for kind, pred in zip(kinds, _predict(model, list(kinds.values()))):
            rows.setdefault(kind, []).append((ref, pred))
    table = {"original": _summary([(r, r) for r in originals if r is not None], len(images))}
    table["original"]["refused"] = sum(r is None for r in originals)
    for kind, pairs in rows.items():
        table[kind] = _summary(pairs, len(pairs))
    return table


def _summary(pairs: list, n: int) -> dict:
    done = [(a, b) for a, b in pairs if b is not None]
    grades = [a["grade"] == b["grade"] for a, b in done if a["grade"] is not None]
    dp = np.array([abs(a["p"] - b["p"]) for a, b in done if a["p"] is not None])
    ood = [b["ood"] for _, b in done if b["ood"] is not None]
    return {
        "n": n,
        "refused": n - len(done),
        "grade_unchanged": float(np.mean(grades)) if grades else None,
        "dp_median": float(np.median(dp)) if len(dp) else None,
        "dp_p90": float(np.percentile(dp, 90)) if len(dp) else None,
        "flagged_ood": float(np.mean(ood)) if ood else None,
    }


def markdown(results: dict[str, dict[str, dict]]) -> str:
    def f(v, pct=False):
        return "-" if v is None else f"{100 * v:.0f}%" if pct else f"{v:.3f}"

    columns = ["copy", "model", "images", "refused", "density grade unchanged"]
    columns += ["median abs. change of P(malignant)", "90th pct", "flagged OOD"]
    rows = [
        [kind, name, r["n"], r["refused"], f(r["grade_unchanged"], True), f(r["dp_median"]), f(r["dp_p90"])]
        + [f(r["flagged_ood"], True)]
        for kind in next(iter(results.values()))
        for name, table in results.items()
        for r in [table[kind]]
    ]
    return markdown_table(columns, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", action="append", required=True, metavar="NAME=PATH", help="a saved model (repeatable)"
    )
    add_sample_arguments(parser, ["rsna:60", "mias:40"])
    args = parser.parse_args(argv)
    from mammo.classifiers import load_model

    images = sample_sets(args.images, args.seed, "bench_invariance")
    results = {}
    for spec in args.model:
        name, _, path = spec.partition("=")
        model = load_model(path)
        model.n_jobs = 1  # a few images per call: threads, one process
        print(f"{name}: {len(images)} images x 12 versions ...", file=sys.stderr, flush=True)
        results[name] = evaluate(model, images, args.seed)
    print_results(images, args.images, args.seed, markdown(results), results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
