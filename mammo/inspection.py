"""``mammo inspect``: contact sheets of how the breast region was found, before trusting any number.

For every image: the original, the original with the breast outline drawn on it, and the
crop the features are computed on, with the polarity decision and the input-quality
gate's verdict. Sheets go to ``OUT/sheet-001.png``, ...; ``OUT/segmentation.csv`` has one
row per image (verdict, reason, crop box, the gate's measurements). No model is needed.
The exit status is 0 when every image was read and accepted, 1 otherwise, 2 when the run
cannot start (bad arguments, no images, an output folder that cannot be written).
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .conventions import image_command_parser, images_for_command
from .storage import check_output_dir

__all__ = ["Inspection", "inspect_image", "contact_sheet", "main"]

#: Gate measurements written to segmentation.csv, in this order.
STAT_COLUMNS = (
    "area_fraction",
    "mask_fraction",
    "local_solidity",
    "local_convexity",
    "local_straight_edge",
    "local_tissue_texture",
    "artefact_fraction",
    "chroma",
    "grey_range",
)
OUTLINE = (0, 220, 255)
REFUSED = (235, 60, 40)


@dataclass
class Inspection:
    """What :func:`inspect_image` found for one file (``error`` set when it could not be read)."""

    file: str
    tiles: list | None = None
    ok: bool = False
    reason: str | None = None
    row: dict | None = None
    error: str | None = None


def _grey(arr: np.ndarray, side: int) -> Image.Image:
    pil = Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8))
    scale = side / max(pil.size)
    return pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.Resampling.BILINEAR)


def inspect_image(path: str, side: int = 256) -> Inspection:
    """Read, segment and judge one image; tiles (original, outline, crop) of at most ``side`` pixels."""
    from .features.io import read_scan
    from .features.quality import INPUT_ERRORS, assess
    from .features.region import crop_breast

    try:
        scan = read_scan(path)
        m = crop_breast(scan, size=side)
    except INPUT_ERRORS as exc:
        return Inspection(path, error=f"{type(exc).__name__}: {exc}")
    report = assess(m)
    original = _grey(scan.pixels, side)
    drawn = original.convert("RGB")
    scale = drawn.width / scan.shape[1]
    draw = ImageDraw.Draw(drawn)
    for contour in m.outline():
        points = [(float(c) * scale, float(r) * scale) for r, c in contour]
        if len(points) > 1:
            draw.line(points + points[:1], fill=OUTLINE if report.ok else REFUSED, width=2)
    r0, r1, c0, c1 = m.bbox
    draw.rectangle([c0 * scale, r0 * scale, c1 * scale - 1, r1 * scale - 1], outline=(255, 196, 0), width=1)
    seg = m.segmentation
    row = {
        "file": path,
        "accepted": report.ok,
        "reason": report.reason or "",
        "error": "",
        "polarity": seg.polarity,
        "inverted": m.inverted,
        "flipped": m.flipped,
        "bbox": " ".join(map(str, m.bbox)),
        **{k: _fmt(report.stats.get(k)) for k in STAT_COLUMNS},
    }
    return Inspection(path, [original, drawn, _grey(m.pixels, side)], report.ok, report.reason, row)


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _caption(item: Inspection) -> tuple[str, tuple]:
    name = Path(item.file).name
    if item.error:
        return f"{name}: unreadable", REFUSED
    row = item.row
    how = (
        "grey levels from the DICOM header"
        if row["polarity"] == "header"
        else "white background undone"
        if row["inverted"]
        else "dark background"
    )
    verdict = "accepted" if item.ok else f"REFUSED: {item.reason}"
    return f"{name} | {how}{', mirrored' if row['flipped'] else ''} | {verdict}", (0, 0, 0) if item.ok else REFUSED


def contact_sheet(items: list[Inspection], side: int = 256) -> Image.Image:
    """One row per image: original | outline | crop, with a caption line above."""
    caption_h, pad = 16, 6
    row_h = side + caption_h + pad
    sheet = Image.new("RGB", (3 * side + 4 * pad, len(items) * row_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, item in enumerate(items):
        y = pad + i * row_h
        text, colour = _caption(item)
        draw.text((pad, y), text[:110], fill=colour)
        if item.tiles:
            for j, tile in enumerate(item.tiles):
                sheet.paste(tile, (pad + j * (side + pad), y + caption_h))
        else:
            draw.text((pad, y + caption_h + side // 2), item.error[:110], fill=REFUSED)
    return sheet


def build_parser() -> argparse.ArgumentParser:
    """The ``mammo inspect`` argument parser."""
    parser = image_command_parser(
        "mammo inspect", __doc__, "mammo inspect scans/ --out inspect/   (then open inspect/sheet-001.png)"
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the sheets and segmentation.csv")
    parser.add_argument("--per-sheet", type=int, default=12, help="images per sheet (default: 12)")
    parser.add_argument("--size", type=int, default=256, help="side of each picture in pixels (default: 256)")
    parser.add_argument("--jobs", type=int, default=None, help="images processed at once (default: one per core)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``mammo inspect``: 0 when every image was read and accepted, 1 otherwise (see the module doc)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.per_sheet < 1 or not 64 <= args.size <= 1024:
        parser.error("--per-sheet must be >= 1 and --size in [64, 1024]")
    check_output_dir(args.out)
    paths, missing = images_for_command(args.inputs, "mammo inspect")
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    args.out.mkdir(parents=True, exist_ok=True)
    run = Parallel(n_jobs=args.jobs or -1, return_as="generator")(delayed(inspect_image)(p, args.size) for p in paths)
    items = list(tqdm(run, total=len(paths), desc="inspect", unit="img", disable=args.quiet))
    sheets = [items[i : i + args.per_sheet] for i in range(0, len(items), args.per_sheet)]
    for k, chunk in enumerate(sheets, start=1):
        contact_sheet(chunk, args.size).save(args.out / f"sheet-{k:03d}.png")
    _write_csv(items, args.out / "segmentation.csv")
    bad = [i for i in items if not i.ok]
    print(
        f"mammo inspect: {len(items) - len(bad)} accepted, {sum(1 for i in bad if not i.error)} refused, "
        f"{sum(1 for i in bad if i.error)} unreadable; {len(sheets)} sheet(s) and segmentation.csv in {args.out}",
        file=sys.stderr,
    )
    return 1 if bad or missing else 0


def _write_csv(items: list[Inspection], path: Path) -> None:
    fields = ["file", "accepted", "reason", "error", "polarity", "inverted", "flipped", "bbox", *STAT_COLUMNS]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for item in items:
            writer.writerow(item.row or {"file": item.file, "accepted": False, "error": item.error})


if __name__ == "__main__":
    from .cli import run

    raise SystemExit(run("inspect", sys.argv[1:]))
