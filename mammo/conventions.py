"""Names every layer agrees on: the two tasks, which files are images, and input a user can fix.

Bottom layer, like :mod:`mammo.storage`: it imports nothing from mammo.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

__all__ = [
    "IMAGE_SUFFIXES",
    "TASKS",
    "InputError",
    "NoImagesError",
    "find_images",
    "image_command_parser",
    "images_for_command",
    "list_images",
]

#: The prediction tasks, in the order reports and models list them.
TASKS = ("density", "tumour")

#: File suffixes (lower case) taken as images when a folder is searched.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pnm", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")


class InputError(ValueError):
    """Input to a command that the user can fix (a CSV without the needed columns, listed
    images that do not exist, ...): ``mammo`` reports it in one line and exits 2."""


class NoImagesError(InputError):
    """No image file among a command's inputs: missing paths, folders without images."""


def list_images(folder: str | os.PathLike) -> list[str]:
    """All image files under ``folder`` (recursive, sorted as strings), by suffix."""
    return sorted(str(p) for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_images(inputs: list[str]) -> tuple[list[str], list[str]]:
    """Expand files, folders and globs into image paths (sorted, de-duplicated), plus unmatched inputs.

    Folders contribute files with an image suffix; named files are taken as
    they are, whatever their suffix, so that a bad file gets its own error row.
    """
    found: dict[str, None] = {}
    missing = []
    for item in inputs:
        matches = sorted(glob.glob(item, recursive=True)) if glob.has_magic(item) else [item]
        if not matches or not any(os.path.exists(m) for m in matches):
            missing.append(item)
            continue
        for match in matches:
            path = Path(match)
            if path.is_dir():
                for child in sorted(path.rglob("*")):
                    if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
                        found[str(child)] = None
            elif path.is_file():
                found[str(path)] = None
    return list(found), missing


def images_for_command(inputs: list[str], prog: str) -> tuple[list[str], list[str]]:
    """:func:`find_images` for a command line: each unmatched input is reported on stderr as a
    ``prog: ...`` line and the run goes on; no image at all raises :class:`NoImagesError`."""
    paths, missing = find_images(inputs)
    if not paths:
        raise NoImagesError(_nothing_found(inputs, missing))
    for item in missing:
        print(f"{prog}: no such file, folder or match: {item}", file=sys.stderr)
    return paths, missing


def image_command_parser(prog: str, description: str, example: str) -> argparse.ArgumentParser:
    """The argument parser of a command over images (``mammo predict``, ``mammo inspect``):
    the positional ``inputs`` that :func:`images_for_command` reads; the command adds its options."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"example: {example}",
    )
    parser.add_argument("inputs", nargs="+", help="image files, folders (recursive) or glob patterns")
    return parser


def _nothing_found(inputs: list[str], missing: list[str]) -> str:
    def few(items: list[str]) -> str:
        return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")

    parts = [f"no such file, folder or match: {few(missing)}"] if missing else []
    searched = [item for item in inputs if item not in missing]
    if searched:
        parts.append(f"no image files ({' '.join(IMAGE_SUFFIXES)}) in {few(searched)}")
    return "no images found: " + "; ".join(parts)
