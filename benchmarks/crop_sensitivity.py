"""Crop sensitivity: how far do a saved model's answers move when the breast's crop moves by a pixel?

    python benchmarks/crop_sensitivity.py runs/rsna/model.joblib --images rsna:60 [--out sensitivity.json]

The invariance benchmark (``bench_invariance.py``) shows what a copy on another canvas does;
this one isolates the crop's geometry. For each image the breast is found once, and the
same source pixels and mask are resampled over a slightly different box: one source pixel
off the right, the bottom or the top side, the whole box shifted by half a pixel, or the
output one pixel smaller. Each row gives the share of density grades unchanged and the
median / 90th percentile change of P(malignant) against the image's own crop, first with
every feature block computed on the moved crop, then with one block moved and the others
kept (which block makes the model sensitive), and each block's median change relative to
its spread between images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from _shared import add_sample_arguments, markdown_table, print_results, sample_sets

#: The moves of the crop's box (row0, row1, col0, col1) in source pixels, and of its size;
#: "shift" moves the whole box as crop_breast(shift=0.5) does (the other way at the image's edge).
MOVES = {
    "own crop, resampled": ((0, 0, 0, 0), 0),
    "1 px off the right": ((0, 0, 0, -1), 0),
    "1 px off the bottom": ((0, -1, 0, 0), 0),
    "1 px off the top": ((1, 0, 0, 0), 0),
    "shifted by half a pixel": ("shift", 0),
    "output 1 px smaller": ((0, 0, 0, 0), -1),
}


def _moved_crops(path, size: int) -> dict:
    """The image's crop (crop_breast) and, per move, the same pixels and mask over the moved box."""
    from mammo.features.io import read_scan
    from mammo.features.region import (
        Mammogram,
        _output_shape,
        _resize_box,
        _sample_mask,
        _segment,
        _shifted,
        crop_breast,
    )

    scan = read_scan(path)
    source = np.asarray(scan.pixels, dtype=np.float32)
    _, pixels, seg = _segment(scan, source, flip=True, polarity_known=scan.polarity_known, fix_polarity=True)
    if seg.inverted:
        pixels = 1.0 - pixels
    r0, r1, c0, c1 = seg.bbox
    out = {"crop_breast": crop_breast(scan, size=size)}
    for name, (delta, grow) in MOVES.items():
        box = _shifted(seg.bbox, 0.5, pixels.shape) if delta == "shift" else tuple(np.add(seg.bbox, delta))
        shape = _output_shape((r1 - r0, c1 - c0), size + grow)
        crop = _resize_box(pixels, box, shape)
        mask = _sample_mask(seg, box, shape)
        crop[~mask] = 0.0
        half = mask.shape[1] // 2
        if mask[:, mask.shape[1] - half :].sum() > mask[:, :half].sum():  # chest wall left, as crop_breast
            crop, mask = crop[:, ::-1], mask[:, ::-1]
        out[name] = Mammogram(np.ascontiguousarray(crop), np.ascontiguousarray(mask), source_shape=source.shape)
    return out


def evaluate(model, images: list[Path]) -> dict:
    """Per move: unchanged grades and |delta P(malignant)| with all blocks and with each block moved."""
    from sklearn.pipeline import Pipeline

    from mammo.classifiers.pipelines import split_pipeline

    steps = dict(next(iter(model.pipelines.values())).steps)  # the tasks share the steps before the features
    size = steps["crop"].size
    own = {
        task: [name for name, _ in dict(pipe.steps)["features"].transformer_list]
        for task, pipe in model.pipelines.items()
    }
    union = {
        name: tr for pipe in model.pipelines.values() for name, tr in dict(pipe.steps)["features"].transformer_list
    }
    names = list(union)
    tails = {task: Pipeline(split_pipeline(pipe)[1]) for task, pipe in model.pipelines.items()}
    crops: dict[str, list] = {}
    for k, path in enumerate(images, 1):
        for name, crop in _moved_crops(path, size).items():
            crops.setdefault(name, []).append(crop)
        print(f"\r{k}/{len(images)} images", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    def blocks(mams):
        enhanced = steps["enhance"].transform(mams)
        return {name: np.asarray(tr.transform(enhanced)) for name, tr in union.items()}

    def answers(feats):
        out = {}
        for task, tail in tails.items():
            proba = tail.predict_proba(np.hstack([feats[name] for name in own[task]]))
            out[task] = model.labels(task, proba) if task == "density" else proba[:, 1]
        return out

    def compare(ref, got):
        row = {}
        if "density" in ref:
            row["grades_unchanged"] = float(np.mean(ref["density"] == got["density"]))
        if "tumour" in ref:
            d = np.abs(ref["tumour"] - got["tumour"])
            row["dp_median"], row["dp_p90"] = float(np.median(d)), float(np.quantile(d, 0.9))
        return row

    ref_feats = blocks(crops["own crop, resampled"])
    ref = answers(ref_feats)
    spread = {n: np.linalg.norm(f - f.mean(axis=0), axis=1) + 1e-12 for n, f in ref_feats.items()}
    table = {"crop_breast": {"all blocks": compare(ref, answers(blocks(crops["crop_breast"])))}}
    for move in list(MOVES)[1:]:
        feats = blocks(crops[move])
        rows = {"all blocks": compare(ref, answers(feats))}
        for n in names:
            rows[f"only {n}"] = compare(ref, answers({**ref_feats, n: feats[n]}))
            rows[f"only {n}"]["relative_change"] = float(
                np.median(np.linalg.norm(feats[n] - ref_feats[n], axis=1) / spread[n])
            )
        table[move] = rows
    return table


def markdown(table: dict) -> str:
    def f(row, key, pct=False):
        v = row.get(key)
        return "" if v is None else (f"{v:.0%}" if pct else f"{v:.4f}")

    columns = ["move", "blocks moved", "grades unchanged", "median change of P(malignant)", "90th pct"]
    rows = [
        [move, which, f(row, "grades_unchanged", True), f(row, "dp_median"), f(row, "dp_p90")]
        + [f(row, "relative_change")]
        for move, moved in table.items()
        for which, row in moved.items()
    ]
    return markdown_table([*columns, "block's change / spread"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a saved model (mammo train's model.joblib)")
    add_sample_arguments(parser, ["rsna:60"])
    args = parser.parse_args(argv)
    from mammo.classifiers import load_model

    images = sample_sets(args.images, args.seed, "crop_sensitivity")
    table = evaluate(load_model(args.model), images)
    print_results(images, args.images, args.seed, markdown(table), table, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
