"""Flask web app: upload a mammogram, crop it, see density and tumour predictions.

Run it with ``mammo serve --model runs/default/model.joblib`` (waitress), or for
development ``MAMMO_MODEL=models/dphi.joblib flask --app mammo.webapp run``.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import threading
import time
from pathlib import Path

from flask import Flask, Request

from ..classifiers import ArtifactIntegrityError, MammogramModel, load_model
from ..features.io import DEFAULT_MAX_PIXELS
from ..storage import file_sha256

__all__ = ["create_app", "serve", "make_server", "ModelLoadError", "DEFAULTS"]

log = logging.getLogger(__name__)

#: Configuration keys and their defaults (override with ``create_app({...})``).
DEFAULTS: dict = {
    "MAMMO_MODEL": None,  # path of the saved MammogramModel; also from the MAMMO_MODEL env var
    "MAMMO_MODEL_MANIFEST": "auto",  # "auto": verify <model>.manifest.json if present; a path; or None
    "MAMMO_MAX_PIXELS": DEFAULT_MAX_PIXELS,  # largest accepted width * height of an upload
    "MAMMO_MAX_EXAM_PIXELS": None,  # largest width * height of an exam's images together; None: 2 x MAMMO_MAX_PIXELS
    "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,  # largest request body in bytes (413 above it)
    "MAMMO_MIN_CROP": 16,  # smallest crop box side in pixels
    "MAMMO_DISPLAY_SIZE": 768,  # longer side of the images shown on the result page
    "MAMMO_EXAM_DISPLAY_SIZE": 384,  # longer side of each view's image on the exam result page
    "MAMMO_PREVIEW_SIZE": 512,  # longer side of the /api/preview thumbnail
    "MAMMO_HEATMAP_GRID": 8,  # occlusion cells per side
    "MAMMO_HEATMAP_MAX_SIDE": 512,  # image side the occlusion map works at
    "MAMMO_INFERENCE_SLOTS": 2,  # predictions run at the same time (bounds CPU and memory)
    "MAMMO_WARMUP": True,  # run one prediction at start-up so the first request is not slow
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    "WTF_CSRF_TIME_LIMIT": 4 * 3600,
    "DEBUG": False,
}

DISCLAIMER = (
    "Research tool, not a diagnosis. These predictions come from a statistical model trained on a small "
    "public data set; they are not validated for clinical use and must not guide anyone's care."
)


class ModelLoadError(RuntimeError):
    """The configured model is missing, corrupt, or not a MammogramModel: the app cannot start."""


class InMemoryRequest(Request):
    """Keep uploaded files in memory: Werkzeug would spool large ones to a temporary file.

    The request size is bounded by ``MAX_CONTENT_LENGTH``, so memory is too.
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def create_app(test_config: dict | None = None) -> Flask:
    """Application factory.

    Parameters
    ----------
    test_config : dict, optional
        Configuration overriding :data:`DEFAULTS` and the environment variables
        ``MAMMO_MODEL`` (model path) and ``MAMMO_SECRET_KEY``.

    Raises
    ------
    ModelLoadError
        When no model is configured or it cannot be loaded.
    """
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config.from_mapping(DEFAULTS)
    if os.environ.get("MAMMO_MODEL"):
        app.config["MAMMO_MODEL"] = os.environ["MAMMO_MODEL"]
    # A per-process random key is enough for one waitress process: it only signs the CSRF session.
    app.config["SECRET_KEY"] = os.environ.get("MAMMO_SECRET_KEY") or secrets.token_hex(32)
    if test_config:
        app.config.from_mapping(test_config)

    model, info = _load(app.config["MAMMO_MODEL"], app.config["MAMMO_MODEL_MANIFEST"])
    app.extensions["mammo"] = {
        "model": model,
        "info": info,
        "slots": threading.BoundedSemaphore(int(app.config["MAMMO_INFERENCE_SLOTS"])),
    }
    if app.config["MAMMO_WARMUP"]:
        _warm_up(model)

    from flask_wtf.csrf import CSRFProtect
    from jinja2 import ChoiceLoader

    from ..evaluation.card import template_loader
    from . import errors, views

    # the result page lays out the model card's summary with the card's own macros ("card/...")
    app.jinja_loader = ChoiceLoader([app.jinja_loader, template_loader()])

    csrf = CSRFProtect(app)
    app.register_blueprint(views.main)
    app.register_blueprint(views.api)
    csrf.exempt(views.api)  # script clients send no session cookie; see docs/webapp.md
    errors.register(app)
    return app


