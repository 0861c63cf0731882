"""Error pages / JSON errors and the security headers on every response."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .inference import UploadError

log = logging.getLogger(__name__)

CSP = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz"


def error_response(status: int, message: str):
    if wants_json():
        resp = jsonify({"error": message, "status": status})
    else:
        resp = render_template("error.html", status=status, message=message)
    return resp, status


def register(app: Flask) -> None:
    @app.after_request
    def security_headers(resp):
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        if not request.path.startswith("/static/"):
            # results describe someone's mammogram: keep them out of caches
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(UploadError)
    def upload_error(exc: UploadError):
        return error_response(exc.status, exc.message)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return error_response(
            400,
            f"The form's security token is missing or expired ({exc.description}) "
            "Reload the upload page and try again.",
        )

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        limit = app.config["MAX_CONTENT_LENGTH"]
        return error_response(413, f"The upload is larger than the limit of {limit / 2**20:.1f} MB.")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        resp, status = error_response(exc.code or 500, f"{exc.name}: {exc.description}")
        valid = getattr(exc, "valid_methods", None)  # 405 must say what is allowed
        if valid:
            resp = app.make_response(resp)
            resp.headers["Allow"] = ", ".join(valid)
        return resp, status

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        # The traceback goes to the server log (it holds no upload content); the client gets a plain message.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Internal error: the image could not be processed. The server log has details.")
