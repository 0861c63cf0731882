"""Find augmented copies of the same mammogram in a folder and audit a split for leakage.

Thin command-line wrapper around :func:`mammo.grouping.audit`.
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
outputs in --out:
  groups.csv            path, group (and label, split when given), one row per image
  group_sizes.png       histogram of images per group
  contact_sheet_N.png   random groups, one row each, to check by eye
  report.json           number of groups, size distribution, label purity, leak counts
  leaks.csv             (with --split) every group with images on more than one side

exit status: 0 clean, 1 when a group straddles the split (leakage), 2 on bad input.

examples:
  mammo audit data/train --out audit/
  mammo audit images.csv --labels labels.csv --split split.csv --out audit/

Signatures are cached under $MAMMO_CACHE_DIR (default ~/.cache/mammo), keyed by file
content, so a second run on the same images is fast.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="mammo audit",
        description="Group images that are augmented copies (rotation, flip, zoom, shift, contrast) of one "
        "original mammogram, and report train/test leakage.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="IMAGE_FOLDER_OR_CSV",
                   help="folder of images (searched recursively) or a CSV with a path or filename column")
    p.add_argument("--labels", metavar="CSV", help="CSV with path/filename and label: groups mixing labels are reported")
    p.add_argument("--split", metavar="CSV",
                   help="CSV with path/filename and a split column (split/set/subset/fold, e.g. train/test)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder")
    p.add_argument("--threshold", type=int, default=None,
                   help="RANSAC inliers that make two images copies (default 15)")
    p.add_argument("--jobs", type=int, default=1, help="processes for the image signatures (default 1)")
    p.add_argument("--cache-dir", default=None, help="signature cache (default $MAMMO_CACHE_DIR or ~/.cache/mammo)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = p.parse_args(argv)

    from mammo.grouping import audit

    try:
        rep = audit(a.source, a.out, labels_csv=a.labels, split_csv=a.split, n_jobs=a.jobs,
                    progress=not a.no_progress, cache_dir=a.cache_dir, threshold=a.threshold)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    s = rep["size"]
    print(f"{rep['n_images']} images in {rep['n_groups']} groups "
          f"(size min {s['min']}, median {s['median']:g}, max {s['max']}; {rep['n_singletons']} single images)")
    if "n_impure" in rep:
        print(f"{rep['n_impure']} groups mix labels ({rep['minority_images']} images disagree with their group's majority)")
    if "n_leaking_groups" in rep:
        n = rep["n_leaking_groups"]
        if n:
            print(f"LEAKAGE: {n} groups ({rep['n_leaking_images']} images) have copies on more than one side "
                  f"of the split; see {a.out}/leaks.csv")
            return 1
        print("no leakage: every group is on one side of the split")
    print(f"wrote {a.out}/groups.csv, group_sizes.png, contact sheets and report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
