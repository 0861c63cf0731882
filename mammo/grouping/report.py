"""Stage 4: what a grouping says, for people: counts and purity, a contact sheet, split leaks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .signature import read_grey, to_uint8

__all__ = ["audit_split", "contact_sheet", "group_report"]


def group_report(groups: Sequence[Any], labels: Sequence[Any] | None = None) -> dict[str, Any]:
    """Summarise a grouping: number of groups, size distribution and label purity.

    Parameters
    ----------
    groups : sequence
        One group id per image.
    labels : sequence, optional
        One label per image. Copies of one original share its label, so a group holding
        several labels is a merge of two originals (or, with per-patient labels, true
        multi-view images of one patient).

    Returns
    -------
    dict (JSON-serialisable)
        ``n_images``, ``n_groups``, ``size`` (min, median, mean, max), ``size_counts``
        ({size: number of groups}), ``n_singletons``; with labels also ``n_impure``,
        ``images_in_impure``, ``minority_images`` (images not carrying their group's
        majority label) and ``impure_groups`` (id, size, label counts).
    """
    g = np.asarray([str(x) for x in groups], dtype=object)
    ids, inv, sizes = np.unique(g, return_inverse=True, return_counts=True)
    sc = pd.Series(sizes).value_counts().sort_index()
    out: dict[str, Any] = {
        "n_images": int(len(g)),
        "n_groups": int(len(ids)),
        "size": {
            "min": int(sizes.min()) if len(sizes) else 0,
            "median": float(np.median(sizes)) if len(sizes) else 0.0,
            "mean": float(sizes.mean()) if len(sizes) else 0.0,
            "max": int(sizes.max()) if len(sizes) else 0,
        },
        "size_counts": {str(int(k)): int(v) for k, v in sc.items()},
        "n_singletons": int((sizes == 1).sum()),
    }
    if labels is not None:
        lab = np.asarray([str(x) for x in labels], dtype=object)
        if len(lab) != len(g):
            raise ValueError(f"{len(lab)} labels for {len(g)} images")
        df = pd.DataFrame({"g": g, "label": lab})
        impure = []
        minority = 0
        for gid, sub in df.groupby("g", sort=True):
            counts = sub["label"].value_counts()
            if len(counts) > 1:
                impure.append(
                    {"group": str(gid), "size": int(len(sub)), "labels": {str(k): int(v) for k, v in counts.items()}}
                )
                minority += int(len(sub) - counts.iloc[0])
        out.update(
            {
                "n_impure": len(impure),
                "images_in_impure": int(sum(d["size"] for d in impure)),
                "minority_images": minority,
                "impure_groups": impure,
            }
        )
    return out


def contact_sheet(
    paths: Sequence[Any],
    groups: Sequence[Any],
    out_png: str | os.PathLike,
    max_groups: int = 12,
    per_group: int = 10,
    thumb: int = 96,
    which: Sequence[Any] | None = None,
    seed: int = 0,
) -> None:
    """Write a PNG grid with one row per group (up to ``per_group`` random members).

    Parameters
    ----------
    paths : sequence of paths or 2-D arrays
    groups : sequence
        Group id per image.
    out_png : path
    max_groups : int
        Rows; the groups are drawn at random unless ``which`` lists them.
    per_group : int
        Thumbnails per row; the row title gives the group id and its size.
    thumb : int
        Thumbnail side in pixels.
    which : sequence, optional
        Group ids to show, in this order.
    seed : int
        Seed of the random choice of groups and members.
    """
    from PIL import Image, ImageDraw

    g = np.asarray([str(x) for x in groups], dtype=object)
    rng = np.random.default_rng(seed)
    ids = list(dict.fromkeys(g))
    if which is not None:
        chosen = [str(w) for w in which][:max_groups]
    else:
        chosen = [ids[i] for i in sorted(rng.choice(len(ids), size=min(max_groups, len(ids)), replace=False))]
    label_w = 110
    sheet = Image.new("L", (label_w + per_group * (thumb + 2), max(1, len(chosen)) * (thumb + 2)), 40)
    draw = ImageDraw.Draw(sheet)
    for r, gid in enumerate(chosen):
        members = np.flatnonzero(g == gid)
        draw.text((4, r * (thumb + 2) + 4), f"group {gid}\n{len(members)} images", fill=255)
        if len(members) > per_group:
            members = np.sort(rng.choice(members, size=per_group, replace=False))
        for c, i in enumerate(members):
            t = Image.fromarray(to_uint8(read_grey(paths[i])))
            t.thumbnail((thumb, thumb))
            sheet.paste(t, (label_w + c * (thumb + 2), r * (thumb + 2)))
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)


def audit_split(groups: Sequence[Any], split: Sequence[Any], names: Sequence[str] | None = None) -> pd.DataFrame:
    """Groups whose images sit on more than one side of a split (leakage).

    Parameters
    ----------
    groups : sequence
        Group id per image.
    split : sequence
        Side per image (e.g. "train"/"test", or a fold number).
    names : sequence of str, optional
        Image names to list per leaking group.

    Returns
    -------
    DataFrame
        One row per leaking group: ``group``, ``size``, ``sides`` (side -> count, as
        text) and ``images`` (up to 10 names); empty when the split is clean.
    """
    g = np.asarray([str(x) for x in groups], dtype=object)
    s = np.asarray([str(x) for x in split], dtype=object)
    if len(g) != len(s):
        raise ValueError(f"{len(s)} split values for {len(g)} images")
    nm = np.asarray(names if names is not None else np.arange(len(g)).astype(str), dtype=object)
    rows = []
    for gid in dict.fromkeys(g):
        idx = np.flatnonzero(g == gid)
        sides = pd.Series(s[idx]).value_counts()
        if len(sides) > 1:
            rows.append(
                {
                    "group": gid,
                    "size": len(idx),
                    "sides": ", ".join(f"{k}: {v}" for k, v in sides.items()),
                    "images": " ".join(map(str, nm[idx][:10])) + (" ..." if len(idx) > 10 else ""),
                }
            )
    return pd.DataFrame(rows, columns=["group", "size", "sides", "images"])