def _load(path, manifest) -> tuple[MammogramModel, dict]:
    if not path:
        raise ModelLoadError(
            "No model configured: pass --model PATH, set the MAMMO_MODEL environment variable, "
            "or create_app({'MAMMO_MODEL': PATH})."
        )
    path = Path(path)
    if manifest == "auto":
        candidate = Path(str(path) + ".manifest.json")
        manifest = candidate if candidate.is_file() else None
    try:
        model = load_model(path, manifest=manifest)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"Model file not found: {path}. Train one first (see the README).") from exc
    except ArtifactIntegrityError as exc:
        raise ModelLoadError(f"Model file failed its integrity check: {exc}") from exc
    except TypeError as exc:
        raise ModelLoadError(f"Not a mammo model: {exc}") from exc
    except Exception as exc:  # unpickling garbage can raise almost anything
        raise ModelLoadError(f"Could not load the model {path}: {type(exc).__name__}: {exc}") from exc
    info = {
        "file": path.name,
        "sha256": file_sha256(path),
        "verified_manifest": manifest is not None,
        "loaded_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    return model, info


def _warm_up(model: MammogramModel) -> None:
    import numpy as np

    from ..testing import synthetic_mammogram

    try:
        model.predict_proba([synthetic_mammogram(np.random.default_rng(0), 2, shape=(96, 76))])
    except Exception as exc:  # e.g. CNN weights unavailable: fail at start-up, not on the first upload
        raise ModelLoadError(f"The model loaded but cannot predict: {type(exc).__name__}: {exc}") from exc


def make_server(app: Flask, host: str = "127.0.0.1", port: int = 8000, threads: int = 4):
    """A waitress server for ``app`` (``port=0`` picks a free port: see ``.effective_port``).

    On glibc, start the process with ``MALLOC_ARENA_MAX=2``: otherwise each worker
    thread running numpy/TensorFlow work keeps its own malloc arena, and the process
    grows once by ~100-130 MB the first time all threads are busy (then stays flat).

    Request bodies up to ``MAX_CONTENT_LENGTH`` and responses are buffered in memory
    (waitress would otherwise spool large ones to temporary files), so uploads never
    touch the disk; the connection limit bounds that memory.
    """
    from waitress import create_server

    body = int(app.config["MAX_CONTENT_LENGTH"])
    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        # a little slack over MAX_CONTENT_LENGTH so that Flask, not waitress, answers the 413
        max_request_body_size=body + (1 << 20),
        inbuf_overflow=body + (1 << 20),
        outbuf_overflow=64 << 20,
        connection_limit=max(16, 4 * threads),
        ident="mammo",
    )


def serve(model_path, host: str = "127.0.0.1", port: int = 8000, threads: int = 4, config: dict | None = None) -> None:
    """Load the model, then serve the app with waitress until interrupted, printing the address."""
    app = create_app({**(config or {}), "MAMMO_MODEL": str(model_path)})
    server = make_server(app, host, port, threads)
    shown = "localhost" if host in ("0.0.0.0", "::") else host  # a wildcard address is not something to browse to
    print(
        f"mammo web app: serving model {Path(model_path).name} on http://{shown}:{server.effective_port}/ "
        f"({threads} threads; Ctrl+C to stop)",
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
