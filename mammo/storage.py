"""Where derived files live, how they are keyed, hashed and written.

The bottom layer: it imports nothing from mammo, and every module that stores or
checks a file asks here instead of in the feature or model modules.

* :func:`cache_root`: the one folder for everything derived from images.
* The version registry (:data:`VERSIONS`): every on-disk cache's version string.
  A version is part of its cache's keys, so bumping it makes old entries unread
  (``mammo cache --prune`` then removes them).
* :func:`content_sha256` / :func:`file_sha256`: one chunked sha256 for image
  sources, model files and manifests.
* :func:`step_key` / :func:`step_record`: the identity of a stateless
  scikit-learn step, as a key and as structured JSON.
* :func:`atomic_open` / :func:`atomic_write`: a temporary name, then
  ``os.replace``, so concurrent runs sharing a cache never read half a file.
* :func:`check_output_dir`: refuse an output folder that cannot be written before a
  command starts its work (:class:`OutputDirError`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "FEATURES_VERSION",
    "GROUPS_VERSION",
    "SIGNATURE_PREFIX",
    "SIGNATURE_VERSION",
    "VERSIONS",
    "atomic_open",
    "atomic_write",
    "cache_root",
    "check_output_dir",
    "OutputDirError",
    "checkout_cache",
    "export_keras_home",
    "keras_home",
    "content_sha256",
    "file_sha256",
    "json_sha256",
    "jsonable",
    "step_key",
    "step_record",
]

# ----------------------------------------------------------------- versions
#: Feature blocks (:mod:`mammo.featcache`): bump when the layout or the features' meaning changes.
FEATURES_VERSION = "6"
#: Folder-name prefix of the duplicate-grouping signatures; ``mammo cache`` treats
#: every ``<prefix><n>`` folder but the current one as stale.
SIGNATURE_PREFIX = "sift-clahe-v"
#: Grouping signatures per image: bump when ``image_signature`` or its key changes
#: (v4: the key became the shared content sha256 instead of a sha1 of the bytes).
SIGNATURE_VERSION = f"{SIGNATURE_PREFIX}4"
#: Final duplicate groups: bump when anything after the signatures changes
#: (candidates, verification, passes, orphans, details) or their key does
#: (v3: keyed by the v4 signature keys).
GROUPS_VERSION = "dup-groups-v3"
#: Every on-disk cache's version, by the area ``mammo cache`` lists it under.
VERSIONS = {"features": FEATURES_VERSION, "signatures": SIGNATURE_VERSION, "groups": GROUPS_VERSION}

_CHUNK = 1 << 20


def checkout_cache() -> Path | None:
    """The ``.cache`` folder of the source checkout this package runs from, if there is one.

    ``make setup`` puts the weights in ``<checkout>/.cache/keras`` and ``make`` keeps its
    caches in ``<checkout>/.cache/mammo``; finding them here lets the console script and
    scripts run in the checkout use them without any exported variable.
    """
    root = Path(__file__).resolve().parent.parent
    folder = root / ".cache"
    return folder if (root / "setup.cfg").is_file() and folder.is_dir() else None


def cache_root() -> Path:
    """Root of every derived file: ``$MAMMO_CACHE_DIR`` when set and not empty, else the
    checkout's ``.cache/mammo`` when it exists, else ``~/.cache/mammo``."""
    env = os.environ.get("MAMMO_CACHE_DIR")
    if env:
        return Path(env)
    checkout = checkout_cache()
    if checkout is not None and (checkout / "mammo").is_dir():
        return checkout / "mammo"
    return Path.home() / ".cache" / "mammo"


def keras_home() -> Path:
    """Where Keras keeps downloaded weights (``models/``): ``$KERAS_HOME`` when set, else the
    checkout's ``.cache/keras`` when its ``models/`` exists, else Keras' own ``~/.keras``."""
    env = os.environ.get("KERAS_HOME")
    if env:
        return Path(env)
    checkout = checkout_cache()
    if checkout is not None and (checkout / "keras" / "models").is_dir():
        return checkout / "keras"
    return Path.home() / ".keras"


def export_keras_home() -> None:
    """Set ``KERAS_HOME`` to :func:`keras_home` unless it is set: Keras reads it once, when imported."""
    os.environ.setdefault("KERAS_HOME", str(keras_home()))


# ------------------------------------------------------------------ hashing
def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def content_sha256(item: Any) -> str:
    """sha256 of an image source: a file's bytes, raw bytes, or an array's dtype, shape and data."""
    if isinstance(item, (str, os.PathLike)):
        return file_sha256(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(item)).hexdigest()
    import numpy as np

    a = np.ascontiguousarray(item)
    h = hashlib.sha256(f"array:{a.dtype.str}:{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def json_sha256(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys; non-JSON values by ``str``)."""
    return content_sha256(json.dumps(obj, sort_keys=True, default=str).encode())


# ------------------------------------------------------------- step identity
def step_key(step: Any) -> str:
    """Identity of a stateless step: its class and parameters (what its output depends on).

    The feature cache hashes this text into its folder names, so its format is
    part of the on-disk keys.
    """
    return f"{type(step).__module__}.{type(step).__qualname__}{sorted(step.get_params(deep=False).items())!r}"


def jsonable(value: Any) -> Any:
    """``value`` as JSON would give it back: tuples become lists, other objects their ``repr``."""
    return json.loads(json.dumps(value, default=repr))


def step_record(step: Any) -> dict[str, Any]:
    """``{"class": "pkg.mod.Class", "params": {...}}``: :func:`step_key` as structured JSON."""
    cls = type(step)
    params = step.get_params(deep=False)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "params": jsonable(dict(sorted(params.items())))}


# ------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; it replaces ``path`` when the block ends without error.

    The temporary name (``<name>.<pid>.<thread>.tmp``) is unique per writer, and
    ``mammo cache --prune`` removes old ones left by a killed process.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, mode) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


class OutputDirError(OSError):
    """An output folder that cannot be created or written: ``mammo`` reports it in one line and exits 2."""


def check_output_dir(path: str | os.PathLike) -> Path:
    """``path`` if it is, or can be created as, a folder this process may write to; else
    :class:`OutputDirError`. Creates nothing, so a command that fails later leaves no empty folder."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:  # the nearest folder that exists
        probe = probe.parent
    if not probe.is_dir():
        raise OutputDirError(f"cannot write in {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputDirError(f"cannot write in {path}: no permission to write in {probe}")
    return path
