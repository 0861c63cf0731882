"""``mammo audit``: find augmented copies of the same mammogram in a folder and audit a split for leakage.

:func:`audit` runs :func:`mammo.grouping.find_duplicate_groups` on a user's images and
writes what a person checks: the groups, their sizes (the same plot as the training
report's, :func:`mammo.evaluation.plot_group_sizes`), contact sheets, label purity and
the groups a split puts on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .conventions import IMAGE_SUFFIXES, InputError, NoImagesError, list_images
from .storage import check_output_dir

__all__ = ["audit", "build_parser", "main"]

_LABEL_COLUMNS = ("label", "labels", "class")
_SPLIT_COLUMNS = ("split", "set", "subset", "fold", "partition")


def _key_table(csv: str | os.PathLike, value_cols: Sequence[str], what: str) -> pd.DataFrame:
    if not os.path.isfile(csv):
        raise InputError(f"{csv}: no such {what} CSV file")
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{csv}: cannot read the {what} CSV ({exc})") from exc
    cols = {c.lower(): c for c in df.columns}
    key = next((cols[c] for c in ("path", "filename", "file", "image") if c in cols), None)
    if key is None:
        raise InputError(f"{csv}: the {what} CSV needs a path or filename column; found {list(df.columns)}")
    val = next((cols[c] for c in value_cols if c in cols), None)
    if val is None:
        others = [c for c in df.columns if c != key]
        if len(others) != 1:
            raise InputError(f"{csv}: cannot tell which column is the {what}; name it one of {list(value_cols)}")
        val = others[0]
    return pd.DataFrame({"key": df[key].astype(str), "value": df[val].astype(str)})


def _lookup(paths: Sequence[str], table: pd.DataFrame, base: Path, what: str) -> np.ndarray:
    """Match table rows to image paths by absolute path, path relative to base, or file name."""
    by_key = dict(zip(table["key"], table["value"]))
    out, missing = [], []
    for p in paths:
        pp = Path(p)
        cands = [str(pp), str(pp.relative_to(base)) if pp.is_relative_to(base) else None, pp.name]
        v = next((by_key[c] for c in cands if c is not None and c in by_key), None)
        if v is None:
            missing.append(pp.name)
        out.append(v)
    if missing:
        raise InputError(f"the {what} CSV has no row for {len(missing)} images, e.g. {', '.join(missing[:3])}")
    return np.asarray(out, dtype=object)


def _image_paths(source: Path) -> tuple[Path, list[str]]:
    """(base folder, image paths) of a folder (recursive) or of a CSV listing them."""
    if not source.exists():
        raise NoImagesError(f"no images found: no such file or folder: {source}")
    if source.is_dir():
        base = source.resolve()
        paths = list_images(base)
    else:
        base = source.resolve().parent
        t = _key_table(source, ["label"], "image list")
        paths = [str(Path(k) if os.path.isabs(k) else (base / k).resolve()) for k in t["key"]]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise InputError(f"{source}: {len(missing)} listed images do not exist, e.g. {', '.join(missing[:3])}")
    if not paths:
        raise NoImagesError(f"no images found: no image files ({' '.join(IMAGE_SUFFIXES)}) in {source}")
    return base, paths


def audit(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    labels_csv: str | os.PathLike | None = None,
    split_csv: str | os.PathLike | None = None,
    n_jobs: int = 1,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    n_sheets: int = 3,
    views_from: str | os.PathLike | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Group a user's images by original and check a split for leakage.

    Parameters
    ----------
    source : path
        A folder of images (searched recursively) or a CSV with a ``path`` or
        ``filename`` column (relative to the CSV's folder).
    out_dir : path
        Receives ``groups.csv``, ``group_sizes.png``, ``contact_sheet_N.png``,
        ``report.json`` and, with a split, ``leaks.csv``.
    labels_csv : path, optional
        path/filename + label columns: reports groups that mix labels.
    split_csv : path, optional
        path/filename + a split column (``split``, ``set``, ``subset``, ``fold``, or the
        only other column): reports every group with images on more than one side.
    views_from : path, optional
        With a split: a data set with patient ids, laterality and view (rsna-screening) to
        learn the two views of one breast from; groups on different sides that probably
        show one breast go to ``view_pairs.csv``.
    n_jobs, progress, cache_dir, **kwargs
        Passed to :func:`mammo.grouping.find_duplicate_groups`.

    Returns
    -------
    dict
        The report, as written to ``report.json``; ``n_leaking_groups`` is set when a
        split is given.
    """
    from . import evaluation as ev
    from .grouping import audit_split, contact_sheet, find_duplicate_groups, group_report

    source = Path(source)
    if views_from is not None and split_csv is None:
        raise InputError("--views-from looks for one breast's views across a split: give the split with --split")
    out = check_output_dir(out_dir)
    base, paths = _image_paths(source)
    # the CSVs are checked before the grouping, which takes minutes on a large folder
    labels = split = None
    if labels_csv is not None:
        labels = _lookup(paths, _key_table(labels_csv, _LABEL_COLUMNS, "label"), base, "label")
    if split_csv is not None:
        split = _lookup(paths, _key_table(split_csv, _SPLIT_COLUMNS, "split"), base, "split")
    out.mkdir(parents=True, exist_ok=True)
    groups, details = find_duplicate_groups(
        paths, n_jobs=n_jobs, progress=progress, cache_dir=cache_dir, return_details=True, **kwargs
    )
    rel = [str(Path(p).relative_to(base)) if Path(p).is_relative_to(base) else p for p in paths]
    table = pd.DataFrame({"path": rel, "group": groups})
    if labels is not None:
        table["label"] = labels
    if split is not None:
        table["split"] = split
    table.to_csv(out / "groups.csv", index=False)
    report = group_report(groups, labels)
    report["source"] = str(source)
    report["grouping"] = {k: v for k, v in details.items() if k not in ("edges", "verified", "best_inliers")}
    ev.plot_group_sizes(groups, out / "group_sizes.png")
    for k in range(n_sheets):
        contact_sheet(paths, groups, out / f"contact_sheet_{k + 1}.png", seed=k)
    if split is not None:
        leaks = audit_split(groups, split, rel)
        leaks.to_csv(out / "leaks.csv", index=False)
        report["n_leaking_groups"] = int(len(leaks))
        report["n_leaking_images"] = int(leaks["size"].sum()) if len(leaks) else 0
        if views_from is not None:
            pairs = _view_pairs(paths, rel, groups, split, views_from, n_jobs=n_jobs, progress=progress)
            pairs.to_csv(out / "view_pairs.csv", index=False)
            report["n_probable_view_pairs"] = int(len(pairs))
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _view_pairs(paths, rel, groups, split, views_from, *, n_jobs: int, progress: bool) -> pd.DataFrame:
    """Groups on different sides of the split that probably show one breast (P >= 0.5), most probable first."""
    from .datasets import load_dataset
    from .datasets.views import fit_view_linker, view_descriptors
    from .grouping.views import probable_pairs

    linker = fit_view_linker(load_dataset(views_from), n_jobs=n_jobs, progress=progress)
    desc = {k: np.nan_to_num(v) for k, v in view_descriptors(paths, n_jobs=n_jobs, progress=progress).items()}
    rows = [
        {"path_a": rel[i], "split_a": split[i], "path_b": rel[j], "split_b": split[j], "probability": round(p, 4)}
        for i, j, p in probable_pairs(desc, linker, units=groups, min_proba=0.5)
        if split[i] != split[j]
    ]
    return pd.DataFrame(rows, columns=["path_a", "split_a", "path_b", "split_b", "probability"])


