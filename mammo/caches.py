"""``mammo cache``: what the on-disk caches hold, and removing what no version reads any more.

Everything mammo derives from images lives under one root, ``$MAMMO_CACHE_DIR`` or
``~/.cache/mammo``:

* ``features/<block>-<hash>/``: feature blocks per image (:mod:`mammo.featcache`),
  with a ``chain.json`` of the settings that made them;
* ``<signature version>/``: duplicate-grouping signatures per image (:mod:`mammo.grouping`);
* ``groups/``: final duplicate groups per list of images;
* ``onnx/``: MobileNetV2 converted for ONNX Runtime (:mod:`mammo.features.cnn`).

The cache keys carry a version (the registry in :mod:`mammo.storage`), so an upgrade
never reads stale entries, but it leaves them on disk (a signature version is over
100 MB for DPhi). ``--prune`` removes exactly those entries no current version can
read, plus temporary files of interrupted writes; feature blocks of other settings
stay (they are valid).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .storage import SIGNATURE_PREFIX, VERSIONS, cache_root, jsonable

__all__ = ["CacheEntry", "main", "prune", "scan"]

_SIGNATURE_DIR = re.compile(rf"^{re.escape(SIGNATURE_PREFIX)}\d+$")
_TMP_AGE_S = 3600


@dataclass
class CacheEntry:
    """One cache folder (or the group results): where, what, how big, and whether it is read."""

    area: str
    path: Path
    files: int
    bytes: int
    stale: bool
    what: str = ""


def _usage(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return len(files), sum(p.stat().st_size for p in files)


def _defaults(qualname: str) -> dict[str, Any] | None:
    """The constructor defaults of ``pkg.mod.Class`` as JSON values, or None if it cannot be imported."""
    module, _, name = qualname.rpartition(".")
    try:
        params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except (ValueError, TypeError, ImportError, AttributeError):
        return None
    return {k: jsonable(p.default) for k, p in params.items() if p.default is not inspect.Parameter.empty}


def _describe_step(step: dict) -> str:
    """A ``{"class", "params"}`` record as ``Class(params that differ from the defaults)``."""
    qualname, params = str(step.get("class", "?")), dict(step.get("params") or {})
    defaults = _defaults(qualname) or {}  # an old or foreign class: show everything recorded
    changed = ", ".join(f"{k}={v!r}" for k, v in params.items() if k not in defaults or defaults[k] != v)
    return f"{qualname.rsplit('.', 1)[-1]}({changed})"


def _feature_summary(d: Path) -> tuple[bool, str]:
    """(stale, short description) of a feature block folder from its chain.json."""
    try:
        data = json.loads((d / "chain.json").read_text())
        chain = data["chain"]
    except (OSError, ValueError, KeyError, TypeError):
        return True, "no readable chain.json"
    if isinstance(data.get("format"), int) and data["format"] >= 2:
        stale = data.get("version") != VERSIONS["features"]
        return stale, " > ".join(_describe_step(step) for step in chain)
    # format 1 (before structured JSON): a version line, then one step_key text per
    # step; the folder key is unchanged, so the features are still read
    if not chain or not isinstance(chain[0], str):
        return True, "no readable chain.json"
    stale = chain[0] != f"mammo-featcache-v{VERSIONS['features']}"
    names = " > ".join(str(line).split("[", 1)[0].rsplit(".", 1)[-1] for line in chain[1:])
    return stale, f"{names} (old chain.json, settings shown after the next run that uses it)"


def _group_result_stale(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("version") != VERSIONS["groups"]
    except (OSError, ValueError, AttributeError):
        return True


def scan(root: str | Path | None = None) -> list[CacheEntry]:
    """Every cache entry under ``root`` (default: ``$MAMMO_CACHE_DIR`` or ``~/.cache/mammo``)."""
    root = Path(root) if root is not None else cache_root()
    out: list[CacheEntry] = []
    if not root.is_dir():
        return out
    features = root / "features"
    if features.is_dir():
        for d in sorted(p for p in features.iterdir() if p.is_dir()):
            stale, what = _feature_summary(d)
            out.append(CacheEntry("features", d, *_usage(d), stale=stale, what=what))
    for d in sorted(p for p in root.iterdir() if p.is_dir() and _SIGNATURE_DIR.match(p.name)):
        current = d.name == VERSIONS["signatures"]
        out.append(
            CacheEntry(
                "signatures",
                d,
                *_usage(d),
                stale=not current,
                what="duplicate-grouping signatures" + ("" if current else " of an older version"),
            )
        )
    groups = root / "groups"
    if groups.is_dir():
        for f in sorted(groups.glob("*.json")):
            out.append(CacheEntry("groups", f, *_usage(f), stale=_group_result_stale(f), what="duplicate groups"))
    onnx = root / "onnx"
    if onnx.is_dir():
        for f in sorted(onnx.glob("*.onnx")):
            out.append(CacheEntry("onnx", f, *_usage(f), stale=False, what="MobileNetV2 for ONNX Runtime"))
    inside_stale = [e.path for e in out if e.stale and e.path.is_dir()]
    for f in sorted(root.rglob("*.tmp*")):
        # an hour old: younger ones may belong to a run writing right now
        if (
            f.is_file()
            and ".tmp" in f.suffixes
            and time.time() - f.stat().st_mtime > _TMP_AGE_S
            and not any(d in f.parents for d in inside_stale)
        ):
            out.append(CacheEntry("temporary", f, *_usage(f), stale=True, what="left by an interrupted write"))
    return out


def prune(root: str | Path | None = None, *, dry_run: bool = False) -> list[CacheEntry]:
    """Remove the stale entries of :func:`scan` (none with ``dry_run``); returns them."""
    stale = [e for e in scan(root) if e.stale]
    if not dry_run:
        for e in stale:
            if e.path.is_dir():
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                e.path.unlink(missing_ok=True)
    return stale


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


DESCRIPTION = (
    "Show what mammo's on-disk caches hold (feature blocks and the settings that made them, "
    "duplicate-grouping signatures and groups, ONNX models) and remove entries that no current version "
    "reads."
)
EPILOG = """\
Examples:
  mammo cache                # list the entries, their sizes, and which are stale
  mammo cache --prune        # remove the stale ones
  mammo cache --clear        # remove the whole cache (everything is recomputed on the next run)"""


