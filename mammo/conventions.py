"""Names every layer agrees on: the two tasks and which files are images.

Bottom layer, like :mod:`mammo.storage`: it imports nothing from mammo.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "TASKS", "list_images"]

#: The prediction tasks, in the order reports and models list them.
TASKS = ("density", "tumour")

#: File suffixes (lower case) taken as images when a folder is searched.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pnm", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")


def list_images(folder: str | os.PathLike) -> list[str]:
    """All image files under ``folder`` (recursive, sorted as strings), by suffix."""
    return sorted(str(p) for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