EPILOG = """\
outputs in --out:
  groups.csv            path, group (and label, split when given), one row per image
  group_sizes.png       histogram of images per group
  contact_sheet_N.png   random groups, one row each, to check by eye
  report.json           number of groups, size distribution, label purity, leak counts
  leaks.csv             (with --split) every group with images on more than one side
  view_pairs.csv        (with --split and --views-from) groups on different sides that probably show
                        the two views of one breast (a leak no pixel match finds)

exit status: 0 clean, 1 when a group straddles the split (leakage), 2 on bad input
(one line on stderr says what: no images, a CSV without the needed columns, ...).

examples:
  mammo audit data/train --out audit/
  mammo audit images.csv --labels labels.csv --split split.csv --out audit/

Signatures are cached under $MAMMO_CACHE_DIR (default: the checkout's .cache/mammo, else ~/.cache/mammo), keyed by file
content, so a second run on the same images is fast.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``mammo audit`` argument parser; each option's dest is the :func:`audit` keyword it sets."""
    p = argparse.ArgumentParser(
        prog="mammo audit",
        description="Group images that are augmented copies (rotation, flip, zoom, shift, contrast) of one "
        "original mammogram, and report train/test leakage.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source",
        metavar="IMAGE_FOLDER_OR_CSV",
        help="folder of images (searched recursively) or a CSV with a path or filename column",
    )
    p.add_argument(
        "--labels",
        dest="labels_csv",
        metavar="CSV",
        help="CSV with path/filename and label: groups mixing labels are reported",
    )
    p.add_argument(
        "--split",
        dest="split_csv",
        metavar="CSV",
        help="CSV with path/filename and a split column (split/set/subset/fold, e.g. train/test)",
    )
    p.add_argument("--out", dest="out_dir", metavar="DIR", required=True, help="output folder")
    p.add_argument(
        "--views-from",
        metavar="REFERENCE",
        default=None,
        help="with --split: learn the two views of one breast from REFERENCE (a data set with patient ids, "
        "laterality and view, e.g. rsna-screening) and list groups on different sides that probably show one breast",
    )
    p.add_argument(
        "--threshold", type=int, default=None, help="RANSAC inliers that make two images copies (default 15)"
    )
    p.add_argument(
        "--jobs",
        dest="n_jobs",
        metavar="JOBS",
        type=int,
        default=1,
        help="processes for the image signatures (default 1)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="signature cache (default $MAMMO_CACHE_DIR, else the checkout's .cache/mammo, else ~/.cache/mammo)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """``mammo audit``: 0 clean, 1 when a group straddles the split (see :data:`EPILOG`)."""
    args = build_parser().parse_args(argv)
    rep = audit(**vars(args))
    print(_summary(rep))
    leaking = rep.get("n_leaking_groups")
    if leaking:
        print(
            f"LEAKAGE: {leaking} groups ({rep['n_leaking_images']} images) have copies on more than one side "
            f"of the split; see {args.out_dir}/leaks.csv"
        )
        return 1
    if leaking == 0:
        print("no leakage: every group is on one side of the split")
    views = rep.get("n_probable_view_pairs")
    if views:
        print(f"{views} pairs of groups on different sides probably show one breast; see {args.out_dir}/view_pairs.csv")
    print(f"wrote {args.out_dir}/groups.csv, group_sizes.png, contact sheets and report.json")
    return 0


def _summary(rep: dict[str, Any]) -> str:
    """The groups found, and the label mixing when labels were given, as printed lines."""
    s = rep["size"]
    lines = [
        f"{rep['n_images']} images in {rep['n_groups']} groups "
        f"(size min {s['min']}, median {s['median']:g}, max {s['max']}; {rep['n_singletons']} single images)"
    ]
    if "n_impure" in rep:
        lines.append(
            f"{rep['n_impure']} groups mix labels ({rep['minority_images']} images disagree with their group's majority)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    from .cli import run

    sys.exit(run("audit", sys.argv[1:]))