def build_parser() -> argparse.ArgumentParser:
    """The ``mammo cache`` argument parser."""
    p = argparse.ArgumentParser(
        prog="mammo cache", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="cache root (default $MAMMO_CACHE_DIR, else the checkout's .cache/mammo, else ~/.cache/mammo)",
    )
    action = p.add_mutually_exclusive_group()
    action.add_argument(
        "--prune",
        action="store_true",
        help="remove stale entries: older signature versions, group results or feature blocks of an "
        "older cache version, temporary files of interrupted writes",
    )
    action.add_argument("--clear", action="store_true", help="remove everything under the cache root")
    p.add_argument("--dry-run", action="store_true", help="with --prune or --clear: only say what would be removed")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``mammo cache``: list, prune or clear the caches; 0 unless the arguments are bad."""
    args = build_parser().parse_args(argv)
    root = args.root if args.root is not None else cache_root()
    if not root.is_dir():
        print(f"{root}: no cache yet")
        return 0
    entries = scan(root)
    if args.clear:
        files, total = _usage(root)
        verb = "would remove" if args.dry_run else "removed"
        if not args.dry_run:
            shutil.rmtree(root)
        print(f"{verb} {root} ({files} files, {_size(total)})")
        return 0
    if args.prune:
        gone = prune(root, dry_run=args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        for e in gone:
            print(f"{verb} {e.path} ({_size(e.bytes)}, {e.what})")
        print(f"{verb} {len(gone)} stale entries, {_size(sum(e.bytes for e in gone))}")
        return 0
    print(f"cache root: {root}")
    for e in entries:
        flag = "STALE " if e.stale else ""
        print(f"  {flag}{e.area:10} {_size(e.bytes):>9} {e.files:>7} files  {e.path.name}  {e.what}")
    stale = [e for e in entries if e.stale]
    print(
        f"total {_size(sum(e.bytes for e in entries))}; stale {_size(sum(e.bytes for e in stale))} in "
        f"{len(stale)} entries ('mammo cache --prune' removes them)"
    )
    return 0


if __name__ == "__main__":
    from .cli import run

    sys.exit(run("cache", sys.argv[1:]))
