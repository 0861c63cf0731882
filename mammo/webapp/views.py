"""Routes: the upload and result pages and the model card (``main``), and the JSON API (``api``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from flask import Blueprint, current_app, jsonify, render_template, request

from ..evaluation.card import CARD_FILES, ModelCard, build_card, card_html, card_style_hash
from ..features.enhance import enhance
from ..features.quality import ImplausibleImageError
from . import DISCLAIMER
from .errors import CSP
from .inference import (
    UploadError,
    apply_crop,
    display_image,
    heatmap_overlay,
    occlusion_map,
    parse_crop,
    png_data_url,
    read_upload,
)

main = Blueprint("main", __name__)
api = Blueprint("api", __name__, url_prefix="/api")


def _state() -> dict:
    return current_app.extensions["mammo"]


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


def _display_pixels(prepared) -> np.ndarray:
    """The enhanced view: what the model sees, or, for a model trained on unenhanced
    crops (``make_task_pipeline(enhance=False)``), the default enhancement of that crop."""
    step = next(iter(_state()["model"].pipelines.values())).named_steps.get("enhance")
    if step is not None and step.clip_limit == 0 and step.unsharp_amount == 0:
        return enhance(prepared.pixels, prepared.mask)
    return prepared.pixels


def _predict(image: np.ndarray, *, heatmap: bool, enhanced: bool) -> dict:
    """Predictions (and optionally the enhanced view and occlusion map) under an inference slot."""
    state = _state()
    model = state["model"]
    out: dict = {}
    with state["slots"]:
        t0 = time.perf_counter()
        try:
            if enhanced:
                records, prepared = model.analyse([image])
                out["record"], out["enhanced"] = records[0], prepared[0]
            else:
                out["record"] = model.predict_records([image])[0]
            if heatmap:
                t1 = time.perf_counter()
                out["occlusion"] = occlusion_map(
                    model.with_gate(False),  # the altered copies of an image the gate accepted
                    image,
                    grid=current_app.config["MAMMO_HEATMAP_GRID"],
                    max_side=current_app.config["MAMMO_HEATMAP_MAX_SIDE"],
                )
                out["heatmap_seconds"] = time.perf_counter() - t1
        except UploadError:
            raise
        except ImplausibleImageError as exc:
            raise UploadError(422, f"This image cannot be judged: it {_refusal(exc)}. The model analyses "
                                   "mammograms (a grey X-ray of one breast), nothing else.") from None
        except ValueError as exc:  # ImageReadError (e.g. a crop of an absurd aspect ratio) is a ValueError
            raise UploadError(422, f"The image could not be analysed: {exc}") from None
        out["seconds"] = time.perf_counter() - t0
    return out


def _refusal(exc: ImplausibleImageError) -> str:
    """The gate's reason as the rest of a sentence starting "it ..."."""
    text = str(exc).split(": ", 1)[-1]
    return text.replace("the image is", "is").replace("the image has", "has").replace("no breast was found", "shows no breast")


def _outline(prepared, crop) -> list:
    """The breast's outline in the uploaded image's pixels (the analysed region may be a crop of it)."""
    dy, dx = (crop.y, crop.x) if crop else (0, 0)
    return [c + (dy, dx) for c in prepared.outline()]


def _ood_view(record: dict) -> dict | None:
    if "in_distribution" not in record:
        return None
    ood = _state()["model"].ood
    return {"ok": record["in_distribution"], "score": record["ood_score"], "threshold": record["ood_threshold"],
            "tail": 1.0 - ood["model"].quantile}


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
        info=_state()["info"],
        disclaimer=DISCLAIMER,
    )


@main.post("/predict")
def predict():
    image, crop, analysed = _uploaded_image()
    heatmap = _flag("heatmap")
    res = _predict(analysed, heatmap=heatmap, enhanced=True)
    size = current_app.config["MAMMO_DISPLAY_SIZE"]
    enhanced = res["enhanced"]
    view = {
        "original": png_data_url(display_image(image, size, crop, outline=_outline(enhanced, crop))),
        "enhanced": png_data_url(display_image(_display_pixels(enhanced), size)),
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
        ood=_ood_view(record),
        density=_density_rows(record["density"]) if "density" in record else None,
        view=view,
        occ=res.get("occlusion"),
        heatmap_seconds=res.get("heatmap_seconds"),
        seconds=res["seconds"],
        card=model_card_content(),
        info=_state()["info"],
        disclaimer=DISCLAIMER,
    )


def _density_rows(density: dict) -> list[dict]:
    meanings = _state()["model"].metadata.get("tasks", {}).get("density", {}).get("class_meanings", {})
    return [
        {
            "cls": c,
            "meaning": meanings.get(c, c),
            "p": p,
            "predicted": str(density["label"]) == c,
        }
        for c, p in density["probabilities"].items()
    ]


def model_card_content() -> ModelCard:
    """The loaded model's card, built from its metadata (what the result page summarises)."""
    state = _state()
    return build_card(state["model"].metadata, model_file=state["info"])


def _card_file() -> str | None:
    """The MODEL_CARD.html ``mammo train`` wrote beside the model, if it names the loaded model's sha256."""
    path = Path(current_app.config["MAMMO_MODEL"]).parent / CARD_FILES[1]
    try:
        html = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    # a card another model left in the folder must not speak for this one
    return html if _state()["info"]["sha256"] in html else None


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
    image, crop, analysed = _uploaded_image()
    heatmap = _flag("heatmap")
    res = _predict(analysed, heatmap=heatmap, enhanced=False)
    body = {
        **res["record"],
        "image": {"width": image.shape[1], "height": image.shape[0], "crop": crop.as_list() if crop else None},
        "model": {"file": _state()["info"]["file"], "sha256": _state()["info"]["sha256"],
                  "pipeline_id": _state()["model"].metadata.get("pipeline_id")},
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
    return jsonify({"width": image.shape[1], "height": image.shape[0], "preview": png_data_url(thumb),
                    "preview_width": thumb.width, "preview_height": thumb.height})


@main.get("/healthz")
def healthz():
    state = _state()
    meta = state["model"].metadata
    return jsonify({
        "status": "ok",
        "model": {**state["info"], "pipeline_id": meta.get("pipeline_id"), "tasks": sorted(state["model"].pipelines)},
    })
