"""Routes: the upload and result pages and the model card (``main``), and the JSON API (``api``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flask import Blueprint, current_app, jsonify, render_template, request

from ..evaluation.card import CARD_FILES, card_html, card_style_hash
from ..exams import VIEWS
from . import DISCLAIMER
from .errors import CSP
from .exam import MAX_FILES, RULES, combine, exam_json, flagged, read_exam, score_exam
from .inference import UploadError, apply_crop, display_image, heatmap_overlay, parse_crop, png_data_url, read_upload
from .shared import (
    density_meanings,
    density_rows,
    display_pixels,
    model_card_content,
    ood_view,
    outline,
    predict_image,
    state,
)

main = Blueprint("main", __name__)
api = Blueprint("api", __name__, url_prefix="/api")


def _uploaded_image():
    """(full image, crop, cropped image) from the request's ``file`` field and crop box."""
    if "file" not in request.files:
        raise UploadError(400, "No file in the request: send the image in a multipart form field named 'file'.")
    upload = request.files["file"]
    data = upload.read()
    if not data:
        if not upload.filename:
            raise UploadError(400, "No file was selected: choose an image to upload.")
        raise UploadError(400, "The uploaded file is empty.")
    crop = parse_crop(request.form, min_size=current_app.config["MAMMO_MIN_CROP"])
    image = read_upload(data, max_pixels=current_app.config["MAMMO_MAX_PIXELS"])
    del data
    return image, crop, apply_crop(image, crop)


def _flag(name: str) -> bool:
    return (request.form.get(name) or request.args.get(name) or "").strip().lower() in ("1", "true", "on", "yes")


def _exam_files() -> list | None:
    """The request's files when there are several (one exam), else None: one file keeps the single-image flow."""
    files = request.files.getlist("file")
    return files if len(files) > 1 else None


def _model_json() -> dict:
    st = state()
    return {
        "file": st["info"]["file"],
        "sha256": st["info"]["sha256"],
        "pipeline_id": st["model"].metadata.get("pipeline_id"),
    }


def _occlusion_json(occ: dict) -> dict:
    return {
        "grid": int(occ["drop"].shape[0]),
        "baseline_p_malignant": occ["baseline"],
        "drop": np.round(occ["drop"], 6).tolist(),
        "analysed_shape": list(occ["shape"]),
        "cells_run": occ["n_run"],
        "note": "drop[i][j] = P(malignant) minus P(malignant) with cell (row i, column j) of the analysed "
        "image replaced by its mean grey; positive means that cell raised the score. Flat (background) cells "
        "are not re-run and have drop 0.",
    }


# --------------------------------------------------------------------------- HTML


@main.get("/")
def index():
    return render_template(
        "main/index.html",
        min_crop=current_app.config["MAMMO_MIN_CROP"],
        max_mb=current_app.config["MAX_CONTENT_LENGTH"] / 2**20,
        max_files=MAX_FILES,
        views=VIEWS,
        info=state()["info"],
        disclaimer=DISCLAIMER,
    )


@main.post("/predict")
def predict():
    files = _exam_files()
    if files:
        return _exam_page(files)
    image, crop, analysed = _uploaded_image()
    heatmap = _flag("heatmap")
    res = predict_image(analysed, heatmap=heatmap, enhanced=True)
    size = current_app.config["MAMMO_DISPLAY_SIZE"]
    enhanced = res["enhanced"]
    view = {
        "original": png_data_url(display_image(image, size, crop, outline=outline(enhanced, crop))),
        "enhanced": png_data_url(display_image(display_pixels(enhanced), size)),
        "flipped": bool(enhanced.flipped),
        "inverted": bool(enhanced.inverted),
        "width": image.shape[1],
        "height": image.shape[0],
        "crop": crop,
    }
    if heatmap:
        view["heatmap"] = png_data_url(heatmap_overlay(analysed, res["occlusion"], size))
        view["heatmap_max"] = float(np.abs(res["occlusion"]["drop"]).max())
    record = res["record"]
    return render_template(
        "main/result.html",
        rec=record,
        ood=ood_view(record),
        density=density_rows(record["density"]) if "density" in record else None,
        view=view,
        occ=res.get("occlusion"),
        heatmap_seconds=res.get("heatmap_seconds"),
        seconds=res["seconds"],
        card=model_card_content(),
        info=state()["info"],
        disclaimer=DISCLAIMER,
    )


def _exam_page(files: list):
    """The result page of several files: a card per view, the per-breast table and the exam's density."""
    images = read_exam(files, request.form, heatmap=_flag("heatmap"))
    seconds = score_exam(images)
    exam = combine(images)
    size = current_app.config["MAMMO_EXAM_DISPLAY_SIZE"]
    cards = []
    for im in images:
        card = {
            "view": im.view,
            "error": im.reason,
            "rec": im.record,
            "ood": ood_view(im.record) if im.record else None,
        }
        if im.scan is not None:  # refused by the gate: shown without an outline
            lines = outline(im.prepared, None) if im.prepared is not None else None
            card.update(
                image=png_data_url(display_image(im.scan, size, outline=lines)),
                outlined=bool(lines),
                width=im.scan.shape[1],
                height=im.scan.shape[0],
            )
        cards.append(card)
    meanings = density_meanings()
    return render_template(
        "main/exam.html",
        cards=cards,
        exam=exam,
        breasts=[{"b": b, "flagged": flagged(b.p_malignant)} for b in exam.breasts],
        density_meaning=None if exam.density is None else meanings.get(str(exam.density), str(exam.density)),
        threshold=state()["model"].threshold,
        rules=RULES,
        seconds=seconds,
        card=model_card_content(),
        info=state()["info"],
        disclaimer=DISCLAIMER,
    )


def _card_file() -> str | None:
    """The MODEL_CARD.html ``mammo train`` wrote beside the model, if it names the loaded model's sha256."""
    path = Path(current_app.config["MAMMO_MODEL"]).parent / CARD_FILES[1]
    try:
        html = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    # a card another model left in the folder must not speak for this one
    return html if state()["info"]["sha256"] in html else None


@main.get("/model-card")
def model_card():
    """The full model card: the run's own card file, else the same card built from the model's metadata."""
    resp = current_app.response_class(_card_file() or card_html(model_card_content()), mimetype="text/html")
    # The card is also a standalone file, so it carries its styles in one <style> element: allow exactly that one.
    resp.headers["Content-Security-Policy"] = CSP.replace("style-src 'self'", f"style-src 'self' {card_style_hash()}")
    return resp


# --------------------------------------------------------------------------- JSON


@api.post("/predict")
def api_predict():
    files = _exam_files()
    if files:
        images = read_exam(files, request.form, heatmap=_flag("heatmap"))
        seconds = score_exam(images)
        body = {
            **exam_json(images, combine(images)),
            "model": _model_json(),
            "seconds": round(seconds, 4),
            "disclaimer": DISCLAIMER,
        }
        return jsonify(body)
    image, crop, analysed = _uploaded_image()
    heatmap = _flag("heatmap")
    res = predict_image(analysed, heatmap=heatmap, enhanced=False)
    body = {
        **res["record"],
        "image": {"width": image.shape[1], "height": image.shape[0], "crop": crop.as_list() if crop else None},
        "model": _model_json(),
        "seconds": round(res["seconds"], 4),
        "disclaimer": DISCLAIMER,
    }
    if heatmap:
        body["heatmap"] = _occlusion_json(res["occlusion"])
    return jsonify(body)


@api.post("/preview")
def api_preview():
    """A PNG thumbnail and the original size, so the page can offer a crop for any format (DICOM, TIFF...)."""
    if "file" not in request.files:
        raise UploadError(400, "No file in the request: send the image in a multipart form field named 'file'.")
    data = request.files["file"].read()
    image = read_upload(data, max_pixels=current_app.config["MAMMO_MAX_PIXELS"])
    del data
    thumb = display_image(image, current_app.config["MAMMO_PREVIEW_SIZE"])
    return jsonify(
        {
            "width": image.shape[1],
            "height": image.shape[0],
            "preview": png_data_url(thumb),
            "preview_width": thumb.width,
            "preview_height": thumb.height,
        }
    )


@main.get("/healthz")
def healthz():
    st = state()
    meta = st["model"].metadata
    return jsonify(
        {
            "status": "ok",
            "model": {**st["info"], "pipeline_id": meta.get("pipeline_id"), "tasks": sorted(st["model"].pipelines)},
        }
    )
